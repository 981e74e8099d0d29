"""Sampling: points of the unit cube, derived seeds, and the decoders from a unit value to a hyperparameter.

`unit_points` draws uniform random or scrambled Sobol points in [0, 1)^d; the `*_at` decoders map one
coordinate to an integer in a range, a log-uniform real, a weight decay or one of a list of choices.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

SAMPLING_METHODS = ("random", "sobol")


def derive_seed(seed: int, *labels: str | int) -> int:
    """A seed derived from the search seed and labels (stage names, indices), stable across runs."""
    codes = [v if isinstance(v, int) else int.from_bytes(v.encode(), "little") % 2**31 for v in labels]
    return int(np.random.SeedSequence([seed, *codes]).generate_state(1)[0])


def unit_points(n: int, dimension: int, *, method: str, seed: int) -> np.ndarray:
    """`n` points in [0, 1)^dimension: uniform random or scrambled Sobol (scipy.stats.qmc)."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method '{method}'")
    rng = np.random.default_rng(seed)
    if method == "random":
        return rng.random((n, dimension))
    from scipy.stats import qmc  # (imported here: scipy.stats takes 0.7 s, and trial workers never sample)

    with warnings.catch_warnings():  # n need not be a power of 2 for our use
        warnings.simplefilter("ignore", UserWarning)
        return qmc.Sobol(dimension, scramble=True, seed=rng).random(n)


def _int_at(u: float, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(low + min(math.floor(u * (high - low + 1)), high - low))


def _log_at(u: float, low: float, high: float) -> float:
    """Log-uniform real in [low, high]."""
    return float(10 ** (math.log10(low) + u * (math.log10(high) - math.log10(low))))


def _weight_decay_at(u: float, low: float, high: float) -> float:
    """Log-uniform, with the lowest decade mapped to 0 when the range spans more than one decade."""
    if low == high:
        return float(low)
    exponent = math.log10(low) + u * (math.log10(high) - math.log10(low))
    if math.log10(high) - math.log10(low) > 1 and exponent < math.log10(low) + 1:
        return 0.0
    return float(10**exponent)


def _choice_at(u: float, choices: tuple[Any, ...]) -> Any:
    """One of `choices`, each with equal probability."""
    return choices[min(int(u * len(choices)), len(choices) - 1)]
