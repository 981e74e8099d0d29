import time

import numpy as np
import pytest
import sklearn.datasets
from helpers import write_csv

import deepncheap
from deepncheap.store import IncompleteStore, RunStore


def _wait_for_running_trial(run, process, timeout=120):
    """Block until the search `process` has a `running` trial in `run`'s store (it is mid-trial)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            with RunStore.open(run) as store:
                if any(t.status == "running" for t in store.trials()):
                    return
        except (FileNotFoundError, IncompleteStore):  # not created yet, or being created
            pass
        time.sleep(0.1)
    raise AssertionError("no trial started")


@pytest.fixture
def wait_for_running_trial():
    return _wait_for_running_trial


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def model_runs(tmp_path_factory):
    """Three tiny finished runs to predict with and export, with the raw data they were searched on: an MLP
    on a CSV of iris (text labels), a CNN on the digits images, a regression MLP on a CSV of diabetes."""
    root = tmp_path_factory.mktemp("model_runs")
    iris, diabetes, digits = (getattr(sklearn.datasets, f"load_{n}")() for n in ("iris", "diabetes", "digits"))
    runs = {
        "mlp": dict(
            x=iris.data.astype(np.float32),
            source=write_csv(root / "iris.csv", iris.data, iris.target_names[iris.target], target="species"),
            network="mlp",
            target="species",
        ),
        "cnn": dict(
            x=digits.images.astype(np.float32)[:, None],
            source="digits",
            network="cnn",
            space={"num_conv_layers": [4, 4], "channels_first": [16, 16], "channels_upper": 32},
        ),
        "regression": dict(
            x=diabetes.data.astype(np.float32),
            source=write_csv(root / "diabetes.csv", diabetes.data, diabetes.target, target="progression"),
            network="mlp",
            target="progression",
            task="regression",  # (whole-number targets)
        ),
    }
    for name, run in runs.items():
        run["dir"] = root / name
        options = {k: run[k] for k in ("network", "target", "task", "space") if k in run}
        deepncheap.search(
            data=run["source"],
            out=run["dir"],
            method="random",
            max_trials=2,
            epochs=2,
            penalty="params",
            verbose=False,
            report=False,
            **options,
        )
    return runs
