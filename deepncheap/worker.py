"""A local worker process of the `processes` executor: `python -m deepncheap.worker DEVICE THREADS`.

Reads the dataset (one pickled message on stdin), puts it on DEVICE once, then runs each `TrialTask` it
receives and writes back its `TrialOutcome`, until stdin closes. Messages are length-prefixed pickles
(`multiprocessing.connection.Connection` on the pipes) exchanged with the driver only. The first SIGINT or
SIGTERM stops the running trial at its next epoch end (it comes back `interrupted`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection

import torch

from deepncheap.data import Dataset
from deepncheap.train import STOP_REQUESTED, DeviceData
from deepncheap.trial import TrialTask, execute


def main(device: str, threads: int) -> None:
    receive = Connection(0, writable=False)
    send = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray prints go to stderr, not into the message pipe
    _die_with_parent()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group
        signal.signal(stop_signal, lambda *_: STOP_REQUESTED.set())
    torch.set_num_threads(threads)
    try:
        dataset: Dataset = pickle.loads(receive.recv_bytes())
    except (EOFError, OSError):
        return
    data = DeviceData.from_dataset(dataset, torch.device(device))
    while True:
        try:
            task: TrialTask = pickle.loads(receive.recv_bytes())
        except (EOFError, OSError):
            return
        STOP_REQUESTED.clear()  # a stop concerns the trial that was running when it came
        outcome = execute(task, data, input_shape=dataset.input_shape, num_outputs=dataset.num_outputs)
        try:
            send.send_bytes(pickle.dumps(outcome))
        except OSError:
            return


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the driver dies (prctl PR_SET_PDEATHSIG); elsewhere a worker
    ends when it next finds its pipes closed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
