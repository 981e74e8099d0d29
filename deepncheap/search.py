"""A search, top to bottom: check the options, load the data, create the run, measure the baselines,
propose configs, run each as a trial, score it, record it, and write the run's outputs."""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepncheap import artifacts
from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import OutputError, SearchFailedError, SettingsError
from deepncheap.models import build_model
from deepncheap.objective import Baselines, complexity, objective, performance_error
from deepncheap.progress import SearchProgress
from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace
from deepncheap.store import STORE_NAME, RunStore, Trial
from deepncheap.train import DeviceData
from deepncheap.trial import TrialMeasurements, resolve_device, run_trial, trial_seed

BASELINE_EPOCHS = 3  # one warm-up epoch, then two timed


@dataclass
class SearchResult:
    """The outcome of a search: the best complete config, its metrics, its trained model, where it lives."""

    run_dir: Path
    trial_id: int
    stage: str
    best_config: dict[str, Any]
    metrics: dict[str, Any]
    model: nn.Module
    settings: dict[str, Any]
    baselines: dict[str, Any]


def search(
    *, data: Any = "digits", out: str | Path | None = None, verbose: bool = True, **options: Any
) -> SearchResult:
    """Search configs on `data`, minimizing log10(f_p + wc * f_c); `options` are `SearchSettings` fields
    (network, wc, penalty, method, max_trials, epochs, seed, ...). Writes the run directory `out`."""
    settings = SearchSettings.from_options(**options)
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
    max_trials, seed = settings.max_trials, settings.seed
    with RunStore.create(run_dir, stored) as store, SearchProgress(max_trials, enabled=verbose) as progress:
        progress.note(f"run directory: {run_dir}")
        device_data = DeviceData.from_dataset(dataset, device)
        if settings.penalty == "time":
            progress.note(f"measuring the time baseline ({BASELINE_EPOCHS} epochs of the space's reference config)")
        baselines = measure_baselines(space, dataset, device_data, penalty=settings.penalty, seed=seed)
        store.put("baselines", baselines.to_dict())
        progress.note(f"baselines: {baselines.describe()}")
        scorer = Scorer(dataset=dataset, penalty=settings.penalty, wc=float(settings.wc), baselines=baselines)
        best: Trial | None = None
        for index, config in enumerate(space.sample(max_trials, method=settings.method, seed=seed)):
            trial = run_and_record(
                store,
                config,
                stage="joint",
                index=index,
                data=device_data,
                dataset=dataset,
                epochs=settings.epochs,
                seed=seed,
                scorer=scorer,
                run_dir=run_dir,
                best=best,
            )
            if trial.status == "complete" and (best is None or trial.objective < best.objective):  # type: ignore[operator]
                best = trial
            progress.trial_finished(trial, best)
        if best is None:
            raise SearchFailedError(
                f"every trial failed (see 'dnc show {run_dir}'); check the errors there, e.g. lower the lr range"
            )
        artifacts.write_best_json(store, best, run_dir)
        artifacts.write_trials_csv(store, run_dir)
    return load_run(run_dir)


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


def run_and_record(
    store: RunStore,
    config: dict[str, Any],
    *,
    stage: str,
    index: int,
    data: DeviceData,
    dataset: Dataset,
    epochs: int,
    seed: int,
    scorer: Scorer,
    run_dir: Path,
    best: Trial | None,
) -> Trial:
    """Run one trial between a `running` row and its completion; a trial that raises is recorded `failed`.
    The model's weights are saved when it beats `best`."""
    trial_id = store.start_trial(stage=stage, stage_index=index, config=config)
    start = time.perf_counter()
    try:
        measured = run_trial(
            config,
            data,
            input_shape=dataset.input_shape,
            num_outputs=dataset.num_outputs,
            epochs=epochs,
            seed=trial_seed(seed, stage, index),
        )
        metrics = scorer.score(measured)
    except KeyboardInterrupt:
        store.finish_trial(trial_id, status="interrupted", wall_s=time.perf_counter() - start)
        raise
    except Exception as exc:  # a failing trial must not stop the search
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        store.finish_trial(trial_id, status="failed", wall_s=time.perf_counter() - start, error=message)
        return store.trial(trial_id)
    if best is None or metrics["objective"] < best.objective:
        artifacts.save_weights(measured.model, run_dir)
    store.finish_trial(
        trial_id,
        status="complete",
        metrics=metrics,
        val_curve=measured.training.val_curve,
        wall_s=time.perf_counter() - start,
    )
    return store.trial(trial_id)


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


def load_run(run_dir: str | Path) -> SearchResult:
    """The result of a finished run: best.json, and the best model rebuilt with its saved weights."""
    import json

    run_dir = Path(run_dir)
    path = run_dir / artifacts.BEST_JSON
    if not path.is_file():
        raise OutputError(f"{run_dir} has no {artifacts.BEST_JSON} (the search has not finished); run the search")
    record = json.loads(path.read_text())
    data = record["settings"]["data"]
    model = build_model(record["config"], tuple(data["input_shape"]), int(data["num_outputs"]))
    model.load_state_dict(artifacts.load_weights(run_dir))
    model.eval()
    return SearchResult(
        run_dir=run_dir,
        trial_id=record["trial_id"],
        stage=record["stage"],
        best_config=record["config"],
        metrics=record["metrics"],
        model=model,
        settings=record["settings"],
        baselines=record["baselines"],
    )


def default_run_name(data_name: str, network: str) -> Path:
    """runs/<data>-<network>-<timestamp>."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", data_name).strip("._") or "data"
    return Path("runs") / f"{safe}-{network}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(out: str | Path | None, default: Path) -> Path:
    """Create the run directory (refusing one that already holds a run) and check it is writable."""
    run_dir = Path(out).expanduser() if out is not None else default
    if out is None:
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = default.with_name(f"{default.name}-{suffix}")
    if (run_dir / STORE_NAME).exists():
        raise OutputError(f"{run_dir} already holds a search; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"cannot write to output directory {run_dir} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    return run_dir


def _check_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return resolve_device(device)
