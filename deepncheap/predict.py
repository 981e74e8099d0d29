"""`dnc predict`: a run's predictions for the raw samples of a file, as CSV text.

The file holds samples as given to `dnc search`: `.npy`, `.npz` (its array `x`, or `xte`, or its only
array) or `.csv` (a header row, then the training CSV's feature columns; its target column, when there, is
left out). The CSV has one row per sample: `prediction` (the label, or the regression target in its
units), then with `proba` one `p_<class>` column per class.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from pathlib import Path

import numpy as np

from deepncheap.artifacts import load_run
from deepncheap.errors import DataError, SettingsError
from deepncheap.sources import read_csv_rows

NPZ_KEYS = ("x", "xte")  # the array of an .npz that holds several, in order of preference


def predict_file(run_dir: str | Path, *, data: str | Path, final: bool = False, proba: bool = False) -> str:
    """The predictions of the run's best model (with `final`, the final model) for the samples in `data`,
    as CSV text; `proba` adds the class probabilities (classification only)."""
    result = load_run(run_dir, final=final)
    preprocessing = result._preprocessing()
    classification = preprocessing.task == "classification"
    if proba and not classification:
        raise SettingsError("--proba needs a classification run; this run is a regression, leave --proba out")
    settings = result.settings
    x = read_samples(
        data,
        left_out=(settings.get("target"), *settings.get("drop", ())),
        delimiter=settings.get("delimiter"),
        n_features=math.prod(preprocessing.input_shape),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not classification:
        writer.writerow(["prediction"])
        writer.writerows([value] for value in result.predict(x).tolist())
        return buffer.getvalue()
    probabilities = result.predict_proba(x)
    labels = preprocessing.labels(probabilities.argmax(axis=1)).tolist()
    writer.writerow(["prediction", *(f"p_{c}" for c in preprocessing.classes)] if proba else ["prediction"])
    for label, row in zip(labels, probabilities.tolist(), strict=True):
        writer.writerow([label, *row] if proba else [label])
    return buffer.getvalue()


def read_samples(
    path: str | Path,
    *,
    left_out: tuple[str | None, ...] = (),
    delimiter: str | None = None,
    n_features: int | None = None,
) -> np.ndarray:
    """The samples of a .npy, .npz or .csv file (a CSV without the `left_out` columns, checked to hold
    `n_features` feature columns); a DataError naming the file when it cannot be read."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path} is a directory; point --data at a .npy, .npz or .csv file")
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the path given to --data")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, left_out, delimiter, n_features)
    if suffix not in (".npy", ".npz"):
        raise DataError(f"unsupported file type '{path.suffix}' for {path}; use a .npy, .npz or .csv file")
    try:
        loaded = np.load(path, allow_pickle=False)  # (never a pickle: an object array is an error)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return np.asarray(loaded[_npz_key(path, loaded.files)])
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {path} as {suffix} ({exc}); save plain numeric arrays with numpy.save or numpy.savez"
        ) from None


def _npz_key(path: Path, keys: list[str]) -> str:
    found = [k for k in NPZ_KEYS if k in keys]
    if found:
        return found[0]
    if len(keys) == 1:
        return keys[0]
    raise DataError(f"{path} holds arrays {', '.join(keys) or '(none)'}; name the samples' array 'x'")


def _read_csv(
    path: Path, left_out: tuple[str | None, ...], delimiter: str | None, n_features: int | None
) -> np.ndarray:
    """The feature columns of a CSV with a header row, as float32; the target (and dropped) columns are
    left out."""
    header, rows = read_csv_rows(path, delimiter)
    if all(_is_number(name) for name in header):
        raise DataError(f"{path} has no header row (its first row is numbers); add the column names first")
    columns = [i for i, name in enumerate(header) if name not in left_out]
    if n_features is not None and len(columns) != n_features:
        named = [name for name in left_out if name]
        besides = f" besides {', '.join(repr(n) for n in named)}" if named else ""
        raise DataError(
            f"{path} has {len(columns)} feature columns{besides} but the model takes {n_features}; "
            "give the feature columns of the training data"
        )
    samples = np.empty((len(rows), len(columns)), dtype=np.float32)
    for row_index, (line, row) in enumerate(rows):
        for column_index, i in enumerate(columns):
            cell = row[i].strip()
            if not _is_number(cell):
                problem = "is empty (a missing value)" if not cell else f"holds non-numeric value {cell!r}"
                raise DataError(f"{path} line {line}, column '{header[i]}' {problem}; features must be numbers")
            samples[row_index, column_index] = float(cell)
    return samples


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
