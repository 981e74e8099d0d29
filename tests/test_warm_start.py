"""`--warm-start RUN [RUN ...]`: a Deep-n-Cheap search first trains the earlier runs' best configs (stage
`warm`), its core stage starts from their architectures, the earlier runs are never touched nor needed on
resume, and every refusal comes before anything is written."""

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import stored_trials

import deepncheap
from deepncheap.errors import DataError, OutputError, SettingsError
from deepncheap.space import SearchSpace
from deepncheap.store import RunStore, best_of

DNC = str(Path(sys.executable).parent / "dnc")
SPACE = {"hidden_nodes": [4, 32], "num_hidden_layers": [1, 2]}
QUIET = dict(verbose=False, report=False)
DNC_SEARCH = dict(network="mlp", penalty="params", wc=0.1, epochs=2, space=SPACE, prior_points=3, bo_steps=1, **QUIET)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished random search of MLPs on wine."""
    run = tmp_path_factory.mktemp("earlier") / "wine-run"
    deepncheap.search(data="wine", out=run, network="mlp", method="random", max_trials=4, epochs=2,
                      penalty="params", space=SPACE, seed=1, **QUIET)  # fmt: skip
    return run


def files_of(run):
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def test_a_warm_started_search_trains_the_earlier_best_first_then_starts_its_core_stage_from_it(earlier, tmp_path):
    before = files_of(earlier)
    time.sleep(0.01)
    result = deepncheap.search(data="breast_cancer", out=tmp_path / "run", warm_start=[earlier], **DNC_SEARCH)
    assert files_of(earlier) == before  # (read from a copy: not a byte, not an mtime changed)
    source_best = best_of(stored_trials(earlier))
    (warm_config,) = result.settings["warm_configs"]
    assert warm_config["source_run"] == str(earlier.resolve()) and warm_config["config"] == source_best.config
    assert warm_config["source_trial_id"] == source_best.trial_id

    trials = stored_trials(result.run_dir)
    first = min(trials, key=lambda t: t.trial_id)
    assert (first.stage, first.stage_index, first.config) == ("warm", 0, source_best.config)
    assert first.status == "complete" and [t.stage for t in trials].count("warm") == 1
    space = SearchSpace.from_dict(result.settings["space"])
    core = {t.stage_index: t for t in trials if t.stage == "core"}
    assert core[0].config == space.core_config(source_best.config, space.architecture_stage_training())
    assert core[0].config != source_best.config  # (its architecture under the core stage's training)
    assert result.finished and len({t.stage for t in trials}) == 4  # warm, core, advanced, training


def test_a_warm_started_search_resumes_without_its_earlier_runs(earlier, tmp_path):
    copy = tmp_path / "earlier-copy"
    shutil.copytree(earlier, copy)
    run = tmp_path / "run"
    deepncheap.search(data="breast_cancer", out=run, warm_start=copy, max_trials=3, **DNC_SEARCH)  # (stops at 3)
    shutil.rmtree(copy)  # (the configs are in the run's settings)
    result = deepncheap.resume(run, max_trials=8, **QUIET)
    stages = [t.stage for t in sorted(stored_trials(run), key=lambda t: t.trial_id)]
    assert stages[0] == "warm" and stages.count("warm") == 1 and len(stages) == 8
    assert result.settings["warm_configs"][0]["source_run"] == str(copy.resolve())


def test_the_model_card_repeats_the_warm_start(earlier, tmp_path):
    result = deepncheap.search(data="breast_cancer", out=tmp_path / "run", warm_start=[earlier],
                               **(DNC_SEARCH | dict(report=True, bo_steps=0)))  # fmt: skip
    card = (result.run_dir / "MODEL_CARD.md").read_text()
    assert f"--warm-start {earlier.resolve()}" in card


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(network="cnn", image_shape=(1, 5, 6)), SettingsError, "searched mlp networks but this search is --netw"),
        (dict(method="random"), SettingsError, "--warm-start starts Deep-n-Cheap's stages .*use --method dnc"),
        (dict(data="diabetes"), DataError, "is a classification search but diabetes is regression data"),
    ],
)  # fmt: skip
def test_warm_starts_that_cannot_work_are_refused_before_anything_is_written(earlier, tmp_path, change, error, message):
    options = DNC_SEARCH | dict(data="breast_cancer") | change
    with pytest.raises(error, match=message):
        deepncheap.search(out=tmp_path / "run", warm_start=[earlier], **options)
    assert not (tmp_path / "run").exists()


def test_a_warm_start_from_what_is_not_a_finished_run_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is not a run"):
        deepncheap.search(data="iris", out=tmp_path / "run", warm_start=[tmp_path], **DNC_SEARCH)
    empty = tmp_path / "empty"
    with pytest.raises(deepncheap.errors.SearchStopped):  # (stopped before any trial completed)
        deepncheap.search(data="iris", out=empty, time_budget=1e-6, **DNC_SEARCH)
    with pytest.raises(OutputError, match="has no complete trial to start from"):
        deepncheap.search(data="iris", out=tmp_path / "run", warm_start=[empty], **DNC_SEARCH)
    assert not (tmp_path / "run").exists()


def test_the_command_line_takes_several_warm_start_runs(earlier, tmp_path):
    out = tmp_path / "run"
    command = [DNC, "search", "--data", "breast_cancer", "--network", "mlp", "--penalty", "params", "--epochs", "2",
               "--prior-points", "2", "--bo-steps", "0", "--warm-start", str(earlier), str(earlier),
               "--out", str(out), "--quiet", "--no-report"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    with RunStore.open(out) as store:
        warm = [t for t in store.trials() if t.stage == "warm"]
    assert len(warm) == 2 and warm[0].config == warm[1].config
    bad = subprocess.run([*command[:-4], "--method", "sobol", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("dnc: error: --warm-start") and bad.stderr.count("\n") == 1


def test_a_warm_trial_that_errs_on_nothing_can_rule_out_the_whole_core_stage(tmp_path):
    """A warm trial at the floor of f_p (no validation error) makes every core config of its size or larger
    unable to beat it (the cost bound): the core stage ends with every trial pruned and the advanced stage
    starts from the warm trial (this crashed: the advanced stage looked for the core stage's best)."""
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b"):
        y = rng.integers(0, 2, 400)
        x = (rng.normal(0, 0.3, (400, 6)) + np.where(y[:, None] == 1, 3.0, -3.0)).astype(np.float32)
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], xtr=x[:300], ytr=y[:300], xte=x[300:], yte=y[300:])
    space = {"hidden_nodes": 8, "num_hidden_layers": 1, "lr": 0.01, "batch_size": 16}
    options = dict(network="mlp", penalty="params", wc=0.1, epochs=3, space=space, prior_points=2, bo_steps=1, **QUIET)
    source = deepncheap.search(data=str(paths["a"]), out=tmp_path / "source", method="random", max_trials=1,
                               **options)  # fmt: skip
    result = deepncheap.search(data=str(paths["b"]), out=tmp_path / "run", warm_start=[source.run_dir], **options)

    trials = stored_trials(result.run_dir)
    (warm,) = [t for t in trials if t.stage == "warm"]
    core = [t for t in trials if t.stage == "core"]
    assert warm.status == "complete" and warm.val_accuracy == 1.0  # (the premise: f_p at its floor)
    assert len(core) == 3 and all(t.status == "pruned" and t.reason == "cost bound" for t in core)
    assert result.finished and {t.stage for t in trials} == {"warm", "core", "advanced", "training"}
    assert best_of(trials).objective <= warm.objective
