"""The serial executor: trials one at a time in the driver's process, on its device and threads; epoch
reports go straight to the driver (a stop answer ends the trial after that very epoch).

Torch's, numpy's and Python's random generators are process-wide, and a trial seeds them and draws from
them (initial weights, dropout, batch order). Searches running in threads of one process therefore take
turns trial by trial (`train.GENERATORS_LOCK`), so that each trial's results are those of the same trial run alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from deepncheap.data import Dataset
from deepncheap.executors import EpochCallback
from deepncheap.train import GENERATORS_LOCK, DeviceData, EpochReport
from deepncheap.trial import TrialOutcome, TrialTask, execute


class SerialExecutor:
    """Runs each task when its outcome is asked for."""

    slots = 1

    def __init__(self, device: torch.device, stop: threading.Event):
        self._device = device
        self._stop = stop
        self._task: TrialTask | None = None

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def load(self, dataset: Dataset, scratch: Path) -> None:
        self._dataset = dataset
        self._data = DeviceData.from_dataset(dataset, self._device)

    def submit(self, task: TrialTask) -> None:
        assert self._task is None, "the serial executor runs one task at a time"
        self._task = task

    def next_outcome(self, on_epoch: EpochCallback) -> TrialOutcome:
        task, self._task = self._task, None
        assert task is not None, "no task was submitted"

        def hook(report: EpochReport) -> bool:
            if self._stop.is_set():
                raise KeyboardInterrupt
            return on_epoch(task.trial_id, report)

        dataset = self._dataset
        with GENERATORS_LOCK:
            return execute(
                task, self._data, input_shape=dataset.input_shape, num_outputs=dataset.num_outputs, on_epoch=hook
            )

    def close(self) -> None:
        self._task = None
