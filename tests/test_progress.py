"""Tests of deepncheap.progress: the ETA, the epoch lines of long trials, the events for scripts."""

import io

import pytest
from rich.console import Console

from deepncheap.progress import LONG_TRIAL_S, SearchProgress, eta_s, human_duration
from deepncheap.store import Trial


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def finished(trial_id, stage="core"):
    return Trial(
        trial_id, stage, trial_id, "complete", {}, -1.0, 0.1, 0.1, 0.9, 0.3, 1000, 2000, 0.5, 10, [0.9], 5.0,
        None, 0.0, 1.0,
    )  # fmt: skip


def progress_with(clock, events=None):
    output = io.StringIO()
    console = Console(file=output, width=200, highlight=False)  # (not a terminal: no live bar)
    return SearchProgress(10, console=console, on_event=events.append if events is not None else None, clock=clock)


def start(progress, trial_id, stage="core", epochs=10):
    progress.trial_started(trial_id, stage=stage, index=trial_id, config={"lr": 0.1}, epochs=epochs)


def epoch(progress, trial_id, n):
    progress.trial_epoch(trial_id, epoch=n, val_score=0.5, val_loss=1.0, epoch_time_s=2.0)


def test_eta_is_the_work_left_at_the_pace_so_far():
    assert eta_s(2, 8, 10.0) == pytest.approx(40.0)
    assert eta_s(0, 8, 10.0) is None
    assert human_duration(75) == "1m15s" and human_duration(4000) == "1h06m" and human_duration(None) == "?"


def test_the_eta_counts_finished_trials_and_the_epochs_of_running_ones():
    clock = Clock()
    progress = progress_with(clock)
    assert progress.eta_s() is None  # nothing started yet
    start(progress, 1)
    clock.now += 10
    epoch(progress, 1, 5)  # half a trial in 10 s: 9.5 trials left take 190 s
    assert progress.eta_s() == pytest.approx(190.0)
    clock.now += 10
    progress.trial_finished(finished(1), finished(1))  # one trial in 20 s: 9 left take 180 s
    assert progress.eta_s() == pytest.approx(180.0)
    assert "trial 1/10 (core) #1" in progress.console.file.getvalue()
    assert "ETA 3m00s" in progress.console.file.getvalue()


def test_a_resumed_search_s_pace_is_that_of_its_own_trials():
    clock = Clock()
    progress = progress_with(clock)
    progress.resumed([finished(i) for i in range(1, 6)])  # 5 of 10 done by an earlier driver
    start(progress, 6)
    clock.now += 30
    progress.trial_finished(finished(6), finished(1))  # 30 s per trial: 4 left take 120 s
    assert progress.eta_s() == pytest.approx(120.0)


def test_long_trials_get_an_epoch_line_at_most_every_long_trial_s():
    clock = Clock()
    progress = progress_with(clock)
    start(progress, 1)
    for n in range(1, 10):
        clock.now += LONG_TRIAL_S / 3
        epoch(progress, 1, n)
    lines = [line for line in progress.console.file.getvalue().splitlines() if "epoch" in line]
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["epoch 3/10", "epoch 6/10", "epoch 9/10"]
    assert all("search ETA" in line for line in lines)


def test_short_trials_get_no_epoch_line():
    clock = Clock()
    progress = progress_with(clock)
    start(progress, 1)
    for n in range(1, 10):
        clock.now += 0.5
        epoch(progress, 1, n)
    assert "epoch" not in progress.console.file.getvalue()


def test_events_name_stage_changes_and_carry_the_trial_s_metrics():
    clock = Clock()
    events = []
    progress = progress_with(clock, events)
    start(progress, 1, "core")
    epoch(progress, 1, 1)
    progress.trial_finished(finished(1), finished(1))
    start(progress, 2, "core")
    progress.trial_interrupted(2, "core")
    start(progress, 3, "advanced")
    kinds = [e["event"] for e in events]
    assert kinds == [
        "stage_changed", "trial_started", "epoch", "trial_ended", "trial_started", "trial_ended", "stage_changed",
        "trial_started",
    ]  # fmt: skip
    assert events[0] == {"event": "stage_changed", "stage": "core", "previous": None}
    assert events[3]["metrics"]["val_accuracy"] == 0.9 and events[3]["best_trial_id"] == 1
    assert events[5]["status"] == "interrupted"
    assert events[6]["previous"] == "core" and events[6]["stage"] == "advanced"


def test_events_are_json_safe():
    events = []
    progress = progress_with(Clock(), events)
    progress.emit("epoch", val_score=float("nan"), nested={"x": [float("inf")]})
    assert events == [{"event": "epoch", "val_score": None, "nested": {"x": [None]}}]


def test_events_reach_a_sink_even_when_progress_is_silent():
    events = []
    progress = SearchProgress(3, enabled=False, on_event=events.append, console=Console(file=io.StringIO()))
    start(progress, 1)
    assert [e["event"] for e in events] == ["stage_changed", "trial_started"]
    assert progress.console.file.getvalue() == ""
