import time

import pytest

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
