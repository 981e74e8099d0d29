"""`dnc train`: the final model trained on train + validation data, tested once, written safely to RUN/final/."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris

import deepncheap
from deepncheap.cli import main
from deepncheap.data import load_dataset
from deepncheap.errors import DataError, OutputError, SettingsError
from deepncheap.store import RunStore

DNC = str(Path(sys.executable).with_name("dnc"))
TINY = dict(
    network="mlp", penalty="params", method="random", max_trials=2, epochs=2, threads=1, verbose=False, report=False
)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("final") / "digits"
    deepncheap.search(data="digits", out=run, space={"hidden_nodes": [16, 32]}, **TINY)
    return run


def raw_split(dataset, part):
    """A split of the prepared data as the raw inputs a user holds (the standardization undone)."""
    x = getattr(dataset, f"x_{part}")
    return x * dataset.x_std + dataset.x_mean, getattr(dataset, f"y_{part}")


def test_train_writes_the_final_model_and_its_test_metrics(digits_run, capsys):
    assert main(["train", str(digits_run), "--epochs", "3", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    final = json.loads((digits_run / "final" / "final.json").read_text())
    tests = {k: v for k, v in final.items() if k.startswith("test")}
    assert set(tests) == {"test_accuracy", "test_loss"} and all(isinstance(v, float) for v in tests.values())
    with RunStore.open(digits_run) as store:
        best = store.best_trial()
    assert final["trial_id"] == best.trial_id and final["config"] == best.config and final["epochs"] == 3
    assert len(final["train_loss_curve"]) == len(final["epoch_times_s"]) == 3
    assert final["n_train"] == 1149 + 288 and final["n_test"] == 360  # digits: 1797 rows, 20% test, 20% val

    # the final model, loaded from the run, predicts the test split from raw inputs with that accuracy
    result = deepncheap.load_run(digits_run, final=True)
    dataset = load_dataset("digits", network="mlp")
    x_test, y_test = raw_split(dataset, "test")
    accuracy = float(np.mean(result.predict(x_test) == np.array(dataset.classes, dtype=int)[y_test]))
    assert accuracy == pytest.approx(final["test_accuracy"], abs=1e-6)
    assert result.final == final
    # the search's best model is still the default
    assert not torch.equal(
        next(iter(deepncheap.load_run(digits_run).model.state_dict().values())),
        next(iter(result.model.state_dict().values())),
    )


def test_raw_predictions_equal_the_in_memory_model_on_the_stored_splits(digits_run):
    result = deepncheap.load_run(digits_run)
    dataset = load_dataset("digits", network="mlp")
    for part in ("train", "val", "test"):
        raw, _ = raw_split(dataset, part)
        with torch.no_grad():
            expected = torch.softmax(result.model(torch.from_numpy(getattr(dataset, f"x_{part}"))), dim=1).numpy()
        assert np.abs(result.predict_proba(raw) - expected).max() <= 1e-5
        assert (result.predict(raw) == expected.argmax(axis=1)).all()  # digits' labels are 0..9


def test_another_trial_can_be_trained_and_unknown_ones_are_refused(digits_run, capsys):
    with RunStore.open(digits_run) as store:
        other = max(t.trial_id for t in store.trials())
    result = deepncheap.train_final(digits_run, trial_id=other, epochs=1, verbose=False, report=False)
    assert result.final["trial_id"] == other
    with pytest.raises(SettingsError, match=r"has no trial #99 \(it has trials #1–#2\)"):
        deepncheap.train_final(digits_run, trial_id=99, verbose=False, report=False)
    assert main(["train", str(digits_run), "--trial", "99"]) == 2
    assert capsys.readouterr().err.startswith("dnc: error: ")
    with pytest.raises(SettingsError, match="--epochs must be a positive integer"):
        deepncheap.train_final(digits_run, epochs=0, verbose=False, report=False)


def test_train_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnc: error: ") and len(err.strip().splitlines()) == 1


def test_a_run_without_a_test_split_is_refused(tmp_path):
    run = tmp_path / "run"
    deepncheap.search(data="iris", out=run, **TINY)
    with pytest.raises(OutputError, match="no final model yet; train it first"):
        deepncheap.load_run(run, final=True)
    with RunStore.open(run, readonly=False) as store:  # a run whose data had no test part
        settings = store.settings
        store.put("settings", settings | {"data": settings["data"] | {"n_test": 0}})
    with pytest.raises(DataError, match="has no test split"):
        deepncheap.train_final(run, verbose=False, report=False)
    assert not (run / "final").exists()


def test_a_regression_run_reports_test_errors_in_the_targets_units(tmp_path):
    x, y = load_diabetes(return_X_y=True)
    run = tmp_path / "run"
    deepncheap.search(data=(x, y), task="regression", out=run, **TINY)
    with pytest.raises(DataError, match="in-memory arrays; pass the same arrays again"):
        deepncheap.train_final(run, verbose=False, report=False)
    result = deepncheap.train_final(run, data=(x, y), epochs=2, verbose=False, report=False)
    final = result.final
    assert final["test_rmse"] == pytest.approx(np.sqrt(final["test_mse"]))
    assert final["test_mse"] > 100  # diabetes targets are 25..346: errors in those units, not standardized
    predictions = result.predict(x)
    assert predictions.shape == (len(x),) and 25 / 2 < predictions.mean() < 346


def test_train_of_an_arrays_classification_run_keeps_text_labels(tmp_path):
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    run = tmp_path / "run"
    deepncheap.search(data=(x, names), out=run, **TINY)
    result = deepncheap.train_final(run, data=(x, names), epochs=5, verbose=False, report=False)
    assert set(result.predict(x)) <= set(names) and result.predict_proba(x).shape == (150, 3)


def training_in_progress(tmp_path):
    """A run, and a `dnc train` subprocess of it that has trained 100 of its 1000 epochs (stderr piped)."""
    run = tmp_path / "run"
    deepncheap.search(data="digits", out=run, **TINY)
    process = subprocess.Popen(
        [DNC, "train", str(run), "--epochs", "1000"],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    deadline = time.time() + 120
    while time.time() < deadline and "epoch 100/" not in process.stderr.readline():
        pass
    return run, process


def test_a_killed_training_leaves_no_half_written_final_model(tmp_path):
    run, process = training_in_progress(tmp_path)
    try:
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (run / "final" / "final.json").exists()
    # training again starts over and writes both files
    assert deepncheap.train_final(run, epochs=1, verbose=False, report=False).final["epochs"] == 1
    assert sorted(p.name for p in (run / "final").iterdir()) == ["final.json", "model.safetensors"]


def test_ctrl_c_stops_the_training_at_an_epoch_end_and_writes_nothing(tmp_path):
    run, process = training_in_progress(tmp_path)
    try:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "final training interrupted; nothing was written" in err
    assert not (run / "final" / "final.json").exists()


def test_load_run_never_pairs_best_json_with_another_trials_weights(tmp_path):
    """A search saves a new best's weights, then its best.json: weights tagged with another trial than
    best.json's (a reader in between, or a driver killed there) are never loaded as best.json's model."""
    from deepncheap import artifacts

    run = tmp_path / "run"
    result = deepncheap.search(data="digits", out=run, **TINY)
    other = 3 - result.trial_id  # (trials #1 and #2)
    artifacts.save_weights(result.model, run, trial_id=other)
    with pytest.raises(OutputError, match=f"belong to trial #{other}, not to best.json's #{result.trial_id}"):
        deepncheap.load_run(run)


def test_overwrite_removes_the_final_model_of_the_run_it_replaces(tmp_path):
    run = tmp_path / "run"
    deepncheap.search(data="digits", out=run, **TINY)
    deepncheap.train_final(run, epochs=1, verbose=False, report=False)
    deepncheap.search(data="digits", out=run, overwrite=True, **TINY)
    with pytest.raises(OutputError, match="no final model yet"):
        deepncheap.load_run(run, final=True)
