"""Methods as ask/tell over the history: the same history gives the same answer, resuming is asking
again (from a store written by 1 or 2 workers, nothing lost or trained twice), and a finished search is
extended by a larger --max-trials."""

import pytest
from helpers import signature, stored_trials

import deepncheap
from deepncheap.history import History
from deepncheap.methods import MethodContext, method_for
from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace
from deepncheap.store import RunStore

TINY_MLP = {"hidden_nodes": [16, 48], "num_hidden_layers": [1, 2], "batch_size": [64, 256], "lr": [1e-3, 1e-2]}
OPTIONS = dict(
    data="digits", network="mlp", wc=0.1, penalty="params", method="dnc", prior_points=3, bo_steps=2,
    epochs=1, seed=0, space=TINY_MLP, verbose=False, report=False,
)  # fmt: skip


def search(out, **options):
    return deepncheap.search(out=out, **(OPTIONS | options))


def context_of(run):
    with RunStore.open(run) as store:
        settings = store.settings
    return MethodContext(
        SearchSettings.from_stored(settings),
        SearchSpace.from_dict(settings["space"]),
        tuple(settings["data"]["input_shape"]),
    )


@pytest.mark.parametrize("method", ["dnc", "random", "sobol"])
def test_ask_is_a_pure_function_of_the_history(tmp_path, method):
    run = tmp_path / "run"
    search(run, method=method, max_trials=8, prune="none")  # (the bare context below has no cheapest-first order)
    context, rows = context_of(run), stored_trials(run)
    ask = method_for(method)
    for cut in (0, 3, 5, 8):  # the history as it was after `cut` trials
        history = History.of(rows[:cut])
        first, second = ask(context, history, 2), ask(context, History.of(list(rows[:cut])), 2)
        assert first == second
        if cut < len(rows):  # what the search actually trained next is what `ask` answers
            assert first is not None and first[0].config == rows[cut].config
            assert (first[0].stage, first[0].index) == (rows[cut].stage, rows[cut].stage_index)


def test_running_trials_are_pending_for_the_method(tmp_path):
    run = tmp_path / "run"
    search(run, max_trials=4)
    context, rows = context_of(run), stored_trials(run)
    ask = method_for("dnc")
    running = [r.__class__(**(vars(r) | {"status": "running", "objective": None})) for r in rows[3:]]
    # the 4th trial (first BO step) is running: the next proposal is the second BO step, beside it
    (proposal,) = ask(context, History.of([*rows[:3], *running]), 1)
    assert (proposal.stage, proposal.index) == ("core", 4)
    assert proposal.config != rows[3].config
    # every core trial planned is started and one is still running: the method waits for it
    assert ask(context, History.of([*rows[:3], *running, *running]), 1) is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_from_a_store_written_mid_search_loses_and_repeats_nothing(tmp_path, workers):
    options = {"executor": "processes", "workers": 2} if workers == 2 else {}
    search(tmp_path / "part", max_trials=7, **options)  # stops mid-search (a budget: resumable)
    part = stored_trials(tmp_path / "part")
    assert len(part) == 7 and deepncheap.load_run(tmp_path / "part").state == "stopped"
    result = deepncheap.resume(tmp_path / "part", max_trials=100)
    assert result.finished
    whole = stored_trials(tmp_path / "part")
    keys = [(t.stage, t.stage_index) for t in whole]
    assert len(keys) == len(set(keys))  # no trial trained twice
    assert whole[:7] == part  # the stored trials are untouched
    if workers == 1:  # with one worker, resuming gives exactly the uninterrupted search
        search(tmp_path / "whole")
        assert signature(whole) == signature(stored_trials(tmp_path / "whole"))


def test_a_larger_max_trials_extends_a_finished_search_with_training_steps(tmp_path, capsys):
    first = search(tmp_path / "run")
    assert first.finished
    planned = len(stored_trials(tmp_path / "run"))
    extended = deepncheap.resume(tmp_path / "run", max_trials=planned + 3)
    assert extended.finished
    trials = stored_trials(tmp_path / "run")
    assert len(trials) == planned + 3
    assert [t.stage for t in trials[planned:]] == ["training"] * 3
    again = deepncheap.resume(tmp_path / "run", max_trials=planned + 3)  # nothing more to do
    assert again.finished and len(stored_trials(tmp_path / "run")) == planned + 3


@pytest.mark.parametrize("seed", [0, 1])
def test_the_core_stage_never_trains_the_same_prior_point_twice(tmp_path, seed):
    # (every MLP point with no hidden layer is the same network: 3-5 of 15 Sobol points before the fix)
    space = {"num_hidden_layers": [0, 2], "hidden_nodes": [8, 32]}
    run = tmp_path / "run"
    search(run, space=space, prior_points=12, bo_steps=0, max_trials=12, prune="none", seed=seed)
    configs = [t.config for t in stored_trials(run) if t.stage == "core"]
    assert len(configs) == 12
    assert len({str(sorted(c.items())) for c in configs}) == 12
    assert sum(c["num_hidden_layers"] == 0 for c in configs) == 1


def test_a_space_with_fewer_distinct_configs_than_prior_points_repeats_them(tmp_path):
    space = {"num_hidden_layers": [0, 0]}  # (one network)
    run = tmp_path / "run"
    search(run, space=space, prior_points=3, bo_steps=0, max_trials=3, prune="none")
    configs = [t.config for t in stored_trials(run) if t.stage == "core"]
    assert len(configs) == 3 and configs[0] == configs[1] == configs[2]
