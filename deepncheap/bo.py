"""Deep-n-Cheap's Bayesian optimization as pure numpy/scipy functions: kernel terms, the Gaussian-process
posterior (Cholesky solve), expected improvement, and the choice of the best candidate.

Nothing here knows about networks or torch: configs arrive already encoded, one array per kernel term
(see `space.SearchSpace.kernel`). Every function works on whole arrays, so 1,000 candidates are scored
against all observations at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.special import ndtr, ndtri
from threadpoolctl import threadpool_limits

from deepncheap.constraints import LIKELY

OMEGA = 3.0  # the reference's distance scale ω for every hyperparameter
NOISE = 1e-4  # GP noise variance of the reference mode (and the jitter floor)
# The default mode's noise variance, in standardized objective units: trainings of a few epochs are noisy (the
# trial seed alone moves the objective), and a GP that interpolates them exactly chases that noise.
# search_efficiency: 1e-4 -> 1e-2 raised the settings won from 4 to 5 of 8 (benchmarks/README.md).
DEFAULT_NOISE = 1e-2
XI = 1e-4  # EI exploration, in objective units
BO_MODES = ("default", "reference")


@dataclass(frozen=True)
class ScalarTerm:
    """One number per config (already on its kernel scale, e.g. log10 lr), normalized by `high - low`."""

    low: float
    high: float
    root: float = 1.0


@dataclass(frozen=True)
class LayersTerm:
    """A list of numbers per config (channels per layer), encoded as an (n, max_layers) array padded with
    NaN; layer i is normalized by its own bounds and compared with root `roots[i]`."""

    lows: tuple[float, ...]
    highs: tuple[float, ...]
    roots: tuple[float, ...]


Term = ScalarTerm | LayersTerm


def distance(delta: np.ndarray, span: float | np.ndarray, root: float | np.ndarray, omega: float = OMEGA) -> np.ndarray:
    """d = ω (|Δ| / span)^(1/root); a zero span (a fixed hyperparameter) gives distance 0."""
    span = np.asarray(span, dtype=float)
    scaled = np.abs(delta) / np.where(span > 0, span, 1.0)
    return omega * scaled ** (1.0 / np.asarray(root, dtype=float))


def similarity(d: np.ndarray) -> np.ndarray:
    """Squared-exponential similarity exp(-d²/2)."""
    return np.exp(-0.5 * np.square(d))


def scalar_kernel(a: np.ndarray, b: np.ndarray, term: ScalarTerm, omega: float = OMEGA) -> np.ndarray:
    """(len(a), len(b)) similarities of one scalar hyperparameter."""
    return similarity(distance(a[:, None] - b[None, :], term.high - term.low, term.root, omega))


def layers_kernel(a: np.ndarray, b: np.ndarray, term: LayersTerm, omega: float = OMEGA) -> np.ndarray:
    """(len(a), len(b)) layer-by-layer similarities: per-layer exp(-d²/2), a layer present in only one
    network at distance ω, averaged over the longer network's layers."""
    lows, highs, roots = (np.asarray(v, dtype=float) for v in (term.lows, term.highs, term.roots))
    x, y = a[:, None, :], b[None, :, :]
    present_x, present_y = ~np.isnan(x), ~np.isnan(y)
    both = present_x & present_y
    delta = np.where(both, np.nan_to_num(x) - np.nan_to_num(y), 0.0)
    d = np.where(both, distance(delta, highs - lows, roots, omega), omega)
    counted = present_x | present_y
    total = np.where(counted, similarity(d), 0.0).sum(axis=2)
    return total / np.maximum(counted.sum(axis=2), 1)


def kernel_matrix(
    a: list[np.ndarray], b: list[np.ndarray], terms: list[tuple[float, Term]], omega: float = OMEGA
) -> np.ndarray:
    """The convex combination Σ_k s_k σ_k over the (weight, term) pairs; `a`/`b` hold one array per term."""
    weights = np.array([w for w, _ in terms], dtype=float)
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError("kernel weights must be non-negative and sum to 1")
    total = np.zeros((len(a[0]), len(b[0])))
    for (weight, term), xa, xb in zip(terms, a, b, strict=True):
        kernel = layers_kernel if isinstance(term, LayersTerm) else scalar_kernel
        total += weight * kernel(xa, xb, term, omega)  # type: ignore[arg-type]
    return total


def gp_posterior(
    k_train: np.ndarray, y: np.ndarray, k_cross: np.ndarray, *, prior_mean: float = 0.0, noise: float = NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation at the candidates, given the train kernel matrix, the
    observations `y`, the (candidates × train) cross-kernel, a constant prior mean and unit signal variance."""
    mean, std, _ = posterior_with_jitter(k_train, y, k_cross, prior_mean=prior_mean, noise=noise)
    return mean, std


def posterior_with_jitter(
    k_train: np.ndarray, y: np.ndarray, k_cross: np.ndarray, *, prior_mean: float, noise: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """`gp_posterior`, and the diagonal term the Cholesky factorization needed: `noise`, or up to 1e5 times
    more when the kernel matrix is singular (near-duplicate observations, round-off)."""
    n = len(y)
    jitter = noise
    for _ in range(6):  # add jitter until the factorization succeeds
        try:
            factor = cho_factor(k_train + jitter * np.eye(n), lower=True)
            break
        except np.linalg.LinAlgError:
            jitter *= 10
    else:
        raise np.linalg.LinAlgError("the kernel matrix is not positive definite")
    alpha = cho_solve(factor, y - prior_mean)
    mean = prior_mean + k_cross @ alpha
    v = solve_triangular(factor[0], k_cross.T, lower=True)
    variance = np.clip(1.0 - np.sum(v * v, axis=0), 0.0, None)
    return mean, np.sqrt(variance), jitter


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = XI) -> np.ndarray:
    """EI for minimization: E[max(best - ξ - f, 0)]; where std is 0 it is max(best - ξ - mean, 0)."""
    improvement = best - xi - mean
    safe_std = np.where(std > 0, std, 1.0)
    z = improvement / safe_std
    ei = improvement * ndtr(z) + safe_std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # (scipy.stats: +0.7 s import)
    return np.where(std > 1e-12, np.maximum(ei, 0.0), np.maximum(improvement, 0.0))


QUANTILES = 64  # points of the quadrature of EI through a known cost (`known_cost_ei`)


def known_cost_ei(mean: np.ndarray, std: np.ndarray, cost: np.ndarray, best: float, xi: float = XI) -> np.ndarray:
    """EI for minimizing f = log10(10^g + cost) where g ~ N(mean, std²) is the GP's log10 f_p and `cost`
    (w_c·f_c, known before training) is exact: E[max(best - ξ - f, 0)]. f improves only where g < g* =
    log10(10^(best - ξ) - cost) (nowhere when the cost alone reaches best - ξ: the cost bound); EI is
    integrated over that region in equal steps of the normal's probability (midpoint rule), so that even a
    candidate whose improvement lies far in the tail gets its small EI, not 0."""
    target = best - xi
    room = np.power(10.0, target) - cost
    g_star = np.log10(np.where(room > 0, room, 1.0))
    safe_std = np.where(std > 0, std, 1.0)
    reach = np.where(room > 0, ndtr((g_star - mean) / safe_std), 0.0)  # P(g < g*)
    steps = (np.arange(QUANTILES) + 0.5) / QUANTILES
    g = mean[:, None] + safe_std[:, None] * ndtri(np.maximum(reach[:, None] * steps[None, :], 1e-300))
    gain = np.maximum(target - np.log10(np.power(10.0, g) + cost[:, None]), 0.0).mean(axis=1)
    exact = np.maximum(target - np.log10(np.power(10.0, mean) + cost), 0.0)
    return np.where(std > 0, reach * gain, exact)


@dataclass(frozen=True)
class Choice:
    """The candidate a BO step picks, every candidate's EI, and notes on anything unusual (for the run's log)."""

    index: int
    ei: np.ndarray
    notes: tuple[str, ...] = ()


def propose(
    observed: list[np.ndarray],
    y: np.ndarray,
    candidates: list[np.ndarray],
    terms: list[tuple[float, Term]],
    *,
    mode: str = "default",
    prior_mean: float | None = None,
    xi: float = XI,
    noise: float | None = None,
    pending: list[np.ndarray] | None = None,
    feasibility: Callable[[int], float] | None = None,
    known_cost: tuple[np.ndarray, np.ndarray] | None = None,
) -> Choice:
    """The candidate with the highest EI among those not observed or pending already.

    `feasibility(i)`: candidate i's probability of meeting the constraints (0 or 1 for exact ones): the
    choice maximizes EI times it (constrained EI), asking it of as few candidates as that takes (in order
    of EI, down to the first whose EI is below the best product so far); a candidate of probability 0 is
    never chosen while another can be.

    `pending`: configs being trained now (encoded like `observed`), for batch proposals (kriging believer):
    each is added to the observations with the GP's mean there as its value, so that the EI of configs near
    it falls; the incumbent stays the best *observed* value. A candidate equal to an observed or pending
    config is never chosen. When every allowed candidate's EI is 0, the one with the lowest mean - std is
    chosen instead, and a note says so (as it does when the GP needed more jitter than its noise).

    default: objectives standardized (mean 0, variance 1, recomputed at each call), zero prior mean, ξ
    divided by the objectives' standard deviation, noise variance `DEFAULT_NOISE`. reference: raw
    objectives, the given constant `prior_mean` (the mean of the stage's prior points), unit variance, ξ as
    is, noise `NOISE`. `noise` replaces the mode's noise variance.

    `known_cost` (default mode): (w_c·f_c of the observed configs, of the candidates), when the cost follows
    from the config (`--penalty params`). The GP then models only what training tells, g = log10 f_p (f_p =
    10^y - w_c·f_c), and EI takes the exact cost of each candidate into account (`known_cost_ei`) instead of
    asking the GP to learn it from a few trials.
    """
    y = np.asarray(y, dtype=float)
    best_objective = float(y.min())
    if known_cost is not None and mode == "default":
        errors = np.power(10.0, y) - known_cost[0]
        floor = float(errors[errors > 0].min()) if np.any(errors > 0) else 1e-6
        y = np.log10(np.maximum(errors, floor))
    if mode == "default":
        center, scale = float(y.mean()), float(y.std()) or 1.0
        target, mean0, xi_scaled = (y - center) / scale, 0.0, xi / scale
        noise = DEFAULT_NOISE if noise is None else noise
    elif mode == "reference":
        target, mean0, xi_scaled = y, float(y.mean() if prior_mean is None else prior_mean), xi
        noise = NOISE if noise is None else noise
    else:
        raise ValueError(f"unknown BO mode '{mode}'")
    incumbent = float(target.min())
    excluded = same_rows(candidates, observed).any(axis=1)
    has_pending = pending is not None and len(pending[0]) > 0
    # Matrices of a few hundred rows: one BLAS thread is fastest, and threads spinning on a busy machine
    # made a 300x300 Cholesky take 150 ms instead of 0.5 ms.
    with threadpool_limits(limits=1, user_api="blas"):
        k_train = kernel_matrix(observed, observed, terms)
        if has_pending:
            assert pending is not None
            believed, _ = gp_posterior(
                k_train, target, kernel_matrix(pending, observed, terms), prior_mean=mean0, noise=noise
            )
            excluded |= same_rows(candidates, pending).any(axis=1)
            observed = [np.concatenate([o, p]) for o, p in zip(observed, pending, strict=True)]
            target = np.concatenate([target, believed])
            k_train = kernel_matrix(observed, observed, terms)
        k_cross = kernel_matrix(candidates, observed, terms)
        mean, std, jitter = posterior_with_jitter(k_train, target, k_cross, prior_mean=mean0, noise=noise)
    notes = []
    if jitter > noise:
        notes.append(f"the GP needed jitter {jitter:.0e} (noise {noise:.0e}): some observations nearly coincide")
    if known_cost is not None and mode == "default":
        mean, std = center + scale * mean, scale * std  # (log10 f_p)
        ei = known_cost_ei(mean, std, known_cost[1], best_objective, xi)
        mean, std = np.log10(np.power(10.0, mean - std) + known_cost[1]), np.zeros_like(std)  # (the fallback)
    else:
        ei = expected_improvement(mean, std, incumbent, xi_scaled)
    ei = np.where(excluded, -np.inf, ei)
    if excluded.all():
        notes.append("every candidate was trained already; the first one is trained again")
        return Choice(0, ei, tuple(notes))
    if ei.max() <= 0:
        notes.append("expected improvement was 0 for every candidate; chose the lowest posterior mean - std")
        order = np.argsort(np.where(excluded, np.inf, mean - std), kind="stable")
        return Choice(_first_feasible(order, feasibility), ei, tuple(notes))
    if feasibility is None:
        return Choice(int(np.argmax(ei)), ei, tuple(notes))
    chosen, best = None, 0.0
    for i in np.argsort(-ei, kind="stable"):
        if ei[i] <= best:  # (excluded candidates have EI -inf)
            break
        value = ei[i] * feasibility(int(i))
        if value > best:
            chosen, best = int(i), value
    if chosen is None:  # no candidate of positive EI can comply: the most probable (else the first) one
        chosen = _first_feasible(np.argsort(-ei, kind="stable"), feasibility)
        notes.append("no candidate of positive EI meets the constraints; chose a complying one")
    return Choice(chosen, ei, tuple(notes))


def _first_feasible(order: np.ndarray, feasibility: Callable[[int], float] | None) -> int:
    """The first candidate in `order` likely to comply (probability >= `LIKELY`), else the most likely one."""
    if feasibility is None:
        return int(order[0])
    best, most = int(order[0]), -1.0
    for i in order:
        p = feasibility(int(i))
        if p >= LIKELY:
            return int(i)
        if p > most:
            best, most = int(i), p
    return best


def same_rows(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) booleans: the encoded configs are equal in every term (NaN padding equal to NaN)."""
    equal = np.ones((len(a[0]), len(b[0])), dtype=bool)
    for xa, xb in zip(a, b, strict=True):
        x, y = xa[:, None], xb[None, :]
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        equal &= same.reshape(same.shape[0], same.shape[1], -1).all(axis=2)
    return equal
