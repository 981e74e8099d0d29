"""Where trials run: in the driver (`serial`), in long-lived local worker processes (`processes`), or as Ray
tasks on a local or remote Ray cluster (`ray`). One small interface: `submit(task)` and `next_outcome()`.

Executors only run `trial.execute`; the driver keeps the store, scores the results and proposes the next
configs (only the driver writes the store, whatever the executor). `slots` is how many trials run at once
and `threads` the torch CPU threads each has, both recorded with every trial. A stop request
(`train.STOP_REQUESTED`, set by the first Ctrl-C/SIGTERM) is passed on to the running trials, which end
`interrupted` at their next epoch end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import torch

from deepncheap.data import Dataset
from deepncheap.errors import SettingsError
from deepncheap.settings import EXECUTORS
from deepncheap.train import STOP_REQUESTED, DeviceData
from deepncheap.trial import TrialOutcome, TrialTask, execute
from deepncheap.worker import pack_data, pack_task, unpack_outcome

POLL_S = 0.2  # how often a waiting driver looks at the stop flag


class Executor(Protocol):
    """Runs trial tasks; at most `slots` at once, each with `threads` torch CPU threads."""

    slots: int

    @property
    def threads(self) -> int:
        """Torch CPU threads of each trial."""

    def load(self, dataset: Dataset) -> None:
        """Make `dataset` available to the trials (once per search, before any submit)."""

    def submit(self, task: TrialTask) -> None:
        """Start `task` (the caller never submits more than `slots` tasks without taking an outcome)."""

    def next_outcome(self) -> TrialOutcome:
        """Block until a submitted task ends; return how it ended."""

    def close(self) -> None:
        """Stop the workers (tasks still running are abandoned: the driver records them interrupted)."""


def create_executor(
    kind: str,
    device: torch.device,
    *,
    workers: int | None,
    threads: int | None,
    cpus_per_trial: int,
    gpus_per_trial: float | None,
    ray_address: str | None,
) -> Executor:
    """The executor `kind` (`EXECUTORS`), started (worker processes launched, Ray connected) but without
    data until `load`. `workers` (trials at once) defaults to the CPUs (local, or of the Ray cluster) divided
    by `cpus_per_trial`."""
    if kind == "serial":
        return SerialExecutor(device)
    if kind == "processes":
        workers = workers or max(1, (os.cpu_count() or 1) // cpus_per_trial)
        return ProcessExecutor(device, workers=workers, threads=threads or cpus_per_trial)
    if kind == "ray":
        return RayExecutor(
            workers=workers,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            address=ray_address,
        )
    raise SettingsError(f"unknown executor '{kind}'; use one of: {', '.join(EXECUTORS)}")


@contextlib.contextmanager
def opened(executor: Executor) -> Iterator[Executor]:
    try:
        yield executor
    finally:
        executor.close()


class SerialExecutor:
    """Trials run one at a time in the driver's process, on its device and threads."""

    slots = 1

    def __init__(self, device: torch.device):
        self._device = device
        self._task: TrialTask | None = None

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def load(self, dataset: Dataset) -> None:
        self._dataset = dataset
        self.data = DeviceData.from_dataset(dataset, self._device)

    def submit(self, task: TrialTask) -> None:
        assert self._task is None, "the serial executor runs one task at a time"
        self._task = task

    def next_outcome(self) -> TrialOutcome:
        task, self._task = self._task, None
        assert task is not None, "no task was submitted"
        return execute(task, self.data, input_shape=self._dataset.input_shape, num_outputs=self._dataset.num_outputs)

    def close(self) -> None:
        self._task = None


# --- local worker processes ----------------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    send: Connection  # the worker's stdin
    receive: Connection  # the worker's message pipe (its stdout)
    task: TrialTask | None = None


class ProcessExecutor:
    """`workers` long-lived local processes (`python -m deepncheap.worker`, started once: importing torch
    costs ~2 s), each with the data on its device and `threads` torch threads; with several GPUs, worker i
    uses GPU i mod their count. A worker that dies mid-trial is replaced and its task comes back `lost`.

    Workers are fresh interpreters (not multiprocessing children): they never re-run the user's script,
    inherit no open file (such as the run directory's lock), and talk to the driver over their stdin/stdout
    in JSON + safetensors messages (`worker.pack`: the data once, then one task or outcome each)."""

    def __init__(self, device: torch.device, *, workers: int, threads: int):
        self.slots, self.threads = workers, threads
        self._setup = b""
        self._shape: tuple[tuple[int, ...], int] = ((), 0)  # input shape, outputs: to rebuild the models received
        self._devices = [_worker_device(device, index) for index in range(workers)]
        self._workers = [self._start(index) for index in range(workers)]  # they import torch side by side
        self._stop_sent = False

    def load(self, dataset: Dataset) -> None:
        self._setup = pack_data(dataset)
        self._shape = (dataset.input_shape, dataset.num_outputs)
        for worker in self._workers:
            self._send_setup(worker)

    def _start(self, index: int) -> _Worker:
        process = subprocess.Popen(
            [sys.executable, "-m", "deepncheap.worker", self._devices[index], str(self.threads)],
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
        """The data, once (blocks until the worker has imported torch and reads it)."""
        with contextlib.suppress(OSError):  # a worker that died at once is noticed in next_outcome
            worker.send.send_bytes(self._setup)

    def submit(self, task: TrialTask) -> None:
        worker = next(w for w in self._workers if w.task is None)
        worker.task = task
        with contextlib.suppress(OSError):  # died while idle: noticed (and the task lost) in next_outcome
            worker.send.send_bytes(pack_task(task))

    def next_outcome(self) -> TrialOutcome:
        while True:
            busy = [w for w in self._workers if w.task is not None]
            assert busy, "no task was submitted"
            if STOP_REQUESTED.is_set() and not self._stop_sent:
                self._stop_sent = True
                for worker in busy:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.send_signal(signal.SIGTERM)
            ready = wait([w.receive for w in busy], timeout=POLL_S)
            for worker in busy:
                if worker.receive in ready and worker.task is not None:
                    try:
                        message = worker.receive.recv_bytes()
                    except (EOFError, OSError):  # the pipe closed: the worker died
                        return self._replace(worker)
                    outcome = unpack_outcome(message, worker.task.config, *self._shape)
                    worker.task = None
                    return outcome

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
        """Kill the workers (an idle worker holds nothing; a busy one's trial is recorded by the driver)."""
        for worker in self._workers:
            worker.process.kill()
        for worker in self._workers:
            worker.process.wait()
            worker.send.close()
            worker.receive.close()


def _worker_device(device: torch.device, index: int) -> str:
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return str(device)


# --- Ray -------------------------------------------------------------------------------------------------


class RayExecutor:
    """Each trial is a Ray task asking `cpus_per_trial` CPUs and `gpus_per_trial` GPUs (default: 1 where
    the cluster has GPUs); the data go into the object store once. Connects to the cluster at `address`
    (or the one `ray.init` was already called for), else starts a local one for the search. Ray retries a
    task whose worker or node died once; a second death comes back `failed`."""

    def __init__(
        self,
        *,
        workers: int | None,
        cpus_per_trial: int,
        gpus_per_trial: float | None,
        address: str | None,
    ):
        try:
            import ray
        except ImportError:
            raise SettingsError("--executor ray needs Ray; install it with: pip install 'deepncheap[ray]'") from None
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SettingsError(
                    f"cannot connect to the Ray cluster at {address!r} ({exc}); start it with 'ray start --head' "
                    "or leave --ray-address out for a local one"
                ) from None
        resources = ray.cluster_resources()
        if gpus_per_trial is None:
            gpus_per_trial = 1.0 if resources.get("GPU", 0) > 0 else 0.0
        self.threads = cpus_per_trial
        self.slots = workers or max(1, int(resources.get("CPU", 1) // cpus_per_trial))
        self._dataset: Any = None
        self._device = "cuda" if gpus_per_trial > 0 else "cpu"
        self._remote = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=1)(_ray_trial)
        self._running: dict[Any, TrialTask] = {}
        self._stop_sent = False

    def load(self, dataset: Dataset) -> None:
        self._dataset = self._ray.put(dataset)  # once; every trial reads it from the object store

    def submit(self, task: TrialTask) -> None:
        ref = self._remote.remote(self._dataset, self._device, self.threads, task)
        self._running[ref] = task

    def next_outcome(self) -> TrialOutcome:
        ray = self._ray
        while True:
            if STOP_REQUESTED.is_set() and not self._stop_sent:
                self._stop_sent = True
                for ref in self._running:
                    ray.cancel(ref)
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
            if ready:
                task = self._running.pop(ready[0])
                try:
                    outcome: TrialOutcome = ray.get(ready[0])
                    return outcome
                except ray.exceptions.TaskCancelledError:
                    return TrialOutcome(task.trial_id, "interrupted")
                except ray.exceptions.RayError as exc:
                    error = f"Ray task died twice ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
                    return TrialOutcome(task.trial_id, "failed", error=error)

    def close(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns_ray:
            self._ray.shutdown()


def _ray_trial(dataset: Dataset, device: str, threads: int, task: TrialTask) -> TrialOutcome:
    """A Ray task: one trial on the data from the object store."""
    torch.set_num_threads(threads)
    data = DeviceData.from_dataset(dataset, torch.device(device))
    return execute(task, data, input_shape=dataset.input_shape, num_outputs=dataset.num_outputs)
