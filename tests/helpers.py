"""Helpers shared by the test modules: what a run's store holds, read back."""

import json

from deepncheap.store import RunStore


def stored_trials(run):
    """Every trial row of the run's store."""
    with RunStore.open(run) as store:
        return store.trials()


def signature(trials):
    """What a search found, trial by trial (stage, index, config, objective), without timings."""
    return sorted(
        (t.stage, t.stage_index, json.dumps(t.config, sort_keys=True), round(t.objective, 12))
        for t in trials
        if t.status == "complete"
    )
