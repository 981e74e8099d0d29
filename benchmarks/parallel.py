"""Parallel trials: the same Deep-n-Cheap search run serially, with 2 local worker processes, and on Ray.

For each seed, one MLP search on digits (`--penalty params`, so the objective does not depend on timing; a
fixed number of trainings: 15 prior points + 15 BO steps per BO stage (the CLI defaults) and the dropout grid) runs
  serial     `--executor serial` with torch's default CPU threads (what a user gets without options),
  workers2   `--workers 2` (two worker processes, one torch thread each; their start-up is timed),
  ray        `--executor ray --workers 2` on a local Ray instance started once before (`ray.init(num_cpus=2)`,
             its start-up reported apart: a cluster is normally up before a search),
and the wall times of the searches are compared side by side, seed by seed. The whole comparison is repeated
`--repeats` times, interleaved (repeat 1 of every seed and mode, then repeat 2, ...), and each ratio is the
median over repeats of the ratio of summed wall times (the machine is shared: one repeat measured 0.57 to 0.68).
`best_delta_median` is the median over seeds of (parallel best objective - serial best objective), for
workers2: batch proposals made beside pending trials should not make the search clearly worse (negative:
better).

Last line: `workers2_over_serial=R1 ray_over_serial=R2 best_delta_median=D repeats=N`.
Writes benchmarks/results/parallel.md and parallel.csv; `--quick` (1 seed, 5 epochs, 1 repeat) parallel_quick.*.

    .venv/bin/python benchmarks/parallel.py [--seeds 3] [--epochs 30] [--repeats 3] [--quick]

Needs the `ray` extra (installed by `make test`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap.store import RunStore

MODES = {
    "serial": {"executor": "serial"},
    "workers2": {"executor": "processes", "workers": 2},
    "ray": {"executor": "ray", "workers": 2},
}


def run_search(mode: str, seed: int, epochs: int, root: Path) -> tuple[float, float, int]:
    """(wall s, best objective, trainings) of one search."""
    start = time.perf_counter()
    result = deepncheap.search(
        data="digits", network="mlp", penalty="params", wc=0.1, method="dnc", prior_points=15, bo_steps=15,
        epochs=epochs, seed=seed, out=root / f"{mode}-{seed}", verbose=False, **MODES[mode],
    )  # fmt: skip
    wall = time.perf_counter() - start
    with RunStore.open(result.run_dir) as store:
        trainings = len(store.trials(status="complete"))
    return wall, float(result.metrics["objective"]), trainings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 seed, 5 epochs, 1 repeat")
    args = parser.parse_args()
    seeds, epochs, repeats = (1, 5, 1) if args.quick else (args.seeds, args.epochs, args.repeats)
    import ray

    began = time.perf_counter()
    ray_start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - ray_start
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(repeats):
                for seed in range(seeds):
                    for mode in MODES:  # interleaved: the modes of a seed run back to back
                        wall, best, trainings = run_search(mode, seed, epochs, Path(tmp) / str(repeat))
                        row = {"repeat": repeat, "seed": seed, "mode": mode, "wall_s": wall, "best": best}
                        rows.append(row | {"trainings": trainings})
                        print(
                            f"repeat {repeat} seed {seed} {mode:9s} wall {wall:6.1f} s  best {best:+.4f}  "
                            f"trainings {trainings}",
                            flush=True,
                        )
    finally:
        ray.shutdown()
    report(rows, args, epochs, ray_init_s, time.perf_counter() - began)


def report(rows: list[dict], args: argparse.Namespace, epochs: int, ray_init_s: float, wall_s: float) -> None:
    def of(mode: str, key: str, repeat: int = 0) -> list[float]:
        return [r[key] for r in rows if r["mode"] == mode and r["repeat"] == repeat]

    repeats = sorted({r["repeat"] for r in rows})
    per_repeat = {
        mode: [sum(of(mode, "wall_s", k)) / sum(of("serial", "wall_s", k)) for k in repeats]
        for mode in ("workers2", "ray")
    }
    ratios = {mode: statistics.median(values) for mode, values in per_repeat.items()}
    deltas = {mode: [p - s for p, s in zip(of(mode, "best"), of("serial", "best"), strict=True)] for mode in MODES}
    lines = [
        f"# parallel{' (quick)' if args.quick else ''}",
        "",
        f"MLP on digits, `--penalty params`, w_c 0.1, 15 prior points + 15 BO steps per BO stage "
        f"(the CLI defaults), {epochs} epochs per "
        f"training, {len({r['seed'] for r in rows})} seed(s); serial = torch's default threads, workers2 / ray = 2 "
        f"trials at once, 1 thread each. Local Ray start-up (not in the ray times): {ray_init_s:.1f} s.",
        "",
        "| repeat | seed | mode | trainings | wall s | best objective | best - serial |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        serial_best = next(
            r["best"] for r in rows if (r["repeat"], r["seed"], r["mode"]) == (row["repeat"], row["seed"], "serial")
        )
        lines.append(
            f"| {row['repeat']} | {row['seed']} | {row['mode']} | {row['trainings']} | {row['wall_s']:.1f} | "
            f"{row['best']:+.4f} | {row['best'] - serial_best:+.4f} |"
        )
    lines += [
        "",
        "wall-time ratios (sums over seeds) per repeat: "
        + "; ".join(f"{mode}/serial " + ", ".join(f"{v:.3f}" for v in values) for mode, values in per_repeat.items()),
        f"median over repeats: workers2/serial {ratios['workers2']:.3f}, ray/serial {ratios['ray']:.3f}; "
        f"median best delta: workers2 {statistics.median(deltas['workers2']):+.4f}, "
        f"ray {statistics.median(deltas['ray']):+.4f}",
        f"wall time: {wall_s / 60:.1f} min",
        "",
        f"workers2_over_serial={ratios['workers2']:.3f} ray_over_serial={ratios['ray']:.3f} "
        f"best_delta_median={statistics.median(deltas['workers2']):+.4f} repeats={len(repeats)}",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    header = ["repeat", "seed", "mode", "trainings", "wall_s", "best"]
    write_results("parallel", text, quick=args.quick, header=header, rows=([r[k] for k in header] for r in rows))


if __name__ == "__main__":
    main()
