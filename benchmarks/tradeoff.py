"""Accuracy against cost: Deep-n-Cheap MLP searches on digits at several complexity weights w_c.

Penalty `params`, a small budget per search. Prints a table (w_c, validation accuracy, parameters, time per
epoch) and, last, `cost_falls_with_wc=yes|no params_ratio_wc0_over_wc10=R`: whether the parameter count
falls as w_c grows, and how many times more parameters the accuracy-only search (w_c = 0) picks than the
cost-heavy one (w_c = 10). The target is R >= 5, with cost falling as w_c grows. Writes
benchmarks/results/tradeoff.md.

    .venv/bin/python benchmarks/tradeoff.py [--prior-points 5] [--bo-steps 5] [--epochs 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

import deepncheap

WEIGHTS = (0.0, 0.1, 1.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior-points", type=int, default=5)
    parser.add_argument("--bo-steps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for wc in WEIGHTS:
            start = time.perf_counter()
            result = deepncheap.search(
                data="digits", network="mlp", wc=wc, penalty="params", prior_points=args.prior_points,
                bo_steps=args.bo_steps, epochs=args.epochs, seed=args.seed, out=Path(root) / f"wc{wc}", verbose=False,
            )  # fmt: skip
            m = result.metrics
            rows.append((wc, m["val_accuracy"], m["n_params"], m["time_per_epoch_s"], time.perf_counter() - start,
                         result.best_config["hidden_nodes"]))  # fmt: skip

    lines = [f"{'w_c':>6} {'val_acc':>8} {'params':>8} {'s/epoch':>8} {'search_s':>9}  hidden nodes"]
    for wc, accuracy, params, per_epoch, wall, nodes in rows:
        lines.append(f"{wc:>6g} {accuracy:>8.4f} {params:>8d} {per_epoch:>8.4f} {wall:>9.1f}  {nodes}")
    params = [row[2] for row in rows]
    falling = all(a >= b for a, b in zip(params, params[1:], strict=False))
    lines.append(
        f"cost_falls_with_wc={'yes' if falling else 'no'} params_ratio_wc0_over_wc10={params[0] / params[-1]:.1f}"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    write_results("tradeoff", text)


if __name__ == "__main__":
    main()
