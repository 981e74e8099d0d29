"""Pruning (`--prune`): the cost bound never removes the winner, learning-curve rules stop trials at their
rungs, every executor carries the stop, a killed pruned search resumes, and the search's cost is accounted."""

import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import stored_trials

import deepncheap
from deepncheap import search_cost
from deepncheap.data import load_dataset
from deepncheap.errors import SettingsError
from deepncheap.objective import Baselines, Scorer
from deepncheap.pruning import BOUND_REASON, MIN_PEERS, TIME_SLACK, Pruner, gp_value, rungs
from deepncheap.show import show_run
from deepncheap.store import EpochRecord, RunStore, Trial
from deepncheap.train import EpochReport

N_VAL_IRIS = 24  # validation rows of iris (150 rows: 30 test, then 20% of 120)
DNC = str(Path(sys.executable).parent / "dnc")
# MLPs from 4 to 3 x 256 units: with w_c = 1 the big ones cost more than any accuracy can make up.
SIZES = {"hidden_nodes": [4, 256], "num_hidden_layers": [1, 3], "batch_size": [16, 64], "lr": [1e-3, 1e-2]}
# lr from 1e-5: many configs barely learn in a few epochs, so learning-curve rules have trials to stop.
WIDE_LR = {"hidden_nodes": [16, 64], "num_hidden_layers": [1, 2], "batch_size": [64, 256], "lr": [1e-5, 1e-1]}
IRIS = dict(data="iris", network="mlp", penalty="params", wc=1.0, epochs=2, space=SIZES, verbose=False, report=False)
# Remote workers hear of a stop only after a round trip, which an epoch of a few milliseconds outruns (the
# trial then ends complete): small batches make epochs of tens of milliseconds, and 16 epochs leave 8 after
# the last rung.
REMOTE_EPOCHS = 16
REMOTE = dict(data="digits", network="mlp", penalty="params", wc=0.1, epochs=REMOTE_EPOCHS, verbose=False,
              report=False, space=WIDE_LR | {"batch_size": [8, 16]})  # fmt: skip
DIGITS = dict(
    data="digits", network="mlp", penalty="params", wc=0.1, epochs=8, space=WIDE_LR, verbose=False, report=False
)


def bound_pruned(trials):
    return [t for t in trials if t.status == "pruned" and t.reason == BOUND_REASON]


def test_the_cost_bound_never_stops_a_trial_that_could_win(tmp_path):
    """Over many seeds of the Deep-n-Cheap search (whose GP sees the bounds): every trial the bound stopped
    has a bound at or above the best objective the search ends with."""
    stopped = 0
    for seed in range(10):
        result = deepncheap.search(
            out=tmp_path / f"dnc{seed}", method="dnc", prior_points=4, bo_steps=2, prune="bound", seed=seed, **IRIS
        )
        best, n_val = result.metrics["objective"], result.settings["data"]["n_val"]
        for trial in bound_pruned(stored_trials(result.run_dir)):
            assert trial.epochs == 0 and trial.val_curve == [] and trial.wall_s < 1  # never trained
            assert trial.objective >= best
            assert trial.objective == pytest.approx(np.log10(0.5 / n_val + trial.f_c))  # floor + w_c f_c
            stopped += 1
    assert stopped >= 5  # (the bound did stop trials)


def test_with_pruning_the_prior_points_and_grids_train_cheapest_first(tmp_path):
    """The same Sobol points as without pruning, started in order of size, so that the small ones set the
    incumbent that rules out the big ones; likewise each advanced grid."""
    options = IRIS | dict(method="dnc", prior_points=6, bo_steps=0, seed=3)
    plain = stored_trials(deepncheap.search(out=tmp_path / "none", prune="none", **options).run_dir)
    ordered = stored_trials(deepncheap.search(out=tmp_path / "bound", prune="bound", **options).run_dir)

    def prior(trials):
        return [t for t in trials if t.stage == "core"]

    def key(trial):
        return json.dumps(trial.config, sort_keys=True)

    assert sorted(map(key, prior(plain))) == sorted(map(key, prior(ordered)))
    by_index = {t.stage_index: t for t in prior(plain)}
    for trial in prior(ordered):  # each point keeps its index, so its seed: the same training when trained
        assert key(by_index[trial.stage_index]) == key(trial)
        if trial.status == "complete":
            assert trial.objective == by_index[trial.stage_index].objective
    sizes = [t.n_params for t in prior(ordered)]
    assert sizes == sorted(sizes) and sizes != [t.n_params for t in prior(plain)]
    assert any(t.status == "pruned" for t in prior(ordered))  # (the order let the bound rule some out)
    grid = [t.n_params for t in ordered if t.stage == "advanced" and t.n_params is not None]
    assert grid and grid == sorted(grid)


def test_at_wc_0_the_prior_points_keep_their_order(tmp_path):
    """At w_c 0 the bound rules out nothing, so sorting by cost would only reorder the search."""
    options = IRIS | dict(method="dnc", prior_points=6, bo_steps=0, seed=3, wc=0.0, prune="bound")
    core = [t for t in stored_trials(deepncheap.search(out=tmp_path / "run", **options).run_dir) if t.stage == "core"]
    assert [t.stage_index for t in sorted(core, key=lambda t: t.trial_id)] == list(range(6))
    assert len({t.n_params for t in core}) > 1 and all(t.status == "complete" for t in core)


def test_the_cost_bound_finds_the_same_best_as_training_everything(tmp_path):
    """A random search proposes the same configs whatever it learns, so with the bound it must end with the
    very best trial of the search that trained every one of them."""
    pruned = 0
    for seed in range(4):
        options = IRIS | dict(method="random", max_trials=8, seed=seed)
        full = deepncheap.search(out=tmp_path / f"none{seed}", prune="none", **options)
        bounded = deepncheap.search(out=tmp_path / f"bound{seed}", prune="bound", **options)
        assert bounded.best_config == full.best_config
        assert bounded.metrics["objective"] == pytest.approx(full.metrics["objective"], abs=1e-12)
        pruned += len(bound_pruned(stored_trials(bounded.run_dir)))
        assert not bound_pruned(stored_trials(full.run_dir))
    assert pruned > 0


@pytest.mark.parametrize("mode", ["median", "projection"])
def test_a_pruned_trial_keeps_its_partial_curve_and_reason(tmp_path, mode):
    result = deepncheap.search(out=tmp_path / "run", method="random", max_trials=12, prune=mode, seed=1, **DIGITS)
    trials = stored_trials(result.run_dir)
    pruned = [t for t in trials if t.status == "pruned"]
    assert pruned
    with RunStore.open(result.run_dir) as store:
        epochs = store.epochs()
    with open(result.run_dir / "trials.csv", newline="") as handle:
        rows = {row["trial_id"]: row for row in csv.DictReader(handle)}
    for trial in pruned:
        match = re.fullmatch(rf"{mode} at epoch (\d+)", trial.reason)
        assert match and int(match.group(1)) in rungs(8, mode)
        assert trial.epochs == int(match.group(1)) == len(trial.val_curve)  # serial: it stops at that very epoch
        assert [e.epoch for e in epochs if e.trial_id == trial.trial_id] == list(range(1, trial.epochs + 1))
        assert trial.objective == pytest.approx(np.log10(trial.f_p + 0.1 * trial.f_c))  # its objective so far
        assert trial.f_p == pytest.approx(1 - max(trial.val_curve))
        row = rows[str(trial.trial_id)]
        assert row["status"] == "pruned" and row["reason"] == trial.reason
        assert float(row["objective"]) == pytest.approx(trial.objective)
    assert all(t.reason is None for t in trials if t.status == "complete")
    assert sum(t.status == "complete" for t in trials) >= MIN_PEERS  # (no rule before MIN_PEERS finished)


def test_search_cost_is_accounted_in_best_json_and_show(tmp_path, capsys):
    result = deepncheap.search(out=tmp_path / "run", method="random", max_trials=10, prune="asha", seed=1, **DIGITS)
    cost = json.loads((result.run_dir / "best.json").read_text())["search_cost"]
    trials = stored_trials(result.run_dir)
    assert cost["training_s"] == pytest.approx(sum(t.wall_s for t in trials))
    assert cost["training_s"] == pytest.approx(sum(cost["training_by_status_s"].values()))
    assert cost["total_s"] >= cost["training_s"] + cost["baselines_s"] and cost["idle_s"] >= 0
    assert 0 < cost["proposing_s"] <= cost["idle_s"] + 1e-6
    assert cost["pruned_trials"] == sum(t.status == "pruned" for t in trials) > 0
    assert cost["pruning_saved_s"] > 0
    saved = sum((8 - t.epochs) * t.wall_s / t.epochs for t in trials if t.status == "pruned")
    assert cost["pruning_saved_s"] == pytest.approx(saved)
    show_run(result.run_dir)
    out = capsys.readouterr().out
    assert "search cost: " in out and "device-seconds" in out and "prune=asha" in out
    assert re.search(r"pruned \(asha at epoch \d+; the objective column holds its objective when stopped\)", out)
    resumed = deepncheap.resume(result.run_dir, max_trials=12, verbose=False, report=False)  # the clock goes on
    with RunStore.open(resumed.run_dir) as store:
        assert search_cost.summarize(store)["total_s"] > cost["total_s"]


def _iris_scorer(*, penalty="params", time_per_epoch_s=None):
    dataset = load_dataset("iris", network="mlp")
    time_measure = "measured" if time_per_epoch_s else None
    baselines = Baselines(n_params=1000, time_per_epoch_s=time_per_epoch_s, time_measure=time_measure)
    return Scorer(dataset=dataset, penalty=penalty, wc=0.1, baselines=baselines)


def _peer(trial_id, status, accuracies, f_c=0.1):
    trial = Trial(
        trial_id=trial_id, stage="core", stage_index=trial_id, status=status, config={}, objective=None, f_p=None,
        f_c=f_c, val_accuracy=None, val_loss=None, n_params=100, flops=100, time_per_epoch_s=0.1,
        epochs=len(accuracies), val_curve=accuracies, wall_s=1.0, error=None, started_at=0.0, finished_at=1.0,
    )  # fmt: skip
    return trial, [EpochRecord(trial_id, e + 1, a, 1.0, 0.1) for e, a in enumerate(accuracies)]


def _reports(accuracies, time_s=0.1):
    return [EpochReport(e + 1, a, 1.0, time_s) for e, a in enumerate(accuracies)]


def test_rungs_are_a_quarter_and_a_half_of_the_epochs_and_also_an_eighth_and_three_quarters_for_projection():
    assert rungs(20) == (5, 10) and rungs(8) == (2, 4) and rungs(3) == (1,) and rungs(1) == ()
    assert rungs(20, "projection") == (2, 5, 10, 15) and rungs(10, "projection") == (1, 2, 5, 7)


def test_the_bound_before_training_compares_floor_plus_cost_with_the_incumbent():
    scorer = _iris_scorer()
    pruner = Pruner("bound", scorer, 10)
    bound = np.log10(0.5 / N_VAL_IRIS + 0.1 * 0.5)
    assert pruner.before_training(0.5, incumbent=bound) == pruner.before_training(0.5, incumbent=bound - 0.1)
    assert pruner.before_training(0.5, incumbent=bound).objective == pytest.approx(bound)
    assert pruner.before_training(0.5, incumbent=bound + 1e-9) is None  # could still win
    assert pruner.before_training(None, incumbent=bound) is None  # cost unknown before training
    assert pruner.before_training(0.5, incumbent=None) is None  # nothing to beat yet
    assert Pruner("none", scorer, 10).before_training(0.5, incumbent=bound) is None


def test_measured_time_stops_a_trial_at_its_first_timed_epoch():
    scorer = _iris_scorer(penalty="time", time_per_epoch_s=1.0)
    pruner = Pruner("bound", scorer, 10)
    incumbent = np.log10(0.1)
    slow = [EpochReport(1, 0.5, 1.0, 9.0), EpochReport(2, 0.6, 1.0, 8.0)]
    never = lambda stage: pytest.fail("the bound needs no peers")  # noqa: E731
    assert pruner.at_epoch(stage="core", f_c=None, reports=slow[:1], incumbent=incumbent, peers=never) is None
    verdict = pruner.at_epoch(stage="core", f_c=None, reports=slow, incumbent=incumbent, peers=never)
    assert verdict.reason == BOUND_REASON
    assert verdict.objective == pytest.approx(np.log10(0.5 / N_VAL_IRIS + 0.1 * 8.0 * (1 - TIME_SLACK)))
    fast = [EpochReport(1, 0.5, 1.0, 9.0), EpochReport(2, 0.6, 1.0, 0.5)]  # bound -1.28: may still win
    assert pruner.at_epoch(stage="core", f_c=None, reports=fast, incumbent=incumbent, peers=never) is None


@pytest.mark.parametrize("mode", ["median", "asha"])
def test_learning_curve_rules_compare_with_the_stage_at_the_same_epoch(mode):
    scorer = _iris_scorer()
    pruner = Pruner(mode, scorer, 8)  # rungs at epochs 2 and 4
    peers = [_peer(i, "complete", [0.5 + 0.05 * i, 0.6 + 0.05 * i, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]) for i in range(5)]

    # at epoch 2 the peers stand at 0.60, 0.65, 0.70, 0.75, 0.80
    def verdict(accuracies, found=peers):
        return pruner.at_epoch(
            stage="core", f_c=0.1, reports=_reports(accuracies), incumbent=None, peers=lambda s: found
        )

    assert verdict([0.5, 0.62]).reason == f"{mode} at epoch 2"  # below the median (and the top third)
    assert verdict([0.5, 0.62]).objective == pytest.approx(np.log10(0.38 + 0.01))
    assert verdict([0.5, 0.9]) is None  # the best of the rung
    assert verdict([0.5]) is None  # epoch 1 is not a rung
    assert verdict([0.5, 0.62], found=peers[: MIN_PEERS - 1]) is None  # too few finished trials
    assert (verdict([0.5, 0.72]) is None) == (mode == "median")  # above the median, but not in asha's top 1/3
    assert (
        Pruner("bound", scorer, 8).at_epoch(
            stage="core", f_c=0.1, reports=_reports([0.1, 0.1]), incumbent=None, peers=lambda s: peers
        )
        is None
    )  # (bound: no learning-curve rule)


def _projection_peers():
    """Five complete trials at 0.6 accuracy after 2 epochs (f_p 0.4) ending at f_p 0.10 ... 0.14: the
    largest improvement from epoch 2 is 0.10 / 0.4 = 0.25, the median 0.12 / 0.4 = 0.3."""
    peers = []
    for i in range(5):
        trial, records = _peer(i, "complete", [0.5, 0.6] + [0.9 - 0.01 * i] * 6)
        f_p = 0.1 + 0.01 * i
        peers.append(
            (dataclasses.replace(trial, f_p=f_p, val_accuracy=1 - f_p, objective=np.log10(f_p + 0.01)), records)
        )
    return peers


def test_projection_stops_a_trial_whose_most_optimistic_end_cannot_beat_the_incumbent():
    pruner = Pruner("projection", _iris_scorer(), 8)  # rungs at epochs 1, 2, 4 and 6
    peers = _projection_peers()

    def verdict(accuracies, incumbent, found=peers):
        return pruner.at_epoch(
            stage="core", f_c=0.1, reports=_reports(accuracies), incumbent=incumbent, peers=lambda s: found
        )

    optimistic = np.log10(0.4 * 0.25 + 0.1 * 0.1)  # f_p 0.4 shrunk by the best improvement, and its cost
    stopped = verdict([0.5, 0.6], incumbent=optimistic)
    assert stopped.reason == "projection at epoch 2"
    assert stopped.objective == pytest.approx(np.log10(0.4 + 0.01))  # its objective so far
    assert verdict([0.5, 0.6], incumbent=optimistic - 1e-6) is not None
    assert verdict([0.5, 0.6], incumbent=optimistic + 1e-6) is None  # could still win
    assert verdict([0.5, 0.6, 0.6], incumbent=optimistic) is None  # epoch 3 is not a rung
    assert verdict([0.5, 0.6], incumbent=None) is None  # nothing to beat yet
    assert verdict([0.5, 0.6], incumbent=optimistic, found=peers[: MIN_PEERS - 1]) is None  # too few peers


def test_the_gp_sees_a_projection_pruned_trial_at_its_median_projected_end():
    peers = [t for t, _ in _projection_peers()]
    pruned = dataclasses.replace(
        _peer(9, "pruned", [0.5, 0.6])[0], f_p=0.4, val_accuracy=0.6, objective=np.log10(0.41),
        reason="projection at epoch 2",
    )  # fmt: skip
    assert gp_value(pruned, [*peers, pruned], 0.1) == pytest.approx(np.log10(0.4 * 0.3 + 0.1 * 0.1))


def test_asha_also_counts_pruned_trials_that_reached_the_rung_and_median_does_not():
    scorer = _iris_scorer()
    complete = [_peer(i, "complete", [0.5] * 8) for i in range(MIN_PEERS)]
    pruned = [_peer(10 + i, "pruned", [0.9, 0.95]) for i in range(3)]  # stopped at epoch 2, but ahead there
    reports = _reports([0.6, 0.7])
    asha = Pruner("asha", scorer, 8).at_epoch(
        stage="core", f_c=0.1, reports=reports, incumbent=None, peers=lambda s: complete + pruned
    )
    median = Pruner("median", scorer, 8).at_epoch(
        stage="core", f_c=0.1, reports=reports, incumbent=None, peers=lambda s: complete + pruned
    )
    assert asha is not None and median is None


def test_the_gp_sees_a_bound_pruned_trial_at_its_cost_with_the_stage_s_median_error():
    """Not at its bound (f_p at the floor), which makes an expensive config look as good as the incumbent."""
    complete = [dataclasses.replace(_peer(i, "complete", [0.9])[0], f_p=f_p, objective=-1.0) for i, f_p in
                enumerate([0.02, 0.04, 0.06])]  # fmt: skip
    bound = np.log10(0.5 / N_VAL_IRIS + 0.1 * 0.5)
    pruned = dataclasses.replace(_peer(9, "pruned", [])[0], f_c=0.5, objective=bound, reason=BOUND_REASON, epochs=0)
    assert gp_value(pruned, [*complete, pruned], 0.1) == pytest.approx(np.log10(0.04 + 0.1 * 0.5))
    assert gp_value(pruned, [pruned], 0.1) == pytest.approx(bound)  # (no complete trial in its stage yet)
    assert gp_value(complete[0], complete, 0.1) == -1.0
    cheap = dataclasses.replace(pruned, f_c=0.0, objective=-0.5)  # never below its bound
    assert gp_value(cheap, [*complete, cheap], 0.1) == -0.5


def test_pruning_reaches_worker_processes(tmp_path):
    result = deepncheap.search(
        out=tmp_path / "run", method="random", max_trials=12, prune="median", seed=1, workers=2, **REMOTE
    )
    check_pruned_remotely(result.run_dir)


def test_pruning_reaches_ray_tasks(tmp_path, local_ray):
    result = deepncheap.search(
        out=tmp_path / "run", method="random", max_trials=12, prune="median", seed=1, executor="ray", **REMOTE
    )
    check_pruned_remotely(result.run_dir)


def check_pruned_remotely(run):
    """Trials stopped in a worker: the decision is made at a rung, the worker stops then or an epoch or so
    later (when the answer arrives), and every epoch it reported is stored."""
    trials = stored_trials(run)
    pruned = [t for t in trials if t.status == "pruned" and t.reason != BOUND_REASON]  # (bound: never started)
    assert pruned and max(t.concurrent for t in trials) == 2
    with RunStore.open(run) as store:
        epochs = store.epochs()
    for trial in pruned:
        decided = int(re.fullmatch(r"median at epoch (\d+)", trial.reason).group(1))
        assert decided <= trial.epochs < REMOTE_EPOCHS and len(trial.val_curve) == trial.epochs
        assert [e.epoch for e in epochs if e.trial_id == trial.trial_id] == list(range(1, trial.epochs + 1))


def test_bad_prune_values_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(
        SettingsError, match=r"unknown --prune 'fast'; use one of: none, bound, projection, median, asha"
    ):
        deepncheap.search(out=tmp_path / "api", prune="fast", **IRIS)
    done = subprocess.run(
        [DNC, "search", "--data", "iris", "--network", "mlp", "--prune", "Median", "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "dnc: error: unknown --prune 'Median'; use one of: none, bound, projection, median, asha\n"
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_resume_after_a_kill_keeps_pruned_trials_and_reruns_the_interrupted_one(tmp_path):
    run, space = tmp_path / "run", tmp_path / "space.json"
    space.write_text(json.dumps(WIDE_LR))
    command = [
        DNC, "search", "--data", "digits", "--network", "mlp", "--penalty", "params", "--method", "random",
        "--max-trials", "40", "--epochs", "8", "--prune", "asha", "--space", str(space), "--seed", "2",
        "--out", str(run), "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        before = _wait_for_pruned_and_running(run, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed = {t.trial_id: t for t in stored_trials(run)}
    pruned = {i: t for i, t in killed.items() if t.status == "pruned"}
    running = [t for t in killed.values() if t.status == "running"]
    assert pruned and running and len(before) <= len(killed)
    result = deepncheap.resume(run, verbose=False, report=False)
    assert result.finished
    trials = stored_trials(run)
    for trial_id, trial in pruned.items():  # final: kept as they were, not run again
        assert dataclasses.asdict(next(t for t in trials if t.trial_id == trial_id)) == dataclasses.asdict(trial)
    finished = [(t.stage, t.stage_index) for t in trials if t.status in ("complete", "pruned", "failed")]
    assert len(finished) == len(set(finished)) == 40  # no trial twice, none lost
    for trial in running:  # the interrupted trial ran again under a new row
        assert (trial.stage, trial.stage_index) in finished
        assert next(t for t in trials if t.trial_id == trial.trial_id).status == "interrupted"


def _wait_for_pruned_and_running(run, process, timeout=120):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            trials = stored_trials(run)
            if any(t.status == "pruned" and t.epochs for t in trials) and any(t.status == "running" for t in trials):
                return trials
        except Exception:  # the store is not created yet
            pass
        time.sleep(0.02)
    raise AssertionError("the search never had a pruned trial and a running one at once")
