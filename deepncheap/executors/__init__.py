"""Where trials run: in the driver (`serial`), in long-lived local worker processes (`processes`), or as Ray
tasks on a local or remote Ray cluster (`ray`). One small interface: `load(dataset)` once, then
`submit(task)` and `next_outcome(on_epoch)`.

Executors only run `trial.execute`; the driver keeps the store, scores the results and proposes the next
configs (only the driver writes the store, whatever the executor). While a trial runs, every executor
streams its epoch reports to the driver's `on_epoch(trial_id, report)`; when that answers True the trial
stops at its next epoch end (at once in the driver; within an epoch in workers and on Ray) and comes back
`stopped`. `slots` is how many trials run at once (set by the scarcest resource: CPUs, GPUs) and `threads`
the torch CPU threads each has. The search's stop event (a Ctrl-C/SIGTERM) is passed on to the running
trials, which end `interrupted` at their next epoch end.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import torch

from deepncheap.data import Dataset
from deepncheap.errors import SettingsError
from deepncheap.settings import EXECUTORS, SearchSettings
from deepncheap.train import EpochReport
from deepncheap.trial import TrialOutcome, TrialTask

POLL_S = 0.2  # how often a waiting driver looks at the stop event
EpochCallback = Callable[[int, EpochReport], bool]  # (trial_id, report) -> stop that trial


class Executor(Protocol):
    """Runs trial tasks; at most `slots` at once, each with `threads` torch CPU threads."""

    slots: int

    @property
    def threads(self) -> int:
        """Torch CPU threads of each trial."""

    def load(self, dataset: Dataset, scratch: Path) -> None:
        """Make `dataset` available to the trials (once per search, before any submit); `scratch` is a
        folder of the run the executor may use (and empties at close)."""

    def submit(self, task: TrialTask) -> None:
        """Start `task` (the caller never submits more than `slots` tasks without taking an outcome)."""

    def next_outcome(self, on_epoch: EpochCallback) -> TrialOutcome:
        """Block until a submitted task ends, passing its epochs (and other tasks') to `on_epoch`."""

    def close(self) -> None:
        """Stop the workers (tasks still running are abandoned: the driver records them interrupted)."""


def create_executor(settings: SearchSettings, device: torch.device, stop: threading.Event) -> Executor:
    """The executor of `settings.executor`, started (worker processes launched, Ray connected) but without
    data until `load`; `settings.workers` trials at once, else as many as the resources allow."""
    kind = settings.executor
    if kind == "serial":
        from deepncheap.executors.serial import SerialExecutor

        return SerialExecutor(device, stop)
    if kind == "processes":
        from deepncheap.executors.processes import ProcessExecutor

        workers = settings.workers or process_slots(
            device, cpus=os.cpu_count() or 1, gpus=torch.cuda.device_count(), cpus_per_trial=settings.cpus_per_trial
        )
        return ProcessExecutor(device, stop, workers=workers, threads=settings.threads or settings.cpus_per_trial)
    if kind == "ray":
        from deepncheap.executors.ray import RayExecutor

        return RayExecutor(settings, device, stop)
    raise SettingsError(f"unknown executor '{kind}'; use one of: {', '.join(EXECUTORS)}")


def process_slots(device: torch.device, *, cpus: int, gpus: int, cpus_per_trial: int) -> int:
    """Local worker processes by default: one per GPU on CUDA (each worker holds a CUDA context and a copy of
    the data on its GPU), else the CPUs divided by the CPUs of a trial."""
    if device.type == "cuda":
        return max(1, gpus if device.index is None else 1)
    return max(1, cpus // cpus_per_trial)


def resource_slots(resources: dict[str, float], *, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """Trials a cluster runs at once: set by its scarcest resource (a 16-CPU, 1-GPU node runs one trial that
    takes a GPU, not 16)."""
    slots = resources.get("CPU", 1) / cpus_per_trial
    if gpus_per_trial > 0:
        slots = min(slots, resources.get("GPU", 0) / gpus_per_trial)
    return max(1, math.floor(slots + 1e-9))


@contextlib.contextmanager
def opened(executor: Executor) -> Iterator[Executor]:
    try:
        yield executor
    finally:
        executor.close()
