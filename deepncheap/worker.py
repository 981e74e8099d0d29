"""A local worker process of the `processes` executor: `python -m deepncheap.worker DEVICE THREADS`, and the
messages it exchanges with the driver.

The worker reads the training data (one message on stdin), puts it on DEVICE once, then runs each trial
task it receives and writes back the outcome, until stdin closes. Messages are length-prefixed frames
(`multiprocessing.connection.Connection` on the pipes) of a JSON header followed by tensors in safetensors
format: nothing received is unpickled, so a message can carry data and numbers, never code. The first
SIGINT or SIGTERM stops the running trial at its next epoch end (it comes back `interrupted`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from deepncheap.data import Dataset
from deepncheap.models import build_model
from deepncheap.train import STOP_REQUESTED, DeviceData, TrainResult
from deepncheap.trial import TrialMeasurements, TrialOutcome, TrialTask, execute

_DATA_KEYS = ("x_train", "y_train", "x_val", "y_val")


def pack(header: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    """A message: 8-byte header length, the JSON header, then the tensors as safetensors bytes."""
    head = json.dumps(header).encode()
    body = save_tensors({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}) if tensors else b""
    return len(head).to_bytes(8, "little") + head + body


def unpack(message: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    size = int.from_bytes(message[:8], "little")
    body = message[8 + size :]
    return json.loads(message[8 : 8 + size]), load_tensors(body) if body else {}


def pack_data(dataset: Dataset) -> bytes:
    return pack(
        {"task": dataset.task, "num_outputs": dataset.num_outputs},
        {key: torch.from_numpy(getattr(dataset, key).copy()) for key in _DATA_KEYS},
    )


def pack_task(task: TrialTask) -> bytes:
    return pack({"trial_id": task.trial_id, "config": task.config, "seed": task.seed, "epochs": task.epochs})


def pack_outcome(outcome: TrialOutcome) -> bytes:
    header: dict[str, Any] = {"trial_id": outcome.trial_id, "status": outcome.status, "error": outcome.error}
    measured = outcome.measured
    if measured is None:
        return pack(header)
    training = measured.training
    header |= {
        "n_params": measured.n_params,
        "flops": measured.flops,
        "val_curve": training.val_curve,
        "best_epoch": training.best_epoch,
        "val_accuracy": training.val_accuracy,
        "val_loss": training.val_loss,
        "epoch_times_s": training.epoch_times_s,
    }
    return pack(header, training.model.state_dict())


def unpack_outcome(
    message: bytes, config: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int
) -> TrialOutcome:
    """The outcome of a task with `config`; its model is rebuilt around the weights received."""
    header, state = unpack(message)
    outcome = TrialOutcome(header["trial_id"], header["status"], error=header["error"])
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
        )
        outcome.measured = TrialMeasurements(n_params=header["n_params"], flops=header["flops"], training=training)
    return outcome


def main(device: str, threads: int) -> None:
    receive = Connection(0, writable=False)
    send = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray prints go to stderr, not into the message pipe
    _die_with_parent()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group
        signal.signal(stop_signal, lambda *_: STOP_REQUESTED.set())
    torch.set_num_threads(threads)
    try:
        header, tensors = unpack(receive.recv_bytes())
    except (EOFError, OSError):
        return
    data = DeviceData(header["task"], *(tensors[key].to(device) for key in _DATA_KEYS))
    input_shape = tuple(data.x_train.shape[1:])
    num_outputs = int(header["num_outputs"])
    while True:
        try:
            task_header, _ = unpack(receive.recv_bytes())
        except (EOFError, OSError):
            return
        STOP_REQUESTED.clear()  # a stop concerns the trial that was running when it came
        outcome = execute(TrialTask(**task_header), data, input_shape=input_shape, num_outputs=num_outputs)
        try:
            send.send_bytes(pack_outcome(outcome))
        except OSError:
            return


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the driver dies (prctl PR_SET_PDEATHSIG); elsewhere a worker
    ends when it next finds its pipes closed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
