"""The run store: one SQLite file (WAL) per run, the source of truth of a search.

It holds the run's settings, baselines and state (`running`, `stopped`, `interrupted`, `failed`, `finished`),
and one row per trial, written `running` when the trial starts and completed (`complete` / `failed` /
`interrupted`) when it ends, each in its own transaction: a SIGKILL at any moment loses at most the trial in
flight. Only the search driver writes; readers open it read-only. Resuming = reopening the store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE_NAME = "store.sqlite"
SCHEMA_VERSION = 2  # 2: trials record `concurrent` and `threads`
STATUSES = ("running", "complete", "failed", "interrupted", "pruned")
RUN_STATES = ("running", "stopped", "interrupted", "failed", "finished")
STAGES = ("joint", "core", "advanced", "training")  # `joint`: random/Sobol search over every hyperparameter
# Measurement columns of a trial row, in trials.csv order.
METRIC_COLUMNS = (
    "objective",
    "f_p",
    "f_c",
    "val_accuracy",
    "val_loss",
    "n_params",
    "flops",
    "time_per_epoch_s",
    "epochs",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS run (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT NOT NULL CHECK (stage IN ({", ".join(repr(s) for s in STAGES)})),
    stage_index INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    config TEXT NOT NULL,
    objective REAL,
    f_p REAL,
    f_c REAL,
    val_accuracy REAL,
    val_loss REAL,
    n_params INTEGER,
    flops INTEGER,
    time_per_epoch_s REAL,
    epochs INTEGER,
    val_curve TEXT,
    wall_s REAL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    concurrent INTEGER,
    threads INTEGER
);
"""


class IncompleteStore(Exception):
    """The store file exists but its creation never finished (the search was killed at its very start)."""


@dataclass(frozen=True)
class Trial:
    """One stored trial (a row of `trials`, with JSON columns decoded)."""

    trial_id: int
    stage: str
    stage_index: int
    status: str
    config: dict[str, Any]
    objective: float | None
    f_p: float | None
    f_c: float | None
    val_accuracy: float | None
    val_loss: float | None
    n_params: int | None
    flops: int | None
    time_per_epoch_s: float | None
    epochs: int | None
    val_curve: list[float]
    wall_s: float | None
    error: str | None
    started_at: float
    finished_at: float | None
    concurrent: int | None = None  # trials running at its start, itself included
    threads: int | None = None  # torch CPU threads it trained with


class RunStore:
    """Access to one run's SQLite file. Create with `RunStore.create`, open with `RunStore.open`."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._db = connection
        self.path = path

    @classmethod
    def create(cls, run_dir: Path, settings: dict[str, Any]) -> RunStore:
        """A new store in `run_dir` holding the run's settings."""
        path = Path(run_dir) / STORE_NAME
        store = cls(_connect(path, readonly=False), path)
        store._db.executescript(_SCHEMA)  # executescript manages its own transaction
        with store._transaction() as db:
            db.executemany(
                "INSERT INTO run (key, value) VALUES (?, ?)",
                [
                    ("schema_version", json.dumps(SCHEMA_VERSION)),
                    ("settings", json.dumps(settings)),
                    ("created_at", json.dumps(time.time())),
                ],
            )
        return store

    @classmethod
    def open(cls, run_dir: Path, *, readonly: bool = True) -> RunStore:
        """Open the store of an existing run; FileNotFoundError when `run_dir` holds none, IncompleteStore
        when its driver died while creating it (before the settings were committed)."""
        path = Path(run_dir) / STORE_NAME
        if not path.is_file():
            raise FileNotFoundError(path)
        store = cls(_connect(path, readonly=readonly), path)
        try:
            tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            complete = {"run", "trials"} <= tables and store.get("settings") is not None
        except sqlite3.DatabaseError:  # not even a database: a file cut short at creation
            complete = False
        if not complete:
            store.close()
            raise IncompleteStore(path)
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- run-level values ---------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM run WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.get("settings", {}))

    @property
    def state(self) -> dict[str, Any]:
        """{"state": one of RUN_STATES, "reason": why it stopped or None, "updated_at": time}."""
        return dict(self.get("state", {"state": "running", "reason": None, "updated_at": None}))

    def set_state(self, state: str, reason: str | None = None) -> None:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state}")
        self.put("state", {"state": state, "reason": reason, "updated_at": time.time()})

    # --- trials ---------------------------------------------------------------------------------------
    def start_trial(
        self,
        *,
        stage: str,
        stage_index: int,
        config: dict[str, Any],
        concurrent: int | None = None,
        threads: int | None = None,
    ) -> int:
        """Write a `running` row and return its trial_id; `concurrent` trials (itself included) run at its
        start, each with `threads` torch CPU threads."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO trials (stage, stage_index, status, config, started_at, concurrent, threads) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (stage, stage_index, json.dumps(config), time.time(), concurrent, threads),
            )
        return int(cursor.lastrowid)  # type: ignore[arg-type]

    def finish_trial(
        self,
        trial_id: int,
        *,
        status: str,
        metrics: dict[str, Any] | None = None,
        val_curve: list[float] | None = None,
        wall_s: float | None = None,
        error: str | None = None,
    ) -> None:
        """Record the end of a trial: its status, measurements (METRIC_COLUMNS), curve, wall time, error."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status}")
        metrics = metrics or {}
        unknown = set(metrics) - set(METRIC_COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}")
        columns = ["status", "val_curve", "wall_s", "error", "finished_at", *metrics]
        values = [status, json.dumps(val_curve or []), wall_s, error, time.time(), *metrics.values()]
        with self._transaction() as db:
            db.execute(
                f"UPDATE trials SET {', '.join(f'{c} = ?' for c in columns)} WHERE trial_id = ?",
                (*values, trial_id),
            )

    def mark_interrupted(self) -> int:
        """Mark the trials left `running` by a driver that died as `interrupted`; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE trials SET status = 'interrupted', finished_at = ? WHERE status = 'running'", (time.time(),)
            )
        return cursor.rowcount

    def trials(self, *, status: str | None = None) -> list[Trial]:
        """All trials in trial_id order (optionally only those with `status`)."""
        return self._select("WHERE status = ?", (status,)) if status else self._select("", ())

    def _select(self, where: str, parameters: tuple[Any, ...]) -> list[Trial]:
        cursor = self._db.execute(f"SELECT * FROM trials {where} ORDER BY trial_id", parameters)
        names = [d[0] for d in cursor.description]
        trials = []
        for row in cursor.fetchall():
            values = dict(zip(names, row, strict=True))
            values["config"] = json.loads(values["config"])
            values["val_curve"] = json.loads(values["val_curve"]) if values["val_curve"] else []
            trials.append(Trial(**values))
        return trials

    def trial(self, trial_id: int) -> Trial:
        """The trial with this id; KeyError when there is none."""
        found = self._select("WHERE trial_id = ?", (trial_id,))
        if not found:
            raise KeyError(trial_id)
        return found[0]

    def best_trial(self) -> Trial | None:
        """The complete trial with the lowest objective (the earliest on ties)."""
        complete = [t for t in self.trials(status="complete") if t.objective is not None]
        return min(complete, key=lambda t: (t.objective, t.trial_id)) if complete else None


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    return db
