"""One trial: seed, build the model a config describes, measure its cost, train it.

Returns raw measurements only; scoring them is the objective's job and recording them the store's.
`execute` runs one `TrialTask` wherever an executor runs it and always returns a `TrialOutcome` (a failing
config is an outcome, not an exception), with the model on the CPU so that it can travel back to the driver.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepncheap.cost import count_flops, count_parameters
from deepncheap.models import build_model
from deepncheap.space import derive_seed
from deepncheap.train import DeviceData, TrainResult, seed_everything, train


@dataclass
class TrialMeasurements:
    """Everything measured for one config."""

    n_params: int
    flops: int
    training: TrainResult

    @property
    def model(self) -> nn.Module:
        return self.training.model


def trial_seed(search_seed: int, stage: str, index: int) -> int:
    """Seed of a trial from the search seed, its stage and its index within the stage (not its store row,
    so a trial run again after a resume trains identically)."""
    return derive_seed(search_seed, stage, index)


def run_trial(
    config: dict[str, Any],
    data: DeviceData,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    epochs: int,
    seed: int,
) -> TrialMeasurements:
    """Build, cost and train `config` on `data` for `epochs` epochs with the given seed."""
    seed_everything(seed)
    model = build_model(config, input_shape, num_outputs).to(data.device)
    n_params = count_parameters(model)
    flops = count_flops(model, input_shape)
    training = train(
        model,
        data,
        lr=float(config["lr"]),
        weight_decay=float(config["weight_decay"]),
        batch_size=int(config["batch_size"]),
        epochs=epochs,
        seed=seed,
    )
    return TrialMeasurements(n_params=n_params, flops=flops, training=training)


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class TrialTask:
    """One training to run: the store's trial id (negative for baseline runs), config, seed and epochs."""

    trial_id: int
    config: dict[str, Any]
    seed: int
    epochs: int


@dataclass
class TrialOutcome:
    """How a task ended: `complete` (with its measurements), `failed` (with the error), `interrupted` (a stop
    was requested), or `lost` (the worker running it died; the executor's driver may run it again)."""

    trial_id: int
    status: str
    measured: TrialMeasurements | None = None
    error: str | None = None


def execute(task: TrialTask, data: DeviceData, *, input_shape: tuple[int, ...], num_outputs: int) -> TrialOutcome:
    """Run `task` on `data`; exceptions become a `failed` outcome and a stop request an `interrupted` one."""
    try:
        measured = run_trial(
            task.config, data, input_shape=input_shape, num_outputs=num_outputs, epochs=task.epochs, seed=task.seed
        )
    except KeyboardInterrupt:
        return TrialOutcome(task.trial_id, "interrupted")
    except Exception as exc:  # a failing trial must not stop the search
        return TrialOutcome(task.trial_id, "failed", error=failure_text(exc))
    measured.training.model.to("cpu")
    return TrialOutcome(task.trial_id, "complete", measured=measured)


def failure_text(exc: BaseException) -> str:
    """The error of a failed trial, one line; memory exhaustion is named as such (and CUDA's cache freed)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        text = f"out of memory ({text}); a smaller batch size or network fits"
    return " ".join(text.splitlines())
