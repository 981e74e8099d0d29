"""scikit-learn estimators: `DNCClassifier` and `DNCRegressor` run a Deep-n-Cheap search on `(X, y)`, train
the best config's final model on all of it, and predict with that model, like any scikit-learn estimator
(`Pipeline`, `clone`, `GridSearchCV`, `cross_val_score`).

`fit` holds out `validation_fraction` of the samples (stratified by class) to rank the configs, then trains
the winner on every sample (`deepncheap.train_final`). A scikit-learn user tests the estimator on data of
their own (`score`, `cross_val_score`), so no test split is taken from `X`: the run's test part is its
validation part, and the final model's "test" metrics in `result_.final` are measured on samples it
trained on. The run lives in a temporary directory removed when `fit` returns (and writes no report,
which would be deleted unread), unless `run_dir` names one to keep (with its report).

    >>> from deepncheap import DNCClassifier
    >>> clf = DNCClassifier(max_trials=10).fit(X_train, y_train)
    >>> clf.score(X_test, y_test), clf.best_config_
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from deepncheap.data import SPLIT_SEED
from deepncheap.errors import DataError, SearchInterrupted, SearchStopped, SettingsError

Estimator = TypeVar("Estimator", bound="_DNCEstimator")


class FitDataError(DataError, ValueError):
    """Data an estimator cannot fit (one class, too few samples); also a ValueError, as scikit-learn expects."""


class _DNCEstimator(BaseEstimator):
    """What both estimators share: the search options, `fit` (search, then final training) and the run."""

    _task = ""  # "classification" or "regression"

    def __init__(
        self,
        *,
        network: str = "mlp",
        wc: float = 0.1,
        penalty: str = "params",
        method: str = "dnc",
        prior_points: int = 5,
        bo_steps: int = 5,
        epochs: int = 20,
        max_trials: int | None = None,
        final_epochs: int | None = None,
        time_budget: str | float | None = None,
        space: dict[str, Any] | None = None,
        validation_fraction: float = 0.2,
        image_shape: tuple[int, int, int] | None = None,
        executor: str = "serial",
        workers: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        verbose: bool = False,
    ):
        self.network = network
        self.wc = wc
        self.penalty = penalty
        self.method = method
        self.prior_points = prior_points
        self.bo_steps = bo_steps
        self.epochs = epochs
        self.max_trials = max_trials
        self.final_epochs = final_epochs
        self.time_budget = time_budget
        self.space = space
        self.validation_fraction = validation_fraction
        self.image_shape = image_shape
        self.executor = executor
        self.workers = workers
        self.device = device
        self.threads = threads
        self.seed = seed
        self.run_dir = run_dir
        self.verbose = verbose

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """`y` as the search takes it (class indices, or float targets); sets what `predict` maps back with."""
        raise NotImplementedError

    def fit(self: Estimator, X: Any, y: Any) -> Estimator:
        """Search configs on `(X, y)`, then train the best one's final model on all of it; returns self."""
        from deepncheap.final import train_final
        from deepncheap.search import search
        from deepncheap.store import RunStore

        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=self._task == "regression")
        targets = self._targets(y)
        train, val = _holdout(targets, self.validation_fraction, stratified=self._task == "classification")
        data = {"xtr": X[train], "ytr": targets[train], "xva": X[val], "yva": targets[val]}
        data |= {"xte": data["xva"], "yte": data["yva"]}  # (no test split taken from X: see the module docstring)
        with _run_directory(self.run_dir) as (run_dir, kept):
            try:
                search(
                    data=data,
                    out=run_dir,
                    overwrite=kept,  # fitting again replaces the run, as it replaces the model
                    time_budget=self.time_budget,
                    verbose=self.verbose,
                    report=kept,  # (a temporary run's report would be deleted unread)
                    task=self._task,
                    **self._search_options(),
                )
            except SearchInterrupted:  # (its advice, 'dnc resume', cannot apply: the run's data are fit's own)
                raise KeyboardInterrupt("fit interrupted; call fit again to start over") from None
            except SearchStopped:
                raise SettingsError(
                    f"time_budget={self.time_budget!r} ran out before any trial completed; give a longer time_budget"
                ) from None
            self.result_ = train_final(run_dir, epochs=self.final_epochs, data=data, verbose=self.verbose, report=kept)
            with RunStore.open(run_dir) as store:
                self.trials_ = _table([dataclasses.asdict(trial) for trial in store.trials()])
        self.run_dir_ = run_dir if kept else None
        self.model_ = self.result_.model
        self.best_config_ = self.result_.best_config
        return self

    def _search_options(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "wc": self.wc,
            "penalty": self.penalty,
            "method": self.method,
            "prior_points": self.prior_points,
            "bo_steps": self.bo_steps,
            "epochs": self.epochs,
            "max_trials": self.max_trials,
            "space": None if self.space is None else dict(self.space),
            "image_shape": None if self.image_shape is None else tuple(self.image_shape),
            "executor": self.executor,
            "workers": self.workers,
            "device": self.device,
            "threads": self.threads,
            "seed": self.seed,
        }

    def _outputs(self, X: Any) -> np.ndarray:
        """The final model's probabilities (classification) or predictions (regression) for raw `X`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        if self._task == "classification":
            return self.result_.predict_proba(X)
        return self.result_.predict(X)


class DNCClassifier(ClassifierMixin, _DNCEstimator):
    """A classifier found by a Deep-n-Cheap search: `fit` searches architectures and training
    hyperparameters (minimizing log10(error + wc * cost)), then trains the best config's final model.

    Parameters are the search's options (see `deepncheap.search`); `final_epochs` (default 4x `epochs`) the
    final training's, `validation_fraction` the samples held out to rank configs, `run_dir` a directory to
    keep the run in (default: a temporary one, removed after `fit`; a run already there is replaced).

    Attributes: `classes_`, `n_features_in_`, `feature_names_in_` (DataFrame inputs), `best_config_`,
    `trials_` (the search's trials: a DataFrame when pandas is installed, else a list of dicts),
    `model_` (the final torch network), `result_` (its `SearchResult`), `run_dir_` (the run kept in `run_dir`,
    or None: the temporary run is gone, and so is `result_.run_dir`).
    """

    _task = "classification"

    def _targets(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        self.classes_, indices = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise FitDataError(
                f"y holds 1 class ({self.classes_[0]!r}); a classifier needs at least 2 classes in its training data"
            )
        return indices.astype(np.int64).reshape(-1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities `(n_samples, n_classes)`, columns in the order of `classes_`."""
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as one of the labels `fit` was given (`classes_`)."""
        probabilities = self._outputs(X)  # (first: it checks that the estimator is fitted)
        return self.classes_[np.argmax(probabilities, axis=1)]


class DNCRegressor(RegressorMixin, _DNCEstimator):
    """A regressor found by a Deep-n-Cheap search: `fit` searches architectures and training
    hyperparameters (minimizing log10(relative MSE + wc * cost)), then trains the best config's final model.

    Parameters and attributes as `DNCClassifier`'s (no `classes_`); predictions are in the targets' units.
    """

    _task = "regression"

    def _targets(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64).reshape(-1)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets `(n_samples,)`, in the units of the `y` given to `fit`."""
        return self._outputs(X)


def _holdout(targets: np.ndarray, fraction: float, *, stratified: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: ceil(fraction * n) samples held out, in proportion to the classes when
    `stratified`, each class keeping at least one training sample, so that tiny data sets still split."""
    if not 0 < fraction < 1:
        raise SettingsError(f"validation_fraction must be between 0 and 1, got {fraction!r}; e.g. 0.2")
    groups = [np.flatnonzero(targets == c) for c in np.unique(targets)] if stratified else [np.arange(len(targets))]
    sizes = np.array([len(g) for g in groups])
    n_held = min(math.ceil(fraction * len(targets)), int((sizes - 1).sum()))
    if n_held < 1:
        raise FitDataError(
            f"{len(targets)} sample(s) leave none to validate on (each class keeps one for training, so some "
            "class needs 2 or more); give more samples"
        )
    quota = n_held * sizes / sizes.sum()
    held = np.minimum(np.floor(quota).astype(int), sizes - 1)
    while held.sum() < n_held:  # the rest one by one to the class furthest below its quota that has room
        room = held < sizes - 1
        held[np.flatnonzero(room)[np.argmax((quota - held)[room])]] += 1
    rng = np.random.default_rng(SPLIT_SEED)
    val = np.concatenate([rng.permutation(g)[:k] for g, k in zip(groups, held, strict=True)])
    return np.setdiff1d(np.arange(len(targets)), val), np.sort(val)


@contextmanager
def _run_directory(run_dir: str | Path | None) -> Iterator[tuple[Path, bool]]:
    """The run directory and whether it is kept: `run_dir`, or a temporary one removed afterwards."""
    if run_dir is not None:
        yield Path(run_dir), True
        return
    with tempfile.TemporaryDirectory(prefix="deepncheap-") as scratch:
        yield Path(scratch) / "run", False


def _table(rows: list[dict[str, Any]]) -> Any:
    """`rows` as a pandas DataFrame when pandas is installed, else as they are."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)
