"""What a report shows, read once from a run: its settings, state, trials, baselines and log, the learning
curves of its best trials, and RUN/final/final.json when `dnc train` wrote it. It only reads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepncheap import search_cost
from deepncheap.artifacts import FINAL_DIR, FINAL_JSON
from deepncheap.errors import OutputError
from deepncheap.objective import performance_floor
from deepncheap.rundir import check_run, holder_pid
from deepncheap.show import describe_state
from deepncheap.store import STAGES, RunStore, Trial, best_of, search_order
from deepncheap.tradeoff import scored

CURVES = 5  # learning curves of this many best trials
SMALL_VALIDATION = 100  # rows under which validation accuracies are coarse


@dataclass(frozen=True)
class RunSnapshot:
    """A run as the report sees it."""

    run_dir: Path
    settings: dict[str, Any]
    state: dict[str, Any]  # as recorded (`RunStore.state`)
    driver_pid: int | None  # another process driving the search now
    trials: list[Trial]
    baselines: dict[str, Any]
    baseline_wall_s: float | None  # time spent measuring the baselines (not a trial)
    log_lines: list[str]
    curves: dict[int, list[float]]  # trial id -> validation score per epoch (accuracy, or MSE in target units)
    final: dict[str, Any] | None  # RUN/final/final.json
    search_cost: dict[str, Any]  # the device-seconds the search spent (`search_cost.summarize`)

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.settings["data"])

    @property
    def classification(self) -> bool:
        return bool(self.data["task"] == "classification")

    @property
    def scored(self) -> list[Trial]:
        """The complete trials with an objective."""
        return scored(self.trials)

    @property
    def best(self) -> Trial:
        best = best_of(self.trials)
        assert best is not None  # (read_run refuses a run without one)
        return best

    @property
    def floor(self) -> float:
        return performance_floor(task=self.data["task"], n_val=int(self.data["n_val"]))

    def score(self, trial: Trial) -> float | None:
        """Validation accuracy (classification) or validation MSE in the targets' units (regression)."""
        return trial.val_accuracy if self.classification else trial.val_loss

    def rows_right(self, trial: Trial) -> str:
        """How many validation rows an accuracy stands for (what makes a small validation set coarse)."""
        if not self.classification or trial.val_accuracy is None:
            return ""
        n_val = int(self.data["n_val"])
        return f" ({round(trial.val_accuracy * n_val):,} of {n_val:,} rows right)"

    def stage_bests(self) -> list[Trial]:
        """The best trial of each stage, in stage order."""
        found = (best_of([t for t in self.trials if t.stage == stage]) for stage in STAGES)
        return [t for t in found if t is not None]

    def describe_state(self) -> str:
        """Where the search stands: running, finished, or stopped and how to continue it."""
        return describe_state(self.state, self.driver_pid, self.run_dir)

    def small_validation(self) -> str | None:
        """A warning when the validation set is too small for accuracies to mean much, else None."""
        n_val = int(self.data["n_val"])
        if n_val >= SMALL_VALIDATION:
            return None
        step = f"one sample is {100 / n_val:.1f} percentage points of accuracy" if self.classification else ""
        return (
            f"the validation set has only {n_val} rows: validation scores are coarse"
            + (f" ({step})" if step else "")
            + " and many trials tie; compare the test metrics of `dnc train` before trusting a ranking"
        )


def read_run(run_dir: str | Path) -> RunSnapshot:
    """The snapshot of `run_dir`; OutputError when it is not a run or has no complete trial yet."""
    run_dir = Path(run_dir)
    check_run(run_dir)
    with RunStore.open(run_dir) as store:
        trials = store.trials()
        settings = store.settings
        if not scored(trials):
            raise OutputError(
                f"{run_dir} has no complete trial yet, so there is nothing to report; "
                f"wait for one (dnc show {run_dir}) or continue the search (dnc resume {run_dir})"
            )
        curves = _curves(store, trials, settings["data"])
        snapshot = RunSnapshot(
            run_dir=run_dir,
            settings=settings,
            state=store.state,
            driver_pid=None if holder_pid(run_dir) == os.getpid() else holder_pid(run_dir),
            trials=trials,
            baselines=store.get("baselines", {}) or {},
            baseline_wall_s=store.get("baseline_wall_s"),
            log_lines=store.log_lines(),
            curves=curves,
            final=_final_record(run_dir),
            search_cost=search_cost.summarize(store),
        )
    return snapshot


def _curves(store: RunStore, trials: list[Trial], data: dict[str, Any]) -> dict[int, list[float]]:
    """The validation curves of the best CURVES trials: stored with the trial, else from its epochs."""
    best = sorted(scored(trials), key=lambda t: (t.objective or 0.0, *search_order(t)))[:CURVES]
    scale = 1.0 if data["task"] == "classification" else float(data.get("target_std") or 1.0) ** 2
    reported = store.epochs([t.trial_id for t in best])
    curves = {}
    for trial in best:
        curve: list[float | None] = list(trial.val_curve)
        curve = curve or [e.val_score for e in reported if e.trial_id == trial.trial_id]
        curves[trial.trial_id] = [float("nan") if v is None else v * scale for v in curve]
    return curves


def _final_record(run_dir: Path) -> dict[str, Any] | None:
    """RUN/final/final.json, or None when `dnc train` has not written it."""
    path = run_dir / FINAL_DIR / FINAL_JSON
    if not path.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise OutputError(f"{path} is not valid JSON ({exc}); write it again with: dnc train {run_dir}") from None
    return record
