"""Progress of a running search, for people and for scripts.

People (stderr): a live bar on a terminal (trials done of planned, best so far, the running trial's epoch,
ETA), and everywhere one line per finished trial with the ETA, plus a line per epoch of trials long enough
to wait for. Scripts: every event (`EVENTS`) as a JSON-safe dict passed to `on_event` (`dnc search --json`
prints one JSON object per line on stdout).

The ETA is the work left over the pace of this invocation: trials count as done by the fraction of their
epochs reported, so it is known from the first epoch on, and parallel trials speed the pace up as they do
the search.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from deepncheap.store import Trial

EVENTS = ("search_started", "stage_changed", "trial_started", "epoch", "trial_ended", "search_ended")
LONG_TRIAL_S = 30.0  # a running trial gets an epoch line (off a terminal) at most this often
EventSink = Callable[[dict[str, Any]], None]


def human_count(value: float | None) -> str:
    """12345 -> '12.3k', 2.5e6 -> '2.50M'."""
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def human_duration(seconds: float | None) -> str:
    """75 -> '1m15s', 4000 -> '1h06m', None -> '?'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_s(done: float, left: float, elapsed_s: float) -> float | None:
    """Seconds to do `left` units of work at the pace of `done` units in `elapsed_s` (None before any)."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, left) * elapsed_s / done


def describe_trial(trial: Trial) -> str:
    """One line: objective, accuracy or loss, parameters, time per epoch; or the error of a failed trial."""
    if trial.status == "pruned":
        value = "bound" if trial.reason == "cost bound" else "objective"
        trained = "" if trial.epochs else ", not trained"
        shown = f"{value} {trial.objective:+.4f}" if trial.objective is not None else "no objective"
        return f"pruned ({trial.reason}{trained}): {shown}  params {human_count(trial.n_params)}"
    if trial.status != "complete":
        return f"{trial.status}: {trial.error or ''}".rstrip(": ")
    score = f"acc {trial.val_accuracy:.4f}" if trial.val_accuracy is not None else f"loss {trial.val_loss:.4g}"
    return (
        f"objective {trial.objective:+.4f}  {score}  params {human_count(trial.n_params)}  "
        f"{trial.time_per_epoch_s:.3f} s/epoch"
        + (f"  violates {trial.violation} (never the best)" if trial.violation else "")
    )


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def trial_metrics(trial: Trial) -> dict[str, Any]:
    """What a finished trial measured, under best.json's metric names."""
    return {
        "objective": trial.objective,
        "val_accuracy": trial.val_accuracy,
        "val_loss": trial.val_loss,
        "f_p": trial.f_p,
        "f_c": trial.f_c,
        "n_params": trial.n_params,
        "flops": trial.flops,
        "time_per_epoch_s": trial.time_per_epoch_s,
        "epochs": trial.epochs,
    }


class _Console(Console):
    """A rich console that goes quiet when its output is closed (`dnc search ... |& head`), where rich's
    own would exit the process."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


@dataclass
class _Running:
    stage: str
    epochs: int  # planned
    done: int = 0  # reported so far
    started: float = 0.0
    last_line: float = 0.0  # when its last epoch line was printed


class SearchProgress:
    """Context manager shown while a search runs; silent for people when `enabled` is False, and passing
    every event to `on_event` whatever `enabled` says."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        console: Console | None = None,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "search",
    ):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.console = console or _Console(stderr=True, highlight=False)
        self.on_event = on_event
        self._clock = clock
        self._done = 0
        self._resumed = 0  # trials finished by an earlier driver (not part of this invocation's pace)
        self._started_at: float | None = None  # when this invocation's first trial started
        self._running: dict[int, _Running] = {}
        self._stage: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> SearchProgress:
        if self.enabled and self.console.is_terminal:
            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[best]}"),
                TextColumn("{task.fields[running]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, best="", running="", eta="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        if self._progress is not None:
            with contextlib.suppress(OSError):
                self._progress.stop()

    def emit(self, event: str, **fields: Any) -> None:
        """Pass an event (one of `EVENTS`) to `on_event`."""
        if self.on_event is not None:
            self.on_event(json_safe({"event": event, **fields}))

    def set_total(self, total: int) -> None:
        """Correct the planned number of trials once it is known better."""
        self.total = total
        self._update(total=total)

    def note(self, text: str) -> None:
        """A line of information above the bar. A closed output (`dnc search ... |& head`) never stops the
        search: the display just goes quiet."""
        if self.enabled:
            try:
                self.console.print(text, markup=False, soft_wrap=True)
            except OSError:  # BrokenPipeError and the like
                self.enabled = False

    def started(self, *, run_dir: str, data: dict[str, Any]) -> None:
        """The search (or this invocation of it) starts on `data` (`Dataset.summary()`)."""
        self.emit(
            "search_started",
            run_dir=run_dir,
            data={k: data.get(k) for k in ("name", "task", "input_shape", "n_train", "n_val", "n_test")},
            planned_trials=self.total,
            finished_trials=self._done,
        )

    def resumed(self, trials: list[Trial]) -> None:
        """Start the count at the trials a previous driver finished, and say what resuming does with them."""
        finished = {(t.stage, t.stage_index) for t in trials if t.status in ("complete", "failed", "pruned")}
        if not finished:
            return
        rerun = {(t.stage, t.stage_index) for t in trials if t.status == "interrupted"} - finished
        self.note(
            f"resuming: {len(finished)} finished trials taken from the store, none trained again"
            + (f"; {len(rerun)} interrupted trial(s) run again" if rerun else "")
        )
        self._done = self._resumed = len(finished)
        self._update(completed=self._done)

    def trial_started(self, trial_id: int, *, stage: str, index: int, config: dict[str, Any], epochs: int) -> None:
        """A trial starts (after its `running` row is written)."""
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        if stage != self._stage:
            self.emit("stage_changed", stage=stage, previous=self._stage)
            self._stage = stage
        self._running[trial_id] = _Running(stage, epochs, started=now, last_line=now)
        self.emit("trial_started", trial_id=trial_id, stage=stage, stage_index=index, config=config, epochs=epochs)

    def trial_epoch(self, trial_id: int, *, epoch: int, val_score: float, val_loss: float, epoch_time_s: float) -> None:
        """A running trial reported an epoch: an event, the bar's running field, and off a terminal a line
        when the trial has run LONG_TRIAL_S since its last one."""
        running = self._running.get(trial_id)
        if running is None:  # (a baseline measurement or a retraining)
            return
        running.done = epoch
        self.emit(
            "epoch",
            trial_id=trial_id,
            epoch=epoch,
            epochs=running.epochs,
            val_score=val_score,
            val_loss=val_loss,
            epoch_time_s=epoch_time_s,
        )
        now = self._clock()
        if self._progress is None and epoch < running.epochs and now - running.last_line >= LONG_TRIAL_S:
            running.last_line = now
            self.note(
                f"trial #{trial_id} ({running.stage}): epoch {epoch}/{running.epochs}, validation {val_score:.4g}, "
                f"{epoch_time_s:.1f} s/epoch; search ETA {human_duration(self.eta_s())}"
            )
        self._update()

    def trial_finished(self, trial: Trial, best: Trial | None) -> None:
        """Advance by one trial, print its line (with the search's ETA) and emit its end."""
        self._running.pop(trial.trial_id, None)
        self._done += 1
        eta = self.eta_s()
        self.note(
            f"trial {self._done}/{self.total} ({trial.stage}) #{trial.trial_id}  {describe_trial(trial)}"
            + (f"  ETA {human_duration(eta)}" if eta is not None and self._done < self.total else "")
        )
        self.emit(
            "trial_ended",
            trial_id=trial.trial_id,
            stage=trial.stage,
            status=trial.status,
            metrics=trial_metrics(trial),
            wall_s=trial.wall_s,
            error=trial.error,
            reason=trial.reason,
            best_trial_id=best.trial_id if best is not None else None,
            done=self._done,
            planned=self.total,
            eta_s=eta,
        )
        best_text = f"best {best.objective:+.4f} (#{best.trial_id})" if best and best.objective is not None else ""
        self._update(advance=1, best=best_text)

    def trial_interrupted(self, trial_id: int, stage: str) -> None:
        """A running trial was stopped by a stop request (it runs again on resume)."""
        self._running.pop(trial_id, None)
        self.emit("trial_ended", trial_id=trial_id, stage=stage, status="interrupted", done=self._done)

    def search_ended(self, *, run_dir: str, state: str, reason: str | None, best: dict[str, Any] | None) -> None:
        """The search (this invocation) ended in `state`, with `best` (best.json's trial, config, metrics)."""
        self.emit(
            "search_ended",
            run_dir=run_dir,
            state=state,
            finished=state == "finished",
            reason=reason,
            trials=self._done,
            best=best,
        )

    def eta_s(self) -> float | None:
        """Seconds left: the trials left (running ones by their epochs left) at this invocation's pace."""
        if self._started_at is None:
            return None
        partial = sum(r.done / r.epochs for r in self._running.values() if r.epochs)
        done = self._done - self._resumed + partial
        return eta_s(done, self.total - self._done - partial, self._clock() - self._started_at)

    def _update(self, **changes: Any) -> None:
        if self._progress is None or self._task is None:
            return
        eta = self.eta_s()
        running = " ".join(f"#{i} epoch {r.done}/{r.epochs}" for i, r in self._running.items())
        try:
            self._progress.update(
                self._task, running=running, eta=f"ETA {human_duration(eta)}" if eta is not None else "", **changes
            )
        except OSError:
            self._progress = None

    def epoch_finished(self, epoch: int, text: str, *, printed: bool = True) -> None:
        """Advance a training's display by one epoch (`dnc train`), and print its line when `printed`."""
        if printed:
            self.note(f"epoch {epoch}/{self.total}  {text}")
        self._update(completed=epoch)
