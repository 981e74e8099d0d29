"""Parallel trials: local worker processes and a local Ray instance, worker deaths, resume of a killed
parallel search, and `--workers 1` being exactly the sequential search."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import signature, stored_trials

import deepncheap
from deepncheap.errors import SettingsError
from deepncheap.store import RunStore

TINY_MLP = {"hidden_nodes": [16, 48], "num_hidden_layers": [1, 2], "batch_size": [64, 256], "lr": [1e-3, 1e-2]}
DNC = str(Path(sys.executable).parent / "dnc")


def worker_pids(parent=None):
    """The `deepncheap.executors.worker` processes started by `parent` (this test process by default)."""
    parent = os.getpid() if parent is None else parent
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _child_worker(p, parent)]


def tiny_search(out, **options):
    settings = dict(
        data="digits", network="mlp", wc=0.1, penalty="params", method="dnc", prior_points=3, bo_steps=3,
        epochs=2, seed=0, space=TINY_MLP, out=out, verbose=False, report=False, prune="none",
    )  # fmt: skip
    return deepncheap.search(**(settings | options))


def check_parallel_run(run, *, workers):
    trials = stored_trials(run)
    with RunStore.open(run) as store:  # every epoch of every trial was streamed back while it ran
        epochs = [(e.trial_id, e.epoch) for e in store.epochs()]
    assert epochs == [(t.trial_id, epoch) for t in trials for epoch in range(1, t.epochs + 1)]
    # core 3 + 3, MLP dropout grid (5 rates besides the incumbent's), training 3 + 3
    assert len(trials) == 6 + 5 + 6
    assert all(t.status == "complete" for t in trials)
    assert max(t.concurrent for t in trials) == workers  # trials did run side by side
    for stage in ("core", "training"):  # proposals made beside pending trials differ from them
        configs = [json.dumps(t.config, sort_keys=True) for t in trials if t.stage == stage]
        assert len(set(configs)) == len(configs)
    assert (
        json.loads((run / "best.json").read_text())["trial_id"]
        == min(trials, key=lambda t: (t.objective, t.trial_id)).trial_id
    )


def test_two_worker_processes_finish_the_search_with_every_trial_stored(tmp_path):
    result = tiny_search(tmp_path / "run", workers=2)  # --workers 2 alone means the processes executor
    assert result.finished
    check_parallel_run(tmp_path / "run", workers=2)
    assert {t.threads for t in stored_trials(tmp_path / "run")} == {1}  # --cpus-per-trial 1: one thread each


def test_one_worker_process_is_exactly_the_sequential_search(tmp_path):
    serial = tiny_search(tmp_path / "serial", threads=1)
    one = tiny_search(tmp_path / "one", executor="processes", workers=1, threads=1)
    assert signature(stored_trials(one.run_dir)) == signature(stored_trials(serial.run_dir))
    assert one.best_config == serial.best_config


def test_a_killed_worker_process_is_replaced_and_its_trial_run_again(tmp_path, capsys):
    run = tmp_path / "run"
    killed: list[int] = []

    def kill_a_busy_worker():  # SIGKILL one worker process once a trial is running
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            workers = worker_pids()
            try:
                running = (run / "store.sqlite").exists() and any(t.status == "running" for t in stored_trials(run))
            except Exception:  # the store is being created
                running = False
            if running and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        result = tiny_search(run, workers=2, epochs=4, verbose=True)
    finally:
        killer.join()
    assert killed and result.finished
    assert "worker process died (killed by signal 9)" in capsys.readouterr().err
    check_parallel_run(run, workers=2)


def start_cli_search(tmp_path, *options):
    """`dnc search` of the tiny space with two worker processes, as a subprocess: (run directory, process)."""
    run, space = tmp_path / "run", tmp_path / "space.json"
    space.write_text(json.dumps(TINY_MLP))
    command = [
        DNC, "search", "--data", "digits", "--network", "mlp", "--penalty", "params", "--prior-points", "3",
        "--space", str(space), "--workers", "2", "--prune", "none", "--out", str(run), *options,
    ]  # fmt: skip
    return run, subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def wait_until(run, process, condition, timeout=120):
    """Poll the store of the running search until `condition(trials)` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if condition(stored_trials(run)):
                return
        except Exception:  # the store is not created yet
            pass
        time.sleep(0.02)
    raise AssertionError("the search never got there")


def test_resume_of_a_killed_parallel_search_loses_nothing(tmp_path):
    run, driver = start_cli_search(tmp_path, "--bo-steps", "3", "--epochs", "4", "--quiet")
    try:  # kill once 4 trials are done and one or two are running
        wait_until(
            run,
            driver,
            lambda trials: (
                sum(t.status == "complete" for t in trials) >= 4 and any(t.status == "running" for t in trials)
            ),
        )
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    assert driver.returncode == -signal.SIGKILL
    before = {t.trial_id: t for t in stored_trials(run) if t.status == "complete"}
    running = [t for t in stored_trials(run) if t.status == "running"]
    assert len(before) >= 4 and running

    done = subprocess.run([DNC, "resume", str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = stored_trials(run)
    for trial_id, trial in before.items():  # every trial finished before the kill is kept as it was
        kept = next(t for t in after if t.trial_id == trial_id)
        assert (kept.status, kept.objective, kept.config) == ("complete", trial.objective, trial.config)
    complete = [(t.stage, t.stage_index) for t in after if t.status == "complete"]
    assert len(complete) == len(set(complete)) == 6 + 5 + 6  # nothing lost, nothing trained twice
    for trial in running:  # the trials cut off by the kill ran again, with the same config
        assert trial.trial_id in {t.trial_id for t in after if t.status == "interrupted"}
        again = next(
            t for t in after if (t.stage, t.stage_index) == (trial.stage, trial.stage_index) and t.status == "complete"
        )
        assert again.config == trial.config


def test_a_ray_search_on_a_local_instance_stores_every_trial(tmp_path, local_ray):
    result = tiny_search(tmp_path / "run", executor="ray", workers=2)
    assert result.finished
    check_parallel_run(tmp_path / "run", workers=2)
    assert local_ray.is_initialized()  # a Ray the caller started is left running for the caller


def test_parallel_settings_are_checked_at_the_edge(tmp_path):
    with pytest.raises(SettingsError, match="serial executor runs one trial at a time"):
        tiny_search(tmp_path / "a", executor="serial", workers=2)
    with pytest.raises(SettingsError, match="unknown executor 'threads'"):
        tiny_search(tmp_path / "b", executor="threads")
    with pytest.raises(SettingsError, match="--ray-address needs --executor ray"):
        tiny_search(tmp_path / "c", workers=2, ray_address="10.0.0.1:6379")
    with pytest.raises(SettingsError, match="--workers must be an integer >= 1"):
        tiny_search(tmp_path / "d", executor="processes", workers=0)


def test_sigterm_stops_every_running_trial_of_a_parallel_search_and_resume_finishes(tmp_path):
    run, driver = start_cli_search(tmp_path, "--bo-steps", "1", "--epochs", "60", "--max-trials", "4")
    try:
        wait_until(run, driver, lambda trials: sum(t.status == "running" for t in trials) == 2)  # side by side
        workers = worker_pids(driver.pid)
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    assert "stopping at the end of this epoch" in err and f"continue with: dnc resume {run}" in err
    assert len(workers) == 2 and not any(Path(f"/proc/{pid}").exists() for pid in workers)  # none left behind
    statuses = [t.status for t in stored_trials(run)]
    assert statuses.count("interrupted") >= 1 and "running" not in statuses
    with RunStore.open(run) as store:
        assert store.state["state"] == "interrupted"

    done = subprocess.run([DNC, "resume", str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    complete = [(t.stage, t.stage_index) for t in stored_trials(run) if t.status == "complete"]
    assert len(complete) == len(set(complete)) == 4
    assert {t.threads for t in stored_trials(run)} == {1}  # the resumed workers keep one thread each


def _child_worker(proc: Path, parent: int) -> bool:
    try:
        ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        return ppid == parent and b"deepncheap.executors.worker" in (proc / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def test_the_ray_executor_without_ray_installed_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as without the extra
    with pytest.raises(
        SettingsError, match=r"--executor ray needs Ray; install it with: pip install 'deepncheap\[ray\]'"
    ):
        tiny_search(tmp_path / "run", executor="ray", workers=2)
    assert not (tmp_path / "run").exists()  # refused before any run directory is made


def test_worker_messages_carry_measurements_and_weights_as_json_and_safetensors():
    import torch

    from deepncheap.data import load_dataset
    from deepncheap.executors.messages import pack_outcome, pack_task, unpack, unpack_outcome
    from deepncheap.space import SearchSpace
    from deepncheap.train import DeviceData
    from deepncheap.trial import TrialTask, execute

    dataset = load_dataset("digits", network="mlp")
    config = SearchSpace.create("mlp").default_config(depth=1, widths=[24])
    task = TrialTask(7, config, seed=3, epochs=2)
    expected = {"kind": "task", "trial_id": 7, "config": config, "seed": 3, "epochs": 2, "augment": False}
    assert unpack(pack_task(task))[0] == expected
    sent = execute(task, DeviceData.from_dataset(dataset, torch.device("cpu")), input_shape=(64,), num_outputs=10)
    message = pack_outcome(sent)
    header, tensors = unpack(message)  # a JSON header and safetensors: nothing is unpickled
    assert header["status"] == "complete" and set(tensors) == set(sent.measured.model.state_dict())
    received = unpack_outcome(header, tensors, config, (64,), 10)
    assert received.measured.training.val_curve == sent.measured.training.val_curve
    assert received.measured.n_params == sent.measured.n_params
    for key, value in sent.measured.model.state_dict().items():
        assert torch.equal(received.measured.model.state_dict()[key], value)
    x = torch.from_numpy(dataset.x_val[:5])
    sent.measured.model.eval(), received.measured.model.eval()
    assert torch.equal(received.measured.model(x), sent.measured.model(x))  # the same network, rebuilt


def test_a_resumed_search_keeps_the_number_of_trials_at_once_it_started_with(tmp_path, monkeypatch):
    import deepncheap.executors

    stopped = tiny_search(tmp_path / "run", executor="processes", max_trials=1)  # workers: CPUs here
    assert stopped.settings["slots"] == (os.cpu_count() or 1) == 2
    monkeypatch.setattr(deepncheap.executors.os, "cpu_count", lambda: 8)  # "another machine"
    result = deepncheap.resume(tmp_path / "run", max_trials=4, verbose=False, report=False)
    assert not result.finished
    trials = stored_trials(tmp_path / "run")
    assert len(trials) == 4 and max(t.concurrent for t in trials) == 2  # 3 prior points, 2 at a time


def test_nothing_the_driver_imports_brings_in_the_worker_s_main_module():
    """`python -m deepncheap.executors.worker` warns (RuntimeWarning: found in sys.modules) when importing its
    package already imported the module; the driver's modules never import it (its messages are apart)."""
    code = (
        "import sys, deepncheap, deepncheap.executors.processes, deepncheap.executors.serial, deepncheap.cli\n"
        "print('deepncheap.executors.worker' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_two_worker_search_prints_no_runtime_warning(tmp_path):
    dnc = Path(sys.executable).parent / "dnc"
    options = "--data digits --network mlp --method random --max-trials 2 --epochs 1 --penalty params --quiet"
    env = os.environ | {"PYTHONWARNINGS": "default"}  # (the workers' warnings shown, whatever the driver hides)
    result = subprocess.run(
        [str(dnc), "search", *options.split(), "--workers", "2", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
