"""Search quality per training: the Deep-n-Cheap search against random, Sobol, Optuna TPE and Optuna GP.

For each setting (an MLP task x w_c, `--penalty params`) and seed, our three-stage search with a fixed small
budget (5 prior points + 5 BO steps per BO stage) uses some number T of trainings; every other method gets the
same T trainings on the joint space of every hyperparameter our stages search, with our trainer and our
objective: `random` and `sobol` are our own baselines (`--method random|sobol`), `tpe` and `optuna_gp` are
Optuna's samplers proposing a point of the unit cube that our space decodes into a config (exactly as our
random and Sobol searches do), and `dnc_reference` is our search with `--bo-mode reference` (capped at T).

Reported per setting and method: median and IQR of the best objective after T trainings, the median
best-so-far after 5, 10, 15, 20 trainings, the median wall time. Last line: `wins_<method>=k` for each method,
counting settings where it has the lowest median (ties count for every tied method). Writes
benchmarks/results/search_efficiency.md (+ .csv of every best-so-far curve); `--quick` (1 seed, 2 tasks)
writes search_efficiency_quick.*.

    .venv/bin/python benchmarks/search_efficiency.py [--seeds 5] [--epochs 5] [--quick]

Needs the `bench` extra (`pip install -e ".[bench]"`, Optuna). All training runs on the CPU with one torch
thread, so that methods are timed alike.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap.data import load_dataset
from deepncheap.executors.serial import SerialExecutor
from deepncheap.objective import Scorer, measure_baselines
from deepncheap.space import SearchSpace
from deepncheap.store import RunStore
from deepncheap.train import DeviceData
from deepncheap.trial import run_trial, trial_seed

TASKS = ("digits", "breast_cancer", "wine", "diabetes")
QUICK_TASKS = ("digits", "breast_cancer")
WEIGHTS = (0.0, 0.1)
METHODS = ("dnc", "dnc_reference", "random", "sobol", "tpe", "optuna_gp")
CHECKPOINTS = (5, 10, 15, 20)


@dataclass
class Outcome:
    task: str
    wc: float
    method: str
    seed: int
    curve: list[float]  # best objective so far after each training (inf before the first complete one)
    wall_s: float

    @property
    def best(self) -> float:
        return self.curve[-1]


def best_so_far(objectives: list[float | None]) -> list[float]:
    """Running minimum; a failed training (None) keeps the best so far."""
    curve, best = [], float("inf")
    for value in objectives:
        if value is not None:
            best = min(best, value)
        curve.append(best)
    return curve


def run_ours(method: str, task: str, wc: float, seed: int, args: argparse.Namespace, root: Path, cap: int | None):
    """One search through the public API; its trials in store order give the curve."""
    options = dict(
        data=task, network="mlp", penalty="params", wc=wc, seed=seed, epochs=args.epochs, threads=1,
        prior_points=args.prior_points, bo_steps=args.bo_steps, max_trials=cap, verbose=False,
        out=root / f"{task}-{wc}-{method}-{seed}",
    )  # fmt: skip
    if method == "dnc_reference":
        options.update(method="dnc", bo_mode="reference")
    else:
        options.update(method=method)
    start = time.perf_counter()
    result = deepncheap.search(**options)
    wall = time.perf_counter() - start
    with RunStore.open(result.run_dir) as store:
        objectives = [t.objective if t.status == "complete" else None for t in store.trials()]
    return Outcome(task, wc, method, seed, best_so_far(objectives), wall)


def run_optuna(method: str, task: str, wc: float, seed: int, args: argparse.Namespace, trainings: int) -> Outcome:
    """Optuna's sampler proposes unit-cube points; our joint space decodes them; our trainer and objective
    score them (with the same per-trial seeds as our joint searches)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    space = SearchSpace.create("mlp")
    dataset = load_dataset(task, network="mlp")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    executor = SerialExecutor(data.device, threading.Event())
    executor.load(dataset, Path(tempfile.gettempdir()))  # (the serial executor writes no file)
    baselines = measure_baselines(space, dataset, executor, penalty="params", seed=seed)
    scorer = Scorer(dataset=dataset, penalty="params", wc=wc, baselines=baselines)
    sampler = optuna.samplers.TPESampler(seed=seed) if method == "tpe" else optuna.samplers.GPSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    below_one = np.nextafter(1.0, 0.0)
    objectives: list[float | None] = []
    for index in range(trainings):
        trial = study.ask()
        point = [trial.suggest_float(f"u{k}", 0.0, 1.0) for k in range(space.dimension("joint"))]
        config = space.decode(np.minimum(np.array(point), below_one), stage="joint")
        try:
            measured = run_trial(
                config, data, input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                epochs=args.epochs, seed=trial_seed(seed, "joint", index),
            )  # fmt: skip
        except Exception:  # a diverging config: failed, as in our searches
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            objectives.append(None)
            continue
        value = scorer.score(measured)["objective"]
        study.tell(trial, value)
        objectives.append(value)
    return Outcome(task, wc, method, seed, best_so_far(objectives), time.perf_counter() - start)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--prior-points", type=int, default=5)
    parser.add_argument("--bo-steps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 tasks")
    args = parser.parse_args()
    tasks, seeds = (QUICK_TASKS, 1) if args.quick else (TASKS, args.seeds)
    torch.set_num_threads(1)

    began = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            for wc in WEIGHTS:
                for seed in range(seeds):
                    dnc = run_ours("dnc", task, wc, seed, args, Path(tmp), cap=None)
                    trainings = len(dnc.curve)
                    outcomes.append(dnc)
                    for method in METHODS[1:]:
                        if method in ("tpe", "optuna_gp"):
                            outcomes.append(run_optuna(method, task, wc, seed, args, trainings))
                        else:
                            outcomes.append(run_ours(method, task, wc, seed, args, Path(tmp), cap=trainings))
                    line = "  ".join(f"{o.method} {o.best:+.4f}" for o in outcomes[-len(METHODS) :])
                    print(f"{task} w_c={wc:g} seed {seed}: T={trainings}  {line}", flush=True)
    report(outcomes, tasks, args, time.perf_counter() - began)


def report(outcomes: list[Outcome], tasks: tuple[str, ...], args: argparse.Namespace, wall_s: float) -> None:
    lines = [
        f"# search_efficiency{' (quick)' if args.quick else ''}",
        "",
        f"MLP, --penalty params, {args.epochs} epochs per training, {args.prior_points} prior points + "
        f"{args.bo_steps} BO steps per BO stage for dnc; every other method gets the same number T of trainings "
        f"(per seed). Objective log10(f_p + w_c f_c), lower is better. Seeds: {len({o.seed for o in outcomes})}.",
        "",
        "| task | w_c | method | T (median) | best median | IQR | median best-so-far @5 / 10 / 15 / 20 | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    wins = dict.fromkeys(METHODS, 0)
    medians_table = []
    for task in tasks:
        for wc in WEIGHTS:
            medians = {}
            for method in METHODS:
                runs = [o for o in outcomes if (o.task, o.wc, o.method) == (task, wc, method)]
                q25, q50, q75 = quartiles([o.best for o in runs])
                medians[method] = round(q50, 9)
                at = [f"{np.median([o.curve[min(c, len(o.curve)) - 1] for o in runs]):+.3f}" for c in CHECKPOINTS]
                lines.append(
                    f"| {task} | {wc:g} | {method} | {np.median([len(o.curve) for o in runs]):g} | {q50:+.4f} | "
                    f"{q25:+.4f} … {q75:+.4f} | {' / '.join(at)} | {np.median([o.wall_s for o in runs]):.1f} |"
                )
            lowest = min(medians.values())
            for method, value in medians.items():
                wins[method] += value == lowest
            medians_table.append((task, wc, medians))
    lines += ["", "Median best objective per setting (lowest in bold):", ""]
    lines += ["| setting | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for task, wc, medians in medians_table:
        lowest = min(medians.values())
        cells = [f"**{v:+.4f}**" if v == lowest else f"{v:+.4f}" for v in medians.values()]
        lines.append(f"| {task} w_c={wc:g} | " + " | ".join(cells) + " |")
    lines += ["", f"wall time: {wall_s / 60:.1f} min", ""]
    summary = " ".join(f"wins_{method}={count}" for method, count in wins.items())
    lines.append(summary)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    write_results(
        "search_efficiency",
        text,
        quick=args.quick,
        header=["task", "wc", "method", "seed", "training", "best_so_far", "wall_s"],
        rows=(
            [o.task, o.wc, o.method, o.seed, index, value, round(o.wall_s, 3)]
            for o in outcomes
            for index, value in enumerate(o.curve, start=1)
        ),
    )


if __name__ == "__main__":
    main()
