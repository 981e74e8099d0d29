"""The accuracy-vs-cost trade-off of a run from its stored trials alone (nothing is trained again): the
Pareto front of f_p against a cost measure, and which stored trial wins the objective for each weight w_c.

Pure functions over `store.Trial`s; `SearchResult.pareto`, `dnc show --wc` and the report use them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from deepncheap.errors import SettingsError
from deepncheap.store import Trial, search_order

COST_MEASURES = ("f_c", "n_params", "flops", "time_per_epoch_s")
DEFAULT_WEIGHTS = (0.0, 0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class ParetoRow:
    """One trial of a Pareto front: what it scored and what it costs."""

    trial_id: int
    stage: str
    f_p: float
    f_c: float
    objective: float
    val_accuracy: float | None
    val_loss: float | None
    n_params: int | None
    flops: int | None
    time_per_epoch_s: float | None

    @classmethod
    def of(cls, trial: Trial) -> ParetoRow:
        assert trial.f_p is not None and trial.f_c is not None and trial.objective is not None
        return cls(
            trial_id=trial.trial_id,
            stage=trial.stage,
            f_p=trial.f_p,
            f_c=trial.f_c,
            objective=trial.objective,
            val_accuracy=trial.val_accuracy,
            val_loss=trial.val_loss,
            n_params=trial.n_params,
            flops=trial.flops,
            time_per_epoch_s=trial.time_per_epoch_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scored(trials: Iterable[Trial]) -> list[Trial]:
    """The complete trials with f_p, f_c and an objective that violate no constraint: the only ones a
    trade-off ranks."""
    return [
        t for t in trials if t.status == "complete" and t.violation is None and None not in (t.f_p, t.f_c, t.objective)
    ]


def pareto_front(trials: Iterable[Trial], *, cost: str = "f_c") -> list[Trial]:
    """The complete trials that no other beats: none has f_p and `cost` both at most theirs and one of them
    lower. Exact ties are all kept. Ordered by cost, then f_p, then trial id."""
    if cost not in COST_MEASURES:
        raise SettingsError(f"unknown cost measure '{cost}'; use one of: {', '.join(COST_MEASURES)}")
    candidates = sorted(
        (t for t in scored(trials) if getattr(t, cost) is not None),
        key=lambda t: (getattr(t, cost), t.f_p, t.trial_id),
    )
    front: list[Trial] = []
    best_cheaper = math.inf  # the lowest f_p of the trials that cost strictly less
    for _, group in itertools.groupby(candidates, key=lambda t: getattr(t, cost)):
        same_cost = list(group)
        lowest = same_cost[0].f_p  # (sorted by f_p within a cost)
        assert lowest is not None
        if lowest < best_cheaper:
            front += [t for t in same_cost if t.f_p == lowest]
            best_cheaper = lowest
    return front


@dataclass(frozen=True)
class Winner:
    """The stored trial that a weight w_c would have chosen, and its objective under that weight."""

    wc: float
    trial: Trial
    objective: float


def objective_at(trial: Trial, wc: float, *, floor: float) -> float:
    """log10(max(f_p, floor) + w_c * f_c) of a stored trial."""
    assert trial.f_p is not None and trial.f_c is not None
    return math.log10(max(trial.f_p, floor) + wc * trial.f_c)


def winners(trials: Iterable[Trial], weights: Iterable[float], *, floor: float) -> list[Winner]:
    """For each weight, the stored trial with the lowest recomputed objective (the first in search order on
    ties, as `store.best_of`); empty when no trial is complete. `floor` is the run's lowest f_p
    (`objective.performance_floor`), which keeps the logarithm finite at w_c = 0."""
    candidates = scored(trials)
    result = []
    for wc in weights:
        check_weight(wc)
        if candidates:
            best = min(candidates, key=lambda t: (objective_at(t, wc, floor=floor), *search_order(t)))
            result.append(Winner(wc=wc, trial=best, objective=objective_at(best, wc, floor=floor)))
    return result


def check_weight(wc: float) -> None:
    if not math.isfinite(wc) or wc < 0:
        raise SettingsError(f"a complexity weight w_c must be a number >= 0, got {wc!r}; e.g. --wc 0,0.1,1")


def parse_weights(text: str) -> list[float]:
    """Weights from a comma-separated text such as '0,0.01,0.1,1,10'."""
    try:
        weights = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        weights = []
    if not weights:
        raise SettingsError(f"invalid weights '{text}'; give numbers >= 0 separated by commas, e.g. --wc 0,0.1,1")
    for wc in weights:
        check_weight(wc)
    return weights
