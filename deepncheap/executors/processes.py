"""The `processes` executor: long-lived local worker processes (`python -m deepncheap.executors.worker`,
started once: importing torch costs ~2 s), each with the data on its device and `threads` torch threads;
with several GPUs, worker i uses GPU i mod their count. A worker that dies mid-trial is replaced and its
task comes back `lost`.

Workers are fresh interpreters (not multiprocessing children): they never re-run the user's script,
inherit no open file (such as the run directory's lock), and talk to the driver over their stdin/stdout
(`messages.py`). The data go to them once, as .npy files in the run's scratch folder that every worker
maps: the driver writes them without copying, and on the CPU the workers share one copy in memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from deepncheap.data import Dataset
from deepncheap.executors import POLL_S, EpochCallback
from deepncheap.executors.messages import DATA_KEYS, pack, pack_task, unpack, unpack_outcome, write_data
from deepncheap.train import EpochReport
from deepncheap.trial import TrialOutcome, TrialTask


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    send: Connection  # the worker's stdin
    receive: Connection  # the worker's message pipe (its stdout)
    task: TrialTask | None = None


class ProcessExecutor:
    """`workers` local worker processes."""

    def __init__(self, device: torch.device, stop: threading.Event, *, workers: int, threads: int):
        self.slots, self.threads = workers, threads
        self._stop = stop
        self._setup = b""
        self._scratch: Path | None = None
        self._shape: tuple[tuple[int, ...], int] = ((), 0)  # input shape, outputs: to rebuild the models received
        self._devices = [_worker_device(device, index) for index in range(workers)]
        self._workers = [self._start(index) for index in range(workers)]  # they import torch side by side
        self._stop_sent = False

    def load(self, dataset: Dataset, scratch: Path) -> None:
        self._scratch = scratch
        write_data({key: getattr(dataset, key) for key in DATA_KEYS}, scratch)
        self._setup = pack({"data_dir": str(scratch), "task": dataset.task, "num_outputs": dataset.num_outputs})
        self._shape = (dataset.input_shape, dataset.num_outputs)
        for worker in self._workers:
            self._send_setup(worker)

    def _start(self, index: int) -> _Worker:
        process = subprocess.Popen(
            [sys.executable, "-m", "deepncheap.executors.worker", self._devices[index], str(self.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        worker = _Worker(
            process,
            Connection(os.dup(process.stdin.fileno()), readable=False),
            Connection(os.dup(process.stdout.fileno()), writable=False),
        )
        process.stdin.close()
        process.stdout.close()
        return worker

    def _send_setup(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):  # a worker that died at once is noticed in next_outcome
            worker.send.send_bytes(self._setup)

    def submit(self, task: TrialTask) -> None:
        worker = next(w for w in self._workers if w.task is None)
        worker.task = task
        with contextlib.suppress(OSError):  # died while idle: noticed (and the task lost) in next_outcome
            worker.send.send_bytes(pack_task(task))

    def next_outcome(self, on_epoch: EpochCallback) -> TrialOutcome:
        while True:
            busy = [w for w in self._workers if w.task is not None]
            assert busy, "no task was submitted"
            if self._stop.is_set() and not self._stop_sent:
                self._stop_sent = True
                for worker in busy:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.send_signal(signal.SIGTERM)
            ready = wait([w.receive for w in busy], timeout=POLL_S)
            for worker in busy:
                if worker.receive not in ready or worker.task is None:
                    continue
                try:
                    header, tensors = unpack(worker.receive.recv_bytes())
                except (EOFError, OSError):  # the pipe closed: the worker died
                    return self._replace(worker)
                task = worker.task
                if header["kind"] == "epoch":
                    header.pop("kind")
                    trial_id = header.pop("trial_id")
                    if on_epoch(trial_id, EpochReport(**header)):
                        with contextlib.suppress(OSError):
                            worker.send.send_bytes(pack({"kind": "stop", "trial_id": trial_id}))
                    continue
                worker.task = None
                return unpack_outcome(header, tensors, task.config, *self._shape)

    def _replace(self, worker: _Worker) -> TrialOutcome:
        """A worker died: start another in its place; its task is `lost`."""
        task = worker.task
        assert task is not None
        code = worker.process.wait()
        worker.send.close()
        worker.receive.close()
        index = self._workers.index(worker)
        self._workers[index] = self._start(index)
        self._send_setup(self._workers[index])
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return TrialOutcome(task.trial_id, "lost", error=f"worker process died ({how})")

    def close(self) -> None:
        """Kill the workers (an idle worker holds nothing; a busy one's trial is recorded by the driver) and
        remove the data files."""
        for worker in self._workers:
            worker.process.kill()
        for worker in self._workers:
            worker.process.wait()
            worker.send.close()
            worker.receive.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _worker_device(device: torch.device, index: int) -> str:
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return str(device)
