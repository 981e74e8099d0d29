"""`--proxy F --transfer-top K`: a search on a stratified fraction of the training rows, then its best configs
trained on the whole data, as two runs made by one command; resumed whichever part is missing (after a
spent time budget, after a SIGKILL during the transfer); every refusal before anything is written."""

import json
import math
import sys
import time
from pathlib import Path

import pytest
from helpers import kill_once_a_trial_is_stored, stored_trials

import deepncheap
from deepncheap.cli import main
from deepncheap.pruning import DEFAULT_PRUNE
from deepncheap.store import RunStore
from deepncheap.transfer import best_configs

DNC = str(Path(sys.executable).parent / "dnc")
SPACE = {"hidden_nodes": [4, 32], "num_hidden_layers": [1, 2]}
PROXY = dict(network="mlp", method="random", max_trials=5, penalty="params", wc=0.1, seed=2, space=SPACE)
QUIET = dict(verbose=False, report=False)


def settings_of(run):
    with RunStore.open(run) as store:
        return store.settings


def test_one_call_searches_the_proxy_then_trains_its_best_configs_on_the_whole_data(tmp_path):
    out = tmp_path / "proxy"
    result = deepncheap.search(data="digits", out=out, proxy=0.2, transfer_top=3, proxy_epochs=2, epochs=3,
                               **PROXY, **QUIET)  # fmt: skip
    target = tmp_path / "proxy-transfer-digits"
    assert result.run_dir == target and result.finished and result.stage == "transfer"
    proxy, transferred = settings_of(out), settings_of(target)
    # the proxy search: a fifth of the training rows, 2 epochs a trial; its transfer: every row, 3 epochs
    assert proxy["subset"] == 0.2 and proxy["transfer_top"] == 3 and proxy["epochs"] == 2
    assert transferred["subset"] is None and transferred["epochs"] == 3 and transferred["transfer_top"] is None
    assert proxy["data"]["n_train"] < 0.25 * transferred["data"]["n_train"]
    assert proxy["data"]["n_val"] == transferred["data"]["n_val"]  # (validation stays whole)
    assert all(t.epochs == 2 for t in stored_trials(out) if t.status == "complete")
    # the proxy's front first, trained cheapest first, with the proxy's pruning (the bound never stops the best)
    expected = best_configs(stored_trials(out), 3, input_shape=proxy["data"]["input_shape"], front_first=True)
    source = {t.trial_id: t for t in stored_trials(out)}
    expected.sort(key=lambda c: source[c["source_trial_id"]].f_c)
    rows = sorted(stored_trials(target), key=lambda t: t.stage_index)
    assert [t.config for t in rows] == [c["config"] for c in expected]
    assert transferred["prune"] == proxy["prune"] == DEFAULT_PRUNE
    assert rows[0].status == "complete" and {t.status for t in rows} <= {"complete", "pruned"}
    assert all(t.epochs == 3 for t in rows if t.status == "complete")
    assert all(t.objective >= result.metrics["objective"] for t in rows if t.status == "pruned")
    assert transferred["transfer_from"] == str(out.resolve())


def test_a_proxy_transfer_skips_configs_whose_cost_alone_cannot_beat_the_best_so_far(tmp_path):
    """At a high w_c the cost decides: once the cheapest transferred config trained, bigger ones are
    pruned by the bound, and none of them could have been the best."""
    result = deepncheap.search(data="digits", out=tmp_path / "p", proxy=0.2, transfer_top=4, epochs=3,
                               **PROXY | {"wc": 3.0, "max_trials": 8}, **QUIET)  # fmt: skip
    rows = stored_trials(result.run_dir)
    pruned = [t for t in rows if t.status == "pruned"]
    assert pruned and all(t.reason == "cost bound" for t in pruned)
    assert all(t.objective >= result.metrics["objective"] for t in pruned)
    assert result.trial_id not in {t.trial_id for t in pruned}


def test_dnc_search_with_proxy_prints_the_side_by_side_table_and_the_card_gives_the_command(tmp_path, capsys):
    out = tmp_path / "p"
    args = ["search", "--data", "iris", "--network", "mlp", "--method", "random", "--max-trials", "3", "--penalty",
            "params", "--proxy", "0.5", "--transfer-top", "2", "--proxy-epochs", "1", "--epochs", "2",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "source objective" in printed and str(tmp_path / "p-transfer-iris") in printed
    card = (out / "MODEL_CARD.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("dnc search"))
    for given in ("--proxy 0.5", "--transfer-top 2", "--proxy-epochs 1", "--epochs 2"):
        assert given in command, command
    assert "--subset" not in command


def test_a_proxy_search_stopped_by_its_budget_transfers_when_resumed(tmp_path):
    """The budget runs out while the first trial ends (the event sink outlasts it), so the proxy search
    stops with trials left and its transfer has not begun."""
    out, budget_s = tmp_path / "proxy", 3.0

    def outlast_the_budget(event):
        if event["event"] == "trial_ended":
            time.sleep(budget_s)

    stopped = deepncheap.search(data="iris", out=out, proxy=0.5, transfer_top=2, epochs=2, time_budget=budget_s,
                                on_event=outlast_the_budget, **PROXY | {"max_trials": 3}, **QUIET)  # fmt: skip
    target = tmp_path / "proxy-transfer-iris"
    assert stopped.run_dir == out and not stopped.finished and not target.exists()
    done = deepncheap.resume(out, **QUIET)
    assert done.run_dir == target and done.finished
    assert len([t for t in stored_trials(target) if t.status == "complete"]) == 2


def test_a_proxy_search_killed_during_its_transfer_resumes_the_transfer(tmp_path, capsys):
    """SIGKILL once the transfer stored a trial; `dnc resume OUT` (the proxy run) finishes the transfer
    without training a stored trial again."""
    out, target = tmp_path / "proxy", tmp_path / "proxy-transfer-digits"
    command = [DNC, "search", "--data", "digits", "--network", "mlp", "--method", "random", "--max-trials", "4",
               "--penalty", "params", "--proxy", "0.2", "--transfer-top", "4", "--proxy-epochs", "1", "--epochs", "25",
               "--space", str(space_file(tmp_path)), "--out", str(out), "--quiet", "--no-report"]  # fmt: skip
    kill_once_a_trial_is_stored(command, target)
    before = {t.trial_id: t for t in stored_trials(target) if t.status == "complete"}
    proxy_trials = stored_trials(out)
    assert 1 <= len(before) < 4

    capsys.readouterr()
    assert main(["resume", str(out), "--quiet", "--no-report"]) == 0
    assert "source objective" in capsys.readouterr().out
    assert stored_trials(out) == proxy_trials  # the finished proxy search: not touched
    trials = stored_trials(target)
    complete = [t for t in trials if t.status == "complete"]
    assert all(t in complete for t in before.values())
    assert sorted(t.stage_index for t in trials if t.status in ("complete", "pruned")) == [0, 1, 2, 3]
    rows = json.loads((target / "transfer.json").read_text())
    picked = best_configs(proxy_trials, 4, input_shape=settings_of(out)["data"]["input_shape"], front_first=True)
    assert sorted(r["source_trial_id"] for r in rows) == sorted(c["source_trial_id"] for c in picked)


def space_file(tmp_path):
    """Four distinct one-layer networks at least (widths 8–64) for the random search."""
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"hidden_nodes": [8, 64], "num_hidden_layers": [1, 1]}))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transfer-top", "3"], "give --proxy F too"),
        (["--proxy-epochs", "3"], "give --proxy F too, or use --epochs"),
        (["--proxy", "0.1", "--subset", "0.1"], "give one of them"),
        (["--proxy", "1.5"], "--proxy must be a fraction between 0 and 1"),
        (["--proxy", "0.1", "--transfer-top", "0"], "--transfer-top must be an integer >= 1"),
        (["--proxy", "0.1", "--proxy-epochs", "0"], "--epochs must be an integer >= 1"),
    ],
)
def test_proxy_options_that_cannot_work_are_refused_in_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", "--data", "iris", "--network", "mlp", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnc: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_proxy_search_whose_transfer_has_nowhere_to_go_writes_nothing(tmp_path, capsys):
    (tmp_path / "proxy-transfer-iris").mkdir()
    taken = deepncheap.search(data="iris", out=tmp_path / "proxy-transfer-iris", overwrite=True, **PROXY | {
        "max_trials": 1}, epochs=1, **QUIET)  # fmt: skip
    assert taken.finished
    args = ["search", "--data", "iris", "--network", "mlp", "--proxy", "0.5", "--out", str(tmp_path / "proxy")]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run; pass --overwrite" in err and "proxy-transfer-iris" in err, err
    assert not (tmp_path / "proxy").exists()


def test_a_proxy_transfers_its_accuracy_cost_front_first():
    """A proxy's objective weighs the cost less than the whole data's will: its cheaper networks that were
    the best of their cost go before bigger ones of a better proxy objective."""
    from deepncheap.store import Trial

    def trial(trial_id, f_p, f_c, width):
        objective = math.log10(f_p + 0.1 * f_c)
        config = {"network": "mlp", "num_hidden_layers": 1, "hidden_nodes": [width], "drop_prob": 0.0,
                  "lr": 1e-2, "weight_decay": 0.0, "batch_size": 32}  # fmt: skip
        return Trial(trial_id=trial_id, stage="joint", stage_index=trial_id, status="complete", config=config,
                     objective=objective, f_p=f_p, f_c=f_c, val_accuracy=1 - f_p, val_loss=None, n_params=None,
                     flops=None, time_per_epoch_s=None, epochs=2, val_curve=[], wall_s=1.0, error=None,
                     started_at=0.0, finished_at=1.0)  # fmt: skip

    big = [trial(i, 0.04 + 0.01 * i, 0.9 + 0.1 * i, 100 + i) for i in range(1, 4)]  # the best proxy objectives
    small = [trial(4, 0.30, 0.1, 10), trial(5, 0.40, 0.05, 5)]  # the front's cheap end
    dominated = trial(6, 0.35, 0.2, 20)
    trials = [*big, *small, dominated]
    picked = [c["source_trial_id"] for c in best_configs(trials, 4, input_shape=[4], front_first=True)]
    assert picked == [1, 4, 5, 2]
    assert [c["source_trial_id"] for c in best_configs(trials, 4, input_shape=[4])] == [1, 2, 3, 4]
