"""Executors: every executor streams a running trial's epochs to the driver and stops the trial when the
driver answers so; slots follow the scarcest resource; Ray honours --device; worker processes map one copy
of the data."""

import threading

import pytest
import torch

from deepncheap.data import load_dataset
from deepncheap.errors import SettingsError
from deepncheap.executors import create_executor, opened, process_slots, resource_slots
from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace
from deepncheap.trial import TrialTask

EPOCHS = 4
LONG = 5000  # epochs of the task to stop (about 1 ms each): far longer than a stop answer takes to arrive


def run_task(executor_kind, tmp_path, *, stop_after=None, workers=1, epochs=EPOCHS):
    """One task on `executor_kind`: the epochs the driver received, and the outcome."""
    settings = SearchSettings.from_options(network="mlp", executor=executor_kind, workers=workers)
    dataset = load_dataset("digits", network="mlp")
    config = SearchSpace.create("mlp").default_config(depth=1, widths=[24])
    received = []

    def on_epoch(trial_id, report):
        received.append((trial_id, report.epoch))
        return stop_after is not None and report.epoch >= stop_after

    with opened(create_executor(settings, torch.device("cpu"), threading.Event())) as executor:
        executor.load(dataset, tmp_path / "scratch")
        executor.submit(TrialTask(7, config, seed=1, epochs=epochs))
        outcome = executor.next_outcome(on_epoch)
    return received, outcome


@pytest.mark.parametrize("kind", ["serial", "processes", "ray"])
def test_epochs_stream_to_the_driver_and_a_stop_answer_ends_the_trial(kind, tmp_path, request):
    if kind == "ray":
        request.getfixturevalue("local_ray")
    received, outcome = run_task(kind, tmp_path)
    assert outcome.status == "complete"
    assert received == [(7, epoch) for epoch in range(1, EPOCHS + 1)]  # every epoch, in order, while it ran
    assert outcome.measured.training.val_curve == pytest.approx(outcome.measured.training.val_curve)

    received, outcome = run_task(kind, tmp_path, stop_after=1, epochs=LONG)
    assert outcome.status == "stopped" and outcome.measured is not None
    stopped_at = len(outcome.measured.training.val_curve)
    # in the driver the trial stops after that very epoch; in a worker at the first epoch end after the answer
    # arrives (the driver looks every few tens of ms)
    assert stopped_at == 1 if kind == "serial" else 1 <= stopped_at < LONG // 2
    assert [epoch for _, epoch in received] == list(range(1, stopped_at + 1))


def test_worker_processes_map_the_data_files_and_close_removes_them(tmp_path):
    settings = SearchSettings.from_options(network="mlp", executor="processes", workers=2)
    dataset = load_dataset("digits", network="mlp")
    scratch = tmp_path / "scratch"
    with opened(create_executor(settings, torch.device("cpu"), threading.Event())) as executor:
        executor.load(dataset, scratch)
        assert sorted(p.name for p in scratch.iterdir()) == ["x_train.npy", "x_val.npy", "y_train.npy", "y_val.npy"]
    assert not scratch.exists()


def test_slots_follow_the_scarcest_resource():
    # a 16-CPU, 1-GPU node runs one trial that takes a GPU, not 16
    assert resource_slots({"CPU": 16, "GPU": 1}, cpus_per_trial=1, gpus_per_trial=1) == 1
    assert resource_slots({"CPU": 16, "GPU": 4}, cpus_per_trial=2, gpus_per_trial=0.5) == 8
    assert resource_slots({"CPU": 16, "GPU": 1}, cpus_per_trial=4, gpus_per_trial=0) == 4
    assert resource_slots({"CPU": 2}, cpus_per_trial=4, gpus_per_trial=0) == 1
    # local worker processes on CUDA: one per GPU (each holds a CUDA context and a copy of the data)
    assert process_slots(torch.device("cuda"), cpus=16, gpus=1, cpus_per_trial=1) == 1
    assert process_slots(torch.device("cuda"), cpus=16, gpus=3, cpus_per_trial=1) == 3
    assert process_slots(torch.device("cpu"), cpus=16, gpus=3, cpus_per_trial=2) == 8


def test_ray_trials_follow_the_device_asked_for():
    from deepncheap.executors.ray import trial_gpus

    assert trial_gpus("cpu", None, cluster_gpus=4) == 0  # --device cpu on a GPU cluster trains on CPUs
    assert trial_gpus("auto", None, cluster_gpus=4) == 1
    assert trial_gpus("auto", None, cluster_gpus=0) == 0
    assert trial_gpus("cuda", 0.5, cluster_gpus=1) == 0.5
    with pytest.raises(SettingsError, match="--device cuda but the Ray cluster has no GPU"):
        trial_gpus("cuda", None, cluster_gpus=0)
    with pytest.raises(SettingsError, match="--device cpu with --gpus-per-trial 1"):
        trial_gpus("cpu", 1, cluster_gpus=1)
