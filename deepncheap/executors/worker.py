"""A local worker process of the `processes` executor: `python -m deepncheap.executors.worker DEVICE
THREADS`. Nothing imports this module (the messages it exchanges are `messages.py`): it only runs as
`__main__`.

The worker learns where the data are (one message on stdin: a folder of .npy files the driver wrote once,
mapped into memory here, so the workers share one copy on the CPU), puts them on DEVICE once, then runs
each trial task it receives: it sends an epoch message after every epoch, stops the trial when the driver
answers with a stop message for it, and writes back the outcome, until stdin closes. The first SIGINT or
SIGTERM stops the running trial at its next epoch end (it comes back `interrupted`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from deepncheap.executors.messages import pack_epoch, pack_outcome, read_data, unpack
from deepncheap.train import EpochReport
from deepncheap.trial import TrialTask, execute

_STOP = threading.Event()  # this worker process's stop request (its SIGINT/SIGTERM handler sets it)


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
