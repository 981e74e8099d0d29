"""Where data comes from: scikit-learn's bundled sets, local image-set files, .npz and .csv files, and
arrays in memory. Readers return `RawData` as found, never executing code from files; `data` validates it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepncheap.errors import DataError
from deepncheap.image_files import FILE_DATASETS, read_image_set

BUILTIN_DATASETS = ("digits", "breast_cancer", "wine", "iris", "diabetes")  # ship with scikit-learn
DATA_DIR_ENV = "DNC_DATA_DIR"  # where mnist/fashion_mnist/cifar10/cifar100 files live (default ./data)
NPZ_KEYS = ("xtr", "ytr", "xte", "yte")
DELIMITERS = ",;\t|"  # what a CSV file's delimiter is sniffed among (comma when none fits)
SNIFF_LINES = 20
MISSING = ("", "na", "n/a", "nan", "null", "none", "?")  # CSV cells taken for a missing value (any case)
IMPUTE = ("mean", "median", "drop")  # what --impute does with missing values (None: refuse them)


@dataclass(frozen=True)
class RawData:
    """Arrays as read from a source, before validation; val/test parts may be absent."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    task: str | None = None  # known task of a built-in; otherwise inferred from the targets


def read_source(
    source: Any,
    *,
    target: str | None = None,
    delimiter: str | None = None,
    drop: tuple[str, ...] = (),
    impute: str | None = None,
    data_dir: str | Path | None = None,
) -> RawData:
    """Dispatch on the kind of source; never executes code from files. `target` names the label column of
    a CSV file and is refused for any other source (which carries its own labels); `delimiter` is the CSV
    file's (None: sniffed among `DELIMITERS`), `drop` names columns of it to leave out (an id, a name). Its
    missing cells are refused unless `impute` is given (`IMPUTE`); they are then NaN features (`data` fills
    them or drops their rows), and a row without a label is left out with `impute="drop"`."""
    if not _is_csv(source):
        _refuse_csv_options(source, {f"--target {target}": target, "--delimiter": delimiter, "--drop": drop})
    return _read_any(source, target=target, delimiter=delimiter, drop=tuple(drop), impute=impute, data_dir=data_dir)


def _refuse_csv_options(source: Any, options: dict[str, Any]) -> None:
    """A DataError naming the first CSV-only option given (`options`: flag -> value) for another source."""
    given = [flag for flag, value in options.items() if value]
    if not given:
        return
    if isinstance(source, (str, Path)) and str(source) in BUILTIN_DATASETS + FILE_DATASETS:
        what = f"the built-in data set {source}"
    else:
        what = f"{source} (not a .csv file)" if isinstance(source, (str, Path)) else "data given as arrays"
    flag = given[0].split()[0]
    labels = ", with labels of their own" if flag == "--target" else ""
    raise DataError(f"{given[0]} applies to .csv files only, and the data are {what}{labels}; leave out {flag}")


def _is_csv(source: Any) -> bool:
    return isinstance(source, (str, Path)) and Path(str(source)).suffix.lower() == ".csv"


def _read_any(
    source: Any,
    *,
    target: str | None,
    delimiter: str | None,
    drop: tuple[str, ...],
    impute: str | None,
    data_dir: str | Path | None,
) -> RawData:
    if isinstance(source, RawData):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        return RawData("arrays", _as_array(source[0], "X"), _as_array(source[1], "y"))
    if isinstance(source, Mapping):
        return _from_mapping("arrays", source)
    if isinstance(source, (str, Path)):
        text = str(source)
        if text in BUILTIN_DATASETS:
            return _builtin(text)
        if text in FILE_DATASETS:
            folder = Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()
            x_train, y_train, x_test, y_test = read_image_set(text, folder)
            return RawData(text, x_train, y_train, x_test=x_test, y_test=y_test, task="classification")
        path = Path(text).expanduser()
        if path.suffix.lower() in (".npz", ".csv") or path.exists():
            if not path.exists():
                raise DataError(f"file not found: {path}; check the path given to --data")
            if path.is_dir():
                raise DataError(f"{path} is a directory; point --data at a .npz or .csv file")
            if path.suffix.lower() == ".npz":
                return _read_npz(path)
            if path.suffix.lower() == ".csv":
                return _read_csv(path, target, delimiter=delimiter, drop=drop, impute=impute)
            raise DataError(f"unsupported file type '{path.suffix}' for {path}; use a .npz or .csv file")
        raise DataError(f"unknown dataset '{text}'; use a built-in ({', '.join(BUILTIN_DATASETS)}) or a .npz/.csv path")
    raise DataError(
        f"cannot use data of type {type(source).__name__}; pass a dataset name, a file path, "
        "an (X, y) tuple or a dict of arrays"
    )


def _builtin(name: str) -> RawData:
    import sklearn.datasets as skd

    if name == "digits":
        bunch = skd.load_digits()
        return RawData(name, bunch.images.astype(np.float32)[:, None], bunch.target, task="classification")
    loader = {
        "breast_cancer": skd.load_breast_cancer,
        "wine": skd.load_wine,
        "iris": skd.load_iris,
        "diabetes": skd.load_diabetes,
    }[name]
    bunch = loader()
    if name == "diabetes":  # integer-valued targets, but a regression task
        return RawData(name, bunch.data.astype(np.float32), bunch.target.astype(np.float32), task="regression")
    return RawData(name, bunch.data.astype(np.float32), bunch.target, task="classification")


def _read_npz(path: Path) -> RawData:
    if not zipfile.is_zipfile(path):  # numpy would take any other file for a pickle
        raise DataError(f"cannot read {path} as .npz (not a zip archive); save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path} lacks keys {', '.join(missing)}; an .npz must hold xtr, ytr, xte, yte "
                    "(optionally xva, yva)"
                )
            return _from_mapping(path.stem, {k: archive[k] for k in archive.files})
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path} holds Python objects, which are never loaded; save plain numeric arrays "
                "(np.savez with numeric dtypes)"
            ) from None
        raise DataError(f"cannot read {path} as .npz ({exc}); save it with numpy.savez") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {path} as .npz ({exc}); save it with numpy.savez") from None


def _from_mapping(name: str, arrays: Mapping[str, Any]) -> RawData:
    missing = [k for k in ("xtr", "ytr") if k not in arrays]
    if missing:
        raise DataError(f"data lacks keys {', '.join(missing)}; give xtr, ytr (optionally xva, yva, xte, yte)")
    for a, b in (("xva", "yva"), ("xte", "yte")):
        if (a in arrays) != (b in arrays):
            raise DataError(f"data has only one of {a}/{b}; give both or neither")

    def get(key: str) -> np.ndarray | None:
        return _as_array(arrays[key], key) if key in arrays else None

    return RawData(
        name,
        _as_array(arrays["xtr"], "xtr"),
        _as_array(arrays["ytr"], "ytr"),
        get("xva"),
        get("yva"),
        get("xte"),
        get("yte"),
    )


def _as_array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:
        raise DataError(f"{what} holds Python objects; pass numeric arrays")
    return array


def read_csv_rows(path: Path, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header of a CSV file and its data rows, each paired with its line in the file (blank rows
    skipped, every row as long as the header; the delimiter sniffed unless given); a DataError when it
    cannot be read or has no data row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or sniff_delimiter(text))
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} as CSV ({exc}); save it as UTF-8 text") from None
    if len(rows) < 2:
        raise DataError(f"{path} is empty (it needs a header row and data rows); check the file")
    header = [cell.strip() for cell in rows[0][1]]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} fields, the header has {len(header)}; fix the row")
    return header, rows[1:]


def _read_csv(
    path: Path,
    target: str | None,
    *,
    delimiter: str | None = None,
    drop: tuple[str, ...] = (),
    impute: str | None = None,
) -> RawData:
    """A CSV file's rows: its `target` column as labels, every other column but those in `drop` as features
    (missing ones NaN when `impute` is given)."""
    header, rows = read_csv_rows(path, delimiter)
    if target is None:
        raise DataError(f"no --target given for {path}; name the label column (columns: {', '.join(header)})")
    if target not in header:
        other = " (or give the file's delimiter with --delimiter)" if len(header) == 1 else ""
        raise DataError(f"{path} has no column '{target}'; use --target with one of: {', '.join(header)}{other}")
    unknown = [name for name in drop if name not in header]
    if unknown:
        raise DataError(f"{path} has no column '{unknown[0]}' to drop; give --drop names from: {', '.join(header)}")
    if target in drop:
        raise DataError(f"--drop names the target column '{target}'; drop feature columns only")
    column = header.index(target)
    kept = [i for i, name in enumerate(header) if i != column and name not in drop]
    features, labels = [], []
    for line, row in rows:
        label = row[column].strip()
        if label.lower() in MISSING:
            if impute == "drop":
                continue
            cell = "is empty" if not label else f"holds {label!r}"
            raise DataError(
                f"{path} line {line} has no label (column '{target}' {cell}); "
                "fill it in, or give --impute drop to leave out rows with a missing value"
            )
        values = []
        for i in kept:
            if row[i].strip().lower() in MISSING:
                if impute is None:
                    cell = "is empty" if not row[i].strip() else f"holds {row[i].strip()!r}"
                    raise DataError(
                        f"{path} line {line}, column '{header[i]}' {cell}, a missing value; fill it in, "
                        "or give --impute mean or median (fill from the training rows' column) or --impute drop "
                        "(leave out rows with a missing value)"
                    )
                values.append(math.nan)
                continue
            try:
                values.append(float(row[i]))
            except ValueError:
                raise DataError(
                    f"{path} line {line}, column '{header[i]}' holds non-numeric value {row[i]!r}; "
                    "features must be numbers (encode categories as numbers first, or leave the column out "
                    f"with --drop {header[i]})"
                ) from None
        labels.append(label)
        features.append(values)
    if not kept:
        raise DataError(f"{path} has no feature columns besides '{target}'; add feature columns")
    if not features:
        raise DataError(f"{path} has no row with a label; fill in the '{target}' column")
    return RawData(path.stem, np.asarray(features, dtype=np.float32), _parse_labels(labels))


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV text, sniffed from its first lines among `DELIMITERS` (comma when unsure)."""
    sample = "\n".join(line for line in text.splitlines()[:SNIFF_LINES] if line.strip())
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _parse_labels(labels: list[str]) -> np.ndarray:
    """Numbers stay numbers (int or float); any text makes the labels categorical strings."""
    try:
        return np.asarray([float(v) for v in labels], dtype=np.float64)
    except ValueError:
        return np.asarray(labels, dtype=str)
