"""The baselines `random` and `sobol`: configs of the joint space of every hyperparameter, trial i being
the i-th point of the seed's sequence (uniform random or scrambled Sobol) that meets the constraints; the
sequence's first points do not depend on its length, so raising `--max-trials` extends a search."""

from __future__ import annotations

from deepncheap.history import History
from deepncheap.methods.base import MethodContext, Proposal

STAGE = "joint"


def ask_sampling(context: MethodContext, history: History, free_slots: int) -> list[Proposal] | None:
    """The next joint-space points for the free slots; None once the trial budget is reached."""
    settings = context.settings
    budget = settings.trial_budget
    assert budget is not None
    started = len(history.stage(STAGE))
    if started >= budget:
        return [] if history.pending(STAGE) else None
    count = min(free_slots, budget - started)
    if count <= 0:
        return []
    configs = context.sample(started + count, method=settings.method, seed=settings.seed, stage=STAGE)
    return [Proposal(configs[index], STAGE, index) for index in range(started, started + count)]
