"""Hard constraints: a search that knows the limit before it trains, against the same search unconstrained
and filtered afterwards.

Settings: the digits MLP (`--penalty params`) and the digits CNN in the demo space (`--penalty time`), w_c
0 (`--wc`), 3 seeds, one search after another on the CPU. w_c 0 is the hard constraint's own use: the most
accurate model within a limit, as in the hardware-aware BO papers; with a penalty as well, the
unconstrained search already avoids most violators (at w_c 0.1, 84 % of its trials complied) and the
constraint has less to save (`--wc 0.1` writes constraints_wc0.1.*). Per seed, one unconstrained search; then, per
constraint, the constrained search: `--max-params` at the median parameter count of 256 random configs of
the space (about half of it violates; exact), and `--max-epoch-time` at the median time per epoch of the
unconstrained searches' trained trials (predicted). An unconstrained search is filtered afterwards: its
complying trials are those under the limit.

Measured: the share of trained trials that comply; the training seconds spent on violators (trials that
trained and are over the limit); time to best: the unconstrained search's training seconds until its
final best complying trial, over the constrained search's until it first reaches an objective at least as
good (its total when it never does), pooled over seeds and both constraints (sums of seconds).

Last line: `comply_share_exact=… comply_share_predicted=… unconstrained_comply_share=…
violator_time_ratio_predicted=<unconstrained over constrained violator seconds, predicted constraint,
constrained floored at 1 s> time_to_best_ratio=…`. Writes benchmarks/results/constraints.md (+ .csv);
`--quick` (1 seed, the MLP only) writes constraints_quick.*.

    .venv/bin/python benchmarks/constraints.py [--seeds 3] [--wc 0] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap.cost import count_parameters
from deepncheap.data import load_dataset
from deepncheap.models import build_model
from deepncheap.space import SearchSpace, read_space_file
from deepncheap.store import RunStore, Trial

DEMO_SPACE = Path(__file__).resolve().parent.parent / "examples" / "demo_space.yaml"
KINDS = ("exact", "predicted")


@dataclass(frozen=True)
class Setting:
    name: str
    options: dict


SETTINGS = (
    Setting("digits mlp", dict(data="digits", network="mlp", penalty="params", epochs=20)),
    Setting(
        "digits cnn (demo space)",
        dict(data="digits", network="cnn", penalty="time", epochs=10, space=read_space_file(DEMO_SPACE)),
    ),
)


@dataclass(frozen=True)
class Run:
    setting: str
    kind: str  # exact / predicted
    seed: int
    limit: float
    trained: int
    complying: int
    violator_s: float
    unconstrained_trained: int
    unconstrained_complying: int
    unconstrained_violator_s: float
    unconstrained_to_best_s: float
    constrained_to_best_s: float
    best_unconstrained: float
    best_constrained: float


def median_params(setting: Setting) -> int:
    """The median parameter count of 256 random configs of the setting's space."""
    dataset = load_dataset(setting.options["data"], network=setting.options["network"])
    space = SearchSpace.create(setting.options["network"], setting.options.get("space"))
    with torch.device("meta"):
        sizes = [
            count_parameters(build_model(c, dataset.input_shape, dataset.num_outputs))
            for c in space.sample(256, method="random", seed=1)
        ]
    return int(statistics.median(sizes))


def search(setting: Setting, seed: int, root: Path, name: str, args: argparse.Namespace, **limit: float) -> list[Trial]:
    options = dict(
        wc=args.wc, prior_points=args.prior_points, bo_steps=args.bo_steps, seed=seed, verbose=False, report=False,
        out=root / f"{setting.name.replace(' ', '_')}-{name}-{seed}",
    ) | setting.options | limit  # fmt: skip
    result = deepncheap.search(**options)
    with RunStore.open(result.run_dir) as store:
        return store.trials()


def complies(trial: Trial, kind: str, limit: float) -> bool:
    value = trial.n_params if kind == "exact" else trial.time_per_epoch_s
    return value is not None and value <= limit


def trained(trials: list[Trial]) -> list[Trial]:
    return [t for t in trials if t.epochs]


def seconds_until(trials: list[Trial], reached) -> tuple[float, bool]:  # type: ignore[no-untyped-def]
    """Training seconds (trial order) until the first trial for which `reached(trial)`; all when none."""
    spent = 0.0
    for trial in trials:
        spent += trial.wall_s or 0.0
        if reached(trial):
            return spent, True
    return spent, False


def compare(setting: Setting, kind: str, seed: int, limit: float, free: list[Trial], bound: list[Trial]) -> Run:
    """The unconstrained search `free` filtered afterwards against the constrained one, `bound`. When `free`
    has no complying trial at all, its time to best is all it spent and the constrained search's is its time
    to its first complying trial."""
    good = [t for t in free if t.status == "complete" and t.objective is not None and complies(t, kind, limit)]
    best_free = min(good, key=lambda t: (t.objective, t.trial_id), default=None)
    if best_free is None:
        free_s, target = sum(t.wall_s or 0.0 for t in free), math.inf
    else:
        free_s, _ = seconds_until(free, lambda t: t.trial_id == best_free.trial_id)
        target = float(best_free.objective)
    finished = [t for t in bound if t.status == "complete" and t.violation is None and t.objective is not None]
    bound_s, _ = seconds_until(
        bound, lambda t: t in finished and complies(t, kind, limit) and t.objective <= target + 1e-12
    )
    best_bound = min((t.objective for t in finished if complies(t, kind, limit)), default=float("inf"))
    return Run(
        setting.name, kind, seed, limit,
        len(trained(bound)), sum(complies(t, kind, limit) for t in trained(bound)),
        sum(t.wall_s or 0.0 for t in trained(bound) if not complies(t, kind, limit)),
        len(trained(free)), sum(complies(t, kind, limit) for t in trained(free)),
        sum(t.wall_s or 0.0 for t in trained(free) if not complies(t, kind, limit)),
        free_s, bound_s, target, float(best_bound),
    )  # fmt: skip


def collect(settings: list[Setting], seeds: range, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for setting in settings:
            free = {seed: search(setting, seed, root, "free", args) for seed in seeds}
            times = [t.time_per_epoch_s for trials in free.values() for t in trained(trials) if t.time_per_epoch_s]
            limits = {"exact": float(median_params(setting)), "predicted": float(statistics.median(times))}
            for seed in seeds:
                for kind in KINDS:
                    option = {"max_params": int(limits[kind])} if kind == "exact" else {"max_epoch_time": limits[kind]}
                    bound = search(setting, seed, root, kind, args, **option)
                    run = compare(setting, kind, seed, limits[kind], free[seed], bound)
                    runs.append(run)
                    print(
                        f"{setting.name:24s} seed {seed} {kind:9s} limit {run.limit:<10.4g} comply "
                        f"{run.complying}/{run.trained} (unconstrained {run.unconstrained_complying}/"
                        f"{run.unconstrained_trained}), violators {run.violator_s:.1f} s "
                        f"(unconstrained {run.unconstrained_violator_s:.1f} s), "
                        f"to best {run.constrained_to_best_s:.1f} s "
                        f"(unconstrained {run.unconstrained_to_best_s:.1f} s)",
                        flush=True,
                    )
    return runs


def share(runs: list[Run], kind: str | None, *, unconstrained: bool = False) -> float:
    chosen = [r for r in runs if kind is None or r.kind == kind]
    if unconstrained:
        return sum(r.unconstrained_complying for r in chosen) / max(1, sum(r.unconstrained_trained for r in chosen))
    return sum(r.complying for r in chosen) / max(1, sum(r.trained for r in chosen))


def report(runs: list[Run], args: argparse.Namespace) -> None:
    predicted = [r for r in runs if r.kind == "predicted"]
    violator_ratio = sum(r.unconstrained_violator_s for r in predicted) / max(1.0, sum(r.violator_s for r in predicted))
    to_best = sum(r.unconstrained_to_best_s for r in runs) / sum(r.constrained_to_best_s for r in runs)
    lines = [
        "# Hard constraints: constrained search against the unconstrained one filtered afterwards",
        "",
        f"dnc, {args.prior_points} prior points + {args.bo_steps} BO steps per BO stage, w_c {args.wc:g}, "
        f"{len({r.seed for r in runs})} seed(s). exact: `--max-params` at the space's median size; predicted: "
        "`--max-epoch-time` at the median epoch of the unconstrained trials.",
        "",
        "| setting | constraint | seed | limit | comply (constrained) | comply (unconstrained) | violator s "
        "(constrained / unconstrained) | s to best (constrained / unconstrained) | best complying objective "
        "(constrained / unconstrained) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.setting} | {r.kind} | {r.seed} | {r.limit:.4g} | {r.complying}/{r.trained} | "
            f"{r.unconstrained_complying}/{r.unconstrained_trained} | {r.violator_s:.1f} / "
            f"{r.unconstrained_violator_s:.1f} | {r.constrained_to_best_s:.1f} / {r.unconstrained_to_best_s:.1f} | "
            f"{r.best_constrained:+.4f} / {r.best_unconstrained:+.4f} |"
        )
    lines += [
        "",
        f"comply_share_exact={share(runs, 'exact'):.3f} comply_share_predicted={share(runs, 'predicted'):.3f} "
        f"unconstrained_comply_share={share(runs, None, unconstrained=True):.3f} "
        f"violator_time_ratio_predicted={violator_ratio:.2f} time_to_best_ratio={to_best:.2f}",
    ]
    text = "\n".join(lines) + "\n"
    header = list(Run.__dataclass_fields__)
    write_results(
        "constraints" if args.wc == 0 else f"constraints_wc{args.wc:g}",
        text,
        quick=args.quick,
        header=header,
        rows=[[getattr(r, h) for h in header] for r in runs],
    )
    print(text, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--prior-points", type=int, default=5)
    parser.add_argument("--bo-steps", type=int, default=5)
    parser.add_argument("--wc", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    settings = [s for s in SETTINGS if s.options["network"] == "mlp"] if args.quick else list(SETTINGS)
    report(collect(settings, range(1 if args.quick else args.seeds), args), args)


if __name__ == "__main__":
    main()
