"""Project exceptions: each carries a one-line message saying what is wrong and how to fix it."""

from __future__ import annotations


class DNCError(Exception):
    """Base of every error deepncheap raises on purpose; the CLI prints it on one line and exits 2."""

    exit_status = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.splitlines()))  # always one line, whatever the values quoted


class DataError(DNCError):
    """The data cannot be loaded or fails validation."""


class SpaceError(DNCError):
    """A search-space override is unknown, empty, inverted or of the wrong type."""


class SettingsError(DNCError):
    """A search option is invalid (network, w_c, epochs, seed, device...)."""


class OutputError(DNCError):
    """The run directory cannot be created or written, or is not a run."""


class SearchFailedError(DNCError):
    """The search ran but produced no usable trial (every trial failed)."""

    exit_status = 1


class SearchStopped(DNCError):
    """A budget stopped the search before any trial completed (nothing to return yet; it is resumable)."""

    exit_status = 0


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the search after recording its state; `deepncheap.resume(run_dir)` continues it."""

    def __init__(self, run_dir: object):
        super().__init__(f"search interrupted; continue it with 'dnc resume {run_dir}'")
        self.run_dir = run_dir
