"""The run store: one SQLite file (WAL) per run, the source of truth of a search.

It holds the run's settings, baselines and state (`running`, `stopped`, `interrupted`, `failed`, `finished`),
one row per trial, written `running` when the trial starts and completed (`complete` / `failed` /
`interrupted` / `pruned`) when it ends, each epoch of a trial as it is reported, and a log of the search's
warnings. Each write is its own transaction: a SIGKILL at any moment loses at most the trials in flight.
Only the search driver writes; readers open it read-only. Resuming = reopening the store.

The schema is versioned: a store of an older version is migrated when a driver opens it (and read as it
is by readers); one of a newer version is refused with the fix (`StoreVersionError`).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE_NAME = "store.sqlite"
# 2: trials record `concurrent` and `threads`; 3: `device`, `traceback`, `time_noise`, the epochs and log tables;
# 4: `reason` (why a trial was pruned) and `modelled_epoch_s`; 5: `latency_ms` and `violation` (constraints);
# 6: the `transfer` and `warm` stages (a deepncheap that does not know them refuses such a store instead of
# misreading it)
SCHEMA_VERSION = 6
STATUSES = ("running", "complete", "failed", "interrupted", "pruned")
RUN_STATES = ("running", "stopped", "interrupted", "failed", "finished")
# `joint`: random/Sobol search over every hyperparameter; `warm`: earlier runs' best configs a warm-started
# search trains first (`--warm-start`); `transfer`: another run's configs (`dnc transfer`)
WARM = "warm"
STAGES = ("joint", WARM, "core", "advanced", "training", "transfer")
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
    "time_noise",
    "modelled_epoch_s",
    "latency_ms",
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
    threads INTEGER,
    device TEXT,
    traceback TEXT,
    time_noise REAL,
    reason TEXT,
    modelled_epoch_s REAL,
    latency_ms REAL,
    violation TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    val_score REAL,
    val_loss REAL,
    epoch_time_s REAL NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);
CREATE TABLE IF NOT EXISTS log (
    entry INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    message TEXT NOT NULL
);
"""
# Columns added by each version (for the migration of older stores).
_ADDED_COLUMNS = {
    3: ("device TEXT", "traceback TEXT", "time_noise REAL"),
    4: ("reason TEXT", "modelled_epoch_s REAL"),
    5: ("latency_ms REAL", "violation TEXT"),
}


class IncompleteStore(Exception):
    """The store file exists but its creation never finished (the search was killed at its very start)."""


class StoreVersionError(Exception):
    """The store was written by a newer deepncheap (schema version in the message)."""


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
    device: str | None = None  # the device it trained on
    traceback: str | None = None  # of a failed trial
    time_noise: float | None = None  # relative spread of its timed epochs
    reason: str | None = None  # why it was pruned (`pruning.Verdict`)
    modelled_epoch_s: float | None = None  # the time cost model's epoch (`timing`)
    latency_ms: float | None = None  # its inference latency, measured before it trained (`latency`)
    violation: str | None = None  # the constraint it was found to violate once trained (never the best)


def best_of(trials: list[Trial]) -> Trial | None:
    """The best trial: the complete one with the lowest objective that violates no constraint, the first in
    search order on ties (`search_order`) (the one rule for best.json, the saved weights, `dnc show` and
    every stage's incumbent)."""
    return next(iter(ranked(trials)), None)


def ranked(trials: list[Trial]) -> list[Trial]:
    """The complete trials that violate no constraint, best first (`best_of`'s order)."""
    complete = [t for t in trials if t.status == "complete" and t.objective is not None and t.violation is None]
    return sorted(complete, key=lambda t: (t.objective, *search_order(t)))


def search_order(trial: Trial) -> tuple[int, int, int]:
    """Where a trial stands in its search: its stage, its index in the stage (its config and seed), then its
    row; not when it happened to start or end, which parallel workers, pruning's cheapest-first order and
    reruns after a resume change."""
    return STAGES.index(trial.stage), trial.stage_index, trial.trial_id


@dataclass(frozen=True)
class EpochRecord:
    """One reported epoch of a trial (see `train.EpochReport`)."""

    trial_id: int
    epoch: int
    val_score: float | None  # None where it was not finite (a diverging network)
    val_loss: float | None
    epoch_time_s: float


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
        version = store.get("schema_version", 1)
        if version > SCHEMA_VERSION:
            store.close()
            raise StoreVersionError(f"schema version {version}; this deepncheap reads up to {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION and not readonly:
            store._migrate(version)
        return store

    @classmethod
    @contextmanager
    def open_copy(cls, run_dir: Path) -> Iterator[RunStore]:
        """The store of `run_dir`, read-only, from a copy of its database and write-ahead log in a temporary
        directory: SQLite never opens the run's own files (a read-only open still touches their shared-memory
        index), so reading leaves the run exactly as it was. For a run no process is writing to (a copy
        taken during a write could be torn); errors as `open`."""
        path = Path(run_dir) / STORE_NAME
        if not path.is_file():
            raise FileNotFoundError(path)
        with tempfile.TemporaryDirectory(prefix="dnc-store-") as scratch:
            for name in (STORE_NAME, f"{STORE_NAME}-wal"):
                if (path.parent / name).is_file():
                    shutil.copyfile(path.parent / name, Path(scratch) / name)
            with cls.open(Path(scratch)) as store:
                yield store

    def _migrate(self, version: int) -> None:
        """Bring a store of an older schema version to this one, in one transaction."""
        with self._transaction() as db:
            present = {row[1] for row in db.execute("PRAGMA table_info(trials)")}
            for added in range(version + 1, SCHEMA_VERSION + 1):
                for column in _ADDED_COLUMNS.get(added, ()):
                    if column.split()[0] not in present:
                        db.execute(f"ALTER TABLE trials ADD COLUMN {column}")
            for statement in _SCHEMA.split(";"):
                if "CREATE TABLE IF NOT EXISTS trials" not in statement and statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR REPLACE INTO run (key, value) VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),)
            )

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
        start, each with `threads` torch CPU threads. A retried trial's earlier epochs are dropped."""
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
        traceback: str | None = None,
        device: str | None = None,
        reason: str | None = None,
        violation: str | None = None,
    ) -> None:
        """Record the end of a trial: its status, measurements (METRIC_COLUMNS), curve, wall time, error
        (with its traceback), the device it ran on, why it was pruned and the constraint it violates."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status}")
        metrics = metrics or {}
        unknown = set(metrics) - set(METRIC_COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}")
        columns = [
            "status", "val_curve", "wall_s", "error", "traceback", "device", "reason", "violation", "finished_at",
            *metrics,
        ]  # fmt: skip
        values = [status, json.dumps(val_curve or []), wall_s, error, traceback, device, reason, violation, time.time()]
        values += list(metrics.values())
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
        """The best trial (`best_of`)."""
        return best_of(self.trials(status="complete"))

    # --- epochs and log -------------------------------------------------------------------------------
    def add_epoch(self, record: EpochRecord) -> None:
        """Store one reported epoch of a running trial (a value that is not finite as NULL)."""
        values = [v if v is None or math.isfinite(v) else None for v in (record.val_score, record.val_loss)]
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO epochs (trial_id, epoch, val_score, val_loss, epoch_time_s) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.trial_id, record.epoch, *values, record.epoch_time_s),
            )

    def epochs(self, trial_ids: list[int] | None = None) -> list[EpochRecord]:
        """The stored epochs (of `trial_ids`, or of every trial), by trial and epoch; none in an old store."""
        if not self._has_table("epochs"):
            return []
        parameters: tuple[int, ...]
        where, parameters = "", ()
        if trial_ids is not None:
            where, parameters = f"WHERE trial_id IN ({', '.join('?' * len(trial_ids))})", tuple(trial_ids)
        rows = self._db.execute(f"SELECT * FROM epochs {where} ORDER BY trial_id, epoch", parameters).fetchall()
        return [EpochRecord(*row) for row in rows]

    def log(self, message: str) -> None:
        """Add a line to the run's log (warnings of the search: e.g. a GP that needed much jitter)."""
        with self._transaction() as db:
            db.execute("INSERT INTO log (at, message) VALUES (?, ?)", (time.time(), message))

    def log_lines(self) -> list[str]:
        if not self._has_table("log"):
            return []
        return [row[0] for row in self._db.execute("SELECT message FROM log ORDER BY entry")]

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self._db.execute(query, (name,)).fetchone() is not None


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed at any moment (only an OS crash or
        # power loss could drop the last commits, never corrupt the file), at a fraction of FULL's fsyncs.
        db.execute("PRAGMA synchronous=NORMAL")
    return db
