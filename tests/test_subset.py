"""`--subset F`: a cheap proxy search trains on a stratified fraction of the training rows, always the same
ones, while the validation and test rows stay whole (so objectives compare with a search on all rows)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import stored_trials

import deepncheap
from deepncheap.data import load_dataset
from deepncheap.errors import DataError, SettingsError

DNC = str(Path(sys.executable).parent / "dnc")


def test_a_subset_keeps_a_stratified_fraction_of_the_training_rows_only():
    full = load_dataset("digits", network="mlp")
    proxy = load_dataset("digits", network="mlp", subset=0.1)
    assert len(proxy.y_train) == int(np.ceil(0.1 * len(full.y_train)))
    share = np.bincount(proxy.y_train) / len(proxy.y_train)
    assert np.abs(share - np.bincount(full.y_train) / len(full.y_train)).max() < 0.02  # (stratified)
    raw_val = [d.x_val * d.x_std + d.x_mean for d in (proxy, full)]
    assert np.allclose(*raw_val, atol=1e-4)
    assert np.array_equal(proxy.y_val, full.y_val) and np.array_equal(proxy.y_test, full.y_test)
    again = load_dataset("digits", network="mlp", subset=0.1)
    assert again.fingerprint() == proxy.fingerprint()  # (the same rows every time: resume finds them again)
    assert any("--subset 0.1: training on 115 of the 1149 training rows" in note for note in proxy.notes)


def test_a_subset_of_few_rows_is_cautioned_that_its_ranking_may_not_carry_over():
    few = load_dataset("digits", network="mlp", subset=0.1)  # 115 rows: 2 steps an epoch at batch 64
    assert any("115 training rows make 2 optimizer step(s) an epoch" in note for note in few.notes)
    assert any("at least 256 rows" in note for note in few.notes)
    enough = load_dataset("digits", network="mlp", subset=0.3)  # 345 rows
    assert not any("optimizer step" in note for note in enough.notes)


def test_a_subset_too_small_for_every_class_is_refused():
    with pytest.raises(DataError, match="too few for a stratified subset split.*use a larger --subset"):
        load_dataset("iris", network="mlp", subset=0.01)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, float("nan"), "half"])
def test_bad_subset_values_are_refused(value):
    with pytest.raises(SettingsError, match="--subset must be a fraction between 0 and 1"):
        deepncheap.search(data="iris", network="mlp", subset=value, verbose=False, report=False)


def test_a_proxy_search_trains_on_the_subset_and_resumes_on_it(tmp_path):
    out = tmp_path / "run"
    command = [DNC, "search", "--data", "wine", "--network", "mlp", "--penalty", "params", "--method", "random"]
    command += ["--max-trials", "2", "--epochs", "2", "--subset", "0.5", "--out", str(out), "--quiet", "--no-report"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = deepncheap.load_run(out)
    assert result.settings["subset"] == 0.5
    wine = load_dataset("wine", network="mlp")
    assert result.settings["data"]["n_train"] == int(np.ceil(0.5 * len(wine.y_train)))
    assert result.settings["data"]["n_val"] == len(wine.y_val)
    deepncheap.resume(out, max_trials=3, verbose=False, report=False)  # (the same rows: fingerprint)
    assert len(stored_trials(out)) == 3
