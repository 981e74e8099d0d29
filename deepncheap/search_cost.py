"""What a search costs, in device-seconds (one slot busy or idle for one second): training (complete, pruned,
failed and interrupted trials, from their rows), measuring the baselines (every slot at once), proposing
(the driver's method calls) and idle slots (the rest of the slots' time: waiting for a proposal, scoring,
writing files, starting workers), accumulated over every session of the run; and the training seconds that
pruning saved (estimated: each pruned trial's epochs left at its own pace, or for one never trained, at
the pace the cost model predicts, calibrated on the trained trials).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from deepncheap.store import RunStore, Trial

KEY = "search_cost"  # the store's record of the slots' time (`SlotClock`)
TRAINING_STATUSES = ("complete", "pruned", "failed", "interrupted")


@dataclass
class SlotClock:
    """The slot-seconds and proposing seconds of a run, its earlier sessions included (store key `KEY`)."""

    slots: int
    earlier_slot_s: float = 0.0
    proposing_s: float = 0.0
    since: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, store: RunStore, slots: int) -> SlotClock:
        """A clock that goes on from what the run's earlier sessions spent."""
        stored = store.get(KEY) or {}
        return cls(slots, float(stored.get("slot_s", 0.0)), float(stored.get("proposing_s", 0.0)))

    @contextmanager
    def proposing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.proposing_s += time.perf_counter() - start

    def save(self, store: RunStore) -> None:
        slot_s = self.earlier_slot_s + self.slots * (time.perf_counter() - self.since)
        store.put(KEY, {"slot_s": slot_s, "proposing_s": self.proposing_s})


def summarize(store: RunStore, *, epochs: int | None = None) -> dict[str, Any]:
    """The run's device-seconds: `total_s`, `training_s` (and `training_by_status_s`), `baselines_s`,
    `proposing_s`, `idle_s`, `pruned_trials` and `pruning_saved_s` (the estimate above)."""
    trials = store.trials()
    settings = store.settings
    stored = store.get(KEY) or {}
    by_status = {status: sum(t.wall_s or 0.0 for t in trials if t.status == status) for status in TRAINING_STATUSES}
    training_s = sum(by_status.values())
    baselines_s = float(store.get("baseline_wall_s") or 0.0) * int(settings.get("slots") or 1)
    total_s = max(float(stored.get("slot_s", 0.0)), training_s + baselines_s)
    pruned = [t for t in trials if t.status == "pruned"]
    return {
        "total_s": total_s,
        "training_s": training_s,
        "training_by_status_s": by_status,
        "baselines_s": baselines_s,
        "proposing_s": float(stored.get("proposing_s", 0.0)),
        "idle_s": total_s - training_s - baselines_s,
        "pruned_trials": len(pruned),
        "pruning_saved_s": pruning_saved_s(trials, epochs or int(settings["epochs"])),
    }


def pruning_saved_s(trials: list[Trial], epochs: int) -> float:
    """The training seconds the pruned trials would have taken more to finish all `epochs` (estimated)."""
    trained = [t for t in trials if t.epochs and t.wall_s and t.status in ("complete", "pruned")]
    ratios = [t.wall_s / t.epochs / t.modelled_epoch_s for t in trained if t.modelled_epoch_s]  # type: ignore[operator]
    calibration = statistics.median(ratios) if ratios else None
    saved = 0.0
    for trial in trials:
        if trial.status != "pruned":
            continue
        if trial.epochs and trial.wall_s:
            saved += (epochs - trial.epochs) * trial.wall_s / trial.epochs
        elif trial.modelled_epoch_s and calibration is not None:
            saved += epochs * trial.modelled_epoch_s * calibration
    return saved


def seconds(value: float) -> str:
    """Seconds, to 0.1 s below 100 s."""
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def describe(summary: dict[str, Any]) -> str:
    """One line for `dnc show` and the report."""
    by_status = summary["training_by_status_s"]
    parts = ", ".join(f"{status} {seconds(value)}" for status, value in by_status.items() if value)
    text = (
        f"{seconds(summary['total_s'])} device-seconds: training {seconds(summary['training_s'])}"
        + (f" ({parts})" if parts else "")
        + f", baselines {seconds(summary['baselines_s'])}, idle slots {seconds(summary['idle_s'])}"
        f" (proposing {seconds(summary['proposing_s'])})"
    )
    if summary["pruned_trials"]:
        text += (
            f"; pruning stopped {summary['pruned_trials']} trial(s) and saved about "
            f"{seconds(summary['pruning_saved_s'])} s of training"
        )
    return text
