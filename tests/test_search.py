import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import deepncheap
from deepncheap import timing
from deepncheap.data import load_dataset
from deepncheap.errors import OutputError, SearchFailedError
from deepncheap.space import SearchSpace
from deepncheap.store import RunStore
from deepncheap.train import DeviceData, evaluate

FAST_MLP = {"hidden_nodes": [20, 64], "batch_size": [64, 256], "lr": [1e-3, 1e-2]}
TIMING = ("time_per_epoch_s", "wall_s")


def mlp_search(out, **options):
    settings = dict(
        data="digits",
        network="mlp",
        wc=0.1,
        penalty="params",
        method="sobol",
        max_trials=4,
        epochs=3,
        seed=0,
        space=FAST_MLP,
        out=out,
        verbose=False,
        report=False,
    )
    settings.update(options)
    return deepncheap.search(**settings)


TINY_CNN = {"num_conv_layers": [4, 5], "channels_first": [8, 16], "channels_upper": 32, "batch_size": [64, 128]}


def cnn_search(out, space=TINY_CNN, **options):
    return deepncheap.search(data="digits", network="cnn", space=space, out=out, verbose=False, report=False, **options)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_search_writes_spec_outputs(tmp_path):
    result = mlp_search(tmp_path / "run")
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "store.sqlite",
        "best.json",
        "trials.csv",
        "best_model.safetensors",
    }

    best = json.loads((run / "best.json").read_text())
    assert list(best) == ["trial_id", "stage", "config", "metrics", "settings", "baselines", "search_cost"]
    assert list(best["metrics"]) == [
        "objective",
        "val_accuracy",
        "f_p",
        "f_c",
        "n_params",
        "flops",
        "time_per_epoch_s",
        "epochs",
    ]
    assert set(best["config"]) == {
        "network",
        "num_hidden_layers",
        "hidden_nodes",
        "drop_prob",
        "lr",
        "weight_decay",
        "batch_size",
    }
    assert best["settings"]["seed"] == 0 and best["settings"]["penalty"] == "params"
    # the parameter baseline is the space's largest network: two hidden layers of 64 (FAST_MLP)
    assert best["baselines"]["n_params"] == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10

    rows = read_csv(run / "trials.csv")
    assert list(rows[0]) == [
        "trial_id",
        "stage",
        "status",
        "objective",
        "f_p",
        "f_c",
        "val_accuracy",
        "val_loss",
        "n_params",
        "flops",
        "time_per_epoch_s",
        "wall_s",
        "config",
        "reason",
        "latency_ms",
        "violation",
    ]
    assert len(rows) == 4 and all(r["status"] == "complete" and r["stage"] == "joint" for r in rows)
    assert min(rows, key=lambda r: float(r["objective"]))["trial_id"] == str(best["trial_id"])
    for row in rows:
        f_p, f_c = float(row["f_p"]), float(row["f_c"])
        assert float(row["objective"]) == pytest.approx(np.log10(f_p + 0.1 * f_c))
        assert f_p == pytest.approx(1 - float(row["val_accuracy"]))
        assert f_c == pytest.approx(int(row["n_params"]) / best["baselines"]["n_params"])
        assert json.loads(row["config"])["network"] == "mlp"

    # The saved model is the best trial's best epoch: it scores the recorded validation accuracy.
    assert result.best_config == best["config"] and result.run_dir == run
    dataset = load_dataset("digits", network="mlp")
    accuracy, _ = evaluate(result.model, DeviceData.from_dataset(dataset, torch.device("cpu")))
    assert accuracy == pytest.approx(best["metrics"]["val_accuracy"])
    assert set(load_file(run / "best_model.safetensors")) == set(result.model.state_dict())

    with RunStore.open(run) as store:
        trials = store.trials()
        assert [t.status for t in trials] == ["complete"] * 4
        assert all(len(t.val_curve) == 3 and t.flops > 0 for t in trials)
        assert store.get("baselines") == best["baselines"]


def test_same_seed_with_params_penalty_repeats_exactly(tmp_path):
    first = read_csv(mlp_search(tmp_path / "a", seed=3).run_dir / "trials.csv")
    second = read_csv(mlp_search(tmp_path / "b", seed=3).run_dir / "trials.csv")
    other = read_csv(mlp_search(tmp_path / "c", seed=4).run_dir / "trials.csv")

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert strip(first) == strip(second)
    assert [r["config"] for r in first] != [r["config"] for r in other]


def test_cnn_search_with_time_penalty(tmp_path):
    space = dict(TINY_CNN, lr=[1e-3, 1e-2])
    result = cnn_search(tmp_path / "cnn", space, method="random", max_trials=2, epochs=2)
    baseline = result.baselines["time_per_epoch_s"]
    assert baseline > 0 and result.baselines["time_measure"] == timing.time_measure(baseline)  # see test_timing
    assert result.metrics["f_c"] > 0
    assert result.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_regression_search_reports_val_loss(tmp_path):
    result = deepncheap.search(
        data="diabetes",
        network="mlp",
        space=FAST_MLP,
        max_trials=2,
        epochs=3,
        penalty="params",
        out=tmp_path / "reg",
        verbose=False,
        report=False,
    )
    assert "val_accuracy" not in result.metrics and result.metrics["val_loss"] > 0
    assert result.settings["task"] == "regression"
    assert 0 < result.metrics["f_p"] < 1.5


def test_diverging_trials_are_recorded_failed_and_the_search_goes_on(tmp_path):
    space = dict(FAST_MLP, lr=[1e-3, 1e37])
    result = mlp_search(tmp_path / "nan", space=space, method="random", max_trials=6, seed=1)
    with RunStore.open(result.run_dir) as store:
        trials = store.trials()
    failed = [t for t in trials if t.status == "failed"]
    complete = [t for t in trials if t.status == "complete"]
    assert len(trials) == 6 and failed and complete
    assert all("TrialDiverged" in t.error and t.objective is None for t in failed)
    assert all(t.config["lr"] > 1e10 for t in failed)
    assert result.trial_id in {t.trial_id for t in complete}


def test_search_where_every_trial_fails_stops_with_a_clear_error(tmp_path):
    with pytest.raises(SearchFailedError, match="every trial failed"):
        mlp_search(tmp_path / "all", space=dict(FAST_MLP, lr=1e37), max_trials=2)
    assert not (tmp_path / "all" / "best.json").exists()


def test_existing_run_directory_is_refused(tmp_path):
    mlp_search(tmp_path / "run", max_trials=1, epochs=1)
    with pytest.raises(OutputError, match="already holds a search"):
        mlp_search(tmp_path / "run", max_trials=1, epochs=1)


def test_arrays_through_the_api(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    result = mlp_search(tmp_path / "arrays", data=(x, y), max_trials=2, epochs=5)
    assert result.settings["data_source"] == "arrays" and result.settings["data"]["input_shape"] == [5]
    assert result.metrics["val_accuracy"] > 0.7


def test_same_seed_repeats_cnn_search_exactly(tmp_path):
    def run(name):
        result = cnn_search(tmp_path / name, penalty="params", max_trials=2, epochs=1, seed=11)
        return [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(result.run_dir / "trials.csv")]

    assert run("a") == run("b")


SMALL_DNC = dict(
    data="digits",
    network="mlp",
    penalty="params",
    prior_points=3,
    bo_steps=2,
    candidates=200,
    epochs=2,
    space=FAST_MLP,
    verbose=False,
    report=False,
)


def test_dnc_stages_hand_over_their_best(tmp_path):
    result = deepncheap.search(out=tmp_path / "dnc", seed=5, **SMALL_DNC)
    with RunStore.open(result.run_dir) as store:
        trials = store.trials()
    stages = [t.stage for t in trials]
    assert stages == sorted(stages, key=["core", "advanced", "training"].index), "stages run in order"
    by_stage = {s: [t for t in trials if t.stage == s] for s in ("core", "advanced", "training")}
    assert len(by_stage["core"]) == len(by_stage["training"]) == 3 + 2
    assert 1 <= len(by_stage["advanced"]) <= 5  # six dropout choices, less the one already trained

    def best(candidates):
        return min((t for t in candidates if t.status == "complete"), key=lambda t: (t.objective, t.trial_id))

    core_best = best(by_stage["core"])
    # every advanced trial keeps the core stage's best layers and training hyperparameters, varying dropout
    for trial in by_stage["advanced"]:
        assert {k: v for k, v in trial.config.items() if k != "drop_prob"} == {
            k: v for k, v in core_best.config.items() if k != "drop_prob"
        }
        assert trial.config["drop_prob"] != core_best.config["drop_prob"]
    advanced_best = best([core_best, *by_stage["advanced"]])
    architecture = ("network", "num_hidden_layers", "hidden_nodes", "drop_prob")
    for trial in by_stage["training"]:
        assert {k: trial.config[k] for k in architecture} == {k: advanced_best.config[k] for k in architecture}
    # the core stage trains every config with the architecture stages' lr and batch size (default mode)
    expected = SearchSpace.from_dict(result.settings["space"]).architecture_stage_training()
    assert expected == {"lr": 1e-2, "batch_size": 64}
    assert all({k: t.config[k] for k in expected} == expected for t in by_stage["core"])
    assert result.trial_id == best(trials).trial_id


def test_dnc_search_repeats_exactly_with_a_seed(tmp_path):
    def run(name, seed=9):
        result = deepncheap.search(out=tmp_path / name, seed=seed, **SMALL_DNC)
        return [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(result.run_dir / "trials.csv")]

    first = run("a")
    assert first == run("b")
    assert [r["config"] for r in first] != [r["config"] for r in run("c", seed=10)]


def test_dnc_cnn_grid_sub_stages(tmp_path):
    grids = {"bn_fracs": [0.5, 1.0], "do_fracs": [0.0, 1.0], "input_drop_probs": [0.1], "drop_probs": [0.3],
             "shortcut_every": [0, 2]}  # fmt: skip
    result = cnn_search(
        tmp_path / "cnn", TINY_CNN | grids, penalty="params", prior_points=2, bo_steps=1, candidates=50, epochs=1
    )
    with RunStore.open(result.run_dir) as store:
        trials = store.trials()
    core_channels = min((t for t in trials if t.stage == "core"), key=lambda t: t.objective).config["channels"]
    advanced = [t for t in trials if t.stage == "advanced"]
    assert advanced and all(t.config["channels"] == core_channels for t in advanced)
    # the grid varies one sub-stage's hyperparameters at a time; duplicates of a known network are skipped
    assert len(advanced) <= 1 + 1 + 1 + 1
    assert len({json.dumps(t.config, sort_keys=True) for t in advanced}) == len(advanced)
    assert [t.stage_index for t in advanced] == list(range(len(advanced)))


def failing_build(monkeypatch, should_fail, error):
    """Make building some configs raise `error` (an injected fault: a bug, CUDA or host out of memory)."""
    import deepncheap.trial

    build = deepncheap.trial.build_model

    def build_or_fail(config, *args, **kwargs):
        if should_fail(config):
            raise error
        return build(config, *args, **kwargs)

    monkeypatch.setattr(deepncheap.trial, "build_model", build_or_fail)


def show_output(run_dir, capsys):
    from deepncheap.cli import main

    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (RuntimeError("injected failure"), "RuntimeError: injected failure"),
        (
            torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
            "out of memory (torch.OutOfMemoryError",
        ),
        (MemoryError(), "out of memory (MemoryError)"),
    ],
    ids=["exception", "cuda-oom", "host-oom"],
)
def test_failing_trials_are_isolated_in_a_dnc_search(tmp_path, monkeypatch, capsys, error, recorded):
    """Wide core configs fail; the search goes on through every stage, the failures are in the store (error
    text, no objective) and in `dnc show`, and the GP never sees NaN (it gets the stage's worst objective)."""
    failing_build(monkeypatch, lambda config: sum(config["hidden_nodes"]) > 70, error)
    space = dict(FAST_MLP, num_hidden_layers=[1, 2])  # hidden layers, so the dropout grid trains
    result = mlp_search(tmp_path / "run", method="dnc", max_trials=None, prior_points=4, bo_steps=2, space=space)
    with RunStore.open(result.run_dir) as store:
        trials = store.trials()
    failed = [t for t in trials if t.status == "failed"]
    assert failed and all(t.stage == "core" and recorded in t.error and t.objective is None for t in failed)
    assert {t.stage for t in trials if t.status == "complete"} == {"core", "advanced", "training"}
    assert sum(result.best_config["hidden_nodes"]) <= 70
    shown = show_output(result.run_dir, capsys)
    assert f"{len(failed)} failed" in shown and recorded.split(" (")[0] in shown


def test_diverging_trials_in_a_bo_stage_do_not_stop_it(tmp_path, capsys):
    result = mlp_search(
        tmp_path / "run",
        method="dnc",
        max_trials=None,
        prior_points=4,
        bo_steps=3,
        space=dict(FAST_MLP, lr=[1e-3, 1e37]),
    )
    with RunStore.open(result.run_dir) as store:
        training = store.trials()[-7:]
    assert all(t.stage == "training" for t in training)
    assert any(t.status == "failed" and "TrialDiverged" in t.error for t in training)
    assert any(t.status == "complete" for t in training)
    assert "TrialDiverged" in show_output(result.run_dir, capsys)


def test_every_prior_point_failing_stops_the_dnc_search_with_a_clear_error(tmp_path, monkeypatch):
    failing_build(monkeypatch, lambda config: True, RuntimeError("broken"))
    with pytest.raises(SearchFailedError, match="every prior point of the core stage failed"):
        mlp_search(tmp_path / "run", method="dnc", max_trials=None, prior_points=3, bo_steps=2)
    with RunStore.open(tmp_path / "run") as store:
        assert [t.status for t in store.trials()] == ["failed"] * 3
        assert store.state["state"] == "failed"


def test_a_search_on_whole_number_quantities_says_it_took_them_for_regression(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    ages = np.round(40 + 15 * x[:, 0]).astype(np.int64)
    result = mlp_search(tmp_path / "run", data=(x, ages), method="random", max_trials=1, epochs=1)
    assert "val_loss" in result.metrics
    with RunStore.open(result.run_dir) as store:
        assert store.settings["task"] == "regression"
        assert any(line.startswith("task: regression") for line in store.log_lines())


def test_cifar_shaped_images_are_augmented_by_default_and_digits_are_not(tmp_path, monkeypatch):
    from deepncheap import trial

    seen = []
    run_trial = trial.run_trial
    monkeypatch.setattr(trial, "run_trial", lambda *a, **k: seen.append(k["augment"]) or run_trial(*a, **k))
    rng = np.random.default_rng(0)
    cifar_shaped = (rng.normal(size=(64, 3, 32, 32)).astype(np.float32), np.arange(64) % 4)
    tiny = dict(network="cnn", space=TINY_CNN, method="random", max_trials=1, epochs=1)
    runs = {
        "cifar": mlp_search(tmp_path / "cifar", data=cifar_shaped, **tiny),
        "cifar-off": mlp_search(tmp_path / "off", data=cifar_shaped, augment="off", **tiny),
        "digits": mlp_search(tmp_path / "digits", **tiny),
        "digits-on": mlp_search(tmp_path / "on", augment=True, **tiny),
    }
    assert seen == [True, False, False, True]
    for name, result in runs.items():
        with RunStore.open(result.run_dir) as store:
            assert store.settings["augmented"] is (name in ("cifar", "digits-on"))
            assert any(line.startswith("augmentation:") for line in store.log_lines()) is store.settings["augmented"]
