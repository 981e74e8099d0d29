"""One trial: seed, build the model a config describes, measure its cost, train it.

Returns raw measurements only; scoring them is the objective's job and recording them the store's.
`execute` runs one `TrialTask` wherever an executor runs it and always returns a `TrialOutcome` (a failing
config is an outcome, not an exception), with the model on the CPU so that it can travel back to the driver.
Each epoch is reported through the task's hook while the trial runs (`train.EpochReport`).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepncheap import timing
from deepncheap.cost import count_flops, count_layers, count_parameters
from deepncheap.models import build_model
from deepncheap.space import derive_seed
from deepncheap.train import DeviceData, EpochHook, TrainResult, TrialDiverged, seed_everything, train

# Outcomes of a task: `complete`; `stopped` (the driver's epoch hook stopped it early: partial measurements);
# `failed`; `interrupted` (a stop request); `lost` (its worker died; the driver may run it again).
OUTCOMES = ("complete", "stopped", "failed", "interrupted", "lost")


@dataclass
class TrialMeasurements:
    """Everything measured for one config; `modelled_epoch_s` is the time cost model's epoch (`timing`)."""

    n_params: int
    flops: int
    training: TrainResult
    modelled_epoch_s: float

    @property
    def model(self) -> nn.Module:
        return self.training.model


def trial_seed(search_seed: int, stage: str, index: int) -> int:
    """Seed of a trial from the search seed, its stage and its index within the stage (not its store row,
    so a trial run again after a resume trains identically)."""
    return derive_seed(search_seed, stage, index)


def training_hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The config's `lr`, `weight_decay` and `batch_size`, as `train` takes them."""
    return {
        "lr": float(config["lr"]),
        "weight_decay": float(config["weight_decay"]),
        "batch_size": int(config["batch_size"]),
    }


def run_trial(
    config: dict[str, Any],
    data: DeviceData,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    epochs: int,
    seed: int,
    on_epoch: EpochHook | None = None,
    augment: bool = False,
) -> TrialMeasurements:
    """Build, cost and train `config` on `data` for `epochs` epochs with the given seed (`augment`: random
    crops and flips of the training batches)."""
    seed_everything(seed)
    model = build_model(config, input_shape, num_outputs).to(data.device)
    n_params = count_parameters(model)
    flops = count_flops(model, input_shape)
    optimization = training_hyperparameters(config)
    features = timing.cost_features(
        layers=count_layers(model),
        n_params=n_params,
        flops=flops,
        batch_size=optimization["batch_size"],
        n_train=len(data.x_train),
    )
    training = train(model, data, epochs=epochs, seed=seed, on_epoch=on_epoch, augment=augment, **optimization)
    return TrialMeasurements(n_params, flops, training, timing.modelled_epoch_s(features))


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class TrialTask:
    """One training to run: the store's trial id (negative for baseline runs), config, seed, epochs and
    whether its batches are augmented."""

    trial_id: int
    config: dict[str, Any]
    seed: int
    epochs: int
    augment: bool = False


@dataclass
class TrialOutcome:
    """How a task ended (`OUTCOMES`), with its measurements when it trained (complete or stopped), or its
    error (one line), the traceback and whether the failure is the trial's own (`user_failure`: a NaN loss,
    memory, a network that does not fit the input) rather than a bug in deepncheap."""

    trial_id: int
    status: str
    measured: TrialMeasurements | None = None
    error: str | None = None
    traceback: str | None = None
    user_failure: bool = True
    device: str | None = None


def execute(
    task: TrialTask,
    data: DeviceData,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    on_epoch: EpochHook | None = None,
) -> TrialOutcome:
    """Run `task` on `data`; exceptions become a `failed` outcome and a stop request an `interrupted` one."""
    device = str(data.device)
    try:
        measured = run_trial(
            task.config,
            data,
            input_shape=input_shape,
            num_outputs=num_outputs,
            epochs=task.epochs,
            seed=task.seed,
            on_epoch=on_epoch,
            augment=task.augment,
        )
    except KeyboardInterrupt:
        return TrialOutcome(task.trial_id, "interrupted", device=device)
    except Exception as exc:  # a failing trial must not stop the search
        return failed_outcome(task.trial_id, exc, device=device)
    measured.training.model.to("cpu")
    status = "stopped" if measured.training.stopped else "complete"
    return TrialOutcome(task.trial_id, status, measured=measured, device=device)


def failed_outcome(trial_id: int, exc: BaseException, *, device: str | None = None) -> TrialOutcome:
    """The outcome of a trial that raised `exc`, with its one-line error, traceback and kind."""
    return TrialOutcome(
        trial_id,
        "failed",
        error=failure_text(exc),
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        user_failure=is_user_failure(exc),
        device=device,
    )


def is_user_failure(exc: BaseException) -> bool:
    """Whether a trial's exception comes from its config (divergence, memory, a network torch rejects for
    the input) rather than from a bug in deepncheap (KeyError, TypeError, AttributeError, ...)."""
    return isinstance(exc, (TrialDiverged, MemoryError, torch.cuda.OutOfMemoryError, RuntimeError, FloatingPointError))


def failure_text(exc: BaseException) -> str:
    """The error of a failed trial, one line; memory exhaustion is named as such (and CUDA's cache freed)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        text = f"out of memory ({text}); a smaller batch size or network fits"
    elif not is_user_failure(exc):
        text = f"internal error ({text})"
    return " ".join(text.splitlines())
