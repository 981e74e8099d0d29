"""The `transfer` method (`dnc transfer`): another run's best configs, stored with the run's settings
(`settings.transfer_configs`), trained as they are on the run's data; trial i is config i. Nothing is
searched, so resuming only trains the configs not finished yet."""

from __future__ import annotations

from deepncheap.history import History
from deepncheap.methods.base import MethodContext, Proposal, ask_stored

STAGE = "transfer"


def ask_transfer(context: MethodContext, history: History, free_slots: int) -> list[Proposal] | None:
    """The next stored configs for the free slots; None once every one has finished."""
    settings = context.settings
    configs = settings.transfer_configs
    trials = ", ".join(f"#{c['source_trial_id']}" for c in configs)
    note = f"transfer: training {len(configs)} configs of {settings.transfer_from} (its trials {trials})"
    return ask_stored(history, STAGE, [c["config"] for c in configs], free_slots, note)


def planned_transfer_trials(context: MethodContext) -> int:
    """The stored configs, at most `--max-trials`."""
    settings = context.settings
    total = len(settings.transfer_configs)
    return min(total, settings.max_trials) if settings.max_trials else total
