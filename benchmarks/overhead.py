"""What the search costs besides training: the overhead share of the `make demo` search and the time of one
BO proposal.

1. Runs the `make demo` search (CNN on digits, examples/demo_space.yaml, 4 prior points + 2 BO steps per BO
   stage, 10 epochs, w_c 0.1, penalty time, seed 0) through the API and splits its wall time into the trials
   (each trial's `wall_s` in the store: build the model, count its FLOPs, train, validate, score), the one-off
   time-baseline measurement (`baseline_wall_s` in the store, reported apart as `baseline_share`), and the rest:
   loading data, proposals, the store, weights and output files, progress, and the driver's handling of the
   per-epoch reports (timed apart: `epoch_channel_share`) (`overhead_share`, target <= 0.02).
2. Times one BO step of the CNN core stage as the search runs it (draw 1,000 random candidates, encode them,
   fit the GP on the observations, score EI, pick) at 30, 100 and 300 observations (median of 5; target
   <= 0.5 s at 300).

Last line: `overhead_share=… epoch_channel_share=… baseline_share=… proposal_s_30=… proposal_s_100=…
proposal_s_300=…`. Writes benchmarks/results/overhead.md and overhead.csv.

    .venv/bin/python benchmarks/overhead.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap import bo
from deepncheap.runner import Runner
from deepncheap.space import SearchSpace, derive_seed, read_space_file
from deepncheap.store import RunStore
from deepncheap.train import EpochReport

ROOT = Path(__file__).resolve().parent.parent
OBSERVATIONS = (30, 100, 300)
CANDIDATES = 1000


def search_overhead() -> dict[str, float]:
    """Wall time of the demo search, split into trials, baseline and the rest. The driver's handling of the
    per-epoch reports (storing each epoch, asking the stop rule) runs inside the trials' wall time with the
    serial executor, so it is timed apart and counted as overhead."""
    channel_s = 0.0
    on_epoch = Runner.on_epoch

    def timed_on_epoch(self: Runner, trial_id: int, report: EpochReport) -> bool:
        nonlocal channel_s
        began = time.perf_counter()
        try:
            return on_epoch(self, trial_id, report)
        finally:
            channel_s += time.perf_counter() - began

    Runner.on_epoch = timed_on_epoch  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = deepncheap.search(
            data="digits", network="cnn", space=read_space_file(ROOT / "examples" / "demo_space.yaml"),
            method="dnc", prior_points=4, bo_steps=2, epochs=10, wc=0.1, penalty="time", seed=0,
            out=Path(tmp) / "run", verbose=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
        with RunStore.open(result.run_dir) as store:
            trials = store.trials()
            baseline = float(store.get("baseline_wall_s"))
    Runner.on_epoch = on_epoch  # type: ignore[method-assign]
    in_trials = sum(t.wall_s or 0.0 for t in trials) - channel_s
    rest = wall - in_trials - baseline
    return {
        "trials": len(trials),
        "wall_s": wall,
        "trials_s": in_trials,
        "baseline_s": baseline,
        "overhead_s": rest,
        "epoch_channel_s": channel_s,
        "overhead_share": rest / wall,
        "epoch_channel_share": channel_s / wall,
        "baseline_share": baseline / wall,
    }


def proposal_seconds(observations: int, repeats: int = 5) -> float:
    """Median time of one core-stage BO step of the default CNN space with `observations` trials seen."""
    space = SearchSpace.create("cnn")
    observed = space.encode("core", space.sample(observations, method="random", seed=1, stage="core"))
    y = np.random.default_rng(0).normal(-1.0, 0.2, size=observations)
    terms = space.kernel("core")
    times = []
    for step in range(repeats):
        start = time.perf_counter()
        candidates = space.sample(CANDIDATES, method="random", seed=derive_seed(0, "core", step), stage="core")
        bo.propose(observed, y, space.encode("core", candidates), terms, mode="default")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    began = time.perf_counter()
    split = search_overhead()
    proposals = {n: proposal_seconds(n) for n in OBSERVATIONS}
    lines = [
        "# overhead",
        "",
        f"`make demo` search: {split['trials']:.0f} trainings, wall {split['wall_s']:.1f} s = trials "
        f"{split['trials_s']:.1f} s + time baseline {split['baseline_s']:.1f} s + everything else "
        f"{split['overhead_s']:.2f} s (of which the per-epoch reports {split['epoch_channel_s']:.2f} s)",
        "",
        "| part | seconds | share of wall |",
        "|---|---|---|",
    ]
    for part in ("trials", "baseline", "overhead"):
        lines.append(f"| {part} | {split[f'{part}_s']:.2f} | {split[f'{part}_s'] / split['wall_s']:.4f} |")
    lines += [
        "",
        f"One BO step (CNN core stage, {CANDIDATES} candidates):",
        "",
        "| observations | seconds |",
        "|---|---|",
    ]
    lines += [f"| {n} | {s:.3f} |" for n, s in proposals.items()]
    lines += ["", f"benchmark wall time: {time.perf_counter() - began:.0f} s", ""]
    summary = (
        f"overhead_share={split['overhead_share']:.4f} epoch_channel_share={split['epoch_channel_share']:.4f} "
        f"baseline_share={split['baseline_share']:.4f} "
    ) + " ".join(f"proposal_s_{n}={s:.3f}" for n, s in proposals.items())
    lines.append(summary)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    rows = [*split.items(), *((f"proposal_s_{n}", s) for n, s in proposals.items())]
    write_results("overhead", text, header=["measure", "value"], rows=rows)


if __name__ == "__main__":
    main()
