"""Pruning: training seconds saved and best objectives kept, `--prune none` against `bound` and the default.

Settings: the digits MLP (w_c 0.1 and 0), breast_cancer and diabetes MLPs (w_c 0.1), all with `--penalty
params`, and the digits CNN in the demo space (`examples/demo_space.yaml`) with `--penalty time`; each with
3 seeds and every mode in `--modes` (default: none, bound and the default mode), one search after another
on the CPU. Measured per search: the training seconds (every trial's slot time: complete, pruned and failed
trials, from the store, `search_cost.summarize`), the best objective, the trials pruned (by the bound, by
the learning-curve rule).

Last line: `train_time_ratio=<none over the default mode, pooled seconds over every search>
best_within_spread=yes|no`, `yes` when in every setting the default's median best objective lies within
the min-max over seeds of `none`. Writes benchmarks/results/early_stopping.md (+ .csv); `--quick` (1 seed,
MLP settings only) writes early_stopping_quick.*.

    .venv/bin/python benchmarks/early_stopping.py [--seeds 3] [--modes none,bound,asha] [--quick] [--only cnn]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap import search_cost
from deepncheap.pruning import BOUND_REASON, DEFAULT_PRUNE
from deepncheap.space import read_space_file
from deepncheap.store import RunStore

DEMO_SPACE = Path(__file__).resolve().parent.parent / "examples" / "demo_space.yaml"


@dataclass(frozen=True)
class Setting:
    name: str
    options: dict


SETTINGS = (
    Setting("digits mlp w_c=0.1", dict(data="digits", network="mlp", penalty="params", wc=0.1)),
    Setting("digits mlp w_c=0", dict(data="digits", network="mlp", penalty="params", wc=0.0)),
    Setting("breast_cancer mlp w_c=0.1", dict(data="breast_cancer", network="mlp", penalty="params", wc=0.1)),
    Setting("diabetes mlp w_c=0.1", dict(data="diabetes", network="mlp", penalty="params", wc=0.1)),
    Setting(
        "digits cnn (demo space) time w_c=0.1",
        dict(data="digits", network="cnn", penalty="time", wc=0.1, space=read_space_file(DEMO_SPACE), epochs=10),
    ),
)


@dataclass(frozen=True)
class Run:
    setting: str
    mode: str
    seed: int
    training_s: float
    best: float
    trials: int
    pruned_bound: int
    pruned_curve: int
    wall_s: float


def run_search(setting: Setting, mode: str, seed: int, args: argparse.Namespace, root: Path) -> Run:
    options = dict(
        epochs=args.epochs, prior_points=args.prior_points, bo_steps=args.bo_steps, seed=seed, prune=mode,
        verbose=False, report=False, out=root / f"{setting.name.replace(' ', '_')}-{mode}-{seed}",
    ) | setting.options  # fmt: skip
    start = time.perf_counter()
    result = deepncheap.search(**options)
    wall_s = time.perf_counter() - start
    with RunStore.open(result.run_dir) as store:
        cost = search_cost.summarize(store)
        trials = store.trials()
    pruned = [t for t in trials if t.status == "pruned"]
    bound = sum(t.reason == BOUND_REASON for t in pruned)
    return Run(
        setting.name, mode, seed, cost["training_s"], float(result.metrics["objective"]), len(trials), bound,
        len(pruned) - bound, wall_s,
    )  # fmt: skip


def read_runs(path: str) -> list[Run]:
    """The runs of an earlier run's .csv."""
    with open(path, newline="") as handle:
        return [
            Run(row["setting"], row["mode"], int(row["seed"]), float(row["training_s"]), float(row["best"]),
                int(row["trials"]), int(row["pruned_bound"]), int(row["pruned_curve"]), float(row["wall_s"]))
            for row in csv.DictReader(handle)
        ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--modes", default=f"none,bound,{DEFAULT_PRUNE}")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the MLP trials (the CNN trains 10)")
    parser.add_argument("--prior-points", type=int, default=10)
    parser.add_argument("--bo-steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", metavar="TEXT", help="only the settings whose name contains TEXT (e.g. cnn)")
    parser.add_argument("--report-only", metavar="CSV", help="report the runs of an earlier run's .csv again")
    args = parser.parse_args()
    if args.report_only:
        runs = read_runs(args.report_only)
        modes = list(dict.fromkeys(r.mode for r in runs))
    else:
        modes = list(dict.fromkeys(args.modes.split(",")))
    if "none" not in modes or DEFAULT_PRUNE not in modes:
        parser.error(f"--modes needs none and the default mode ({DEFAULT_PRUNE})")
    settings = [s for s in SETTINGS if s.options["network"] == "mlp"] if args.quick else list(SETTINGS)
    settings = [s for s in settings if args.only is None or args.only in s.name]
    if not args.report_only:
        runs = collect(settings, modes, range(1 if args.quick else args.seeds), args)
    report(runs, settings, modes, args)


def collect(settings: list[Setting], modes: list[str], seeds: range, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as root:
        for setting in settings:
            for seed in seeds:
                for mode in modes:
                    run = run_search(setting, mode, seed, args, Path(root))
                    runs.append(run)
                    print(
                        f"{setting.name:38s} seed {seed} {mode:6s} training {run.training_s:7.1f} s  best "
                        f"{run.best:+.4f}  pruned {run.pruned_bound} by bound, {run.pruned_curve} by curve "
                        f"of {run.trials}",
                        flush=True,
                    )
    return runs


def summary_of(runs: list[Run], settings: list[Setting], mode: str) -> tuple[float, bool, bool]:
    """(none's pooled training seconds over `mode`'s, whether `mode`'s median best lies within none's
    min-max in every setting, whether it is at most none's max in every setting: not worse)."""
    pooled = {m: sum(r.training_s for r in runs if r.mode == m) for m in ("none", mode)}
    within = not_worse = True
    for setting in settings:
        none = [r.best for r in runs if r.setting == setting.name and r.mode == "none"]
        median = statistics.median(r.best for r in runs if r.setting == setting.name and r.mode == mode)
        within &= min(none) - 1e-12 <= median <= max(none) + 1e-12
        not_worse &= median <= max(none) + 1e-12
    return pooled["none"] / pooled[mode], within, not_worse


def report(runs: list[Run], settings: list[Setting], modes: list[str], args: argparse.Namespace) -> None:
    seeds = len({r.seed for r in runs})
    lines = [
        "# Early stopping: training seconds and best objectives by --prune mode",
        "",
        f"dnc, {args.prior_points} prior points + {args.bo_steps} BO steps per BO stage, MLPs {args.epochs} epochs, "
        f"CNN 10 epochs; {seeds} seed(s); default mode: {DEFAULT_PRUNE}"
        + (" (these runs reported again from their .csv by --report-only)." if args.report_only else "."),
        "",
        "| setting | mode | training s (sum) | best objective: median [min, max] | pruned by bound / curve |",
        "|---|---|---|---|---|",
    ]
    for setting in settings:
        for mode in modes:
            chosen = [r for r in runs if r.setting == setting.name and r.mode == mode]
            bests = [r.best for r in chosen]
            lines.append(
                f"| {setting.name} | {mode} | {sum(r.training_s for r in chosen):.1f} | "
                f"{statistics.median(bests):+.4f} [{min(bests):+.4f}, {max(bests):+.4f}] | "
                f"{sum(r.pruned_bound for r in chosen)} / {sum(r.pruned_curve for r in chosen)} |"
            )
    pooled = {m: sum(r.training_s for r in runs if r.mode == m) for m in modes}
    lines += ["", "Pooled training seconds: " + ", ".join(f"{m} {s:.1f}" for m, s in pooled.items()), ""]
    lines.append("Per mode, over every setting: training seconds of none over the mode's; whether the mode's median")
    lines.append("best objective lies within none's min-max over seeds (the target), and whether it is no worse")
    lines.append("than none's worst seed (a better median fails the first and passes the second):")
    lines.append("")
    for mode in modes[1:]:
        ratio, within, not_worse = summary_of(runs, settings, mode)
        lines.append(f"- `{mode}`: ratio {ratio:.2f}, within spread: {within}, no worse: {not_worse}")
    ratio, within, _ = summary_of(runs, settings, DEFAULT_PRUNE)
    lines += ["", f"train_time_ratio={ratio:.2f} best_within_spread={'yes' if within else 'no'}"]
    text = "\n".join(lines) + "\n"
    write_results(
        "early_stopping",
        text,
        quick=args.quick,
        header=["setting", "mode", "seed", "training_s", "best", "trials", "pruned_bound", "pruned_curve", "wall_s"],
        rows=[
            [r.setting, r.mode, r.seed, r.training_s, r.best, r.trials, r.pruned_bound, r.pruned_curve, r.wall_s]
            for r in runs
        ],  # fmt: skip
    )
    print(text, end="")


if __name__ == "__main__":
    main()
