"""The history of a run: its trials as read from the store, seen the way a method sees them.

A trial is identified by its stage and its index within the stage; a store may hold several rows of one
trial (it was interrupted, then run again). The history keeps one attempt per trial: the finished one
(`complete`, `failed`, `pruned`), else the running one, else the interrupted one. Trials not finished are
*pending*: their configs are known, their results not yet. Methods read the history and nothing else, so a
resumed search is the store read again.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepncheap.store import Trial, best_of

FINISHED = ("complete", "failed", "pruned")
_PREFERENCE = {"complete": 0, "failed": 0, "pruned": 0, "running": 1, "interrupted": 2}


@dataclass(frozen=True)
class History:
    """The trials of a run, one attempt per (stage, index), in (stage, index) order per stage."""

    trials: tuple[Trial, ...]

    @classmethod
    def of(cls, rows: list[Trial]) -> History:
        """The history of the store's rows (`RunStore.trials()`)."""
        chosen: dict[tuple[str, int], Trial] = {}
        for row in rows:
            key = (row.stage, row.stage_index)
            if key not in chosen or _PREFERENCE[row.status] < _PREFERENCE[chosen[key].status]:
                chosen[key] = row
        return cls(tuple(sorted(chosen.values(), key=lambda t: (t.stage, t.stage_index))))

    def stage(self, stage: str) -> list[Trial]:
        """The stage's trials by index (indices are 0, 1, ... with no gaps: every started trial has a row)."""
        return [t for t in self.trials if t.stage == stage]

    def finished(self, stage: str) -> list[Trial]:
        return [t for t in self.stage(stage) if t.status in FINISHED]

    def pending(self, stage: str) -> list[Trial]:
        """Trials started and not finished: running, or interrupted and to be run again."""
        return [t for t in self.stage(stage) if t.status not in FINISHED]

    def interrupted(self) -> list[Trial]:
        """Trials whose last attempt was interrupted (the runner runs them again before anything new)."""
        return [t for t in self.trials if t.status == "interrupted"]

    @property
    def trainings(self) -> int:
        """Trainings started (each trial once, however often it was run): what `--max-trials` counts."""
        return len(self.trials)

    def best(self, stage: str | None = None) -> Trial | None:
        """The best complete trial (of `stage`), by `store.best_of`'s rule."""
        return best_of(list(self.trials) if stage is None else self.stage(stage))


def every_trial_failed(what: str, trials: list[Trial]) -> str:
    """The error of a stage with no complete trial: the user's configs, or a bug of ours (internal errors)."""
    internal = next((t.error for t in trials if (t.error or "").startswith("internal error")), None)
    if internal is not None:
        return (
            f"{what} failed with an internal error of deepncheap ({internal}); "
            "rerun with --debug for the traceback and report it"
        )
    return f"{what} failed; check the errors in 'dnc show' (e.g. narrow the lr range)"
