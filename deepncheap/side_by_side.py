"""A transfer run side by side with its source: one row per transferred config, its source trial and
objective next to what it did on the run's data (`RUN/transfer.json`, the table `dnc transfer` prints,
the source column of `dnc show`). Read from the store only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepncheap import artifacts
from deepncheap.history import History
from deepncheap.methods.transfer import STAGE
from deepncheap.store import RunStore, Trial

TRANSFER_JSON = "transfer.json"


def transfer_rows(settings: dict[str, Any], trials: list[Trial]) -> list[dict[str, Any]]:
    """One row per stored config, in the source's order (best first): `source_trial_id`, `source_objective`,
    then the run's trial of it (`trial_id`, `status`, `objective`, `val_accuracy` or, for a regression,
    `val_loss`, `n_params`, `time_per_epoch_s`, `reason` when pruned; None until it has run) and `config`."""
    attempts = {t.stage_index: t for t in History.of(trials).stage(STAGE)}
    score = "val_accuracy" if settings["data"]["task"] == "classification" else "val_loss"
    columns = ("trial_id", "status", "objective", score, "n_params", "time_per_epoch_s", "reason")
    rows = []
    for index, source in enumerate(settings.get("transfer_configs") or []):
        trial = attempts.get(index)
        measured = {name: None if trial is None else getattr(trial, name) for name in columns}
        rows.append(
            {
                "source_trial_id": source["source_trial_id"],
                "source_objective": source["source_objective"],
                **measured,
                "status": measured["status"] or "not started",
                "config": source["config"],
            }
        )
    return rows


def write_transfer_json(store: RunStore, run_dir: Path) -> Path:
    """RUN/transfer.json: the run's `transfer_rows`, as a JSON list."""
    path = Path(run_dir) / TRANSFER_JSON
    rows = transfer_rows(store.settings, store.trials())
    artifacts.write_atomic(path, (json.dumps(rows, indent=2) + "\n").encode())
    return path


def source_labels(settings: dict[str, Any], trials: list[Trial]) -> dict[int, str]:
    """Trial id -> its source trial and objective (`#12 -1.2345`), for the trials of a transfer run."""
    sources = settings.get("transfer_configs") or []
    return {
        t.trial_id: f"#{sources[t.stage_index]['source_trial_id']} {sources[t.stage_index]['source_objective']:+.4f}"
        for t in trials
        if t.stage == STAGE and t.stage_index < len(sources)
    }
