"""Pruning (`--prune`): never finish a trial that cannot win, and stop hopeless ones early.

The cost bound (`bound`, and under every rule): f = log10(f_p + w_c * f_c) with f_p >= its floor (half a
validation sample), so a trial of complexity f_c can reach no objective below log10(floor + w_c * f_c). When
that is at or above the incumbent (the best complete trial of the search so far, which only gets better),
the trial cannot become the best: with `--penalty params` (or time ranked by the cost model) f_c is known
from the config and the trial is not trained at all; with measured time it stops once its first timed
epoch is in (the bound then allows `TIME_SLACK` of timing noise). It never removes the winner. So that
it has an incumbent to compare with early, a stage's prior points and the grids train cheapest first (by
parameters, or by the cost model's epoch: `Scorer.cost_rank`) when pruning is on and w_c > 0 (at w_c 0
the bound rules out nothing); BO proposes on its own.

The learning-curve rules stop a running trial at its rungs (`rungs`: after 1/4 and 1/2 of its epochs, and
for `projection` also after 1/8 and 3/4):
`projection` when even its most optimistic projection cannot beat the incumbent: its f_p so far shrunk by
the largest improvement any complete trial of its stage made from that epoch to its end (f_p final over
f_p then), with its cost; `median` and `asha` when its objective so far (best validation epoch so far, its
cost) is worse than that of the finished trials of its stage at the same epoch: `median` than their median
(complete trials), `asha` than their top 1/`ETA` (complete trials and pruned ones that reached the rung,
as successive halving does). None acts before `MIN_PEERS` such trials. A pruned trial keeps its partial
curve and is recorded `pruned` with its reason and an objective: the bound, or its objective when it stopped.

What the GP sees for a pruned trial (`gp_value`): for a trial the bound stopped, not the bound itself (its
f_p at the floor makes an expensive config look as good as the incumbent, which drew the GP towards the
expensive configs it had just ruled out: benchmarks/early_stopping.py) but the objective its cost would have
with the median f_p of the stage's complete trials (at least its bound); for a trial stopped by
`projection`, its f_p at the rung shrunk by the *median* improvement of those trials from that epoch (what
it would most likely have reached), with its cost; for a trial stopped by `median` or `asha`, not its
objective at the rung (an early epoch scores far worse than any finished trial, which taught the GP that
whatever learns slowly, e.g. every small network, is hopeless: benchmarks/early_stopping.py) but the final
objective its rank at the rung predicts: the quantile of the complete peers' final objectives at the share
of peers that stood better than it there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from deepncheap.store import EpochRecord, Trial

if TYPE_CHECKING:
    from deepncheap.objective import Scorer
    from deepncheap.train import EpochReport

T = TypeVar("T")
PRUNE_MODES = ("none", "bound", "projection", "median", "asha")
DEFAULT_PRUNE = "projection"
MIN_PEERS = 5  # finished trials of a stage at a rung before a learning-curve rule stops anything there
ETA = 3  # asha keeps the top 1/ETA at each rung
TIME_SLACK = 0.1  # a measured epoch may be this much slower than the trial's final time per epoch
BOUND_REASON = "cost bound"

# The epochs of finished trials of a stage (trial, its epoch records), read from the store when needed.
PeerEpochs = Callable[[str], list[tuple[Trial, list[EpochRecord]]]]


@dataclass(frozen=True)
class Verdict:
    """Stop (or never start) a trial: why (e.g. `cost bound`, `median at epoch 5`, a violated constraint),
    and the objective it is recorded with (its bound, or its objective so far)."""

    reason: str
    objective: float | None
    violation: bool = False  # stopped for violating a constraint (`constraints.py`), not by pruning


def gp_value(trial: Trial, peers: list[Trial], wc: float) -> float:
    """The objective the GP sees for `trial` (see above); `peers`: the finished trials of its stage."""
    assert trial.objective is not None
    epoch = len(trial.val_curve)
    if trial.status != "pruned" or trial.violation is not None:
        return trial.objective  # (a trial stopped by a constraint: its objective when it stopped)
    if trial.reason == BOUND_REASON:
        errors = [p.f_p for p in peers if p.status == "complete" and p.f_p is not None]
        if not errors or trial.f_c is None:
            return trial.objective
        return max(trial.objective, math.log10(float(np.median(errors)) + wc * trial.f_c))
    if not epoch:
        return trial.objective
    complete = [p for p in peers if p.status == "complete" and p.objective is not None and len(p.val_curve) > epoch]
    if not complete:
        return trial.objective
    if trial.reason is not None and trial.reason.startswith("projection") and trial.f_p is not None:
        assert trial.f_c is not None
        return math.log10(trial.f_p * float(np.median(improvements(complete, epoch))) + wc * trial.f_c)
    better = sum(_objective_at(p, epoch, wc) < trial.objective for p in complete)
    return float(np.quantile([p.objective for p in complete], better / len(complete)))


def _objective_at(trial: Trial, epoch: int, wc: float) -> float:
    """A complete trial's objective after `epoch` epochs, from its stored curve and cost."""
    assert trial.f_c is not None
    return math.log10(_error_at(trial, epoch) + wc * trial.f_c)


def _error_at(trial: Trial, epoch: int) -> float:
    """A complete trial's f_p after `epoch` epochs (its best validation epoch up to then), from its curve."""
    curve = trial.val_curve[:epoch]
    assert trial.f_p is not None
    if trial.val_accuracy is not None:  # classification: f_p = 1 - best accuracy (floored)
        return max(1.0 - max(curve), trial.f_p)
    return min(curve) * trial.f_p / min(trial.val_curve)  # regression: f_p is the best MSE over a constant


def improvements(complete: list[Trial], epoch: int) -> list[float]:
    """How much each complete trial's f_p shrank from `epoch` to its end (final f_p over f_p then, <= 1)."""
    return [t.f_p / _error_at(t, epoch) for t in complete if t.f_p is not None and len(t.val_curve) > epoch]


def memoized(cost: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
    """`cost` of a config computed once per config (a search asks for its prior points' costs at every
    proposal)."""
    values: dict[str, T] = {}

    def cached(config: dict[str, Any]) -> T:
        key = json.dumps(config, sort_keys=True)
        if key not in values:
            values[key] = cost(config)
        return values[key]

    return cached


def rungs(epochs: int, mode: str = "median") -> tuple[int, ...]:
    """The epochs at which a learning-curve rule looks at a trial: 1/4 and 1/2 of its epochs, and for
    `projection` (which stops only what cannot beat the incumbent) also 1/8 and 3/4."""
    fractions = (1 / 8, 1 / 4, 1 / 2, 3 / 4) if mode == "projection" else (1 / 4, 1 / 2)
    return tuple(sorted({e for e in (int(epochs * f) for f in fractions) if 0 < e < epochs}))


@dataclass(frozen=True)
class Pruner:
    """The run's pruning decisions, made in the driver: `before_training` for a proposed config,
    `at_epoch` for a running trial after each epoch it reports."""

    mode: str
    scorer: Scorer
    epochs: int

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def before_training(self, f_c: float | None, incumbent: float | None) -> Verdict | None:
        """Never train a config whose cost alone rules it out (f_c known from the config)."""
        if not self.active or f_c is None or incumbent is None:
            return None
        bound = self.scorer.bound(f_c)
        return Verdict(BOUND_REASON, bound) if bound >= incumbent else None

    def at_epoch(
        self,
        *,
        stage: str,
        f_c: float | None,
        reports: list[EpochReport],
        incumbent: float | None,
        peers: PeerEpochs,
    ) -> Verdict | None:
        """Stop a running trial after its latest epoch (`reports` so far): by the bound once its time is
        measured (f_c None: measured time), or at a rung by the mode's learning-curve rule."""
        if not self.active:
            return None
        epoch = reports[-1].epoch
        times = [r.epoch_time_s for r in reports]
        if f_c is None and incumbent is not None and epoch >= 2:
            bound = self.scorer.bound(self.scorer.timed_cost(times) * (1 - TIME_SLACK))
            if bound >= incumbent:
                return Verdict(BOUND_REASON, bound)
        if self.mode == "bound" or epoch not in rungs(self.epochs, self.mode):
            return None
        scores = [r.val_score for r in reports]
        if not all(math.isfinite(s) for s in scores):
            return None  # (a diverging trial fails by itself)
        own = self.scorer.partial(scores, times, f_c)
        if self.mode == "projection":
            return self._projection(own, scores, times, f_c, peers(stage), epoch, incumbent)
        others = self._peer_objectives(peers(stage), epoch)
        if len(others) < MIN_PEERS:
            return None
        if self.mode == "median":
            worse = own > float(np.median(others))
        else:  # asha: continue only within the top 1/ETA of the trials at this rung, itself included
            kept = math.ceil((len(others) + 1) / ETA)
            worse = sum(o < own for o in others) >= kept
        return Verdict(f"{self.mode} at epoch {epoch}", own) if worse else None

    def _projection(
        self,
        own: float,
        scores: list[float],
        times: list[float],
        f_c: float | None,
        peers: list[tuple[Trial, list[EpochRecord]]],
        epoch: int,
        incumbent: float | None,
    ) -> Verdict | None:
        """Stop the trial when its f_p so far, shrunk by the largest improvement of a complete peer from this
        epoch on, with its cost, cannot beat the incumbent."""
        complete = [t for t, _ in peers if t.status == "complete"]
        ratios = improvements(complete, epoch)
        if incumbent is None or len(ratios) < MIN_PEERS:
            return None
        cost = self.scorer.timed_cost(times) if f_c is None else f_c
        optimistic = self.scorer.value(max(self.scorer.error_so_far(scores) * min(ratios), self.scorer.floor), cost)
        return Verdict(f"projection at epoch {epoch}", own) if optimistic >= incumbent else None

    def _peer_objectives(self, peers: list[tuple[Trial, list[EpochRecord]]], epoch: int) -> list[float]:
        """The objectives of the peers at `epoch` (their records up to it): complete trials for `median`,
        and also pruned ones that reached it for `asha`."""
        statuses = ("complete",) if self.mode == "median" else ("complete", "pruned")
        values = []
        for trial, records in peers:
            upto = [r for r in records if r.epoch <= epoch]
            if trial.status not in statuses or len(upto) < epoch or any(r.val_score is None for r in upto):
                continue
            f_c = trial.f_c if self.scorer.cost_known_before_training else None
            values.append(self.scorer.partial([r.val_score for r in upto], [r.epoch_time_s for r in upto], f_c))  # type: ignore[misc]
        return values
