"""A local worker process of the `processes` executor: `python -m deepncheap.executors.worker DEVICE
THREADS`, and the messages it exchanges with the driver.

The worker learns where the data are (one message on stdin: a folder of .npy files the driver wrote once,
mapped into memory here, so the workers share one copy on the CPU), puts them on DEVICE once, then runs
each trial task it receives: it sends an epoch message after every epoch, stops the trial when the driver
answers with a stop message for it, and writes back the outcome, until stdin closes. Messages are
length-prefixed frames (`multiprocessing.connection.Connection` on the pipes) of a JSON header followed by
tensors in safetensors format: nothing received is unpickled, so a message carries data and numbers, never
code. The first SIGINT or SIGTERM stops the running trial at its next epoch end (it comes back `interrupted`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from deepncheap.models import build_model
from deepncheap.train import DeviceData, EpochReport, TrainResult
from deepncheap.trial import TrialMeasurements, TrialOutcome, TrialTask, execute

DATA_KEYS = ("x_train", "y_train", "x_val", "y_val")
_STOP = threading.Event()  # this worker process's stop request (its SIGINT/SIGTERM handler sets it)


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
    return pack(
        {"kind": "task", "trial_id": task.trial_id, "config": task.config, "seed": task.seed, "epochs": task.epochs}
    )


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


def main(device: str, threads: int) -> None:
    receive = Connection(0, writable=False)
    send = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray prints go to stderr, not into the message pipe
    _die_with_parent()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group
        signal.signal(stop_signal, lambda *_: _STOP.set())
    torch.set_num_threads(threads)
    try:
        setup, _ = unpack(receive.recv_bytes())
    except (EOFError, OSError):
        return
    data = read_data(Path(setup["data_dir"]), setup["task"], device)
    input_shape = tuple(data.x_train.shape[1:])
    num_outputs = int(setup["num_outputs"])
    while True:
        try:
            header, _ = unpack(receive.recv_bytes())
        except (EOFError, OSError):
            return
        if header["kind"] != "task":
            continue  # a stop answer that came after its trial ended
        header.pop("kind")
        task = TrialTask(**header)

        def on_epoch(report: EpochReport, trial_id: int = task.trial_id) -> bool:
            if _STOP.is_set():
                raise KeyboardInterrupt
            send.send_bytes(pack_epoch(trial_id, report))
            stop = False
            while receive.poll(0):  # the driver's stop answers (to this or an earlier epoch)
                message, _ = unpack(receive.recv_bytes())
                stop |= message.get("kind") == "stop" and message["trial_id"] == trial_id
            return stop

        outcome = execute(task, data, input_shape=input_shape, num_outputs=num_outputs, on_epoch=on_epoch)
        if outcome.status == "interrupted":
            _STOP.clear()  # a stop concerns the task the driver had given when it came (maybe not begun yet)
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
