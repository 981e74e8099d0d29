"""The time measure of `--penalty time`: what one trial's "time per epoch" is, how noisy it was, and the
cost model used instead when epochs are too short to time.

A training epoch does the same work every time, and a shared machine only ever adds time to it, so the
measure is the fastest timed epoch (the first epoch, a warm-up, is left out when there are others); its
noise is the relative spread of the timed epochs. Epochs of a few milliseconds (small tabular data) are
still ranked by scheduler noise rather than by work: when the reference config's epoch is shorter than
`TIMEABLE_EPOCH_S`, the run ranks trials by a deterministic cost model of an epoch instead (said in the
run's notes, `dnc show` and best.json) and keeps the measured times for reference. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

TIMEABLE_EPOCH_S = 0.05  # a reference epoch shorter than this is timed by the cost model
MEASURED, COST_MODEL = "measured", "cost model"

# The cost model: seconds per epoch = COEFFICIENTS . features, fitted on a 2-core CPU with one thread by
# benchmarks/time_model.py (which also reports how well it ranks measured epochs). Only ratios matter:
# f_c divides a trial's modelled epoch by the reference config's.
FEATURES = ("step", "step x layer", "step x parameter", "training FLOP")
COEFFICIENTS = (1.5e-4, 9.0e-5, 1.1e-9, 1.7e-11)


def time_measure(reference_epoch_s: float) -> str:
    """The measure that ranks a run's trials, from its reference config's measured epoch."""
    return COST_MODEL if reference_epoch_s < TIMEABLE_EPOCH_S else MEASURED


def epoch_time(epoch_times_s: Sequence[float]) -> tuple[float, float]:
    """(time per epoch, noise) of one training: its fastest timed epoch, and the relative spread
    (slowest - fastest) / fastest of its timed epochs (0 with one timed epoch)."""
    timed = list(epoch_times_s[1:] or epoch_times_s)
    if not timed:
        raise ValueError("no epoch was timed")
    fastest = min(timed)
    return fastest, (max(timed) - fastest) / fastest if fastest > 0 else 0.0


def cost_features(*, layers: int, n_params: int, flops: int, batch_size: int, n_train: int) -> list[float]:
    """The cost model's inputs for one epoch: optimizer steps, steps x layers (the per-operation overhead
    of the forward, backward and update passes), steps x parameters (the update), and training FLOPs
    (forward and backward, about 3x the forward FLOPs, over the training set)."""
    steps = math.ceil(n_train / max(1, min(batch_size, n_train)))
    return [float(steps), float(steps * layers), float(steps * n_params), 3.0 * flops * n_train]


def modelled_epoch_s(features: Sequence[float]) -> float:
    """The cost model's seconds per epoch."""
    return float(sum(c * f for c, f in zip(COEFFICIENTS, features, strict=True)))
