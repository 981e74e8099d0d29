"""Where every benchmark writes its output: `benchmarks/results/<name>.md` (its table, the summary line last)
and `<name>.csv` (its raw measurements); a `--quick` run writes `<name>_quick.*` instead."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(
    name: str,
    text: str,
    *,
    quick: bool = False,
    header: Sequence[str] | None = None,
    rows: Iterable[Sequence[Any]] = (),
) -> None:
    """Write `text` to <name>.md and, given a `header`, the `rows` to <name>.csv."""
    RESULTS.mkdir(exist_ok=True)
    stem = f"{name}_quick" if quick else name
    (RESULTS / f"{stem}.md").write_text(text)
    if header is not None:
        with open(RESULTS / f"{stem}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
