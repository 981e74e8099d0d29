"""The report as the last step of a longer command (`dnc search`, `dnc resume`, `dnc train`): written after
the command's results, so a report that fails to render is noted and loses nothing. Light to import: the
plotting modules load only when the report is made."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("deepncheap")


def write_report_noted(run_dir: Path, note: Callable[[str], None]) -> None:
    """Write the run's report; `note` gets its path, or why it was not written and how to retry."""
    from deepncheap.report import write_report

    try:
        files = write_report(run_dir)
    except Exception as exc:
        log.debug("the report failed", exc_info=True)
        note(f"the report was not written ({type(exc).__name__}: {exc}); try again with: dnc report {run_dir}")
        return
    note(f"report: {files.html}")
