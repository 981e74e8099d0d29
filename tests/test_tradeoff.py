"""The trade-off without retraining: the Pareto front and the winner of each weight w_c, checked against
brute-force computations on the stored trials of a real small search; `result.pareto()` and `dnc show --wc`."""

import dataclasses
import math

import pytest

import deepncheap
from deepncheap.cli import main
from deepncheap.errors import SettingsError
from deepncheap.objective import performance_floor
from deepncheap.store import RunStore, best_of
from deepncheap.tradeoff import COST_MEASURES, DEFAULT_WEIGHTS, pareto_front, parse_weights, winners
from tests.helpers import stored_trials


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tradeoff") / "run"
    return deepncheap.search(data="digits", network="mlp", method="random", max_trials=6, epochs=2,
                             penalty="params", seed=3, out=out, verbose=False, report=False, prune="none")  # fmt: skip


def brute_force_front(trials, cost):
    """Every complete trial that no other is at least as good as in both f_p and cost, and better in one."""
    complete = [t for t in trials if t.status == "complete" and getattr(t, cost) is not None]

    def dominates(u, t):
        at_least = u.f_p <= t.f_p and getattr(u, cost) <= getattr(t, cost)
        return at_least and (u.f_p < t.f_p or getattr(u, cost) < getattr(t, cost))

    return {t.trial_id for t in complete if not any(dominates(u, t) for u in complete)}


def with_ties(trials):
    """The stored trials with f_p and f_c set so that exact ties and equal costs occur."""
    values = [(0.2, 0.1), (0.1, 0.2), (0.1, 0.1), (0.3, 0.05), (0.05, 0.3), (0.05, 0.3)]
    return [dataclasses.replace(t, f_p=f_p, f_c=f_c) for t, (f_p, f_c) in zip(trials, values, strict=False)]


@pytest.mark.parametrize("cost", COST_MEASURES)
def test_pareto_front_matches_brute_force(run, cost):
    trials = stored_trials(run.run_dir)
    for case in (trials, with_ties(trials)):
        front = pareto_front(case, cost=cost)
        assert {t.trial_id for t in front} == brute_force_front(case, cost)
        keys = [(getattr(t, cost), t.f_p, t.trial_id) for t in front]
        assert keys == sorted(keys)
        assert [t.f_p for t in front] == sorted((t.f_p for t in front), reverse=True)  # dearer means better


def test_exact_ties_are_all_on_the_front_and_an_equal_that_costs_more_is_not(run):
    trials = with_ties(stored_trials(run.run_dir))
    ids = [t.trial_id for t in trials]
    # (0.3, 0.05), (0.1, 0.1), then the tie (0.05, 0.3) twice, by trial id
    assert [t.trial_id for t in pareto_front(trials)] == [ids[3], ids[2], ids[4], ids[5]]
    # left out: (0.2, 0.1), worse at the same cost; (0.1, 0.2), as good but dearer than (0.1, 0.1)


def test_result_pareto_gives_the_front_rows(run):
    rows = run.pareto()
    trials = {t.trial_id: t for t in stored_trials(run.run_dir)}
    assert [r.trial_id for r in rows] == [t.trial_id for t in pareto_front(trials.values())]
    for row in rows:
        trial = trials[row.trial_id]
        assert (row.stage, row.f_p, row.f_c, row.n_params, row.val_accuracy) == (
            trial.stage, trial.f_p, trial.f_c, trial.n_params, trial.val_accuracy)  # fmt: skip
        assert set(row.to_dict()) >= {"trial_id", "f_p", "f_c", "n_params", "flops", "time_per_epoch_s"}
    assert [r.trial_id for r in run.pareto(cost="n_params")] == [
        t.trial_id for t in pareto_front(trials.values(), cost="n_params")
    ]
    with pytest.raises(SettingsError, match="unknown cost measure"):
        run.pareto(cost="watts")


def test_winners_match_a_brute_force_recomputation(run):
    trials = stored_trials(run.run_dir)
    data = run.settings["data"]
    floor = performance_floor(task=data["task"], n_val=data["n_val"])
    weights = [*DEFAULT_WEIGHTS, 100.0]
    found = winners(trials, weights, floor=floor)
    assert [w.wc for w in found] == weights
    for winner in found:
        scores = {t.trial_id: math.log10(max(t.f_p, floor) + winner.wc * t.f_c) for t in trials}
        expected = min(scores, key=lambda i: (scores[i], i))
        assert winner.trial.trial_id == expected
        assert winner.objective == pytest.approx(scores[expected], abs=1e-12)
    own = winners(trials, [run.settings["wc"]], floor=floor)[0]
    with RunStore.open(run.run_dir) as store:
        assert own.trial.trial_id == best_of(store.trials()).trial_id
    assert own.objective == pytest.approx(own.trial.objective, abs=1e-12)


def test_parse_weights():
    assert parse_weights("0,0.01, 0.1,1,10") == [0.0, 0.01, 0.1, 1.0, 10.0]
    for bad in ("", "a,b", "-1", "0,inf", "nan"):
        with pytest.raises(SettingsError):
            parse_weights(bad)


def test_dnc_show_wc_lists_each_weights_winner_and_the_front(run, capsys):
    assert main(["show", str(run.run_dir), "--wc", "0,0.1,10"]) == 0
    out = capsys.readouterr().out
    trials = stored_trials(run.run_dir)
    data = run.settings["data"]
    floor = performance_floor(task=data["task"], n_val=data["n_val"])
    table = out[out.index("trade-off: the trial each w_c chooses") : out.index("Pareto front")]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) == 3
    for row, winner in zip(rows, winners(trials, [0.0, 0.1, 10.0], floor=floor), strict=True):
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[:2] == [f"{winner.wc:g}", f"#{winner.trial.trial_id}"]
        assert cells[-1] == f"{winner.objective:+.4f}"
    front = out[out.index("Pareto front") :]
    front_ids = [line.strip("│ ").split()[0] for line in front.splitlines() if line.startswith("│")]
    assert front_ids == [f"#{t.trial_id}" for t in pareto_front(trials)]


@pytest.mark.parametrize("weights", ["-1", "x", "0,,inf"])
def test_dnc_show_refuses_bad_weights_on_one_line(run, capsys, weights):
    assert main(["show", str(run.run_dir), f"--wc={weights}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnc: error: ") and err.count("\n") == 1 and "--wc" in err
