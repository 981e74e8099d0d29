"""The `ray` executor: each trial is a Ray task on a local or remote Ray cluster.

A task asks `cpus_per_trial` CPUs and `gpus_per_trial` GPUs: by default 1 GPU where the cluster has GPUs
and `--device` allows them (`--device cpu` never uses one; `--device cuda` needs one), and the search runs
as many trials at once as the scarcest of the two resources allows. The data go into the object store once,
and each Ray worker process keeps its device copy across the trials it runs. Epoch reports travel through a
small actor (`EpochChannel`) that the driver reads while it waits. A task never waits for the actor after an
epoch: it keeps at most one call to it in flight and sends the epochs that ended meanwhile together with the
next one, so the actor's queue stays short however short the epochs, and a stop answer reaches the task at the
first epoch end after it arrived (at its end the task sends what is left and waits, so that every report is in
before its outcome). Ray retries a task whose worker or node died once; a second death
comes back `failed`.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import torch

from deepncheap.data import Dataset
from deepncheap.errors import SettingsError
from deepncheap.executors import EpochCallback, resource_slots
from deepncheap.settings import SearchSettings
from deepncheap.train import DeviceData, EpochReport
from deepncheap.trial import TrialOutcome, TrialTask, execute

CHANNEL_POLL_S = 0.05  # how often the waiting driver reads the epoch channel (and looks at the stop event)


class EpochChannel:
    """A Ray actor between running tasks and the driver: epoch reports in, stop answers out."""

    def __init__(self) -> None:
        self._reports: list[tuple[int, EpochReport]] = []
        self._stopped: set[int] = set()

    def report(self, trial_id: int, reports: list[EpochReport]) -> bool:
        """Called by a task with the epochs it ended since its last call: True when the driver asked to stop
        that trial."""
        self._reports.extend((trial_id, report) for report in reports)
        return trial_id in self._stopped

    def drain(self) -> list[tuple[int, EpochReport]]:
        reports, self._reports = self._reports, []
        return reports

    def stop(self, trial_id: int) -> None:
        self._stopped.add(trial_id)


class RayExecutor:
    """Trials as Ray tasks. Connects to the cluster at `settings.ray_address` (or the one `ray.init` was
    already called for), else starts a local one for the search (and shuts it down at close)."""

    def __init__(self, settings: SearchSettings, device: torch.device, stop: threading.Event):
        try:
            import ray
        except ImportError:
            raise SettingsError("--executor ray needs Ray; install it with: pip install 'deepncheap[ray]'") from None
        self._ray = ray
        self._stop = stop
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(
                    address=settings.ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SettingsError(
                    f"cannot connect to the Ray cluster at {settings.ray_address!r} ({exc}); start it with "
                    "'ray start --head' or leave --ray-address out for a local one"
                ) from None
        resources = ray.cluster_resources()
        gpus = trial_gpus(settings.device, settings.gpus_per_trial, cluster_gpus=resources.get("GPU", 0))
        self.threads = settings.cpus_per_trial
        self.slots = settings.workers or resource_slots(
            resources, cpus_per_trial=settings.cpus_per_trial, gpus_per_trial=gpus
        )
        self._device = "cuda" if gpus > 0 else "cpu"
        self._remote = ray.remote(num_cpus=settings.cpus_per_trial, num_gpus=gpus, max_retries=1)(_ray_trial)
        channel: Any = ray.remote(num_cpus=0)(EpochChannel).remote()
        ray.get(channel.drain.remote())  # up before any task: else a first trial's epochs wait for it
        self._channel = channel
        self._data: list[Any] = []
        self._token = uuid.uuid4().hex
        self._running: dict[Any, TrialTask] = {}
        self._stop_sent = False
        self._stopping: set[int] = set()  # trials the driver told to stop (told once)

    def load(self, dataset: Dataset, scratch: Path) -> None:
        self._data = [self._ray.put(dataset)]  # once; in a list so that tasks fetch it only when not cached
        self._shape = (dataset.input_shape, dataset.num_outputs)

    def submit(self, task: TrialTask) -> None:
        ref = self._remote.remote(self._data, self._token, self._shape, self._device, self.threads, task, self._channel)
        self._running[ref] = task

    def next_outcome(self, on_epoch: EpochCallback) -> TrialOutcome:
        ray = self._ray
        while True:
            if self._stop.is_set() and not self._stop_sent:
                self._stop_sent = True
                for ref in self._running:
                    ray.cancel(ref)
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=CHANNEL_POLL_S)
            for trial_id, report in ray.get(self._channel.drain.remote()):
                if on_epoch(trial_id, report) and trial_id not in self._stopping:
                    self._stopping.add(trial_id)
                    self._channel.stop.remote(trial_id)
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


def trial_gpus(device: str, gpus_per_trial: float | None, *, cluster_gpus: float) -> float:
    """GPUs one trial asks for, from `--device` and `--gpus-per-trial`: `cpu` takes none, `cuda` needs a
    cluster with GPUs, `auto` takes one where the cluster has GPUs."""
    if device == "cpu":
        if gpus_per_trial:
            raise SettingsError(f"--device cpu with --gpus-per-trial {gpus_per_trial:g}; drop one of them")
        return 0.0
    if device.startswith("cuda") and cluster_gpus == 0:
        raise SettingsError("--device cuda but the Ray cluster has no GPU; use --device cpu or auto")
    if gpus_per_trial is not None:
        return float(gpus_per_trial)
    return 1.0 if cluster_gpus > 0 else 0.0


_device_data: dict[str, DeviceData] = {}  # per Ray worker process: the search's data on its device


def _ray_trial(
    data: list[Any],
    token: str,
    shape: tuple[tuple[int, ...], int],
    device: str,
    threads: int,
    task: TrialTask,
    channel: Any,
) -> TrialOutcome:
    """A Ray task: one trial on the data from the object store (put on the device once per worker process)."""
    import ray

    torch.set_num_threads(threads)
    key = f"{token}:{device}"
    if key not in _device_data:
        _device_data.clear()  # another search's data
        _device_data[key] = DeviceData.from_dataset(ray.get(data[0]), torch.device(device))
    input_shape, num_outputs = shape

    unsent: list[EpochReport] = []  # epochs ended while the previous call to the channel was in flight
    in_flight: list[Any] = []  # that call (at most one)

    def on_epoch(report: EpochReport) -> bool:
        """Queue the report and send what is queued unless a call is still in flight (a round trip every
        epoch slowed short epochs, and a call per epoch queued the driver's stop behind them): True once the
        channel answers that the driver stopped this trial."""
        unsent.append(report)
        if in_flight:
            ready, _ = ray.wait(in_flight, timeout=0)
            if not ready:
                return False
            if ray.get(in_flight.pop()):
                return True
        in_flight.append(channel.report.remote(task.trial_id, unsent[:]))
        unsent.clear()
        return False

    outcome = execute(task, _device_data[key], input_shape=input_shape, num_outputs=num_outputs, on_epoch=on_epoch)
    ray.get(in_flight + ([channel.report.remote(task.trial_id, unsent)] if unsent else []))
    return outcome
