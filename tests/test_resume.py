"""A search survives anything: SIGKILL at chosen moments then `dnc resume`, graceful Ctrl-C/SIGTERM, time and
trial budgets, and resuming through the API. Real subprocesses, real SQLite files, real training."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import deepncheap
from deepncheap.artifacts import weights_trial_id
from deepncheap.cli import main
from deepncheap.errors import DataError, OutputError, SearchStopped
from deepncheap.store import RunStore

DNC = str(Path(sys.executable).parent / "dnc")
MLP_SPACE = "num_hidden_layers: [1, 2]\nhidden_nodes: [20, 64]\nbatch_size: [64, 256]\nlr: [0.001, 0.03]\n"
MLP_OPTIONS = ["--data", "digits", "--network", "mlp", "--penalty", "params", "--prior-points", "3", "--bo-steps", "2"]
MLP_OPTIONS += ["--epochs", "2", "--quiet"]

# Runs the dnc CLI and SIGKILLs its own process at one chosen moment (a real SIGKILL: no handler runs).
FAULT_HARNESS = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    import deepncheap.train
    from deepncheap import artifacts, bo, cli
    from deepncheap.runner import Runner

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    kind, where, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if kind == "trial":  # after the first epoch of trial STAGE:INDEX (its row is `running`)
        stage, index = where.split(":")
        start, evaluate, armed = Runner._start, deepncheap.train.evaluate, []

        def killing_start(self, proposal):  # (serial executor: the trial started is the next one trained)
            if (proposal.stage, proposal.index) == (stage, int(index)):
                armed.append(True)
            return start(self, proposal)

        def killing_evaluate(*args):
            if armed:
                die()
            return evaluate(*args)

        Runner._start = killing_start
        deepncheap.train.evaluate = killing_evaluate
    elif kind == "propose":  # inside the N-th BO proposal of this process
        propose, calls = bo.propose, []

        def killing_propose(*args, **kwargs):
            calls.append(1)
            if len(calls) == int(where):
                die()
            return propose(*args, **kwargs)

        bo.propose = killing_propose
    elif kind == "write":  # half-way through writing the output file WHERE
        write_atomic = artifacts.write_atomic

        def killing_write(path, data):
            if path.name == where:
                fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                os.write(fd, data[: len(data) // 2])
                os.fsync(fd)
                die()
            write_atomic(path, data)

        artifacts.write_atomic = killing_write
    sys.exit(cli.main(argv))
    """
)


def run_dnc(*args, harness=None, timeout=300):
    command = [sys.executable, str(harness), *args] if harness else [DNC, *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def complete_set(run):
    with RunStore.open(run) as store:
        return {
            (t.stage, t.stage_index, json.dumps(t.config, sort_keys=True), t.objective)
            for t in store.trials(status="complete")
        }


def integrity(run):
    db = sqlite3.connect(f"file:{run / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def assert_no_duplicates(run):
    with RunStore.open(run) as store:
        keys = [(t.stage, t.stage_index) for t in store.trials() if t.status in ("complete", "failed")]
    assert len(keys) == len(set(keys)), keys


@pytest.mark.slow
def test_sigkill_at_many_moments_then_resume_loses_nothing(tmp_path, capsys):
    """Kill a real search during a prior trial, inside a BO proposal, during a grid sub-stage, during a
    training-stage BO trial and while writing best.json; resume each time; the finished run equals an
    uninterrupted one (same complete trials, same objectives, same best config)."""
    space = tmp_path / "space.yaml"
    space.write_text(MLP_SPACE)
    harness = tmp_path / "harness.py"
    harness.write_text(FAULT_HARNESS)
    options = [*MLP_OPTIONS, "--space", str(space)]

    reference = tmp_path / "reference"
    done = run_dnc("search", *options, "--out", str(reference))
    assert done.returncode == 0, done.stderr
    expected = complete_set(reference)
    assert len(expected) == 5 + 5 + 5  # core 3+2, MLP dropout grid 5, training 3+2

    run = tmp_path / "run"
    kills = [
        ("search", "trial", "core:1"),  # during a prior trial
        ("resume", "propose", "2"),  # inside the second BO proposal of the resumed process (core stage)
        ("resume", "trial", "advanced:2"),  # during the dropout grid sub-stage
        ("resume", "trial", "training:3"),  # during the first BO trial of the training stage
        ("resume", "write", "best.json"),  # half-way through writing the outputs
    ]
    before: set = set()
    for command, kind, where in kills:
        args = [command, *options, "--out", str(run)] if command == "search" else ["resume", str(run), "--quiet"]
        done = run_dnc(kind, where, *args, harness=harness)
        assert done.returncode == -signal.SIGKILL, (kind, where, done.stderr)
        assert integrity(run) == "ok"
        now = complete_set(run)
        assert before <= now, f"completed trials lost by the kill at {kind} {where}"
        assert_no_duplicates(run)
        before = now
    json.loads((run / "best.json").read_text())  # the kill came half-way through rewriting it: the last whole one
    assert list(run.glob(".best.json.*.tmp"))  # ... and left its temporary file behind

    assert main(["show", str(run)]) == 0
    assert "not running (its process ended without stopping; killed?)" in capsys.readouterr().out

    done = run_dnc("resume", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    assert not list(run.glob(".*.tmp"))
    assert complete_set(run) == expected  # nothing lost, nothing duplicated, same results
    assert_no_duplicates(run)
    best, reference_best = (json.loads((r / "best.json").read_text()) for r in (run, reference))
    for record in (best, reference_best):
        del record["metrics"]["time_per_epoch_s"]  # measured; everything else repeats exactly
    assert best["config"] == reference_best["config"] and best["metrics"] == reference_best["metrics"]
    assert weights_trial_id(run) == best["trial_id"]
    with RunStore.open(run) as store:
        assert store.state["state"] == "finished"
        assert len(store.trials(status="interrupted")) == 3  # the three killed mid-training, run again

    again = run_dnc("resume", str(run))
    assert again.returncode == 0 and "already finished" in again.stderr


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    """An .npz whose MLP epochs take seconds (many small batches), and a space that fixes that MLP."""
    root = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100_000, 64)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    np.savez(root / "slow.npz", xtr=x, ytr=y, xte=x[:1000], yte=y[:1000])
    np.savez(root / "medium.npz", xtr=x[:15_000], ytr=y[:15_000], xte=x[:1000], yte=y[:1000])
    space = root / "space.yaml"
    space.write_text("num_hidden_layers: 2\nhidden_nodes: 400\nbatch_size: 32\n")
    options = ["--network", "mlp", "--space", str(space), "--penalty", "params", "--method", "random"]
    return {size: ["--data", str(root / f"{size}.npz"), *options] for size in ("slow", "medium")}


def reported_epochs(run):
    with RunStore.open(run) as store:
        return store.epochs()


def start(args):
    return subprocess.Popen([DNC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_stops_gracefully_show_sees_live_state_and_resume_finishes(
    tmp_path, slow_data, capsys, wait_for_running_trial
):
    run = tmp_path / "run"
    process = start(["search", *slow_data["medium"], "--max-trials", "1", "--epochs", "4", "--out", str(run)])
    try:
        wait_for_running_trial(run, process)
        deadline = time.time() + 120
        while time.time() < deadline and not reported_epochs(run):  # its first epoch is reported
            time.sleep(0.05)
        assert main(["show", str(run)]) == 0  # another process reads the live store
        shown = capsys.readouterr().out
        assert f"state: running (pid {process.pid})" in shown and "1 running" in shown
        assert "running trial #1, epochs so far (validation score, time): 1: 0." in shown
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "stopping at the end of this epoch" in err and f"continue with: dnc resume {run}" in err
    assert "Traceback" not in err
    with RunStore.open(run) as store:
        assert [t.status for t in store.trials()] == ["interrupted"]
        assert store.state["state"] == "interrupted" and store.state["reason"] == "Ctrl-C or SIGTERM"
    assert main(["show", str(run)]) == 0
    assert f"interrupted by Ctrl-C or SIGTERM; continue with: dnc resume {run}" in capsys.readouterr().out

    done = run_dnc("resume", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    with RunStore.open(run) as store:
        assert [t.status for t in store.trials()] == ["interrupted", "complete"]
        assert store.state["state"] == "finished"
    assert json.loads((run / "best.json").read_text())["trial_id"] == 2


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once(tmp_path, slow_data, wait_for_running_trial):
    run = tmp_path / "run"
    process = start(["search", *slow_data["slow"], "--max-trials", "1", "--epochs", "1", "--out", str(run)])
    try:
        wait_for_running_trial(run, process)
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert process.poll() is None  # the first Ctrl-C waits for the end of the (multi-second) epoch
        second = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        stopped_after = time.monotonic() - second
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert stopped_after < 3.0, stopped_after
    assert integrity(run) == "ok"
    with RunStore.open(run) as store:
        assert [t.status for t in store.trials()] == ["interrupted"]


def mlp_options(**changes):
    options = dict(
        data="digits",
        network="mlp",
        penalty="params",
        epochs=2,
        seed=3,
        prior_points=3,
        bo_steps=2,
        space={"hidden_nodes": [20, 64], "batch_size": [64, 256]},
        verbose=False,
        report=False,
    )
    return options | changes


def test_time_budget_stops_the_search_and_resume_continues(tmp_path):
    reference = deepncheap.search(out=tmp_path / "reference", **mlp_options(method="sobol", max_trials=5))
    with pytest.raises(SearchStopped, match="stopped by --time-budget before any trial completed; continue with"):
        deepncheap.search(out=tmp_path / "run", time_budget=1e-3, **mlp_options(method="sobol", max_trials=5))
    with RunStore.open(tmp_path / "run") as store:
        assert store.state["state"] == "stopped" and store.state["reason"] == "--time-budget"
    resumed = deepncheap.resume(tmp_path / "run", verbose=False, report=False)
    assert resumed.finished
    assert complete_set(resumed.run_dir) == complete_set(reference.run_dir)
    assert resumed.best_config == reference.best_config


def test_max_trials_stop_then_resume_with_a_larger_cap_equals_one_search(tmp_path):
    reference = deepncheap.search(out=tmp_path / "reference", **mlp_options())
    stopped = deepncheap.search(out=tmp_path / "run", **mlp_options(max_trials=4))
    assert not stopped.finished and stopped.reason == "--max-trials 4"
    again = deepncheap.resume(
        stopped.run_dir, verbose=False, report=False
    )  # the same cap: stops at once, trains nothing
    assert not again.finished and len(complete_set(stopped.run_dir)) == 4
    resumed = deepncheap.resume(stopped.run_dir, max_trials=100, verbose=False, report=False)
    assert resumed.finished and resumed.settings["max_trials"] == 100
    assert complete_set(resumed.run_dir) == complete_set(reference.run_dir)
    assert resumed.best_config == reference.best_config
    with RunStore.open(resumed.run_dir) as store:
        assert len(store.trials()) == len(complete_set(reference.run_dir))  # no trial trained twice


def test_resume_of_a_finished_search_returns_it_unchanged(tmp_path):
    result = deepncheap.search(out=tmp_path / "run", **mlp_options(method="random", max_trials=2))
    again = deepncheap.resume(result.run_dir, verbose=False, report=False)
    assert again.finished and again.trial_id == result.trial_id and again.best_config == result.best_config
    with RunStore.open(result.run_dir) as store:
        assert len(store.trials()) == 2


def test_resume_of_an_arrays_search_needs_the_same_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    stopped = deepncheap.search(out=tmp_path / "run", **mlp_options(data=(x, y), max_trials=2))
    with pytest.raises(DataError, match="in-memory arrays; pass the same arrays again"):
        deepncheap.resume(stopped.run_dir, max_trials=3, verbose=False, report=False)
    with pytest.raises(DataError, match=r"the data differ .*\(.*fingerprint"):
        deepncheap.resume(stopped.run_dir, data=(x + 1, y), max_trials=3, verbose=False, report=False)
    resumed = deepncheap.resume(stopped.run_dir, data=(x, y), max_trials=3, verbose=False, report=False)
    assert len(complete_set(resumed.run_dir)) == 3


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnc: error: ") and "is not a run" in err and err.count("\n") == 1


def test_existing_run_points_to_resume_and_overwrite_starts_over(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["search", "--network", "mlp", "--method", "random", "--max-trials", "1", "--epochs", "1", "--quiet"]
    assert main([*argv, "--out", str(run)]) == 0
    assert main([*argv, "--out", str(run)]) == 2
    assert f"continue it with 'dnc resume {run}', or pass --overwrite" in capsys.readouterr().err
    (run / "notes.txt").write_text("mine")
    assert main([*argv, "--seed", "5", "--out", str(run), "--overwrite"]) == 0
    with RunStore.open(run) as store:
        assert store.settings["seed"] == 5 and [t.trial_id for t in store.trials()] == [1]
    assert (run / "notes.txt").read_text() == "mine"  # --overwrite removes the run's own files only


def test_bad_time_budget_is_refused(tmp_path, capsys):
    assert main(["search", "--time-budget", "soon", "--out", str(tmp_path / "run")]) == 2
    assert "invalid time budget 'soon'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_in_use_cannot_be_resumed_twice(tmp_path):
    from deepncheap.rundir import existing_run

    result = deepncheap.search(out=tmp_path / "run", **mlp_options(method="random", max_trials=1))
    busy = f"in use by another dnc process \\(pid {os.getpid()}\\)"
    with existing_run(result.run_dir), pytest.raises(OutputError, match=busy):
        deepncheap.resume(result.run_dir, verbose=False, report=False)


@pytest.mark.parametrize("content", ["empty", "tables-only"])
def test_a_store_cut_short_at_creation_is_refused_with_the_fix(tmp_path, capsys, content):
    """A search killed while creating its store leaves a file without settings; resume and show say how to
    start over, and --overwrite does."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "store.sqlite").write_bytes(b"")
    if content == "tables-only":
        db = sqlite3.connect(run / "store.sqlite")
        db.executescript("CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE trials (x);")
        db.close()
    for command in (["resume", str(run)], ["show", str(run)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "killed while creating its store" in err and f"dnc search --out {run} --overwrite" in err
    argv = ["search", "--network", "mlp", "--method", "random", "--max-trials", "1", "--epochs", "1", "--quiet"]
    assert main([*argv, "--out", str(run), "--overwrite"]) == 0


def test_a_file_search_resumes_from_another_directory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "set.npz", xtr=x, ytr=y, xte=x[:20], yte=y[:20])
    monkeypatch.chdir(tmp_path / "data")
    stopped = deepncheap.search(out=tmp_path / "run", **mlp_options(data="set.npz", max_trials=1))
    assert stopped.settings["data_source"] == str(tmp_path / "data" / "set.npz")
    monkeypatch.chdir(tmp_path)
    resumed = deepncheap.resume(tmp_path / "run", max_trials=2, verbose=False, report=False)
    assert len(complete_set(resumed.run_dir)) == 2
