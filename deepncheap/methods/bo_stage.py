"""A Bayesian-optimization stage over the history: Sobol prior points, then BO steps, each taking the
candidate of highest expected improvement given the stage's finished trials (a failed trial counts as the
stage's worst objective) and its pending ones (kriging believer, `bo.propose`).

Trial i < prior_points of a stage is the i-th of the stage seed's Sobol points that meet the constraints
(`MethodContext.sample`; in a warm-started search, the core stage's first ones are the warm configs'
architectures); they start cheapest first when pruning is on (`MethodContext.rank`), each
keeping its index, and so its training seed. Trial i beyond is the choice of BO step i - prior_points,
among candidates drawn with that step's seed, by expected improvement weighted by the probability of
meeting the constraints. A BO step needs at least one complete or pruned trial; with one worker it sees
every trial before it, as the sequential search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepncheap import bo
from deepncheap.errors import SearchFailedError
from deepncheap.history import History, every_trial_failed
from deepncheap.methods.base import MethodContext, Proposal
from deepncheap.pruning import gp_value
from deepncheap.space import derive_seed
from deepncheap.store import Trial


def ask_bo_stage(
    context: MethodContext,
    history: History,
    free_slots: int,
    *,
    stage: str,
    base: dict[str, Any] | None,
    steps: int,
) -> list[Proposal] | None:
    """Proposals for the stage's next trials (up to `free_slots`; fewer while a BO step must wait for a
    complete trial), or None when all `prior_points + steps` trials have finished."""
    settings, _space = context.settings, context.space
    trials = history.stage(stage)
    total = settings.prior_points + steps
    pending = [t.config for t in history.pending(stage)]
    proposals: list[Proposal] = []
    while len(proposals) < free_slots and len(trials) + len(proposals) < total:
        index = len(trials) + len(proposals)
        if index < settings.prior_points:  # (the prior points start before any BO step)
            points = prior_points(context, stage, base, history)
            started = {t.stage_index for t in trials} | {p.index for p in proposals}
            first = min((i for i in range(len(points)) if i not in started), key=lambda i: context.rank(points[i]))
            proposals.append(Proposal(points[first], stage, first))
            continue
        finished = history.finished(stage)
        if not _observed(finished):
            if pending or proposals:
                break  # wait for a complete trial
            raise SearchFailedError(every_trial_failed(f"every prior point of the {stage} stage", finished))
        choice = _propose(context, stage, index, base, finished, [*pending, *(p.config for p in proposals)], history)
        proposals.append(choice)
    if proposals or pending or len(trials) < total:
        return proposals
    if not _observed(trials):
        raise SearchFailedError(every_trial_failed(f"every trial of the {stage} stage", trials))
    return None


def prior_points(
    context: MethodContext, stage: str, base: dict[str, Any] | None, history: History
) -> list[dict[str, Any]]:
    """The stage's prior points (the epoch-time limit predicted from the trials of the stages before); in the
    core stage of a warm-started search, the warm configs' architectures first (those that comply), then as
    many Sobol points as remain."""
    settings, n = context.settings, context.settings.prior_points
    seed = derive_seed(settings.seed, stage, "prior")
    before = [t for t in history.trials if t.stage != stage]
    warm = [context.space.core_config(c["config"], base) for c in settings.warm_configs] if stage == "core" else []
    starts = context.complying(warm, before)[:n]
    if len(starts) == n:
        return starts
    sobol = context.sample(n - len(starts), method="sobol", seed=seed, stage=stage, base=base, measured=before)
    return [*starts, *sobol]


def _propose(
    context: MethodContext,
    stage: str,
    index: int,
    base: dict[str, Any] | None,
    finished: list[Trial],
    pending: list[dict[str, Any]],
    history: History,
) -> Proposal:
    """BO step `index - prior_points` of `stage`."""
    settings, space = context.settings, context.space
    step = index - settings.prior_points
    candidates = space.sample(
        settings.candidates, method="random", seed=derive_seed(settings.seed, stage, step), stage=stage, base=base
    )
    candidates = _within_bound(context, history, candidates)
    prior = [t for t in _complete(finished) if t.stage_index < settings.prior_points]
    feasible = context.feasibility(history)
    choice = bo.propose(
        space.encode(stage, [t.config for t in finished]),
        observed_objectives(finished, settings.wc),
        space.encode(stage, candidates),
        space.kernel(stage, reference=settings.bo_mode == "reference"),
        mode=settings.bo_mode,
        prior_mean=float(np.mean([t.objective for t in prior])) if prior else None,
        pending=space.encode(stage, pending) if pending else None,
        feasibility=None if feasible is None else (lambda i: feasible(candidates[i])),
        known_cost=_known_costs(context, finished, candidates),
    )
    notes = tuple(f"{stage} BO step {step}: {note}" for note in choice.notes)
    return Proposal(candidates[choice.index], stage, index, notes)


def _known_costs(
    context: MethodContext, finished: list[Trial], candidates: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """w_c·f_c of the finished trials and of the candidates, when the cost follows from the config."""
    if context.known_cost is None:
        return None
    wc, cost = context.settings.wc, context.known_cost
    return wc * np.array([cost(t.config) for t in finished]), wc * np.array([cost(c) for c in candidates])


def _within_bound(context: MethodContext, history: History, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates whose cost bound can still beat the search's best (all of them when none can)."""
    best = history.best()
    if context.cost_bound is None or best is None or best.objective is None:
        return candidates
    kept = [c for c in candidates if context.cost_bound(c) < best.objective]
    return kept or candidates


def observed_objectives(trials: list[Trial], wc: float) -> np.ndarray:
    """The objectives the GP sees: a complete trial's own, a pruned trial's `pruning.gp_value`; a failed
    trial counts as the worst of these."""
    seen = _observed(trials)
    values = [gp_value(t, trials, wc) if t in seen else None for t in trials]
    worst = max(v for v in values if v is not None)
    return np.array([worst if v is None else v for v in values], dtype=float)


def _complete(trials: list[Trial]) -> list[Trial]:
    return [t for t in trials if t.status == "complete" and t.objective is not None]


def _observed(trials: list[Trial]) -> list[Trial]:
    """The trials with an objective the GP can see: complete ones, and pruned ones (their bound or their
    objective when stopped)."""
    return [t for t in trials if t.status in ("complete", "pruned") and t.objective is not None]
