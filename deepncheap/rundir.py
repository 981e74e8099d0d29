"""The run directory as a place: naming it, claiming it for one search driver at a time, and starting a
new run in it (or over it, with `overwrite`).

A driver holds an exclusive lock on `RUN/.lock` for as long as it runs; the kernel releases it when the
process ends, even by SIGKILL, so a killed search never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from deepncheap.errors import OutputError
from deepncheap.store import STORE_NAME, IncompleteStore, RunStore, StoreVersionError

LOCK_NAME = ".lock"
# The files a search writes; `overwrite` removes these and nothing else the user may keep in the folder.
RUN_FILES = (
    STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", "best.json", "trials.csv", "best_model.safetensors",
    "transfer.json",
)  # fmt: skip
# (patterns) the files made from a run, removed with it: the report's, the final model's and the exports
DERIVED_FILES = ("report.html", "MODEL_CARD.md", "plots/*.png", "final/*", "export/*")


def default_run_name(data_name: str, network: str) -> Path:
    """runs/<data>-<network>-<timestamp>; the data name is reduced to safe characters so that it can never
    name a folder outside runs/."""
    return Path("runs") / f"{_safe(data_name)}-{network}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def transfer_run_name(source: Path, data_name: str) -> Path:
    """<source>-transfer-<data>, beside the source run (the data name reduced to safe characters)."""
    return source.parent / f"{source.name}-transfer-{_safe(data_name)}"


def _safe(data_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", data_name).strip("._") or "data"


def is_run(run_dir: Path) -> bool:
    return (Path(run_dir) / STORE_NAME).is_file()


@contextmanager
def new_run(out: str | Path | None, default: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Create (or, with `overwrite`, empty) the run directory and hold its lock while the search runs."""
    run_dir = Path(out).expanduser() if out is not None else default
    if out is None:
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = default.with_name(f"{default.name}-{suffix}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"cannot write to output directory {run_dir} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    with claimed(run_dir):
        if is_run(run_dir):
            if not overwrite:
                raise OutputError(
                    f"{run_dir} already holds a search; continue it with 'dnc resume {run_dir}', "
                    "or pass --overwrite to start over, or choose another --out"
                )
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
            for path in [p for pattern in DERIVED_FILES for p in run_dir.glob(pattern) if p.is_file()]:
                path.unlink()
        yield run_dir


@contextmanager
def existing_run(run_dir: str | Path) -> Iterator[Path]:
    """Claim the run directory of an existing search (to resume it); OutputError when it is not a run."""
    run_dir = Path(run_dir).expanduser()
    check_run(run_dir)
    with claimed(run_dir):
        for stale in run_dir.glob(".*.tmp"):  # half-written outputs of a killed driver
            stale.unlink(missing_ok=True)
        yield run_dir


def check_run(run_dir: Path) -> None:
    """OutputError when `run_dir` does not exist, holds no store, or one whose creation was cut short."""
    with _store_errors(run_dir):
        RunStore.open(run_dir).close()


@contextmanager
def untouched_run(run_dir: Path) -> Iterator[RunStore]:
    """The store of a run no process drives, read from a copy (`RunStore.open_copy`), so that reading leaves
    every file of the run as it was; OutputError as `check_run`, and when a process is driving the run."""
    with _store_errors(run_dir):
        pid = holder_pid(run_dir)
        if pid is not None:
            raise OutputError(f"{run_dir} is in use by dnc process {pid}; wait for it to end or stop it first")
        with RunStore.open_copy(run_dir) as store:
            yield store


@contextmanager
def _store_errors(run_dir: Path) -> Iterator[None]:
    """Opening the store of `run_dir` inside: OutputError when the directory does not exist, holds no store,
    one of a newer schema version, or one whose creation was cut short."""
    if not run_dir.exists():
        raise OutputError(f"{run_dir} does not exist; give the directory of a run made by dnc search")
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir} is a file, not a run directory; give the directory of a run made by dnc search")
    try:
        yield
    except FileNotFoundError:
        raise OutputError(
            f"{run_dir} is not a run (it has no {STORE_NAME}); give a directory made by dnc search"
        ) from None
    except StoreVersionError as exc:
        raise OutputError(
            f"{run_dir} was written by a newer deepncheap ({exc}); upgrade deepncheap to read it: "
            "pip install -U deepncheap"
        ) from None
    except IncompleteStore:
        pid = holder_pid(run_dir)
        if pid is not None:
            raise OutputError(f"{run_dir} is being created by dnc process {pid}; try again in a moment") from None
        raise OutputError(
            f"{run_dir} holds no search settings (the search was killed while creating its store); "
            f"start it again with dnc search --out {run_dir} --overwrite"
        ) from None


@contextmanager
def claimed(run_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock of `run_dir`; OutputError naming the holder when another process has it."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write to run directory {run_dir} ({exc.strerror}); check its permissions") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputError(
                f"{run_dir} is in use by another dnc process (pid {holder}); wait for it to end or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def holder_pid(run_dir: Path) -> int | None:
    """The pid of the process driving the run now, or None when no process holds its lock."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
