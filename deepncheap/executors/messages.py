"""The messages of the `processes` executor between the driver and its worker processes (`worker.py`).

Messages are length-prefixed frames (`multiprocessing.connection.Connection` on the pipes) of a JSON header
followed by tensors in safetensors format: nothing received is unpickled, so a message carries data and
numbers, never code. The data go to the workers once, as .npy files (`write_data`) that each maps
(`read_data`). This module is apart from `worker.py`, the worker's entry point, so that the driver never
imports the module a worker runs as `__main__` (runpy warns when a package import brought it in first).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from deepncheap.models import build_model
from deepncheap.train import DeviceData, EpochReport, TrainResult
from deepncheap.trial import TrialMeasurements, TrialOutcome, TrialTask

DATA_KEYS = ("x_train", "y_train", "x_val", "y_val")


def pack(header: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    """A message: 8-byte header length, the JSON header, then the tensors as safetensors bytes."""
    head = json.dumps(header).encode()
    body = save_tensors({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}) if tensors else b""
    return len(head).to_bytes(8, "little") + head + body


def unpack(message: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    size = int.from_bytes(message[:8], "little")
    body = message[8 + size :]
    return json.loads(message[8 : 8 + size]), load_tensors(body) if body else {}


def write_data(arrays: dict[str, np.ndarray], folder: Path) -> None:
    """The training data as .npy files in `folder`, for the workers to map (no copy in the driver)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in DATA_KEYS:
        np.save(folder / f"{key}.npy", arrays[key], allow_pickle=False)


def read_data(folder: Path, task: str, device: str) -> DeviceData:
    """The data `write_data` wrote, mapped read-only and put on `device` (on the CPU: the mapped pages)."""
    tensors = []
    for key in DATA_KEYS:
        array = np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False)
        with warnings.catch_warnings():  # read-only memory: the trainer never writes its data
            warnings.simplefilter("ignore", UserWarning)
            tensors.append(torch.from_numpy(array).to(device))
    return DeviceData(task, *tensors)


def pack_task(task: TrialTask) -> bytes:
    return pack({"kind": "task", **asdict(task)})


def pack_epoch(trial_id: int, report: EpochReport) -> bytes:
    return pack({"kind": "epoch", "trial_id": trial_id, **asdict(report)})


def pack_outcome(outcome: TrialOutcome) -> bytes:
    header: dict[str, Any] = {
        "kind": "outcome",
        "trial_id": outcome.trial_id,
        "status": outcome.status,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "user_failure": outcome.user_failure,
        "device": outcome.device,
    }
    measured = outcome.measured
    if measured is None:
        return pack(header)
    training = measured.training
    header |= {
        "n_params": measured.n_params,
        "flops": measured.flops,
        "modelled_epoch_s": measured.modelled_epoch_s,
        "val_curve": training.val_curve,
        "best_epoch": training.best_epoch,
        "val_accuracy": training.val_accuracy,
        "val_loss": training.val_loss,
        "epoch_times_s": training.epoch_times_s,
        "stopped": training.stopped,
    }
    return pack(header, training.model.state_dict())


def unpack_outcome(
    header: dict[str, Any],
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    input_shape: tuple[int, ...],
    num_outputs: int,
) -> TrialOutcome:
    """The outcome of a task with `config`; its model is rebuilt around the weights received."""
    outcome = TrialOutcome(
        header["trial_id"],
        header["status"],
        error=header["error"],
        traceback=header["traceback"],
        user_failure=header["user_failure"],
        device=header["device"],
    )
    if "n_params" in header:
        with torch.device("meta"):  # no memory: the received tensors become the parameters
            model: nn.Module = build_model(config, input_shape, num_outputs)
        model.load_state_dict(state, assign=True)
        training = TrainResult(
            model=model,
            val_curve=header["val_curve"],
            best_epoch=header["best_epoch"],
            val_accuracy=header["val_accuracy"],
            val_loss=header["val_loss"],
            epoch_times_s=header["epoch_times_s"],
            stopped=header["stopped"],
        )
        outcome.measured = TrialMeasurements(header["n_params"], header["flops"], training, header["modelled_epoch_s"])
    return outcome
