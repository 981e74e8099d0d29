"""A search, top to bottom: check the options, load the data, create the run, measure the baselines, then
run the method's stages — each asks the space (and the GP) for configs, trains them as trials, scores and
records them — and write the run's outputs.

Methods: `dnc` (Deep-n-Cheap's three stages: BO over the core architecture, grid sub-stages over the
advanced architecture, BO over the training hyperparameters) and the baselines `random` / `sobol` (one
`joint` stage over every hyperparameter at once).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepncheap import artifacts, bo
from deepncheap.artifacts import SearchResult, default_run_name, load_run, prepare_run_dir
from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import SearchFailedError, SettingsError
from deepncheap.models import architecture_key, build_model
from deepncheap.objective import Baselines, complexity, objective, performance_error
from deepncheap.progress import SearchProgress
from deepncheap.settings import SearchSettings
from deepncheap.space import GRID_SUB_STAGES, SearchSpace, derive_seed
from deepncheap.store import RunStore, Trial
from deepncheap.train import STOP_REQUESTED, DeviceData
from deepncheap.trial import TrialMeasurements, resolve_device, run_trial, trial_seed

__all__ = ["SearchResult", "load_run", "search"]

BASELINE_EPOCHS = 3  # one warm-up epoch, then two timed


def search(
    *, data: Any = "digits", out: str | Path | None = None, verbose: bool = True, **options: Any
) -> SearchResult:
    """Search configs on `data`, minimizing log10(f_p + wc * f_c); `options` are `SearchSettings` fields
    (network, wc, penalty, method, max_trials, epochs, seed, ...). Writes the run directory `out`."""
    settings = SearchSettings.from_options(**options)
    STOP_REQUESTED.clear()
    device = _check_device(settings.device)
    space = SearchSpace.create(settings.network, settings.space)
    dataset = load_dataset(
        data,
        network=settings.network,
        task=settings.task,
        val_split=settings.val_split,
        image_shape=settings.image_shape,
        target=settings.target,
        data_dir=settings.data_dir,
    )
    run_dir = prepare_run_dir(out, default_run_name(dataset.name, settings.network))
    torch.set_num_threads(settings.threads or torch.get_num_threads())
    stored = settings.to_dict() | {
        "data": dataset.summary(),
        "data_source": str(data) if isinstance(data, (str, Path)) else "arrays",
        "task": dataset.task,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "space": space.to_dict(),
    }
    planned = planned_trials(space, settings)
    with RunStore.create(run_dir, stored) as store, SearchProgress(planned, enabled=verbose) as progress:
        progress.note(f"run directory: {run_dir}")
        device_data = DeviceData.from_dataset(dataset, device)
        if settings.penalty == "time":
            progress.note(f"measuring the time baseline ({BASELINE_EPOCHS} epochs of the space's reference config)")
        baselines = measure_baselines(space, dataset, device_data, penalty=settings.penalty, seed=settings.seed)
        store.put("baselines", baselines.to_dict())
        progress.note(f"baselines: {baselines.describe()}")
        runner = TrialRunner(
            store=store,
            data=device_data,
            dataset=dataset,
            settings=settings,
            scorer=Scorer(dataset=dataset, penalty=settings.penalty, wc=float(settings.wc), baselines=baselines),
            run_dir=run_dir,
            progress=progress,
        )
        try:
            if settings.method == "dnc":
                run_dnc(runner, space)
            else:
                run_joint(runner, space)
        except BudgetReached:
            progress.note(f"stopped after {runner.count} trials (--max-trials)")
        if runner.best is None:
            raise SearchFailedError(
                f"every trial failed (see 'dnc show {run_dir}'); check the errors there, e.g. lower the lr range"
            )
        artifacts.write_best_json(store, runner.best, run_dir)
        artifacts.write_trials_csv(store, run_dir)
    return load_run(run_dir)


# --- the methods ---------------------------------------------------------------------------------------


def run_joint(runner: TrialRunner, space: SearchSpace) -> None:
    """Random or Sobol configs of the joint space of every hyperparameter."""
    settings = runner.settings
    assert settings.trial_budget is not None
    configs = space.sample(settings.trial_budget, method=settings.method, seed=settings.seed)
    for index, config in enumerate(configs):
        runner.run(config, stage="joint", index=index)


def run_dnc(runner: TrialRunner, space: SearchSpace) -> None:
    """Deep-n-Cheap: core architecture (BO) -> advanced architecture (grids) -> training (BO)."""
    core_best = run_bo_stage(runner, space, "core", base=None)
    advanced_best = run_grid_stage(runner, space, core_best)
    settings = runner.settings
    runner.progress.set_total(runner.count + settings.prior_points + settings.bo_steps)
    run_bo_stage(runner, space, "training", base=advanced_best.config)


def run_bo_stage(runner: TrialRunner, space: SearchSpace, stage: str, *, base: dict[str, Any] | None) -> Trial:
    """Sobol prior points, then BO steps each training the candidate of highest expected improvement;
    returns the stage's best trial."""
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
        observed = _complete(trials)
        candidates = space.sample(
            settings.candidates, method="random", seed=derive_seed(settings.seed, stage, step), stage=stage, base=base
        )
        choice, _ = bo.propose(
            space.encode(stage, [t.config for t in observed]),
            np.array([t.objective for t in observed]),
            space.encode(stage, candidates),
            terms,
            mode=settings.bo_mode,
            prior_mean=prior_mean,
        )
        trials.append(runner.run(candidates[choice], stage=stage, index=len(prior) + step))
    return _stage_best(trials)


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
    """`--max-trials` trainings have run."""


@dataclass
class TrialRunner:
    """Runs trials one at a time between a `running` row and their completion, keeps the best trial (and
    its weights on disk), counts trainings against the budget and reports progress."""

    store: RunStore
    data: DeviceData
    dataset: Dataset
    settings: SearchSettings
    scorer: Scorer
    run_dir: Path
    progress: SearchProgress
    best: Trial | None = None
    count: int = field(default=0)

    def run(self, config: dict[str, Any], *, stage: str, index: int) -> Trial:
        """Train `config` as trial `index` of `stage`; a trial that raises is recorded `failed`."""
        budget = self.settings.trial_budget
        if budget is not None and self.count >= budget:
            raise BudgetReached
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        trial = self._record(config, stage=stage, index=index)
        self.count += 1
        if trial.status == "complete" and (self.best is None or trial.objective < self.best.objective):  # type: ignore[operator]
            self.best = trial
        self.progress.trial_finished(trial, self.best)
        return trial

    def _record(self, config: dict[str, Any], *, stage: str, index: int) -> Trial:
        store = self.store
        trial_id = store.start_trial(stage=stage, stage_index=index, config=config)
        start = time.perf_counter()
        try:
            measured = run_trial(
                config,
                self.data,
                input_shape=self.dataset.input_shape,
                num_outputs=self.dataset.num_outputs,
                epochs=self.settings.epochs,
                seed=trial_seed(self.settings.seed, stage, index),
            )
            metrics = self.scorer.score(measured)
        except KeyboardInterrupt:
            store.finish_trial(trial_id, status="interrupted", wall_s=time.perf_counter() - start)
            raise
        except Exception as exc:  # a failing trial must not stop the search
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            store.finish_trial(trial_id, status="failed", wall_s=time.perf_counter() - start, error=message)
            return store.trial(trial_id)
        if self.best is None or metrics["objective"] < self.best.objective:
            artifacts.save_weights(measured.model, self.run_dir)
        store.finish_trial(
            trial_id,
            status="complete",
            metrics=metrics,
            val_curve=measured.training.val_curve,
            wall_s=time.perf_counter() - start,
        )
        return store.trial(trial_id)


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
