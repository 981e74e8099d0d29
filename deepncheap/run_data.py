"""The data a run was made on: how a run records its source, and loading the same data again (to resume
a search, or to train its final model), checked against the fingerprint stored with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import DataError
from deepncheap.settings import SearchSettings
from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS

# The settings that say how to read and split the data (besides the network family, which shapes them).
DATA_OPTIONS = ("task", "val_split", "subset", "image_shape", "target", "delimiter", "drop", "impute", "data_dir")


def data_options(settings: SearchSettings) -> dict[str, Any]:
    """The `load_dataset` keywords of a search's settings."""
    return {"network": settings.network} | {name: getattr(settings, name) for name in DATA_OPTIONS}


def source_name(data: Any) -> str:
    """How the run records its data source: a built-in name, an absolute file path, or 'arrays'."""
    if not isinstance(data, (str, Path)):
        return "arrays"
    if str(data) in BUILTIN_DATASETS or str(data) in FILE_DATASETS:
        return str(data)
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else str(data)


def source_of(stored: dict[str, Any], run_dir: Path, data: Any = None) -> Any:
    """The data to load a run's data again from: `data` when given, else the stored source (a DataError
    for a run made on in-memory arrays, which only the caller has)."""
    if data is not None:
        return data
    if stored["data_source"] == "arrays":
        raise DataError(
            "this run was made on in-memory arrays; pass the same arrays again, e.g. "
            f"deepncheap.resume({str(run_dir)!r}, data=(X, y))"
        )
    return stored["data_source"]


def reload_dataset(stored: dict[str, Any], settings: SearchSettings, run_dir: Path, data: Any = None) -> Dataset:
    """The run's data loaded again: from `data` when given (in-memory arrays, a moved file), else from the
    stored source; a DataError when they differ from those the run was made on."""
    # (the task the run was made with, whatever this version would infer from the targets)
    options = data_options(settings) | {"task": stored.get("task") or settings.task}
    dataset = load_dataset(source_of(stored, run_dir, data), **options)
    now, then = dataset.summary(), stored["data"]
    differ = sorted(k for k in then if k != "name" and now.get(k) != then[k])
    if differ:
        raise DataError(
            f"the data differ from those the run in {run_dir} was made on ({', '.join(differ)}); "
            "give the same data (e.g. --data FILE if the file moved)"
        )
    return dataset
