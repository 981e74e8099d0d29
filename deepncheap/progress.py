"""Progress display of a running search: a live bar (trial k of n, best so far, ETA) on a terminal, and
one line per finished trial everywhere (stderr)."""

from __future__ import annotations

import contextlib
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepncheap.store import Trial


def human_count(value: float | None) -> str:
    """12345 -> '12.3k', 2.5e6 -> '2.50M'."""
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def describe_trial(trial: Trial) -> str:
    """One line: objective, accuracy or loss, parameters, time per epoch; or the error of a failed trial."""
    if trial.status != "complete":
        return f"{trial.status}: {trial.error or ''}".rstrip(": ")
    score = f"acc {trial.val_accuracy:.4f}" if trial.val_accuracy is not None else f"loss {trial.val_loss:.4g}"
    return (
        f"objective {trial.objective:+.4f}  {score}  params {human_count(trial.n_params)}  "
        f"{trial.time_per_epoch_s:.3f} s/epoch"
    )


class _Console(Console):
    """A rich console that goes quiet when its output is closed (`dnc search ... |& head`), where rich's
    own would exit the process."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


class SearchProgress:
    """Context manager shown while a search runs; silent when `enabled` is False."""

    def __init__(self, total: int, *, enabled: bool = True, console: Console | None = None, label: str = "search"):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.console = console or _Console(stderr=True, highlight=False)
        self._done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> SearchProgress:
        if self.enabled and self.console.is_terminal:
            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[best]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, best="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        if self._progress is not None:
            with contextlib.suppress(OSError):
                self._progress.stop()

    def set_total(self, total: int) -> None:
        """Correct the planned number of trials once it is known better."""
        self.total = total
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def note(self, text: str) -> None:
        """A line of information above the bar. A closed output (`dnc search ... |& head`) never stops the
        search: the display just goes quiet."""
        if self.enabled:
            try:
                self.console.print(text, markup=False, soft_wrap=True)
            except OSError:  # BrokenPipeError and the like
                self.enabled = False

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
        self._done = len(finished)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self._done)

    def trial_finished(self, trial: Trial, best: Trial | None) -> None:
        """Advance by one trial and print its line."""
        self._done += 1
        self.note(f"trial {self._done}/{self.total} ({trial.stage}) #{trial.trial_id}  {describe_trial(trial)}")
        if self._progress is not None and self._task is not None:
            best_text = f"best {best.objective:+.4f} (#{best.trial_id})" if best and best.objective is not None else ""
            try:
                self._progress.update(self._task, advance=1, best=best_text)
            except OSError:
                self._progress = None

    def epoch_finished(self, epoch: int, text: str, *, printed: bool = True) -> None:
        """Advance a training's display by one epoch (`dnc train`), and print its line when `printed`."""
        if printed:
            self.note(f"epoch {epoch}/{self.total}  {text}")
        if self._progress is not None and self._task is not None:
            try:
                self._progress.update(self._task, completed=epoch)
            except OSError:
                self._progress = None
