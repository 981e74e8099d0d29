"""`dnc transfer`: a run's best configs, one per network, trained on other data as a run of its own, side by
side with the source (transfer.json, the printed table, `dnc show`), the source never touched, every
refusal before anything is written, and a killed transfer resumed without training a stored trial again."""

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import kill_once_a_trial_is_stored, stored_trials

import deepncheap
from deepncheap.cli import main
from deepncheap.errors import SettingsError
from deepncheap.history import History
from deepncheap.methods import MethodContext, method_for
from deepncheap.models import network_key
from deepncheap.rundir import claimed
from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace
from deepncheap.store import SCHEMA_VERSION, RunStore, ranked
from deepncheap.transfer import best_configs

DNC = str(Path(sys.executable).parent / "dnc")
SPACE = {"hidden_nodes": [4, 32], "num_hidden_layers": [1, 2]}
# Settings that a transfer keeps (not the pruning: every transferred config trains, whatever its cost).
SOURCE = dict(network="mlp", method="random", max_trials=6, epochs=2, penalty="params", wc=0.2, prune="bound", seed=3)
QUIET = dict(verbose=False, report=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished random search of MLPs on iris (6 trials, every one a different network)."""
    run = tmp_path_factory.mktemp("source") / "iris-run"
    deepncheap.search(data="iris", out=run, space=SPACE, **SOURCE, **QUIET)
    return run


@pytest.fixture(scope="module")
def cnn_source(tmp_path_factory):
    """A finished search of one small CNN on the digits images."""
    run = tmp_path_factory.mktemp("cnn_source") / "digits-cnn"
    space = {"num_conv_layers": [4, 4], "channels_first": [16, 16], "channels_upper": 16}
    deepncheap.search(data="digits", out=run, network="cnn", method="random", max_trials=1, epochs=1,
                      penalty="params", space=space, **QUIET)  # fmt: skip
    return run


def files_of(run):
    """Every file of a run directory: its bytes' digest and its modification time."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def transfer_json(run):
    return json.loads((run / "transfer.json").read_text())


def test_transfer_trains_the_best_distinct_configs_side_by_side_and_leaves_the_source_as_it_was(source, tmp_path):
    before = files_of(source)
    time.sleep(0.01)  # (a touched file would show a later mtime)
    result = deepncheap.transfer(source, data="wine", top=3, epochs=3, out=tmp_path / "out", **QUIET)
    assert files_of(source) == before  # not a byte, not an mtime: not even SQLite's shared-memory index
    assert result.finished and result.stage == "transfer" and result.settings["data"]["name"] == "wine"

    chosen = ranked(stored_trials(source))[:3]  # (the 6 trials are 6 different networks)
    rows = transfer_json(result.run_dir)
    assert [r["source_trial_id"] for r in rows] == [t.trial_id for t in chosen]
    assert [r["source_objective"] for r in rows] == [t.objective for t in chosen]
    assert [r["config"] for r in rows] == [t.config for t in chosen]
    trials = stored_trials(result.run_dir)
    assert [(t.stage, t.stage_index, t.status, t.epochs) for t in trials] == [("transfer", i, "complete", 3)
                                                                              for i in range(3)]  # fmt: skip
    assert [r["trial_id"] for r in rows] == [t.trial_id for t in trials]
    assert [r["objective"] for r in rows] == [t.objective for t in trials]
    assert all(r["status"] == "complete" and 0 < r["val_accuracy"] <= 1 and r["n_params"] > 0 for r in rows)
    assert all(r["time_per_epoch_s"] > 0 for r in rows)
    assert {r["n_params"] for r in rows}.isdisjoint(t.n_params for t in chosen)  # (wine's 13 inputs, 3 classes)

    settings = result.settings
    assert settings["method"] == "transfer" and settings["transfer_from"] == str(source.resolve())
    assert [c["source_trial_id"] for c in settings["transfer_configs"]] == [r["source_trial_id"] for r in rows]
    for name in ("network", "penalty", "wc", "seed"):
        assert settings[name] == SOURCE[name], name
    assert settings["prune"] == "none"  # (the source pruned: a transfer trains every config)
    with RunStore.open(source) as store:
        source_space = store.settings["space"]
    assert settings["epochs"] == 3 and settings["space"] == source_space
    assert settings["max_trials"] is None and settings["data_source"] == "wine"
    final = deepncheap.train_final(result.run_dir, epochs=1, **QUIET)  # `dnc train` takes a transfer run
    assert final.final["trial_id"] == result.trial_id


def test_a_source_of_an_older_schema_version_is_read_as_it_is(source, tmp_path):
    """Every run made before the `transfer` stage existed is a source too, and stays of its version."""
    old = tmp_path / "old"
    shutil.copytree(source, old)
    with RunStore.open(old, readonly=False) as store:
        store.put("schema_version", SCHEMA_VERSION - 1)
    before = files_of(old)
    result = deepncheap.transfer(old, data="wine", top=1, epochs=1, out=tmp_path / "out", **QUIET)
    assert [r["status"] for r in transfer_json(result.run_dir)] == ["complete"]
    assert files_of(old) == before


def test_the_best_trial_of_each_network_in_search_order(source):
    """One config per network, the best trial's (ties: the first in search order); failed, pruned and
    violating trials are never transferred."""
    trials = stored_trials(source)
    first, second = trials[0], trials[1]

    def like(trial, **changes):
        return dataclasses.replace(trial, **changes)

    lr = first.config | {"lr": 0.5}  # (the same network, trained otherwise)
    candidates = [
        like(first, objective=-1.0),
        like(first, trial_id=10, stage_index=10, config=lr, objective=-2.0),  # better: the network's best
        like(second, objective=-2.0),  # a tie with #10, earlier in search order
        like(second, trial_id=11, stage_index=11, config=second.config | {"lr": 0.5}, objective=-3.0, violation="x"),
        like(trials[2], objective=-5.0, status="failed"),
        like(trials[3], objective=-5.0, status="pruned"),
        like(trials[4], objective=0.0),
    ]
    picked = best_configs(candidates, 5, input_shape=[4])
    assert [(c["source_trial_id"], c["source_objective"]) for c in picked] == [(second.trial_id, -2.0), (10, -2.0),
                                                                               (trials[4].trial_id, 0.0)]  # fmt: skip
    assert picked[1]["config"] == lr
    assert len({network_key(c["config"], [4]) for c in picked}) == 3
    assert [c["source_trial_id"] for c in best_configs(candidates, 1, input_shape=[4])] == [second.trial_id]


def test_the_transfer_method_proposes_the_stored_configs_in_order_and_is_done_once_they_finished(source):
    trials = stored_trials(source)
    configs = best_configs(trials, 3, input_shape=[4])
    settings = SearchSettings.from_options(
        network="mlp", method="transfer", transfer_from="src", transfer_configs=configs
    )
    context = MethodContext(settings, SearchSpace.create("mlp"), (13,))
    ask = method_for("transfer")

    def row(index, status):
        return dataclasses.replace(trials[0], trial_id=index + 1, stage="transfer", stage_index=index, status=status,
                                   config=configs[index]["config"])  # fmt: skip

    first = ask(context, History.of([]), 2)
    assert [(p.stage, p.index, p.config) for p in first] == [("transfer", i, configs[i]["config"]) for i in (0, 1)]
    assert "transfer: training 3 configs of src" in first[0].notes[0] and not first[1].notes
    assert first == ask(context, History.of([]), 2)  # (a pure function of the history)
    (third,) = ask(context, History.of([row(0, "complete"), row(1, "running")]), 2)
    assert (third.index, third.config, third.notes) == (2, configs[2]["config"], ())
    assert ask(context, History.of([row(0, "complete"), row(1, "interrupted"), row(2, "complete")]), 2) == []
    assert ask(context, History.of([row(0, "complete"), row(1, "failed"), row(2, "pruned")]), 2) is None


def test_the_transfer_method_is_not_a_search_method():
    with pytest.raises(SettingsError, match="dnc transfer RUN --data OTHER"):
        SearchSettings.from_options(method="transfer")


def test_dnc_transfer_prints_the_table_writes_its_report_and_show_names_the_source(source, capsys):
    done = subprocess.run([DNC, "transfer", str(source), "--data", "breast_cancer", "--top", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = source.parent / f"{source.name}-transfer-breast_cancer"  # (beside the source)
    rows = transfer_json(out)
    assert [r["status"] for r in rows] == ["complete", "complete"]
    assert f"transferred from {source.resolve()} to breast_cancer" in done.stdout
    assert "source trial" in done.stdout and "source objective" in done.stdout
    for r in rows:
        assert f"#{r['source_trial_id']}" in done.stdout and f"{r['source_objective']:+.4f}" in done.stdout
    assert "Transferred configs (2)" in (out / "report.html").read_text()
    assert f"dnc transfer {source.resolve()} --data breast_cancer --top 2" in (out / "MODEL_CARD.md").read_text()

    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"transferred from {source.resolve()}: its 2 best configs" in shown and "source" in shown
    assert f"#{rows[0]['source_trial_id']} {rows[0]['source_objective']:+.4f}" in shown
    assert main(["export", str(out), "--format", "torchscript"]) == 0


def refusal(kind, source, root, request):
    """The arguments of a `dnc transfer` that must be refused, and a text of the error."""
    if kind == "not a run":
        (root / "empty").mkdir()
        return [str(root / "empty"), "--data", "wine"], "is not a run"
    if kind == "newer schema":
        shutil.copytree(source, root / "newer")
        with RunStore.open(root / "newer", readonly=False) as store:
            store.put("schema_version", 99)
        return [str(root / "newer"), "--data", "wine"], "newer deepncheap"
    if kind == "no complete trial":
        with RunStore.open(source) as store:
            settings = store.settings
        (root / "fresh").mkdir()
        RunStore.create(root / "fresh", settings).close()
        return [str(root / "fresh"), "--data", "wine"], "no complete trial"
    if kind == "regression data":
        return [str(source), "--data", "diabetes"], "classification search but diabetes is regression data"
    if kind == "CNN onto flat data":
        return [str(request.getfixturevalue("cnn_source")), "--data", "iris"], "a CNN needs images"
    if kind == "top 0":
        return [str(source), "--data", "wine", "--top", "0"], "--top must be an integer >= 1"
    if kind == "out is the source":
        return [str(source), "--data", "wine", "--out", str(source), "--overwrite"], "is the source run itself"
    assert kind == "source in use"
    shutil.copytree(source, root / "busy")
    request.getfixturevalue("hold")(root / "busy")
    return [str(root / "busy"), "--data", "wine"], "in use by dnc process"


@pytest.fixture
def hold():
    """Claim a run directory for the rest of the test, as a running search would."""
    held = []

    def claim(run):
        held.append(claimed(run))
        held[-1].__enter__()

    yield claim
    for claim_ in held:
        claim_.__exit__(None, None, None)


KINDS = ["not a run", "newer schema", "no complete trial", "regression data", "CNN onto flat data", "top 0",
         "out is the source", "source in use"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_transfer_that_cannot_work_is_refused_in_one_line_before_anything_is_written(
    kind, source, tmp_path, capsys, request
):
    args, message = refusal(kind, source, tmp_path, request)
    out = ["--out", str(tmp_path / "out")] if "--out" not in args else []
    beside = {p.name for p in source.parent.iterdir()}
    before = files_of(source)
    capsys.readouterr()
    assert main(["transfer", *args, *out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnc: error: ") and err.count("\n") == 1 and "; " in err, err
    assert message in err, err
    assert not (tmp_path / "out").exists() and {p.name for p in source.parent.iterdir()} == beside
    assert files_of(source) == before


def test_a_killed_transfer_resumes_without_training_a_stored_trial_again(source, tmp_path, capsys):
    """SIGKILL once the first trial is stored; `dnc resume` trains the rest (the killed one again) and writes
    every row of transfer.json."""
    out = tmp_path / "out"
    command = [DNC, "transfer", str(source), "--data", "digits", "--top", "4", "--epochs", "15", "--out", str(out)]
    kill_once_a_trial_is_stored([*command, "--quiet", "--no-report"], out)
    before = {t.trial_id: t for t in stored_trials(out) if t.status == "complete"}
    assert 1 <= len(before) < 4 and not (out / "transfer.json").exists()

    capsys.readouterr()
    assert main(["resume", str(out), "--quiet", "--no-report"]) == 0
    assert "source objective" in capsys.readouterr().out  # (the side-by-side table again)
    trials = stored_trials(out)
    complete = [t for t in trials if t.status == "complete"]
    assert all(t in complete for t in before.values())  # the same rows: none trained again
    assert sorted(t.stage_index for t in complete) == [0, 1, 2, 3]
    assert [t.status for t in trials if t.trial_id not in before].count("interrupted") <= 1
    rows = transfer_json(out)
    assert [r["trial_id"] for r in rows] == [t.trial_id for t in sorted(complete, key=lambda t: t.stage_index)]
    assert [r["source_trial_id"] for r in rows] == [t.trial_id for t in ranked(stored_trials(source))[:4]]
    assert all(r["status"] == "complete" and r["objective"] is not None for r in rows)
