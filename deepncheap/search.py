"""A search, top to bottom: check the options, load the data, create the run, measure the baselines, then
run the method's stages — each asks the space (and the GP) for configs, trains them as trials, scores and
records them — and write the run's outputs.

Methods: `dnc` (Deep-n-Cheap's three stages: BO over the core architecture, grid sub-stages over the
advanced architecture, BO over the training hyperparameters) and the baselines `random` / `sobol` (one
`joint` stage over every hyperparameter at once).

Trials run on an executor (`executors.py`: in this process, in local worker processes, or on Ray); with
k workers each BO step proposes for a free worker while the others' trials are pending (kriging believer,
`bo.propose(pending=...)`), and grid configs run side by side. With one worker the search is exactly the
sequential Deep-n-Cheap search.

Resuming replays the method from the start: every proposal depends only on the seed and the trials before
it, so a trial the store already holds (same stage and index) is taken from the store instead of trained,
and the search goes on exactly where it stopped. (With several workers the proposals also depend on which
trials had ended when they were made, so there a stored trial's config is taken as it is.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepncheap import artifacts, bo, rundir
from deepncheap.artifacts import SearchResult, load_run
from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import DataError, OutputError, SearchFailedError, SearchInterrupted, SettingsError
from deepncheap.executors import Executor, create_executor, opened
from deepncheap.models import architecture_key, build_model
from deepncheap.objective import Baselines, complexity, objective, performance_error
from deepncheap.progress import SearchProgress
from deepncheap.settings import SearchSettings, parse_duration
from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS
from deepncheap.space import GRID_SUB_STAGES, SearchSpace, derive_seed
from deepncheap.store import RunStore, Trial
from deepncheap.train import STOP_REQUESTED
from deepncheap.trial import TrialMeasurements, TrialOutcome, TrialTask, failure_text, resolve_device, trial_seed

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
    with opened(_executor(settings, device)) as executor:  # (its workers start while the data load)
        dataset = load_dataset(data, **_data_options(settings))
        return _new_run(dataset, data, settings, space, device, executor, out, overwrite, time_budget_s, verbose)


def _new_run(
    dataset: Dataset,
    data: Any,
    settings: SearchSettings,
    space: SearchSpace,
    device: torch.device,
    executor: Executor,
    out: str | Path | None,
    overwrite: bool,
    time_budget_s: float | None,
    verbose: bool,
) -> SearchResult:
    """Create the run directory and its store, then drive the search."""
    default = rundir.default_run_name(dataset.name, settings.network)
    with rundir.new_run(out, default, overwrite=overwrite) as run_dir:
        torch.set_num_threads(settings.threads or torch.get_num_threads())
        stored = settings.to_dict() | {
            "data": dataset.summary(),
            "data_source": _source_name(data),
            "task": dataset.task,
            "device": str(device),
            "threads": executor.threads,  # each trial's torch threads: replayed as `--threads` on resume
            "space": space.to_dict(),
        }
        with RunStore.create(run_dir, stored) as store:
            return _drive(OpenRun(store, run_dir, settings, space, dataset, executor), time_budget_s, verbose)


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
        with opened(_executor(settings, device)) as executor:
            dataset = load_dataset(_resume_source(stored, data), **_data_options(settings))
            _check_same_data(dataset, stored["data"], path)
            torch.set_num_threads(int(stored["threads"]))
            store.mark_interrupted()
            return _drive(OpenRun(store, path, settings, space, dataset, executor), time_budget_s, verbose)


def _executor(settings: SearchSettings, device: torch.device) -> Executor:
    return create_executor(
        settings.executor,
        device,
        workers=settings.workers,
        threads=settings.threads,
        cpus_per_trial=settings.cpus_per_trial,
        gpus_per_trial=settings.gpus_per_trial,
        ray_address=settings.ray_address,
    )


@dataclass(frozen=True)
class OpenRun:
    """A run being driven: its open store and directory, and what the search works on."""

    store: RunStore
    run_dir: Path
    settings: SearchSettings
    space: SearchSpace
    dataset: Dataset
    executor: Executor  # (closed by the caller)


def _drive(run: OpenRun, time_budget_s: float | None, verbose: bool) -> SearchResult:
    """Run (or go on with) the method on an open store, record how it ended and write the outputs."""
    store, run_dir, settings, space = run.store, run.run_dir, run.settings, run.space
    started = time.monotonic()
    STOP_REQUESTED.clear()
    store.set_state("running")
    with SearchProgress(planned_trials(space, settings), enabled=verbose) as progress:
        progress.note(f"run directory: {run_dir}")
        runner: TrialRunner | None = None
        executor = run.executor
        try:
            executor.load(run.dataset)
            if executor.slots > 1:
                progress.note(
                    f"{executor.slots} trials at once ({settings.executor}, {executor.threads} thread(s) each)"
                )
            runner = _trial_runner(run, executor, progress)
            if time_budget_s is not None:
                runner.deadline = started + time_budget_s
            if settings.method == "dnc":
                run_dnc(runner, space)
            else:
                run_joint(runner, space)
            state, reason = "finished", None
        except BudgetReached as stop:
            assert runner is not None
            runner.finish_running()
            state, reason = "stopped", str(stop)
        except KeyboardInterrupt:
            if runner is not None:
                runner.abandon_running()
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


def _trial_runner(run: OpenRun, executor: Executor, progress: SearchProgress) -> TrialRunner:
    """The runner of a search: its executor, the baselines (stored, or measured now on that executor), and
    the trials a previous driver started."""
    store, settings, dataset = run.store, run.settings, run.dataset
    baselines = store.get("baselines")
    if baselines is None:
        if settings.penalty == "time":
            progress.note(f"measuring the time baseline ({BASELINE_EPOCHS} epochs of the space's reference config)")
        start = time.perf_counter()
        measured = measure_baselines(run.space, dataset, executor, penalty=settings.penalty, seed=settings.seed)
        store.put("baseline_wall_s", time.perf_counter() - start)  # kept apart from the search's own overhead
        store.put("baselines", measured.to_dict())
        progress.note(f"baselines: {measured.describe()}")
        baselines = measured.to_dict()
    stored = store.trials()
    finished = {(t.stage, t.stage_index): t for t in stored if t.status in ("complete", "failed")}
    started = {(t.stage, t.stage_index): t.config for t in stored}
    if finished:
        rerun = len({(t.stage, t.stage_index) for t in store.trials(status="interrupted")} - set(finished))
        progress.note(
            f"resuming: {len(finished)} finished trials taken from the store, none trained again"
            + (f"; {rerun} interrupted trial(s) run again" if rerun else "")
        )
    return TrialRunner(
        store=store,
        executor=executor,
        dataset=dataset,
        settings=settings,
        scorer=Scorer(
            dataset=dataset, penalty=settings.penalty, wc=float(settings.wc), baselines=Baselines.from_dict(baselines)
        ),
        run_dir=run.run_dir,
        progress=progress,
        finished=finished,
        started=started,
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
        measured = runner.train(best.config, stage=best.stage, index=best.stage_index)
        artifacts.save_weights(measured.model, run_dir, trial_id=best.trial_id)
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
    runner.run_all([(config, "joint", index) for index, config in enumerate(configs)])


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
    returns the stage's best trial. The GP sees a failed trial at the stage's worst objective so far.

    With several workers a step proposes for whichever worker is free, with the running trials as pending
    points (so it need not wait for the last prior points, only for one complete trial); with one worker
    every proposal sees all the trials before it, as in the sequential search."""
    settings = runner.settings
    prior = space.sample(
        settings.prior_points, method="sobol", seed=derive_seed(settings.seed, stage, "prior"), stage=stage, base=base
    )
    terms = space.kernel(stage, reference=settings.bo_mode == "reference")
    trials: list[Trial] = []
    pending: dict[int, dict[str, Any]] = {}
    for index in range(len(prior) + settings.bo_steps):
        while pending and (not runner.free_slots() or (index >= len(prior) and not _complete(trials))):
            trials.append(runner.wait())
            pending.pop(trials[-1].stage_index)
        if index < len(prior):
            config = prior[index]
        else:
            _check_prior(runner, stage, trials)
            config = runner.started_config(stage, index) or _propose(
                runner, space, stage, index - len(prior), base=base, trials=trials, pending=pending, terms=terms
            )
        runner.start(config, stage=stage, index=index)
        pending[index] = config
    trials += runner.wait_all()
    _check_prior(runner, stage, trials)
    return _stage_best(trials)


def _propose(
    runner: TrialRunner,
    space: SearchSpace,
    stage: str,
    step: int,
    *,
    base: dict[str, Any] | None,
    trials: list[Trial],
    pending: dict[int, dict[str, Any]],
    terms: list[tuple[float, bo.Term]],
) -> dict[str, Any]:
    """The candidate of highest EI at BO step `step` of `stage`, given the trials that ended and the
    configs still `pending` (running)."""
    settings = runner.settings
    candidates = space.sample(
        settings.candidates, method="random", seed=derive_seed(settings.seed, stage, step), stage=stage, base=base
    )
    prior_points = [t for t in _complete(trials) if t.stage_index < settings.prior_points]
    choice, _ = bo.propose(
        space.encode(stage, [t.config for t in trials]),
        observed_objectives(trials),
        space.encode(stage, candidates),
        terms,
        mode=settings.bo_mode,
        prior_mean=float(np.mean([t.objective for t in prior_points])) if prior_points else None,
        pending=space.encode(stage, list(pending.values())) if pending else None,
    )
    return candidates[choice]


def _check_prior(runner: TrialRunner, stage: str, trials: list[Trial]) -> None:
    if not _complete(trials):
        raise SearchFailedError(
            f"every prior point of the {stage} stage failed (see 'dnc show {runner.run_dir}'); "
            "check the errors there, e.g. narrow the lr range"
        )


def observed_objectives(trials: list[Trial]) -> np.ndarray:
    """The objectives the GP sees: a failed trial counts as the worst complete trial of the list."""
    worst = max(t.objective for t in _complete(trials))  # type: ignore[type-var]
    return np.array([t.objective if t.status == "complete" else worst for t in trials], dtype=float)


def run_grid_stage(runner: TrialRunner, space: SearchSpace, incumbent: Trial) -> Trial:
    """The advanced-architecture sub-stages one after another, each training its grid (side by side with
    several workers) on top of the best config so far and keeping the best; configs that train the same
    network as one already seen are skipped."""
    input_shape = runner.dataset.input_shape
    index = 0
    for sub_stage in GRID_SUB_STAGES[space.network]:
        runner.progress.note(f"advanced stage: {sub_stage}")
        seen = {architecture_key(incumbent.config, input_shape)}
        batch = []
        for config in space.grid(sub_stage, incumbent.config):
            key = architecture_key(config, input_shape)
            if key not in seen:
                seen.add(key)
                batch.append((config, "advanced", index))
                index += 1
        incumbent = _stage_best([incumbent, *runner.run_all(batch)])
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


# --- running trials --------------------------------------------------------------------------------------


class BudgetReached(Exception):
    """`--max-trials` trainings have run, or `--time-budget` is spent; the message names which."""


@dataclass
class _Running:
    """A trial handed to the executor: what it is, when it started, how often its worker died under it."""

    task: TrialTask
    started: float
    losses: int = 0


@dataclass
class TrialRunner:
    """Starts trials on the executor (between a `running` row and their completion) and takes their
    outcomes as they end, in any order; keeps the best trial (and its weights on disk), enforces the
    budgets and reports progress. A trial that `finished` already holds (a resumed search) is taken from
    there and not trained again. A trial whose worker died is run again once, then recorded `failed`."""

    store: RunStore
    executor: Executor
    dataset: Dataset
    settings: SearchSettings
    scorer: Scorer
    run_dir: Path
    progress: SearchProgress
    finished: dict[tuple[str, int], Trial] = field(default_factory=dict)
    started: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # configs of stored trials
    deadline: float | None = None  # time.monotonic() after which no trial starts once one is complete
    best: Trial | None = None
    count: int = 0
    running: dict[int, _Running] = field(default_factory=dict)
    replayed: list[Trial] = field(default_factory=list)  # taken from the store, not yet handed out by wait()

    def free_slots(self) -> int:
        return self.executor.slots - len(self.running) - len(self.replayed)

    def started_config(self, stage: str, index: int) -> dict[str, Any] | None:
        """With several workers, the config a previous driver started as trial `index` of `stage` (it is
        taken again: proposals made beside running trials cannot be replayed). None with one worker, whose
        proposals replay exactly (and are checked against the store)."""
        return self.started.get((stage, index)) if self.executor.slots > 1 else None

    def run_all(self, items: list[tuple[dict[str, Any], str, int]]) -> list[Trial]:
        """The (config, stage, index) trials, as many at once as the executor runs; in the items' order."""
        trials = []
        for config, stage, index in items:
            while not self.free_slots():
                trials.append(self.wait())
            self.start(self.started_config(stage, index) or config, stage=stage, index=index)
        trials += self.wait_all()
        return sorted(trials, key=lambda t: t.stage_index)

    def start(self, config: dict[str, Any], *, stage: str, index: int) -> None:
        """Start trial `index` of `stage` with `config`: taken from the store if finished before, else
        recorded `running` and handed to the executor. Raises BudgetReached or KeyboardInterrupt (a stop was
        requested) instead, once the trials already running have ended."""
        budget = self.settings.trial_budget
        if budget is not None and self.count >= budget:
            self.finish_running()
            raise BudgetReached(f"--max-trials {budget}")
        stored = self.finished.get((stage, index))
        if stored is not None:
            if json.loads(json.dumps(config)) != stored.config:
                raise OutputError(
                    f"trial #{stored.trial_id} in {self.run_dir} ({stage} #{index}) has another config than this "
                    "search proposes now (was the run made by another version of deepncheap?); start a new search"
                )
            self.replayed.append(stored)
        else:
            if self.deadline is not None and self.best is not None and time.monotonic() >= self.deadline:
                self.finish_running()
                raise BudgetReached("--time-budget")  # (only once there is a result to return)
            if STOP_REQUESTED.is_set():
                self.finish_running()
                raise KeyboardInterrupt
            trial_id = self.store.start_trial(
                stage=stage,
                stage_index=index,
                config=config,
                concurrent=len(self.running) + 1,
                threads=self.executor.threads,
            )
            task = TrialTask(trial_id, config, trial_seed(self.settings.seed, stage, index), self.settings.epochs)
            self.running[trial_id] = _Running(task, time.perf_counter())
            self.executor.submit(task)
        self.count += 1

    def wait(self) -> Trial:
        """The next trial to end (a replayed one first), recorded in the store."""
        replayed = bool(self.replayed)
        trial = self.replayed.pop(0) if replayed else self._take(self.executor.next_outcome())
        if trial.status == "complete" and (self.best is None or trial.objective < self.best.objective):  # type: ignore[operator]
            self.best = trial
        self.progress.trial_finished(trial, self.best, replayed=replayed)
        return trial

    def wait_all(self) -> list[Trial]:
        """Every trial started and not yet handed out, as they end."""
        return [self.wait() for _ in range(len(self.running) + len(self.replayed))]

    def finish_running(self) -> None:
        """Let the running trials end and record them (before a budget stop; a stop request ends them at
        their next epoch end)."""
        if self.running or self.replayed:
            self.wait_all()

    def abandon_running(self) -> None:
        """Record the trials still running as `interrupted` (the search stops at once; they run again on resume)."""
        for trial_id, running in self.running.items():
            self.store.finish_trial(trial_id, status="interrupted", wall_s=time.perf_counter() - running.started)
        self.running.clear()

    def train(self, config: dict[str, Any], *, stage: str, index: int) -> TrialMeasurements:
        """Train `config` again with the seed of trial `index` of `stage` (nothing else may be running)."""
        task = TrialTask(-1, config, trial_seed(self.settings.seed, stage, index), self.settings.epochs)
        self.executor.submit(task)
        outcome = self.executor.next_outcome()
        if outcome.measured is None:
            raise SearchFailedError(f"retraining {stage} trial #{index} failed: {outcome.error or outcome.status}")
        return outcome.measured

    def _take(self, outcome: TrialOutcome) -> Trial:
        """Record `outcome` in the store: complete (scored), failed, or interrupted (then stop the search);
        a lost trial (its worker died) is started again once."""
        running = self.running[outcome.trial_id]
        if outcome.status == "lost" and running.losses == 0:
            running.losses += 1
            self.progress.note(f"trial #{outcome.trial_id}: {outcome.error}; running it again")
            self.executor.submit(running.task)
            return self._take(self.executor.next_outcome())
        del self.running[outcome.trial_id]
        wall_s = time.perf_counter() - running.started
        if outcome.status == "interrupted":
            self.store.finish_trial(outcome.trial_id, status="interrupted", wall_s=wall_s)
            STOP_REQUESTED.set()  # the other running trials stop at their next epoch end too
            self.finish_running()
            raise KeyboardInterrupt
        if outcome.measured is None:
            error = outcome.error if outcome.status == "failed" else f"{outcome.error}, twice"
            self.store.finish_trial(outcome.trial_id, status="failed", wall_s=wall_s, error=error)
            return self.store.trial(outcome.trial_id)
        try:
            metrics = self.scorer.score(outcome.measured)
        except Exception as exc:  # e.g. a NaN validation loss
            self.store.finish_trial(outcome.trial_id, status="failed", wall_s=wall_s, error=failure_text(exc))
            return self.store.trial(outcome.trial_id)
        self.store.finish_trial(
            outcome.trial_id,
            status="complete",
            metrics=metrics,
            val_curve=outcome.measured.training.val_curve,
            wall_s=wall_s,
        )
        if self.best is None or metrics["objective"] < self.best.objective:
            artifacts.save_weights(outcome.measured.model, self.run_dir, trial_id=outcome.trial_id)
        return self.store.trial(outcome.trial_id)


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


def measure_baselines(
    space: SearchSpace, dataset: Dataset, executor: Executor, *, penalty: str, seed: int
) -> Baselines:
    """Parameter count of the space's largest network (built on the meta device, no memory used) and, for
    the time penalty, the time per epoch of the space's reference config measured as the trials will run:
    on every slot of the executor at once (the median of them), so that side-by-side trials are compared
    with a baseline that shared the machine alike."""
    with torch.device("meta"):
        largest = build_model(space.largest_config(), dataset.input_shape, dataset.num_outputs)
    n_params = sum(p.numel() for p in largest.parameters())
    time_per_epoch = None
    if penalty == "time":
        task = TrialTask(-1, space.time_reference_config(), trial_seed(seed, "baseline", 0), BASELINE_EPOCHS)
        for slot in range(executor.slots):
            executor.submit(replace(task, trial_id=-1 - slot))
        outcomes = [executor.next_outcome() for _ in range(executor.slots)]
        if any(o.status == "interrupted" for o in outcomes):
            raise KeyboardInterrupt
        times = [o.measured.training.time_per_epoch_s for o in outcomes if o.measured is not None]
        if len(times) < len(outcomes):
            error = next(o.error for o in outcomes if o.measured is None)
            raise SearchFailedError(
                f"the time baseline (the space's reference config) failed to train: {error}; "
                "use --penalty params, or a space whose reference config fits"
            )
        time_per_epoch = float(np.median(times))
    return Baselines(n_params=n_params, time_per_epoch_s=time_per_epoch)


def _check_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return resolve_device(device)
