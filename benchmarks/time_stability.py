"""Does `--penalty time` rank by work or by timing noise? The same seeded search run twice, side by side.

1. iris and wine MLP, `--penalty time`, w_c 0.1, `dnc` with 5 prior points + 5 BO steps per BO stage, 10
   epochs, seeds 0-4: each search runs twice (one after the other, the pair interleaved with the others).
   Counts the seeds whose two runs pick the same architecture (the best config without lr, weight decay
   and batch size), and compares f_c of every config both runs trained (same stage and index, same config):
   the largest relative difference. Also reports which time measure the runs used (`timing.py`: the
   cost model when the reference epoch is too short to time) and the relative difference the measured
   times of those same trainings had.
2. The measured path: the digits CNN demo space's reference config trained 5 times (6 epochs each, one
   thread): the relative spread of its time per epoch under the old statistic (mean of the timed epochs)
   and the new one (fastest timed epoch).

Targets: the same architecture in at least 4 of 5 seeds on each data set; f_c within 10%.
Last line: `same_arch_iris=k/5 same_arch_wine=k/5 fc_rel_diff_max=… time_measure=… measured_rel_diff_max=…
cnn_spread_mean=… cnn_spread_fastest=…`. Writes benchmarks/results/time_stability.md and .csv.

    .venv/bin/python benchmarks/time_stability.py [--seeds 5] [--name time_stability]

The "before" (the code before the time measure changed, commit 6f86ab2):
    git worktree add --detach /tmp/dnc-before 6f86ab2
    PYTHONPATH=/tmp/dnc-before .venv/bin/python benchmarks/time_stability.py --name time_stability_before
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap
from deepncheap.data import load_dataset
from deepncheap.space import SearchSpace, read_space_file
from deepncheap.store import RunStore, Trial
from deepncheap.train import DeviceData
from deepncheap.trial import run_trial

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("iris", "wine")
TRAINING_KEYS = ("lr", "weight_decay", "batch_size")


def search(data: str, seed: int, out: Path) -> tuple[dict, dict[tuple[str, int], Trial], dict]:
    """(best config, complete trials by (stage, index), baselines) of one search."""
    result = deepncheap.search(
        data=data,
        network="mlp",
        penalty="time",
        wc=0.1,
        method="dnc",
        prior_points=5,
        bo_steps=5,
        epochs=10,
        seed=seed,
        threads=1,
        out=out,
        verbose=False,
    )
    with RunStore.open(result.run_dir) as store:
        trials = {(t.stage, t.stage_index): t for t in store.trials(status="complete")}
        baselines = store.get("baselines")
    return result.best_config, trials, baselines


def architecture(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in TRAINING_KEYS}


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / min(a, b)


def reference_cnn_spread(repeats: int = 5) -> tuple[float, float]:
    """Relative spread (max - min) / min over repeated trainings of one CNN config: (mean, fastest) statistic."""
    import torch

    torch.set_num_threads(1)
    dataset = load_dataset("digits", network="cnn")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    config = SearchSpace.create("cnn", read_space_file(ROOT / "examples" / "demo_space.yaml")).time_reference_config()
    means, fastest = [], []
    for _ in range(repeats):
        measured = run_trial(
            config, data, input_shape=dataset.input_shape, num_outputs=dataset.num_outputs, epochs=6, seed=0
        )
        timed = measured.training.epoch_times_s[1:]
        means.append(sum(timed) / len(timed))
        fastest.append(min(timed))
    return tuple((max(v) - min(v)) / min(v) for v in (means, fastest))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--name", default="time_stability", help="results file name (e.g. time_stability_before)")
    args = parser.parse_args()
    same = dict.fromkeys(DATASETS, 0)
    fc_diffs, time_diffs, measures, rows = [], [], set(), []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for data in DATASETS:
                runs = [search(data, seed, Path(tmp) / f"{data}-{seed}-{i}") for i in range(2)]
                (best_a, trials_a, baselines), (best_b, trials_b, _) = runs
                measures.add(baselines.get("time_measure", "measured"))  # (not stored before the cost model)
                agree = architecture(best_a) == architecture(best_b)
                same[data] += agree
                pairs = [
                    (trials_a[k], trials_b[k])
                    for k in trials_a.keys() & trials_b.keys()
                    if trials_a[k].config == trials_b[k].config
                ]
                fc = max(relative_difference(a.f_c, b.f_c) for a, b in pairs)
                measured = max(relative_difference(a.time_per_epoch_s, b.time_per_epoch_s) for a, b in pairs)
                fc_diffs.append(fc)
                time_diffs.append(measured)
                rows.append(
                    [
                        data,
                        seed,
                        agree,
                        len(pairs),
                        f"{fc:.4f}",
                        f"{measured:.4f}",
                        f"{baselines['time_per_epoch_s']:.4f}",
                    ]
                )
                print(
                    f"{data} seed {seed}: same architecture {agree}, {len(pairs)} configs trained by both, "
                    f"f_c differs by {fc:.1%} at most (measured time: {measured:.1%})",
                    flush=True,
                )
    cnn_mean, cnn_fastest = reference_cnn_spread()
    header = [
        "data",
        "seed",
        "same_architecture",
        "common_configs",
        "fc_rel_diff_max",
        "measured_rel_diff_max",
        "reference_epoch_s",
    ]
    lines = [
        "# Time penalty stability",
        "",
        "MLP, `--penalty time`, w_c 0.1, dnc 5 prior + 5 BO steps per BO stage, 10 epochs, one thread; each "
        "seed's search run twice.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
        "",
        f"Time measure of these runs: {', '.join(sorted(measures))}.",
        f"Digits CNN (demo space) reference config trained 5 times: spread of the mean timed epoch {cnn_mean:.1%}, "
        f"of the fastest timed epoch {cnn_fastest:.1%}.",
    ]
    summary = (
        " ".join(f"same_arch_{d}={same[d]}/{args.seeds}" for d in DATASETS)
        + f" fc_rel_diff_max={max(fc_diffs):.3f} time_measure={'+'.join(sorted(measures)).replace(' ', '_')}"
        + f" measured_rel_diff_max={max(time_diffs):.3f} cnn_spread_mean={cnn_mean:.3f}"
        + f" cnn_spread_fastest={cnn_fastest:.3f}"
    )
    write_results(args.name, "\n".join([*lines, "", summary]) + "\n", header=header, rows=rows)
    print("\n".join(lines))
    print(summary)


if __name__ == "__main__":
    main()
