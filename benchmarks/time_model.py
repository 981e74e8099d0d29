"""Calibrate and check the cost model that `--penalty time` falls back on when epochs are too short to time.

Runs random searches (`--penalty params`, so nothing depends on timing) on data sets whose epochs take from
about 1 ms to about 1 s, reads every trial's fastest timed epoch from the store, and fits the four
coefficients of `deepncheap.timing.modelled_epoch_s` (per step, per step and layer, per step and parameter,
per training FLOP) by non-negative least squares on relative error. Prints the fitted coefficients (to paste
into `deepncheap/timing.py` when recalibrating on other hardware) and how well the model in the package
ranks the measured times: the Spearman rank correlation per data set and pooled.

Last line: `spearman_pooled=… spearman_min=… median_rel_error=…`. Writes benchmarks/results/time_model.md.

    .venv/bin/python benchmarks/time_model.py [--trials 12] [--seed 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)
from scipy.optimize import nnls
from scipy.stats import spearmanr

import deepncheap
from deepncheap import timing
from deepncheap.cost import count_layers
from deepncheap.data import load_dataset
from deepncheap.models import build_model
from deepncheap.space import read_space_file
from deepncheap.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = (  # (label, data, network, space)
    ("iris MLP", "iris", "mlp", {}),
    ("wine MLP", "wine", "mlp", {}),
    ("breast_cancer MLP", "breast_cancer", "mlp", {}),
    ("digits MLP", "digits", "mlp", {}),
    ("digits CNN (demo space)", "digits", "cnn", read_space_file(ROOT / "examples" / "demo_space.yaml")),
)


def measured_trials(
    data: str, network: str, space: object, trials: int, seed: int, out: Path
) -> list[tuple[list[float], float]]:
    """(cost-model features, fastest timed epoch) of every complete trial of a random search."""
    result = deepncheap.search(
        data=data,
        network=network,
        space=space,
        penalty="params",
        method="random",
        max_trials=trials,
        epochs=4,
        seed=seed,
        threads=1,
        out=out,
        verbose=False,
    )
    dataset = load_dataset(data, network=network)
    rows = []
    with RunStore.open(result.run_dir) as store:
        epochs = store.epochs()
        for trial in store.trials(status="complete"):
            times = [e.epoch_time_s for e in epochs if e.trial_id == trial.trial_id]
            model = build_model(trial.config, dataset.input_shape, dataset.num_outputs)
            features = timing.cost_features(
                layers=count_layers(model),
                n_params=int(trial.n_params or 0),
                flops=int(trial.flops or 0),
                batch_size=int(trial.config["batch_size"]),
                n_train=len(dataset.x_train),
            )
            rows.append((features, timing.epoch_time(times)[0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="random trials per data set (default 12)")
    parser.add_argument("--seed", type=int, default=2, help="of the searches (the package's fit used seed 1)")
    args = parser.parse_args()
    groups: dict[str, list[tuple[list[float], float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, data, network, space) in enumerate(SETTINGS):
            groups[label] = measured_trials(data, network, space, args.trials, args.seed, Path(tmp) / str(i))
            print(f"{label}: {len(groups[label])} trials", flush=True)
    rows = [row for group in groups.values() for row in group]
    features = np.array([f for f, _ in rows])
    measured = np.array([t for _, t in rows])
    fitted, _ = nnls(features / measured[:, None], np.ones(len(rows)))
    lines = [
        "# Cost model of the time penalty",
        "",
        f"Random searches (seed {args.seed}), {args.trials} trials each, 4 epochs, 1 thread, fastest timed epoch "
        "per trial.",
        f"Fitted coefficients (per {', per '.join(timing.FEATURES)}): {', '.join(f'{c:.3e}' for c in fitted)}",
        f"In the package: {', '.join(f'{c:.3e}' for c in timing.COEFFICIENTS)}",
        "",
        "| setting | trials | epoch time (ms), min-max | Spearman rank correlation | median relative error |",
        "|---|---|---|---|---|",
    ]
    correlations, errors = [], []
    for label, group in groups.items():
        model_s = np.array([float(np.dot(timing.COEFFICIENTS, f)) for f, _ in group])
        times = np.array([t for _, t in group])
        rho = float(spearmanr(model_s, times).statistic)
        error = float(np.median(np.abs(model_s - times) / times))
        correlations.append(rho)
        errors.extend(np.abs(model_s - times) / times)
        lines.append(
            f"| {label} | {len(group)} | {times.min() * 1e3:.1f}-{times.max() * 1e3:.1f} | {rho:.3f} | {error:.2f} |"
        )
    pooled = float(spearmanr(features @ np.array(timing.COEFFICIENTS), measured).statistic)
    summary = (
        f"spearman_pooled={pooled:.3f} spearman_min={min(correlations):.3f} "
        f"median_rel_error={float(np.median(errors)):.2f}"
    )
    write_results("time_model", "\n".join([*lines, "", summary]) + "\n")
    print("\n".join(lines))
    print(summary)


if __name__ == "__main__":
    main()
