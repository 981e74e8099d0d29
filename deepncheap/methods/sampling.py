"""The baselines `random` and `sobol`: configs of the joint space of every hyperparameter, trial i being
the i-th point of the seed's sequence (uniform random or scrambled Sobol) that meets the constraints; the
sequence's first points do not depend on its length, so raising `--max-trials` extends a search."""

from __future__ import annotations

from deepncheap.history import History
from deepncheap.methods.base import MethodContext, Proposal, next_indices

STAGE = "joint"


def ask_sampling(context: MethodContext, history: History, free_slots: int) -> list[Proposal] | None:
    """The next joint-space points for the free slots; None once the trial budget is reached."""
    settings = context.settings
    budget = settings.trial_budget
    assert budget is not None
    indices = next_indices(history, STAGE, budget, free_slots)
    if not indices:
        return None if indices is None else []
    configs = context.sample(indices.stop, method=settings.method, seed=settings.seed, stage=STAGE)
    return [Proposal(configs[index], STAGE, index) for index in indices]
