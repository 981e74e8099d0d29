"""Stop requests. Each search owns a `threading.Event` that asks it to stop (its running trials end at their
next epoch end, recorded `interrupted`); nothing is shared between searches, so two searches in one process
never stop each other. The CLI's Ctrl-C/SIGTERM handler asks every search running in the process to stop
(`request_stop`), through the registry of the searches running now (`active_stop_event`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_active: set[threading.Event] = set()
_lock = threading.Lock()


@contextmanager
def active_stop_event() -> Iterator[threading.Event]:
    """A new stop event for one search, registered (for `request_stop`) while the search runs."""
    event = threading.Event()
    with _lock:
        _active.add(event)
    try:
        yield event
    finally:
        with _lock:
            _active.discard(event)


def request_stop() -> bool:
    """Ask every running search of this process to stop; True when one had been asked already (a second
    Ctrl-C)."""
    with _lock:
        events = list(_active)
    already = any(e.is_set() for e in events)
    for event in events:
        event.set()
    return already
