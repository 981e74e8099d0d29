"""Search methods. A method answers one question, `ask(context, history, free_slots)`: which trials to
start next for up to `free_slots` free slots (a list of `Proposal`, empty to wait for a pending trial), or
`None` when the search is done. It keeps no state between calls: its answer is a pure function of the
settings, the seed and the run's history (running trials are pending), so a resumed search, or one with
many workers, is "read the store, ask again".

`dnc` is Deep-n-Cheap's three stages (`methods/dnc.py`); `random` and `sobol` sample the joint space of
every hyperparameter (`methods/sampling.py`); `transfer` trains another run's configs (`methods/transfer.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from deepncheap.history import History
from deepncheap.methods.base import MethodContext, Proposal
from deepncheap.methods.dnc import ask_dnc, planned_dnc_trials
from deepncheap.methods.sampling import ask_sampling
from deepncheap.methods.transfer import ask_transfer, planned_transfer_trials

Method = Callable[[MethodContext, History, int], "list[Proposal] | None"]

__all__ = ["Method", "MethodContext", "Proposal", "method_for", "planned_trials"]


def method_for(name: str) -> Method:
    """The `ask` function of method `name` (`settings.METHODS`, or `transfer`)."""
    return {"dnc": ask_dnc, "transfer": ask_transfer}.get(name, ask_sampling)


def planned_trials(context: MethodContext) -> int:
    """The number of trainings the search plans (an upper bound for `dnc`, whose grids skip duplicates)."""
    settings = context.settings
    if settings.method == "dnc":
        return planned_dnc_trials(context)
    if settings.method == "transfer":
        return planned_transfer_trials(context)
    assert settings.trial_budget is not None
    return settings.trial_budget
