import sqlite3

import pytest

from deepncheap.store import METRIC_COLUMNS, RunStore

CONFIG = {
    "network": "mlp",
    "num_hidden_layers": 1,
    "hidden_nodes": [32],
    "drop_prob": 0.2,
    "lr": 0.001,
    "weight_decay": 0.0,
    "batch_size": 64,
}


def test_store_round_trip_and_running_rows(tmp_path):
    settings = {"wc": 0.1, "data": {"task": "classification"}}
    store = RunStore.create(tmp_path, settings)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    trial_id = store.start_trial(stage="joint", stage_index=0, config=CONFIG)

    # Another connection (as `dnc show` in another process) sees the running row at once.
    with RunStore.open(tmp_path) as reader:
        (running,) = reader.trials()
        assert running.status == "running" and running.config == CONFIG and running.objective is None
        assert reader.settings == settings
        assert reader.best_trial() is None

    metrics = dict(zip(METRIC_COLUMNS, (-1.5, 0.03, 0.2, 0.97, 0.1, 1234, 5678, 0.25, 3, 0.01, 0.2, 0.05), strict=True))
    store.finish_trial(trial_id, status="complete", metrics=metrics, val_curve=[0.9, 0.97, 0.96], wall_s=1.5)
    failed = store.start_trial(stage="joint", stage_index=1, config=CONFIG)
    store.finish_trial(failed, status="failed", error="TrialDiverged: nan", wall_s=0.1)
    store.put("baselines", {"n_params": 10})
    store.close()

    with RunStore.open(tmp_path) as reader:
        complete, fail = reader.trials()
        assert complete.status == "complete" and complete.val_curve == [0.9, 0.97, 0.96]
        assert {k: getattr(complete, k) for k in METRIC_COLUMNS} == metrics
        assert complete.finished_at >= complete.started_at
        assert fail.status == "failed" and fail.error == "TrialDiverged: nan" and fail.objective is None
        assert reader.best_trial().trial_id == trial_id
        assert reader.trials(status="failed") == [fail]
        assert reader.get("baselines") == {"n_params": 10}


def test_readonly_store_refuses_writes(tmp_path):
    RunStore.create(tmp_path, {}).close()
    with RunStore.open(tmp_path) as reader, pytest.raises(sqlite3.OperationalError):
        reader.start_trial(stage="joint", stage_index=0, config=CONFIG)


def test_open_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError):
        RunStore.open(tmp_path)


def test_schema_rejects_unknown_status(tmp_path):
    store = RunStore.create(tmp_path, {})
    trial_id = store.start_trial(stage="core", stage_index=0, config=CONFIG)
    with pytest.raises(ValueError):
        store.finish_trial(trial_id, status="done")
    with pytest.raises(sqlite3.IntegrityError):
        store.start_trial(stage="nowhere", stage_index=0, config=CONFIG)
    assert [t.status for t in store.trials()] == ["running"]
