"""A search, top to bottom: check the options, load the data, create the run, measure the baselines, then
run the method's stages — each asks the space (and the GP) for configs, trains them as trials, scores and
records them — and write the run's outputs.

Methods: `dnc` (Deep-n-Cheap's three stages: BO over the core architecture, grid sub-stages over the
advanced architecture, BO over the training hyperparameters) and the baselines `random` / `sobol` (one
`joint` stage over every hyperparameter at once).

Resuming replays the method from the start: every proposal depends only on the seed and the trials before
it, so a trial the store already holds (same stage and index) is taken from the store instead of trained,
and the search goes on exactly where it stopped.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepncheap import artifacts, bo, rundir
from deepncheap.artifacts import SearchResult, load_run
from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import DataError, OutputError, SearchFailedError, SearchInterrupted, SettingsError
from deepncheap.models import architecture_key, build_model
from deepncheap.objective import Baselines, complexity, objective, performance_error
from deepncheap.progress import SearchProgress
from deepncheap.settings import SearchSettings, parse_duration
from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS
from deepncheap.space import GRID_SUB_STAGES, SearchSpace, derive_seed
from deepncheap.store import RunStore, Trial
from deepncheap.train import STOP_REQUESTED, DeviceData
from deepncheap.trial import TrialMeasurements, resolve_device, run_trial, trial_seed

__all__ = ["SearchResult", "load_run", "resume", "search"]

BASELINE_EPOCHS = 3  # one warm-up epoch, then two timed


def search(
    *,
    data: Any = "digits",
    out: str | Path | None = None,
    overwrite: bool = False,
    time_budget: str | float | None = None,
    verbose: bool = True,
    **options: Any,
) -> SearchResult:
    """Search configs on `data`, minimizing log10(f_p + wc * f_c); `options` are `SearchSettings` fields
    (network, wc, penalty, method, max_trials, epochs, seed, ...). Writes the run directory `out`
    (`overwrite` replaces a run already there). `time_budget` (seconds, or '30m', '2h') stops the search
    after the trial in progress once spent; a stopped search is continued by `resume`."""
    settings = SearchSettings.from_options(**options)
    time_budget_s = parse_duration(time_budget)
    device = _check_device(settings.device)
    space = SearchSpace.create(settings.network, settings.space)
    dataset = load_dataset(data, **_data_options(settings))
    default = rundir.default_run_name(dataset.name, settings.network)
    with rundir.new_run(out, default, overwrite=overwrite) as run_dir:
        torch.set_num_threads(settings.threads or torch.get_num_threads())
        stored = settings.to_dict() | {
            "data": dataset.summary(),
            "data_source": _source_name(data),
            "task": dataset.task,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "space": space.to_dict(),
        }
        with RunStore.create(run_dir, stored) as store:
            return _drive(OpenRun(store, run_dir, settings, space, dataset, device), time_budget_s, verbose)


def resume(
    run_dir: str | Path,
    *,
    data: Any = None,
    max_trials: int | None = None,
    time_budget: str | float | None = None,
    verbose: bool = True,
) -> SearchResult:
    """Continue the search stored in `run_dir` with its settings and seed, training no finished trial again;
    trials that were running when it stopped are run again. `data` is needed only when the search ran on
    in-memory arrays (or its file moved); `max_trials` replaces the stored cap; `time_budget` as in `search`.
    A finished search is returned as it is."""
    time_budget_s = parse_duration(time_budget)
    with rundir.existing_run(run_dir) as path, RunStore.open(path, readonly=False) as store:
        stored = store.settings
        if store.state["state"] == "finished" and max_trials is None:
            if verbose:
                SearchProgress(0).note(f"the search in {path} has already finished; nothing to resume")
            return load_run(path)
        changes = {} if max_trials is None else {"max_trials": max_trials}
        settings = SearchSettings.from_stored(stored, **changes)
        if changes:
            store.put("settings", stored | changes)
        space = SearchSpace.from_dict(stored["space"])
        device = _check_device(stored["device"])
        dataset = load_dataset(_resume_source(stored, data), **_data_options(settings))
        _check_same_data(dataset, stored["data"], path)
        torch.set_num_threads(int(stored["threads"]))
        store.mark_interrupted()
        return _drive(OpenRun(store, path, settings, space, dataset, device), time_budget_s, verbose)


@dataclass(frozen=True)
class OpenRun:
    """A run being driven: its open store and directory, and what the search works on."""

    store: RunStore
    run_dir: Path
    settings: SearchSettings
    space: SearchSpace
    dataset: Dataset
    device: torch.device


def _drive(run: OpenRun, time_budget_s: float | None, verbose: bool) -> SearchResult:
    """Run (or go on with) the method on an open store, record how it ended and write the outputs."""
    store, run_dir, settings, space = run.store, run.run_dir, run.settings, run.space
    started = time.monotonic()
    STOP_REQUESTED.clear()
    store.set_state("running")
    with SearchProgress(planned_trials(space, settings), enabled=verbose) as progress:
        progress.note(f"run directory: {run_dir}")
        runner: TrialRunner | None = None
        try:
            runner = _trial_runner(run, progress)
            if time_budget_s is not None:
                runner.deadline = started + time_budget_s
            if settings.method == "dnc":
                run_dnc(runner, space)
            else:
                run_joint(runner, space)
            state, reason = "finished", None
        except BudgetReached as stop:
            state, reason = "stopped", str(stop)
        except KeyboardInterrupt:
            if runner is not None:
                _write_outputs(runner, retrain_weights=False)
            store.set_state("interrupted", "Ctrl-C or SIGTERM")
            raise SearchInterrupted(run_dir) from None
        except SearchFailedError as exc:
            artifacts.write_trials_csv(store, run_dir)
            store.set_state("failed", str(exc))
            raise
        assert runner is not None
        if runner.best is None:
            store.set_state("failed", "every trial failed")
            raise SearchFailedError(
                f"every trial failed (see 'dnc show {run_dir}'); check the errors there, e.g. lower the lr range"
            )
        _write_outputs(runner, retrain_weights=True)
        store.set_state(state, reason)
        if state == "stopped":
            progress.note(f"stopped by {reason} after {runner.count} trials; continue with: dnc resume {run_dir}")
    return load_run(run_dir)


def _trial_runner(run: OpenRun, progress: SearchProgress) -> TrialRunner:
    """The runner of a search: data on the device, the baselines (stored, or measured now), and the trials
    a previous driver finished."""
    store, settings, dataset = run.store, run.settings, run.dataset
    data = DeviceData.from_dataset(dataset, run.device)
    baselines = store.get("baselines")
    if baselines is None:
        if settings.penalty == "time":
            progress.note(f"measuring the time baseline ({BASELINE_EPOCHS} epochs of the space's reference config)")
        start = time.perf_counter()
        measured = measure_baselines(run.space, dataset, data, penalty=settings.penalty, seed=settings.seed)
        store.put("baseline_wall_s", time.perf_counter() - start)  # kept apart from the search's own overhead
        store.put("baselines", measured.to_dict())
        progress.note(f"baselines: {measured.describe()}")
        baselines = measured.to_dict()
    finished = {(t.stage, t.stage_index): t for t in store.trials() if t.status in ("complete", "failed")}
    if finished:
        rerun = len({(t.stage, t.stage_index) for t in store.trials(status="interrupted")} - set(finished))
        progress.note(
            f"resuming: {len(finished)} finished trials taken from the store, none trained again"
            + (f"; {rerun} interrupted trial(s) run again" if rerun else "")
        )
    return TrialRunner(
        store=store,
        data=data,
        dataset=dataset,
        settings=settings,
        scorer=Scorer(
            dataset=dataset, penalty=settings.penalty, wc=float(settings.wc), baselines=Baselines.from_dict(baselines)
        ),
        run_dir=run.run_dir,
        progress=progress,
        finished=finished,
    )


def _write_outputs(runner: TrialRunner, *, retrain_weights: bool) -> None:
    """trials.csv, and best.json with the best model's weights. Weights that do not belong to the best trial
    (the driver died between recording it and saving them) are made again by retraining it with its seed;
    without `retrain_weights` best.json is then left for a later resume to write."""
    store, run_dir, best = runner.store, runner.run_dir, runner.best
    artifacts.write_trials_csv(store, run_dir)
    if best is None:
        return
    if artifacts.weights_trial_id(run_dir) != best.trial_id:
        if not retrain_weights:
            return
        runner.progress.note(f"retraining trial #{best.trial_id} for its weights (they were not saved)")
        artifacts.save_weights(
            runner.train(best.config, stage=best.stage, index=best.stage_index).model, run_dir, trial_id=best.trial_id
        )
    artifacts.write_best_json(store, best, run_dir)


def _data_options(settings: SearchSettings) -> dict[str, Any]:
    return {
        "network": settings.network,
        "task": settings.task,
        "val_split": settings.val_split,
        "image_shape": settings.image_shape,
        "target": settings.target,
        "data_dir": settings.data_dir,
    }


def _source_name(data: Any) -> str:
    """How the run records its data source: a built-in name, an absolute file path, or 'arrays'."""
    if not isinstance(data, (str, Path)):
        return "arrays"
    if str(data) in BUILTIN_DATASETS or str(data) in FILE_DATASETS:
        return str(data)
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else str(data)


def _resume_source(stored: dict[str, Any], data: Any) -> Any:
    if data is not None:
        return data
    if stored["data_source"] == "arrays":
        raise DataError(
            "this search ran on in-memory arrays; pass the same arrays again: deepncheap.resume(run_dir, data=(X, y))"
        )
    return stored["data_source"]


def _check_same_data(dataset: Dataset, stored: dict[str, Any], run_dir: Path) -> None:
    now = dataset.summary()
    differ = sorted(k for k in stored if k != "name" and now.get(k) != stored[k])
    if differ:
        raise DataError(
            f"the data differ from those the search in {run_dir} started with ({', '.join(differ)}); "
            "resume with the same data (e.g. --data FILE if the file moved)"
        )


# --- the methods ---------------------------------------------------------------------------------------


def run_joint(runner: TrialRunner, space: SearchSpace) -> None:
    """Random or Sobol configs of the joint space of every hyperparameter."""
    settings = runner.settings
    assert settings.trial_budget is not None
    configs = space.sample(settings.trial_budget, method=settings.method, seed=settings.seed)
    for index, config in enumerate(configs):
        runner.run(config, stage="joint", index=index)


def run_dnc(runner: TrialRunner, space: SearchSpace) -> None:
    """Deep-n-Cheap: core architecture (BO) -> advanced architecture (grids) -> training (BO). In the default
    mode the architecture stages train with lr 1e-2 and batch 64 (`space.architecture_stage_training`); in the
    reference mode with the reference's defaults (lr 1e-3, batch 256)."""
    reference = runner.settings.bo_mode == "reference"
    core_best = run_bo_stage(runner, space, "core", base=None if reference else space.architecture_stage_training())
    advanced_best = run_grid_stage(runner, space, core_best)
    settings = runner.settings
    runner.progress.set_total(runner.count + settings.prior_points + settings.bo_steps)
    run_bo_stage(runner, space, "training", base=advanced_best.config)


def run_bo_stage(runner: TrialRunner, space: SearchSpace, stage: str, *, base: dict[str, Any] | None) -> Trial:
    """Sobol prior points, then BO steps each training the candidate of highest expected improvement;
    returns the stage's best trial. The GP sees a failed trial at the stage's worst objective so far."""
    settings = runner.settings
    prior = space.sample(
        settings.prior_points, method="sobol", seed=derive_seed(settings.seed, stage, "prior"), stage=stage, base=base
    )
    trials = [runner.run(config, stage=stage, index=index) for index, config in enumerate(prior)]
    if not _complete(trials):
        raise SearchFailedError(
            f"every prior point of the {stage} stage failed (see 'dnc show {runner.run_dir}'); "
            "check the errors there, e.g. narrow the lr range"
        )
    prior_mean = float(np.mean([t.objective for t in _complete(trials)]))
    terms = space.kernel(stage, reference=settings.bo_mode == "reference")
    for step in range(settings.bo_steps):
        candidates = space.sample(
            settings.candidates, method="random", seed=derive_seed(settings.seed, stage, step), stage=stage, base=base
        )
        choice, _ = bo.propose(
            space.encode(stage, [t.config for t in trials]),
            observed_objectives(trials),
            space.encode(stage, candidates),
            terms,
            mode=settings.bo_mode,
            prior_mean=prior_mean,
        )
        trials.append(runner.run(candidates[choice], stage=stage, index=len(prior) + step))
    return _stage_best(trials)


def observed_objectives(trials: list[Trial]) -> np.ndarray:
    """The objectives the GP sees: a failed trial counts as the worst complete trial of the list."""
    worst = max(t.objective for t in _complete(trials))  # type: ignore[type-var]
    return np.array([t.objective if t.status == "complete" else worst for t in trials], dtype=float)


def run_grid_stage(runner: TrialRunner, space: SearchSpace, incumbent: Trial) -> Trial:
    """The advanced-architecture sub-stages one after another, each training its grid on top of the best
    config so far and keeping the best; configs that train the same network as one already seen are skipped."""
    input_shape = runner.dataset.input_shape
    index = 0
    for sub_stage in GRID_SUB_STAGES[space.network]:
        runner.progress.note(f"advanced stage: {sub_stage}")
        seen = {architecture_key(incumbent.config, input_shape)}
        trials = [incumbent]
        for config in space.grid(sub_stage, incumbent.config):
            key = architecture_key(config, input_shape)
            if key not in seen:
                seen.add(key)
                trials.append(runner.run(config, stage="advanced", index=index))
                index += 1
        incumbent = _stage_best(trials)
    return incumbent


def planned_trials(space: SearchSpace, settings: SearchSettings) -> int:
    """The number of trainings the search plans (an upper bound for `dnc`, whose grids skip duplicates)."""
    if settings.method != "dnc":
        assert settings.trial_budget is not None
        return settings.trial_budget
    anything: dict[str, Any] = space.largest_config()
    grids = sum(len(space.grid(sub_stage, anything)) - 1 for sub_stage in GRID_SUB_STAGES[space.network])
    total = 2 * (settings.prior_points + settings.bo_steps) + grids
    return min(total, settings.max_trials) if settings.max_trials else total


def _complete(trials: list[Trial]) -> list[Trial]:
    return [t for t in trials if t.status == "complete" and t.objective is not None]


def _stage_best(trials: list[Trial]) -> Trial:
    return min(_complete(trials), key=lambda t: (t.objective, t.trial_id))


# --- running one trial ----------------------------------------------------------------------------------


class BudgetReached(Exception):
    """`--max-trials` trainings have run, or `--time-budget` is spent; the message names which."""


@dataclass
class TrialRunner:
    """Runs trials one at a time between a `running` row and their completion, keeps the best trial (and
    its weights on disk), enforces the budgets and reports progress. A trial that `finished` already holds
    (a resumed search) is taken from there and not trained again."""

    store: RunStore
    data: DeviceData
    dataset: Dataset
    settings: SearchSettings
    scorer: Scorer
    run_dir: Path
    progress: SearchProgress
    finished: dict[tuple[str, int], Trial] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() after which no trial starts once one is complete
    best: Trial | None = None
    count: int = 0

    def run(self, config: dict[str, Any], *, stage: str, index: int) -> Trial:
        """Trial `index` of `stage` with `config`: from the store if finished before, else trained and
        recorded (a trial that raises is recorded `failed`)."""
        budget = self.settings.trial_budget
        if budget is not None and self.count >= budget:
            raise BudgetReached(f"--max-trials {budget}")
        stored = self.finished.get((stage, index))
        if stored is not None:
            if json.loads(json.dumps(config)) != stored.config:
                raise OutputError(
                    f"trial #{stored.trial_id} in {self.run_dir} ({stage} #{index}) has another config than this "
                    "search proposes now (was the run made by another version of deepncheap?); start a new search"
                )
            trial = stored
        else:
            if self.deadline is not None and self.best is not None and time.monotonic() >= self.deadline:
                raise BudgetReached("--time-budget")  # (only once there is a result to return)
            if STOP_REQUESTED.is_set():
                raise KeyboardInterrupt
            trial = self._record(config, stage=stage, index=index)
        self.count += 1
        if trial.status == "complete" and (self.best is None or trial.objective < self.best.objective):  # type: ignore[operator]
            self.best = trial
        self.progress.trial_finished(trial, self.best, replayed=stored is not None)
        return trial

    def train(self, config: dict[str, Any], *, stage: str, index: int) -> TrialMeasurements:
        """Build and train `config` with the seed of trial `index` of `stage`."""
        return run_trial(
            config,
            self.data,
            input_shape=self.dataset.input_shape,
            num_outputs=self.dataset.num_outputs,
            epochs=self.settings.epochs,
            seed=trial_seed(self.settings.seed, stage, index),
        )

    def _record(self, config: dict[str, Any], *, stage: str, index: int) -> Trial:
        store = self.store
        trial_id = store.start_trial(stage=stage, stage_index=index, config=config)
        start = time.perf_counter()
        try:
            measured = self.train(config, stage=stage, index=index)
            metrics = self.scorer.score(measured)
        except KeyboardInterrupt:
            store.finish_trial(trial_id, status="interrupted", wall_s=time.perf_counter() - start)
            raise
        except Exception as exc:  # a failing trial must not stop the search
            store.finish_trial(trial_id, status="failed", wall_s=time.perf_counter() - start, error=failure_text(exc))
            return store.trial(trial_id)
        store.finish_trial(
            trial_id,
            status="complete",
            metrics=metrics,
            val_curve=measured.training.val_curve,
            wall_s=time.perf_counter() - start,
        )
        if self.best is None or metrics["objective"] < self.best.objective:
            artifacts.save_weights(measured.model, self.run_dir, trial_id=trial_id)
        return store.trial(trial_id)


def failure_text(exc: Exception) -> str:
    """The error of a failed trial, one line; memory exhaustion is named as such (and CUDA's cache freed)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        text = f"out of memory ({text}); a smaller batch size or network fits"
    return " ".join(text.splitlines())


@dataclass(frozen=True)
class Scorer:
    """Turns a trial's measurements into f_p, f_c and the objective."""

    dataset: Dataset
    penalty: str
    wc: float
    baselines: Baselines

    def score(self, measured: TrialMeasurements) -> dict[str, Any]:
        training = measured.training
        f_p = performance_error(
            task=self.dataset.task,
            n_val=len(self.dataset.y_val),
            val_accuracy=training.val_accuracy,
            val_mse=training.val_loss,
            val_target_var=float(np.var(self.dataset.y_val)) or 1.0,
        )
        f_c = complexity(
            penalty=self.penalty,
            n_params=measured.n_params,
            time_per_epoch_s=training.time_per_epoch_s,
            baselines=self.baselines,
        )
        val_loss = training.val_loss
        if self.dataset.task == "regression":  # report MSE in the targets' own units
            val_loss *= self.dataset.target_std**2
        return {
            "objective": objective(f_p, f_c, self.wc),
            "f_p": f_p,
            "f_c": f_c,
            "val_accuracy": training.val_accuracy,
            "val_loss": val_loss,
            "n_params": measured.n_params,
            "flops": measured.flops,
            "time_per_epoch_s": training.time_per_epoch_s,
            "epochs": len(training.val_curve),
        }


def measure_baselines(space: SearchSpace, dataset: Dataset, data: DeviceData, *, penalty: str, seed: int) -> Baselines:
    """Parameter count of the space's largest network (built on the meta device, no memory used) and, for
    the time penalty, the measured time per epoch of the space's reference config."""
    with torch.device("meta"):
        largest = build_model(space.largest_config(), dataset.input_shape, dataset.num_outputs)
    n_params = sum(p.numel() for p in largest.parameters())
    time_per_epoch = None
    if penalty == "time":
        measured = run_trial(
            space.time_reference_config(),
            data,
            input_shape=dataset.input_shape,
            num_outputs=dataset.num_outputs,
            epochs=BASELINE_EPOCHS,
            seed=trial_seed(seed, "baseline", 0),
        )
        time_per_epoch = measured.training.time_per_epoch_s
    return Baselines(n_params=n_params, time_per_epoch_s=time_per_epoch)


def _check_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return resolve_device(device)
