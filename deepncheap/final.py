"""The final model of a run (`dnc train`): the best config (or another trial's) trained longer on the
training and validation data, then evaluated once on the test split the search never saw.

Writes `RUN/final/`: `model.safetensors`, then `final.json` (the config, the test metrics under keys that
start with `test`, the training curve). Both go through a temporary file and a rename, final.json last, so a
killed training leaves the previous final model (or none), never half of one; training again starts over.
The inputs keep the search's standardization (the run's `Preprocessing`), so the final model predicts from
the same raw inputs as the search's models.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepncheap import artifacts, rundir
from deepncheap.artifacts import FINAL_DIR, FINAL_JSON, FINAL_WEIGHTS, SearchResult, load_run
from deepncheap.cost import count_parameters
from deepncheap.data import Dataset
from deepncheap.errors import DataError, OutputError, SettingsError
from deepncheap.models import build_model
from deepncheap.progress import SearchProgress
from deepncheap.report.noted import write_report_noted
from deepncheap.run_data import reload_dataset
from deepncheap.settings import SearchSettings
from deepncheap.stopping import active_stop_event
from deepncheap.store import RunStore, Trial
from deepncheap.train import (
    GENERATORS_LOCK,
    DeviceData,
    EpochReport,
    TrialDiverged,
    evaluate,
    process_state_kept,
    seed_everything,
    train,
)
from deepncheap.trial import resolve_device, training_hyperparameters, trial_seed

EPOCHS_FACTOR = 4  # default final epochs: this many times the search's epochs per trial


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the final training; nothing was written (train again to start over)."""


def train_final(
    run_dir: str | Path,
    *,
    trial_id: int | None = None,
    epochs: int | None = None,
    data: Any = None,
    verbose: bool = True,
    report: bool = True,
) -> SearchResult:
    """Train the best trial's config (or `trial_id`'s) of the run in `run_dir` for `epochs` epochs (default:
    EPOCHS_FACTOR times the search's) on its training + validation data, test it once, write RUN/final/ and
    return the run with the final model (`load_run(run_dir, final=True)`). `data` is needed when the
    search ran on in-memory arrays (or its file moved); with `report`, the run's report is written again
    with the final model's test metrics."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise SettingsError(f"--epochs must be a positive integer, got {epochs!r}")
    with rundir.existing_run(run_dir) as path:
        with RunStore.open(path) as store:
            stored = store.settings
            trial = _chosen_trial(store, path, trial_id)
        if not stored["data"].get("n_test"):
            raise DataError(f"{path} has no test split to evaluate the final model on; search with data that has one")
        settings = SearchSettings.from_stored(stored)
        epochs = epochs or EPOCHS_FACTOR * settings.epochs
        dataset = reload_dataset(stored, settings, path, data)
        device = resolve_device(settings.device)
        with process_state_kept():
            torch.set_num_threads(int(stored["threads"]))
            augment = bool(stored.get("augmented", False))  # (as the search's trials trained)
            record, weights = _train_and_test(trial, dataset, settings, device, epochs, verbose, augment)
        final_dir = path / FINAL_DIR
        final_dir.mkdir(exist_ok=True)
        artifacts.write_atomic(final_dir / FINAL_WEIGHTS, weights)
        artifacts.write_atomic(final_dir / FINAL_JSON, (json.dumps(record, indent=2) + "\n").encode())
        if report:
            write_report_noted(path, SearchProgress(0, enabled=verbose).note)
    return load_run(path, final=True)


def _chosen_trial(store: RunStore, run_dir: Path, trial_id: int | None) -> Trial:
    """The trial to train: `trial_id`, or the run's best; a clear error for an unknown or unfinished one."""
    if trial_id is None:
        best = store.best_trial()
        if best is None:
            raise OutputError(f"{run_dir} has no complete trial yet; wait for one, or resume the search")
        return best
    trials = {t.trial_id: t for t in store.trials()}
    if trial_id not in trials:
        known = f"trials #{min(trials)}–#{max(trials)}" if trials else "no trials"
        raise SettingsError(f"{run_dir} has no trial #{trial_id} (it has {known}); see 'dnc show {run_dir}'")
    trial = trials[trial_id]
    if trial.status not in ("complete", "pruned"):
        raise SettingsError(f"trial #{trial_id} is {trial.status}, it has no result to train on; choose a complete one")
    return trial


def _train_and_test(
    trial: Trial,
    dataset: Dataset,
    settings: SearchSettings,
    device: torch.device,
    epochs: int,
    verbose: bool,
    augment: bool,
) -> tuple[dict[str, Any], bytes]:
    """final.json's record and the final weights (safetensors): train on train + val, test once."""
    config = trial.config
    x_both, y_both = (torch.from_numpy(np.concatenate(p)).to(device) for p in _train_and_val(dataset))
    x_test, y_test = torch.from_numpy(dataset.x_test).to(device), torch.from_numpy(dataset.y_test).to(device)
    training_data = DeviceData(dataset.task, x_both, y_both, x_test[:0], y_test[:0])  # (no validation)
    test_data = DeviceData(dataset.task, x_both[:0], y_both[:0], x_test, y_test)
    seed = trial_seed(settings.seed, trial.stage, trial.stage_index)
    started = time.perf_counter()
    with (
        SearchProgress(epochs, enabled=verbose, label="train") as progress,
        active_stop_event() as stop,
        GENERATORS_LOCK,
    ):
        seed_everything(seed)
        model = build_model(config, dataset.input_shape, dataset.num_outputs).to(device)
        progress.note(
            f"training trial #{trial.trial_id}'s config for {epochs} epochs on {len(y_both)} samples "
            f"(training + validation); testing once on {len(dataset.y_test)}"
        )

        def on_epoch(report: EpochReport) -> bool:
            if stop.is_set():
                raise TrainingInterrupted("final training interrupted; nothing was written")
            eta_s = (time.perf_counter() - started) / report.epoch * (epochs - report.epoch)
            line = f"{report.epoch_time_s:.2f} s/epoch, ETA {eta_s:.0f} s"
            progress.epoch_finished(report.epoch, line, printed=report.epoch % max(1, epochs // 10) == 0)
            return False

        try:
            result = train(
                model,
                training_data,
                epochs=epochs,
                seed=seed,
                on_epoch=on_epoch,
                keep_best=False,
                augment=augment,
                **training_hyperparameters(config),
            )
        except TrialDiverged as exc:
            raise SettingsError(f"the final training diverged ({exc}); try fewer --epochs or another --trial") from None
        test = _test_metrics(result.model, test_data, dataset)
        progress.note("test " + ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in test.items()))
    record = {
        "trial_id": trial.trial_id,
        "stage": trial.stage,
        "config": config,
        "epochs": epochs,
        "trained_on": "train+val",
        "augmented": augment,
        "n_train": len(y_both),
        "n_test": len(dataset.y_test),
        **test,
        "n_params": count_parameters(result.model),
        "train_loss_curve": result.train_losses,
        "epoch_times_s": result.epoch_times_s,
        "wall_s": time.perf_counter() - started,
        "device": str(device),
        "seed": seed,
    }
    return record, artifacts.weights_bytes(result.model, trial_id=trial.trial_id)


def _train_and_val(dataset: Dataset) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return (dataset.x_train, dataset.x_val), (dataset.y_train, dataset.y_val)


def _test_metrics(model: torch.nn.Module, test_data: DeviceData, dataset: Dataset) -> dict[str, float]:
    """Test accuracy and cross-entropy, or MSE / RMSE (in the targets' units) and R²."""
    score, loss = evaluate(model, test_data)
    if dataset.task == "classification":
        return {"test_accuracy": score, "test_loss": loss}
    mse = score * dataset.target_std**2
    variance = float(np.var(dataset.y_test)) * dataset.target_std**2
    return {"test_mse": mse, "test_rmse": math.sqrt(mse), "test_r2": 1.0 - mse / variance if variance else 0.0}
