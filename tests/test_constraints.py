"""Hard constraints and the new cost measures: no trained trial violates an exact constraint, a predicted
one stops violators and never lets one be the best, impossible constraints are refused before anything is
written, latency ranks networks stably, and resume keeps the constraints."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import stored_trials

import deepncheap
from deepncheap import bo
from deepncheap.constraints import Constraints, EpochTimeModel
from deepncheap.data import load_dataset
from deepncheap.errors import SettingsError
from deepncheap.latency import LatencyProbe
from deepncheap.models import build_model
from deepncheap.show import show_run
from deepncheap.space import SearchSpace

DNC = str(Path(sys.executable).parent / "dnc")
# MLPs from 0 to 3 hidden layers of 4 to 256 units: 43 to ~150,000 parameters on iris... and digits.
SIZES = {"hidden_nodes": [4, 256], "num_hidden_layers": [1, 3], "batch_size": [16, 64], "lr": [1e-3, 1e-2]}
QUICK = dict(network="mlp", penalty="params", wc=0.1, epochs=2, verbose=False, report=False)


def trained(trials):
    return [t for t in trials if t.epochs]


@pytest.mark.parametrize("method", ["dnc", "random"])
def test_no_trained_trial_violates_an_exact_constraint(tmp_path, method):
    """Random spaces and seeds, limits that about half of each space violates: every trial that trained
    complies, and the best is among them."""
    rng = np.random.default_rng(7)
    for seed in range(4):
        low, high = sorted(int(v) for v in rng.integers(4, 200, size=2))
        space = SIZES | {"hidden_nodes": [low, high + 8]}
        sizes = sorted(_n_params(c, "iris") for c in SearchSpace.create("mlp", space).sample(64, seed=seed))
        limit = sizes[len(sizes) // 2]  # (half of the space's networks are larger)
        options = QUICK | dict(method=method, space=space, seed=seed, max_params=limit, data="iris")
        options |= dict(prior_points=4, bo_steps=3) if method == "dnc" else dict(max_trials=8)
        result = deepncheap.search(out=tmp_path / f"{method}{seed}", **options)
        trials = stored_trials(result.run_dir)
        assert trained(trials) and all(t.n_params <= limit for t in trained(trials))
        assert result.metrics["n_params"] <= limit
        assert all(t.violation is None for t in trials)  # (nothing was found to violate after training)


def test_flops_constraint_and_penalty(tmp_path):
    trials, best = _random_digits_search(tmp_path, max_trials=8, max_flops=20_000, penalty="flops")
    assert all(t.flops <= 20_000 for t in trained(trials))
    assert best["baselines"]["flops"] > 0
    for t in trained(trials):  # f_c is the FLOPs over the reference config's
        assert t.f_c == pytest.approx(t.flops / best["baselines"]["flops"])
    assert best["constraints"]["max_flops"] == 20_000
    assert best["constraints"]["margins"]["max_flops"] == 20_000 - best["metrics"]["flops"] >= 0


def test_latency_penalty_measures_every_trial_before_training(tmp_path):
    trials, best = _random_digits_search(tmp_path, max_trials=5, latency_batch=4, penalty="latency")
    reference = best["baselines"]["latency_ms"]
    assert reference > 0
    for t in trials:
        assert t.latency_ms > 0 and t.f_c == pytest.approx(t.latency_ms / reference)
    assert best["metrics"]["latency_ms"] > 0
    with open(tmp_path / "run" / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-3:] == ["reason", "latency_ms", "violation"]
    assert all(float(row["latency_ms"]) > 0 for row in rows)


def test_latency_is_stable_enough_to_rank_networks():
    """Repeated measures of one network agree within a factor of 2 (the median of 25 passes after warm-up),
    and a network with 30x the work is measured slower every time."""
    dataset = load_dataset("digits", network="mlp")
    probe = LatencyProbe(batch=32, device="cpu")
    small = {"network": "mlp", "num_hidden_layers": 1, "hidden_nodes": [16], "drop_prob": 0.0}
    large = {"network": "mlp", "num_hidden_layers": 3, "hidden_nodes": [512, 512, 512], "drop_prob": 0.0}
    small_ms = [probe.of_config(small, dataset) for _ in range(5)]
    large_ms = [probe.of_config(large, dataset) for _ in range(5)]
    assert max(small_ms) < min(large_ms)
    assert max(large_ms) / min(large_ms) < 2.0


def test_a_predicted_epoch_time_limit_stops_violators_and_never_makes_one_the_best(tmp_path):
    """Batches of 8 make digits epochs several times slower than batches of 512: with a limit between,
    trials found slower are stopped once timed (recorded with their real time) and none is the best.
    Pruning is off so that only the limit stops trials (with it, a trial the bound stops after its untimed
    first epoch is recorded as a violator too when that epoch was slow)."""
    probe = deepncheap.search(
        out=tmp_path / "probe", data="digits", method="random", max_trials=6, seed=3,
        space=SIZES | {"batch_size": [8, 512]}, **QUICK,
    )  # fmt: skip
    times = sorted(t.time_per_epoch_s for t in stored_trials(probe.run_dir))
    limit = times[len(times) // 2]
    result = deepncheap.search(
        out=tmp_path / "run", data="digits", method="random", max_trials=10, seed=3, max_epoch_time=limit,
        space=SIZES | {"batch_size": [8, 512]}, **(QUICK | dict(epochs=4, prune="none")),
    )  # fmt: skip
    trials = stored_trials(result.run_dir)
    violators = [t for t in trials if t.violation is not None]
    best = json.loads((result.run_dir / "best.json").read_text())
    assert best["metrics"]["time_per_epoch_s"] <= limit
    assert best["baselines"]["smallest_epoch_s"] > 0  # (the second point of the time prediction)
    assert best["trial_id"] not in {t.trial_id for t in violators}
    for t in violators:
        assert t.time_per_epoch_s > limit and "--max-epoch-time" in t.violation
        if t.status == "pruned":  # stopped at its first timed epoch
            assert t.epochs == 2 and t.reason == t.violation
    front = result.pareto()
    assert all(row.trial_id not in {t.trial_id for t in violators} for row in front)


def test_impossible_constraints_are_refused_before_the_run_directory_exists(tmp_path):
    smallest = _n_params({"network": "mlp", "num_hidden_layers": 0, "hidden_nodes": [], "drop_prob": 0.0}, "digits")
    unmet = "cannot be met: the smallest network of the space needs"
    cases = [
        (["--max-params", "100"], f"--max-params 100 {unmet} {smallest:,} params"),
        (["--max-flops", "10"], f"--max-flops 10 {unmet}"),
        (["--max-latency-ms", "1e-9"], f"--max-latency-ms 1e-09 ms {unmet}"),
    ]  # fmt: skip
    for i, (flags, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        done = subprocess.run(
            [DNC, "search", "--data", "digits", "--network", "mlp", *flags, "--out", str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"dnc: error: {message}") and done.stderr.count("\n") == 1
        assert "raise --" in done.stderr and not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-params", "0"], "argument --max-params: invalid count '0'"),
        (["--max-params", "1.5"], "argument --max-params: invalid count '1.5'"),
        (["--max-flops", "many"], "argument --max-flops: invalid count 'many'"),
        (["--max-latency-ms", "0"], "--max-latency-ms must be a positive number, got 0.0"),
        (["--max-latency-ms", "nan"], "--max-latency-ms must be a positive number, got nan"),
        (["--max-epoch-time", "-1"], "--max-epoch-time must be a positive number, got -1.0"),
        (["--latency-batch", "0"], "--latency-batch must be an integer >= 1, got 0"),
        (["--latency-batch", "8"], "--latency-batch needs --penalty latency or --max-latency-ms"),
        (["--penalty", "energy"], "unknown penalty 'energy'; use one of: time, params, flops, latency"),
        (
            ["--penalty", "latency", "--executor", "ray", "--ray-address", "10.0.0.1:6379"],
            "latency is measured on the driver's device",
        ),
    ],
)
def test_bad_constraint_values_are_refused(tmp_path, flags, message):
    out = tmp_path / "run"
    done = subprocess.run(
        [DNC, "search", "--data", "iris", "--network", "mlp", *flags, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"dnc: error: {message}") and done.stderr.count("\n") == 1
    assert not out.exists()


def test_api_constraint_values_are_checked():
    with pytest.raises(SettingsError, match=r"--max-params must be an integer >= 1, got 0"):
        deepncheap.search(data="iris", max_params=0, **QUICK)
    with pytest.raises(SettingsError, match=r"--max-epoch-time must be a positive number, got 'fast'"):
        deepncheap.search(data="iris", max_epoch_time="fast", **QUICK)


def test_resume_keeps_the_constraints(tmp_path, capsys):
    options = QUICK | dict(data="iris", method="random", space=SIZES, seed=5, max_params=3000)
    first = deepncheap.search(out=tmp_path / "run", max_trials=3, **options)
    assert first.settings["max_params"] == 3000
    resumed = deepncheap.resume(tmp_path / "run", max_trials=9, verbose=False, report=False)
    trials = stored_trials(resumed.run_dir)
    assert len(trials) == 9 and all(t.n_params <= 3000 for t in trained(trials))
    show_run(resumed.run_dir)
    out = capsys.readouterr().out
    assert "constraints: params <= 3,000; trained trials that violate one (never the best): none" in out
    assert "margins of the best (limit minus its value): --max-params" in out


def test_constrained_expected_improvement_weights_by_the_probability_of_complying():
    """Of candidates with equal EI, the more likely to comply wins; one of probability 0 never does, even
    with the highest EI; candidates are asked in order of EI until the rest cannot win."""
    observed = [np.array([0.0, 1.0])]
    terms = [(1.0, bo.ScalarTerm(0.0, 4.0))]
    candidates = [np.array([0.5, 2.0, 3.0, 4.0])]
    y = np.array([0.0, 1.0])
    free = bo.propose(observed, y, candidates, terms)
    asked: list[int] = []

    def probability(i: int) -> float:
        asked.append(i)
        return 0.0 if i == free.index else 0.5

    constrained = bo.propose(observed, y, candidates, terms, feasibility=probability)
    assert constrained.index != free.index
    assert constrained.ei[constrained.index] > 0
    assert len(asked) <= len(candidates[0])


def test_the_epoch_time_model_predicts_from_measured_trials_with_its_uncertainty():
    modelled = [0.01, 0.02, 0.04, 0.08]
    measured = [3 * m**0.9 for m in modelled]
    model = EpochTimeModel.fit(modelled, measured)
    assert model.b == pytest.approx(0.9, abs=1e-6) and model.predict_s(0.16) == pytest.approx(3 * 0.16**0.9)
    assert model.sigma == pytest.approx(0.1)  # (a perfect fit keeps the least uncertainty)
    assert model.comply_probability(0.16, model.predict_s(0.16)) == pytest.approx(0.5)
    assert model.comply_probability(0.16, 10 * model.predict_s(0.16)) > 0.99
    one = EpochTimeModel.fit([0.05], [0.2])  # (the baseline alone: measured = 4x modelled)
    assert one.b == 1.0 and one.predict_s(0.1) == pytest.approx(0.4)
    two = EpochTimeModel.fit([0.01, 0.1], [0.02, 0.1])  # (both baselines: the slope, not yet the spread)
    assert two.b == pytest.approx(np.log10(5)) and two.predict_s(0.1) == pytest.approx(0.1)
    assert two.sigma == pytest.approx(0.3)


def test_constraints_describe_and_margins():
    c = Constraints(max_params=1000, max_epoch_time=0.5)
    assert c and c.exact and not Constraints()
    assert c.describe() == "params <= 1,000, epoch time <= 0.5 s (predicted before training)"
    assert c.violations(n_params=1200, epoch_time_s=0.4) == ["params 1,200 > --max-params 1,000"]
    assert c.margins({"n_params": 900, "time_per_epoch_s": 0.6}) == pytest.approx(
        {"max_params": 100, "max_epoch_time": -0.1}
    )


def _random_digits_search(tmp_path, **options):
    """A random search of SIZES on digits into tmp_path/run: its trials and best.json."""
    result = deepncheap.search(out=tmp_path / "run", data="digits", method="random", space=SIZES, **(QUICK | options))
    return stored_trials(result.run_dir), json.loads((result.run_dir / "best.json").read_text())


def _n_params(config, data):
    dataset = load_dataset(data, network="mlp")
    config = {"drop_prob": 0.0} | config
    with torch.device("meta"):
        model = build_model(config, dataset.input_shape, dataset.num_outputs)
    return sum(p.numel() for p in model.parameters())
