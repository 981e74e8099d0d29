import importlib
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import pandas
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import deepncheap
from deepncheap.errors import DNCError, SearchInterrupted, SettingsError
from deepncheap.sklearn import DNCClassifier, DNCRegressor, FitDataError, _holdout

# Tiny, deterministic budgets (one trial of one epoch, a short final training, one thread): the estimator
# checks fit dozens of times. The final training is long enough for the checks' training-score thresholds.
FAST = dict(
    method="random",
    max_trials=1,
    epochs=1,
    final_epochs=10,
    space={"hidden_nodes": [8, 16], "lr": 0.01, "batch_size": 16},
    threads=1,
)
FLOAT32 = (
    "the network computes in float32: a sample's outputs can move by one rounding (~3e-8) with its position "
    "in the batch (BLAS blocking), above this check's atol of 1e-9"
)


@parametrize_with_checks(
    [DNCClassifier(**FAST), DNCRegressor(**FAST)],
    expected_failed_checks=lambda estimator: {"check_methods_sample_order_invariance": FLOAT32},
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def iris():
    return load_iris(return_X_y=True)


def diabetes():
    x, y = load_diabetes(return_X_y=True)
    return x[:200], y[:200]


def test_classifier_fits_predicts_and_restores_the_thread_count(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the temporary run goes
    x, y = iris()
    threads = torch.get_num_threads()
    clf = DNCClassifier(**(FAST | {"threads": threads + 1})).fit(x, y)  # (trials and final training use 1 more)
    assert torch.get_num_threads() == threads and clf.trials_.loc[0, "threads"] == threads + 1
    assert not list(tmp_path.glob("deepncheap-*"))  # the temporary run is removed
    assert clf.run_dir_ is None and clf.n_features_in_ == 4
    assert clf.score(x, y) > 0.8
    proba = clf.predict_proba(x)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-6)
    assert set(clf.best_config_) >= {"hidden_nodes", "lr", "batch_size"}
    assert clf.result_.final["trained_on"] == "train+val" and clf.result_.final["n_train"] == 150
    trials = clf.trials_.to_dict("records")
    assert len(trials) == 1 and trials[0]["status"] == "complete" and trials[0]["config"]["network"] == "mlp"
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(x), proba)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array(["b", "a", "c"], dtype=object),
        np.array([-1, 7, 30]),
        np.array([0.0, 1.0, 2.0]),
    ],
)
def test_predictions_are_the_labels_given(labels):
    x, y = iris()
    y_labels = labels[y.astype(int)]
    clf = DNCClassifier(**FAST).fit(x, y_labels)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    predicted = clf.predict(x)
    assert predicted.dtype == y_labels.dtype and set(predicted) <= set(labels)
    assert np.mean(predicted == y_labels) > 0.8
    np.testing.assert_array_equal(predicted, clf.classes_[clf.predict_proba(x).argmax(axis=1)])


def test_boolean_labels():
    x, y = iris()
    keep = y < 2
    y_bool = y[keep] == 1
    clf = DNCClassifier(**FAST).fit(x[keep], y_bool)
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(x[keep]).dtype == bool and clf.score(x[keep], y_bool) > 0.9


def test_regressor_predicts_in_the_targets_units():
    x, y = diabetes()
    reg = DNCRegressor(**FAST).fit(x, y + 1000.0)
    predicted = reg.predict(x)
    assert predicted.shape == (200,) and abs(predicted.mean() - (y.mean() + 1000.0)) < 30
    assert reg.score(x, y + 1000.0) > 0.2


def test_in_a_pipeline_with_a_scaler():
    x, y = iris()
    pipeline = make_pipeline(StandardScaler(), DNCClassifier(**FAST)).fit(x * 100.0, y)
    assert pipeline.score(x * 100.0, y) > 0.8


def test_clone_keeps_the_parameters_and_drops_the_fit():
    x, y = iris()
    clf = DNCClassifier(**FAST, wc=0.5).fit(x, y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy.space is not clf.space
    with pytest.raises(NotFittedError):
        copy.predict(x)


def test_grid_search_over_wc():
    x, y = iris()
    grid = GridSearchCV(DNCClassifier(**FAST), {"wc": [0.0, 1.0]}, cv=2).fit(x, y)
    assert grid.best_params_["wc"] in (0.0, 1.0) and grid.best_score_ > 0.6
    assert grid.predict(x).shape == (150,)


def test_cross_val_score():
    x, y = diabetes()
    scores = cross_val_score(DNCRegressor(**FAST), x, y, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_run_dir_is_kept_and_refitting_replaces_the_run(tmp_path):
    x, y = iris()
    clf = DNCClassifier(**FAST, run_dir=tmp_path / "run").fit(x, y)
    assert clf.run_dir_ == tmp_path / "run" and (tmp_path / "run" / "final" / "final.json").is_file()
    assert (tmp_path / "run" / "report.html").is_file()  # (a kept run has its report; a temporary one none)
    np.testing.assert_array_equal(deepncheap.load_run(clf.run_dir_, final=True).predict(x), clf.predict(x))
    clf.fit(x[:100], y[:100])  # two classes now: the run is replaced, not refused
    assert len(clf.classes_) == 2 and deepncheap.load_run(clf.run_dir_).settings["data"]["num_outputs"] == 2


def test_data_frames_give_feature_names():
    x, y = iris()
    frame = pandas.DataFrame(x, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    clf = DNCClassifier(**FAST).fit(frame, pandas.Series(y))
    assert list(clf.feature_names_in_) == list(frame.columns)
    assert isinstance(clf.trials_, pandas.DataFrame) and clf.trials_.loc[0, "status"] == "complete"


def test_trials_are_a_list_of_dicts_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # (import pandas then fails)
    clf = DNCClassifier(**FAST).fit(*iris())
    assert isinstance(clf.trials_, list) and clf.trials_[0]["status"] == "complete"


def test_tiny_data_sets_fit():
    """3 classes in 12 samples, one class with 2: every class keeps a training sample."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 5 + [1] * 5 + [2] * 2)
    x = rng.normal(size=(12, 3)) + y[:, None]
    clf = DNCClassifier(**FAST).fit(x, y)
    assert clf.predict(x).shape == (12,) and list(clf.classes_) == [0, 1, 2]


def test_holdout_is_stratified_and_keeps_every_class_for_training():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = _holdout(y, 0.2, stratified=True)
    assert np.bincount(y[val]).tolist() == [10, 6, 4] and len(train) + len(val) == 100
    y = np.array([0, 0, 0, 0, 1, 2])  # classes with one sample stay in training
    train, val = _holdout(y, 0.5, stratified=True)
    assert sorted(y[val].tolist()) == [0, 0, 0] and set(y[train]) == {0, 1, 2}
    train, val = _holdout(np.linspace(0, 1, 7), 0.2, stratified=False)
    assert len(val) == 2 and len(train) == 5


@pytest.mark.parametrize(
    ("estimator", "x", "y", "message"),
    [
        (DNCClassifier(**FAST), np.ones((5, 2)), np.ones(5), "1 class"),
        (DNCClassifier(**FAST), np.eye(2), [0, 1], "some class needs 2 or more"),
        (DNCRegressor(**FAST), np.ones((1, 2)), [3.0], "1 sample"),
    ],
)
def test_data_too_small_to_fit_is_a_value_error(estimator, x, y, message):
    with pytest.raises(FitDataError, match=message) as error:
        estimator.fit(x, y)
    assert isinstance(error.value, ValueError) and isinstance(error.value, DNCError)


def test_importing_deepncheap_imports_no_estimator():
    code = (
        "import sys, deepncheap; assert 'deepncheap.sklearn' not in sys.modules; "
        "assert deepncheap.DNCClassifier.__module__ == 'deepncheap.sklearn'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_interrupted_fit_says_to_fit_again(monkeypatch):
    def interrupted(**options):
        raise SearchInterrupted(options["out"])

    monkeypatch.setattr(importlib.import_module("deepncheap.search"), "search", interrupted)
    with pytest.raises(KeyboardInterrupt, match="call fit again") as error:
        DNCClassifier(**FAST).fit(*iris())
    assert not isinstance(error.value, SearchInterrupted)  # (whose advice, dnc resume, cannot apply)


def test_a_time_budget_too_short_for_any_trial_says_so():
    with pytest.raises(SettingsError, match="time_budget=1e-06 ran out before any trial completed"):
        DNCClassifier(**FAST, time_budget=1e-6).fit(*iris())
