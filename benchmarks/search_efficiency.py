"""Search quality per training and per training second: the Deep-n-Cheap search against random, Sobol,
Optuna TPE and Optuna GP.

Eight settings (`--penalty params`): MLPs on digits (w_c 0 and 0.1), breast_cancer and wine (w_c 0.1),
diabetes (w_c 0 and 0.1), the digits CNN in a small space (w_c 0.1) and a larger generated classification
task (4,000 rows, 40 features, 6 classes; w_c 0); 3 seeds. Breast_cancer and wine at w_c 0 were dropped: every method
tied there (all reach the validation floor), so they told nothing.

Equal trainings: for each setting and seed our three-stage search with a fixed small budget (5 prior points
+ 5 BO steps per BO stage, `--prune none`) uses some number T of trainings; every other method gets the same
T trainings on the joint space of every hyperparameter our stages search, with our trainer and objective:
`random` and `sobol` are our own baselines (`--method random|sobol`), `tpe` and `optuna_gp` are Optuna's
samplers proposing a point of the unit cube that our space decodes into a config (as our random and Sobol
searches do), and `dnc_reference` is our search with `--bo-mode reference` (capped at T).

Equal compute: our search with its default pruning spends S training seconds (every trial's slot time,
pruned ones included); random, Sobol, Optuna TPE with Optuna's Hyperband pruner (fed our objective so far
after every epoch) and Optuna GP then train configs until they have spent S seconds too.

Reported per view, setting and method: the median best objective (and its IQR); a win is a strictly lowest
median (ties count for nobody). Last line: `wins_<method>=k` of the equal-trainings view, then
`wins_dnc_equal_time=N settings=8`. Writes benchmarks/results/search_efficiency.md (+ .csv of every run);
`--quick` (1 seed, 2 settings) writes search_efficiency_quick.*.

    .venv/bin/python benchmarks/search_efficiency.py [--seeds 3] [--epochs 5] [--quick]

Needs the `bench` extra (`pip install -e ".[bench]"`, Optuna). All training runs on the CPU with one torch
thread, so that methods are timed alike.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)
from sklearn.datasets import make_classification

import deepncheap
from deepncheap import search_cost
from deepncheap.data import load_dataset
from deepncheap.executors.serial import SerialExecutor
from deepncheap.objective import Scorer, measure_baselines
from deepncheap.pruning import DEFAULT_PRUNE
from deepncheap.space import SearchSpace
from deepncheap.store import RunStore
from deepncheap.train import DeviceData
from deepncheap.trial import run_trial, trial_seed

# The demo space (examples/demo_space.yaml) narrowed to 3-4 layers of at most 64 channels, so that the CNN
# setting's 7 searches per seed train in about 2 minutes on one thread.
SMALL_CNN = {
    "num_conv_layers": [3, 4], "channels_first": [8, 16], "channels_upper": 64, "lr": [0.001, 0.01],
    "batch_size": [32, 128], "bn_fracs": [0.75, 1.0], "do_fracs": [0.0, 0.25, 0.5],
}  # fmt: skip
TRIAL_METHODS = ("dnc", "dnc_reference", "random", "sobol", "tpe", "optuna_gp")
TIME_METHODS = ("dnc", "random", "sobol", "tpe_hyperband", "optuna_gp")
CHECKPOINTS = (5, 10, 15, 20)


@dataclass(frozen=True)
class Setting:
    name: str
    data: Any
    network: str
    wc: float
    space: dict[str, Any] | None = None


def all_settings() -> list[Setting]:
    x, y = make_classification(
        n_samples=4000, n_features=40, n_informative=20, n_redundant=10, n_classes=6, n_clusters_per_class=2,
        class_sep=1.0, random_state=0,
    )  # fmt: skip
    generated = (x.astype(np.float32), y.astype(np.int64))
    return [
        Setting("digits w_c=0", "digits", "mlp", 0.0),
        Setting("digits w_c=0.1", "digits", "mlp", 0.1),
        Setting("breast_cancer w_c=0.1", "breast_cancer", "mlp", 0.1),
        Setting("wine w_c=0.1", "wine", "mlp", 0.1),
        Setting("diabetes w_c=0", "diabetes", "mlp", 0.0),
        Setting("diabetes w_c=0.1", "diabetes", "mlp", 0.1),
        Setting("digits cnn (small space) w_c=0.1", "digits", "cnn", 0.1, SMALL_CNN),
        Setting("generated 4000x40 w_c=0", generated, "mlp", 0.0),
    ]


QUICK_SETTINGS = ("digits w_c=0.1", "breast_cancer w_c=0.1")


@dataclass
class Outcome:
    view: str  # "trials" (equal trainings) or "time" (equal training seconds)
    setting: str
    method: str
    seed: int
    curve: list[float]  # best objective so far after each training (inf before the first complete one)
    training_s: float
    wall_s: float

    @property
    def best(self) -> float:
        return self.curve[-1]


def best_so_far(objectives: list[float | None]) -> list[float]:
    """Running minimum; a failed or pruned training (None) keeps the best so far."""
    curve, best = [], float("inf")
    for value in objectives:
        if value is not None:
            best = min(best, value)
        curve.append(best)
    return curve


def run_ours(
    method: str, setting: Setting, seed: int, args: argparse.Namespace, root: Path, *, cap: int | None, prune: str
) -> Outcome:
    """One search through the public API; its trials in store order give the curve."""
    options = dict(
        data=setting.data, network=setting.network, space=setting.space, penalty="params", wc=setting.wc,
        seed=seed, epochs=args.epochs, threads=1, prior_points=args.prior_points, bo_steps=args.bo_steps,
        max_trials=cap, prune=prune, verbose=False, report=False,
        out=root / f"{setting.name.replace(' ', '_')}-{method}-{prune}-{seed}",
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
        training_s = search_cost.summarize(store)["training_s"]
    view = "trials" if prune == "none" else "time"
    return Outcome(view, setting.name, method, seed, best_so_far(objectives), training_s, wall)


@dataclass
class Bench:
    """What the comparators train with: our space, data, trainer and objective, outside our search."""

    setting: Setting
    seed: int
    epochs: int

    def __post_init__(self) -> None:
        space = SearchSpace.create(self.setting.network, self.setting.space)
        self.dataset = load_dataset(self.setting.data, network=self.setting.network)
        self.space, _ = space.bounded_by_training_set(len(self.dataset.y_train))
        self.data = DeviceData.from_dataset(self.dataset, torch.device("cpu"))
        executor = SerialExecutor(self.data.device, threading.Event())
        executor.load(self.dataset, Path(tempfile.gettempdir()))  # (the serial executor writes no file)
        baselines = measure_baselines(self.space, self.dataset, executor, penalty="params", seed=self.seed)
        self.scorer = Scorer(dataset=self.dataset, penalty="params", wc=self.setting.wc, baselines=baselines)

    def train(self, config: dict[str, Any], index: int, on_epoch: Callable[[Any], bool] | None = None):
        """(objective or None, seconds, stopped early) of one training with the joint search's trial seed."""
        start = time.perf_counter()
        try:
            measured = run_trial(
                config, self.data, input_shape=self.dataset.input_shape, num_outputs=self.dataset.num_outputs,
                epochs=self.epochs, seed=trial_seed(self.seed, "joint", index), on_epoch=on_epoch,
            )  # fmt: skip
        except Exception:  # a diverging config: failed, as in our searches
            return None, time.perf_counter() - start, False
        value = self.scorer.score(measured)["objective"]
        return value, time.perf_counter() - start, measured.training.stopped


def sampled_configs(bench: Bench, method: str) -> Iterator[dict[str, Any]]:
    """Our random or Sobol joint-space sequence (its first points do not depend on its length)."""
    yield from bench.space.sample(2048, method=method, seed=bench.seed)


def run_comparator(method: str, setting: Setting, seed: int, args: argparse.Namespace, *, trainings: int | None,
                   seconds: float | None) -> Outcome:  # fmt: skip
    """`method` trains configs until it has made `trainings` trainings or spent `seconds` training seconds."""
    start = time.perf_counter()
    bench = Bench(setting, seed, args.epochs)
    objectives: list[float | None] = []
    spent = 0.0

    def more() -> bool:
        return len(objectives) < trainings if trainings is not None else spent < seconds  # type: ignore[operator]

    if method in ("random", "sobol"):
        configs = sampled_configs(bench, method)
        while more():
            value, took, _ = bench.train(next(configs), len(objectives))
            objectives.append(value)
            spent += took
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        gp = method == "optuna_gp"
        sampler = optuna.samplers.GPSampler(seed=seed) if gp else optuna.samplers.TPESampler(seed=seed)
        pruner = (
            optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs, reduction_factor=3)
            if method == "tpe_hyperband"
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(sampler=sampler, pruner=pruner, direction="minimize")
        below_one = np.nextafter(1.0, 0.0)
        while more():
            trial = study.ask()
            point = [trial.suggest_float(f"u{k}", 0.0, 1.0) for k in range(bench.space.dimension("joint"))]
            config = bench.space.decode(np.minimum(np.array(point), below_one), stage="joint")
            f_c = bench.scorer.cost_of(config).f_c
            scores: list[float] = []
            times: list[float] = []

            def report(epoch_report: Any, trial: Any = trial, scores: list = scores, times: list = times,
                       f_c: float | None = f_c) -> bool:  # fmt: skip
                scores.append(epoch_report.val_score)
                times.append(epoch_report.epoch_time_s)
                if not np.isfinite(epoch_report.val_score):
                    return False
                trial.report(bench.scorer.partial(scores, times, f_c), epoch_report.epoch)
                return bool(trial.should_prune())

            value, took, stopped = bench.train(config, len(objectives), report)
            spent += took
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif stopped:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
            objectives.append(None if stopped else value)
    view = "trials" if trainings is not None else "time"
    return Outcome(view, setting.name, method, seed, best_so_far(objectives), spent, time.perf_counter() - start)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--prior-points", type=int, default=5)
    parser.add_argument("--bo-steps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 settings")
    args = parser.parse_args()
    settings = [s for s in all_settings() if s.name in QUICK_SETTINGS or not args.quick]
    seeds = 1 if args.quick else args.seeds
    torch.set_num_threads(1)

    began = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            for seed in range(seeds):
                dnc = run_ours("dnc", setting, seed, args, Path(tmp), cap=None, prune="none")
                trainings = len(dnc.curve)
                group = [dnc, run_ours("dnc_reference", setting, seed, args, Path(tmp), cap=trainings, prune="none")]
                for method in TRIAL_METHODS[2:]:
                    group.append(run_comparator(method, setting, seed, args, trainings=trainings, seconds=None))
                pruned = run_ours("dnc", setting, seed, args, Path(tmp), cap=None, prune=DEFAULT_PRUNE)
                timed = [pruned]
                for method in TIME_METHODS[1:]:
                    timed.append(run_comparator(method, setting, seed, args, trainings=None, seconds=pruned.training_s))
                outcomes += group + timed
                print(
                    f"{setting.name} seed {seed}: T={trainings} "
                    + "  ".join(f"{o.method} {o.best:+.4f}" for o in group)
                    + f" | S={pruned.training_s:.1f}s "
                    + "  ".join(f"{o.method} {o.best:+.4f} ({len(o.curve)})" for o in timed),
                    flush=True,
                )
    report(outcomes, settings, args, time.perf_counter() - began)


def view_table(outcomes: list[Outcome], settings: list[Setting], view: str, methods: tuple[str, ...]):
    """Rows of the view's table, its medians per setting, and the strict wins of each method."""
    rows, medians_table = [], []
    wins = dict.fromkeys(methods, 0)
    for setting in settings:
        medians = {}
        for method in methods:
            runs = [o for o in outcomes if (o.view, o.setting, o.method) == (view, setting.name, method)]
            q25, q50, q75 = quartiles([o.best for o in runs])
            medians[method] = round(q50, 9)
            at = [f"{np.median([o.curve[min(c, len(o.curve)) - 1] for o in runs]):+.3f}" for c in CHECKPOINTS]
            rows.append(
                f"| {setting.name} | {method} | {np.median([len(o.curve) for o in runs]):g} | "
                f"{np.median([o.training_s for o in runs]):.1f} | {q50:+.4f} | {q25:+.4f} … {q75:+.4f} | "
                f"{' / '.join(at)} | {np.median([o.wall_s for o in runs]):.1f} |"
            )
        lowest = min(medians.values())
        if sum(v == lowest for v in medians.values()) == 1:
            wins[min(medians, key=medians.__getitem__)] += 1
        medians_table.append((setting.name, medians))
    return rows, medians_table, wins


def medians_lines(medians_table, methods: tuple[str, ...]) -> list[str]:
    lines = ["| setting | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name, medians in medians_table:
        lowest = min(medians.values())
        cells = [f"**{v:+.4f}**" if v == lowest else f"{v:+.4f}" for v in medians.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def report(outcomes: list[Outcome], settings: list[Setting], args: argparse.Namespace, wall_s: float) -> None:
    header = [
        "| setting | method | trainings (median) | training s (median) | best median | IQR | "
        "median best-so-far @5 / 10 / 15 / 20 trainings | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    trial_rows, trial_medians, trial_wins = view_table(outcomes, settings, "trials", TRIAL_METHODS)
    time_rows, time_medians, time_wins = view_table(outcomes, settings, "time", TIME_METHODS)
    lines = [
        f"# search_efficiency{' (quick)' if args.quick else ''}",
        "",
        f"--penalty params, {args.epochs} epochs per training, {args.prior_points} prior points + {args.bo_steps} BO "
        f"steps per BO stage for dnc. Objective log10(f_p + w_c f_c), lower is better. Seeds: "
        f"{len({o.seed for o in outcomes})}. A win is a strictly lowest median (ties count for nobody).",
        "",
        "## Equal trainings (dnc with --prune none uses T trainings; every other method gets T)",
        "",
        *header,
        *trial_rows,
        "",
        *medians_lines(trial_medians, TRIAL_METHODS),
        "",
        "## Equal compute (dnc with its default pruning spends S training seconds; every other method gets S)",
        "",
        *header,
        *time_rows,
        "",
        *medians_lines(time_medians, TIME_METHODS),
        "",
        "Equal-compute wins: " + " ".join(f"{m}={n}" for m, n in time_wins.items()),
        "",
        f"wall time: {wall_s / 60:.1f} min",
        "",
    ]
    summary = " ".join(f"wins_{method}={count}" for method, count in trial_wins.items())
    summary += f" wins_dnc_equal_time={time_wins['dnc']} settings={len(settings)}"
    lines.append(summary)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    write_results(
        "search_efficiency",
        text,
        quick=args.quick,
        header=["view", "setting", "method", "seed", "training", "best_so_far", "training_s", "wall_s"],
        rows=(
            [o.view, o.setting, o.method, o.seed, index, value, round(o.training_s, 3), round(o.wall_s, 3)]
            for o in outcomes
            for index, value in enumerate(o.curve, start=1)
        ),
    )


if __name__ == "__main__":
    main()
