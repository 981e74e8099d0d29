"""Helpers shared by the test modules: what a run's store holds, read back."""

import csv
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


def write_csv(path, x, y=None, *, target=None):
    """A CSV of features f0, f1, ... (and the `target` column holding `y`), values written exactly; returns
    `path`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(x.shape[1])] + ([] if y is None else [target]))
        labels = [] if y is None else y.tolist()
        writer.writerows(row + labels[i : i + 1] for i, row in enumerate(x.tolist()))
    return path
