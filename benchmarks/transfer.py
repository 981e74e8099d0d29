"""Search transfer: a warm-started search against a cold one, and a proxy search (10 % of the training rows)
plus the transfer of its top 5 against a full search, side by side in one run.

Two pairs of data sets, made offline in a temporary directory as .npz files (80/20 stratified test split):
- images: the digits 0–4 (source) and 5–9 (target, relabelled 0–4), 8×8 images, searched with the CNN of the
  demo space (examples/demo_space.yaml): the same kind of strokes, other shapes to tell apart;
- tabular: one 3-class problem made by scikit-learn's make_classification (24,000 rows, 20 features, 8
  informative), split into two "sites" of 12,000 rows: site B measures the same features through other
  instruments (each column rescaled by 0.7–1.4 and shifted) and with more noise (Gaussian, σ 0.3). This is
  why a user transfers: the same task at a second site, where searching from scratch would repeat most of
  the work done at the first. Searched with the MLP; 10 % of site B's training rows are 768.

Every search: `--method dnc`, `--prior-points 5 --bo-steps 5` per BO stage, 10 epochs a trial, w_c 0.1,
`--penalty params` (exact costs: the comparisons are not blurred by timing noise), the default pruning, one
search after another on the CPU. Per pair and seed (3 seeds):
(a) the source search; on the target, the cold search and the search `--warm-start`ed from the source run.
    Trainings (trials that trained at least one epoch, in trial order) until the cold search's final best,
    and until the warm search first reaches an objective at least as good (its total when it never does).
(b) on the target, `--proxy 0.1 --transfer-top 5`: the proxy search's and its transfer's device-seconds
    against the cold (full) search's, and the transfer's best objective on the whole data against the full
    searches' min–max over seeds.
Also, per seed, `dnc transfer` of the source run's top 5 onto the target: the rank correlation (Spearman) of
their source objectives with their objectives on the target, and the same for the proxy's top 5 (proxy
objective against whole-data objective): how far an earlier search's values would mislead as a GP prior.

Last line: `warm_trainings_ratio=<warm over cold, pooled> proxy_cost_ratio=<proxy + transfer over full
device-seconds, pooled> proxy_best_within_spread=yes|no` (`yes` when in both pairs the proxy's median best
objective is no worse than the worst full search's; a median below the best full search's counts as yes).
Targets: ≤ 0.5, ≤ 0.33, yes. Writes benchmarks/results/transfer.md (+ .csv); `--quick` (1 seed, the tabular
pair) writes transfer_quick.*.

    .venv/bin/python benchmarks/transfer.py [--seeds 3] [--proxy-epochs N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)
from scipy.stats import spearmanr
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import train_test_split

import deepncheap
from deepncheap import search_cost
from deepncheap.space import read_space_file
from deepncheap.store import RunStore, Trial

DEMO_SPACE = Path(__file__).resolve().parent.parent / "examples" / "demo_space.yaml"
TOP = 5
PROXY = 0.1


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """`x`, `y` as an .npz of deepncheap's layout, with a stratified 20 % test split."""
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    np.savez(path, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    return path


def digits_pair(root: Path) -> tuple[Path, Path]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # N × 1 × 8 × 8
    low = digits.target < 5
    return (
        save_npz(root / "digits0-4.npz", images[low], digits.target[low]),
        save_npz(root / "digits5-9.npz", images[~low], digits.target[~low] - 5),
    )


def sites_pair(root: Path) -> tuple[Path, Path]:
    x, y = make_classification(
        n_samples=24_000, n_features=20, n_informative=8, n_redundant=4, n_classes=3, flip_y=0.02, random_state=0
    )
    rng = np.random.default_rng(0)
    site_b = x[12_000:] * rng.uniform(0.7, 1.4, 20) + rng.normal(0, 0.5, 20) + rng.normal(0, 0.3, (12_000, 20))
    return (
        save_npz(root / "siteA.npz", x[:12_000].astype(np.float32), y[:12_000]),
        save_npz(root / "siteB.npz", site_b.astype(np.float32), y[12_000:]),
    )


@dataclass(frozen=True)
class Pair:
    name: str
    make: Callable[[Path], tuple[Path, Path]]
    options: dict


PAIRS = (
    Pair("digits 0-4 -> 5-9 (cnn)", digits_pair, dict(network="cnn", space=read_space_file(DEMO_SPACE))),
    Pair("site A -> B (mlp)", sites_pair, dict(network="mlp")),
)


@dataclass(frozen=True)
class Row:
    pair: str
    seed: int
    cold_trainings_to_best: int
    cold_trainings: int
    cold_best: float
    warm_trainings_to_reach: int
    warm_reached: bool
    warm_trainings: int
    warm_best: float
    full_s: float
    proxy_search_s: float
    proxy_transfer_s: float
    proxy_best: float
    spearman_cross: float
    spearman_proxy: float


def trials_of(run: Path) -> list[Trial]:
    with RunStore.open(run) as store:
        return sorted(store.trials(), key=lambda t: t.trial_id)


def device_s(run: Path) -> float:
    with RunStore.open(run) as store:
        return float(search_cost.summarize(store)["total_s"])


def trainings_until(trials: list[Trial], reached: Callable[[Trial], bool]) -> tuple[int, bool]:
    """Trials that trained (in trial order) up to the first for which `reached`; all of them when none."""
    count = 0
    for trial in trials:
        count += bool(trial.epochs)
        if reached(trial):
            return count, True
    return count, False


def rank_correlation(run: Path) -> float:
    """Spearman's rho of a transfer run's source objectives with its objectives (NaN when undefined)."""
    rows = [r for r in json.loads((run / "transfer.json").read_text()) if r.get("objective") is not None]
    if len(rows) < 3:
        return math.nan
    rho = spearmanr([r["source_objective"] for r in rows], [r["objective"] for r in rows]).statistic
    return float(rho)


def measure(pair: Pair, seed: int, source: Path, target: Path, root: Path, args: argparse.Namespace) -> Row:
    common = dict(method="dnc", prior_points=5, bo_steps=5, epochs=args.epochs, wc=0.1, penalty="params", seed=seed,
                  verbose=False, report=False) | pair.options  # fmt: skip
    stem = root / f"{pair.name.split()[0]}-{seed}"
    source_run = deepncheap.search(data=source, out=f"{stem}-source", **common).run_dir
    cold = deepncheap.search(data=target, out=f"{stem}-cold", **common)
    warm = deepncheap.search(data=target, out=f"{stem}-warm", warm_start=[source_run], **common)
    proxy_options = {"proxy_epochs": args.proxy_epochs} if args.proxy_epochs else {}
    proxy = deepncheap.search(data=target, out=f"{stem}-proxy", proxy=PROXY, transfer_top=TOP, **proxy_options,
                              **common)  # fmt: skip
    cross = deepncheap.transfer(source_run, data=target, top=TOP, out=f"{stem}-cross", verbose=False, report=False)

    cold_trials, warm_trials = trials_of(cold.run_dir), trials_of(warm.run_dir)
    cold_best = float(cold.metrics["objective"])
    to_best, _ = trainings_until(cold_trials, lambda t: t.trial_id == cold.trial_id)
    to_reach, reached = trainings_until(
        warm_trials, lambda t: t.status == "complete" and t.violation is None and t.objective <= cold_best + 1e-12
    )
    return Row(
        pair.name, seed, to_best, sum(bool(t.epochs) for t in cold_trials), cold_best, to_reach, reached,
        sum(bool(t.epochs) for t in warm_trials), float(warm.metrics["objective"]), device_s(cold.run_dir),
        device_s(Path(f"{stem}-proxy")), device_s(proxy.run_dir), float(proxy.metrics["objective"]),
        rank_correlation(cross.run_dir), rank_correlation(proxy.run_dir),
    )  # fmt: skip


def collect(pairs: list[Pair], seeds: range, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for pair in pairs:
            source, target = pair.make(root)
            for seed in seeds:
                row = measure(pair, seed, source, target, root, args)
                rows.append(row)
                print(
                    f"{pair.name:24s} seed {seed}: trainings to the cold best {row.cold_trainings_to_best} "
                    f"(of {row.cold_trainings}), warm to reach it {row.warm_trainings_to_reach}"
                    f"{'' if row.warm_reached else ' (never)'} (of {row.warm_trainings}); device-s full "
                    f"{row.full_s:.1f}, proxy {row.proxy_search_s:.1f} + transfer {row.proxy_transfer_s:.1f}; best "
                    f"cold {row.cold_best:+.4f} warm {row.warm_best:+.4f} proxy {row.proxy_best:+.4f}",
                    flush=True,
                )
    return rows


def within_spread(rows: list[Row]) -> bool:
    """In every pair, the proxy's median best is no worse than the worst full (cold) search's best."""
    pairs = {r.pair for r in rows}
    return all(
        statistics.median(r.proxy_best for r in rows if r.pair == p) <= max(r.cold_best for r in rows if r.pair == p)
        for p in pairs
    )


def median_rho(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    return f"{statistics.median(finite):+.2f}" if finite else "n/a"


def report(rows: list[Row], args: argparse.Namespace) -> None:
    warm_ratio = sum(r.warm_trainings_to_reach for r in rows) / sum(r.cold_trainings_to_best for r in rows)
    cost_ratio = sum(r.proxy_search_s + r.proxy_transfer_s for r in rows) / sum(r.full_s for r in rows)
    proxy_epochs = f", proxy trials {args.proxy_epochs} epochs" if args.proxy_epochs else ""
    lines = [
        "# Search transfer: warm start against a cold search, proxy search + transfer against a full search",
        "",
        f"dnc, 5 prior points + 5 BO steps per BO stage, {args.epochs} epochs a trial{proxy_epochs}, w_c 0.1, "
        f"--penalty params, {len({r.seed for r in rows})} seed(s); proxy: --proxy {PROXY:g} --transfer-top {TOP}.",
        "",
        "| pair | seed | trainings to cold best (of) | warm trainings to reach it (of) | best cold / warm | device-s "
        "full / proxy + transfer | best full / proxy | Spearman source→target / proxy→full (top 5) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        never = "" if r.warm_reached else " (never)"
        lines.append(
            f"| {r.pair} | {r.seed} | {r.cold_trainings_to_best} ({r.cold_trainings}) | {r.warm_trainings_to_reach}"
            f"{never} ({r.warm_trainings}) | {r.cold_best:+.4f} / {r.warm_best:+.4f} | {r.full_s:.1f} / "
            f"{r.proxy_search_s:.1f} + {r.proxy_transfer_s:.1f} | {r.cold_best:+.4f} / {r.proxy_best:+.4f} | "
            f"{r.spearman_cross:+.2f} / {r.spearman_proxy:+.2f} |"
        )
    lines += [
        "",
        "| pair | warm / cold trainings | proxy / full device-s | median Spearman source→target / proxy→full |",
        "|---|---|---|---|",
    ]
    for pair in dict.fromkeys(r.pair for r in rows):
        mine = [r for r in rows if r.pair == pair]
        warm = sum(r.warm_trainings_to_reach for r in mine) / sum(r.cold_trainings_to_best for r in mine)
        cost = sum(r.proxy_search_s + r.proxy_transfer_s for r in mine) / sum(r.full_s for r in mine)
        rho = f"{median_rho([r.spearman_cross for r in mine])} / {median_rho([r.spearman_proxy for r in mine])}"
        lines.append(f"| {pair} | {warm:.2f} | {cost:.2f} | {rho} |")
    lines += [
        "",
        f"warm_trainings_ratio={warm_ratio:.2f} proxy_cost_ratio={cost_ratio:.2f} "
        f"proxy_best_within_spread={'yes' if within_spread(rows) else 'no'}",
    ]
    text = "\n".join(lines) + "\n"
    header = list(Row.__dataclass_fields__)
    write_results(
        "transfer", text, quick=args.quick, header=header, rows=[[getattr(r, h) for h in header] for r in rows]
    )
    print(text, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--proxy-epochs", type=int, help="epochs of the proxy search's trials (default: --epochs)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pairs = [p for p in PAIRS if p.options["network"] == "mlp"] if args.quick else list(PAIRS)
    report(collect(pairs, range(1 if args.quick else args.seeds), args), args)


if __name__ == "__main__":
    main()
