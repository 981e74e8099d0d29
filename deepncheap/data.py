"""Datasets ready for training: validation, label encoding, splits and standardization of what
`sources` read. Everything here is numpy; the trainer turns a `Dataset` into device tensors once per search.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepncheap.errors import DataError
from deepncheap.preprocessing import Preprocessing
from deepncheap.sources import IMPUTE, RawData, read_source
from deepncheap.space.families import ARCHITECTURE_STAGE_BATCH_SIZE

TASKS = ("classification", "regression")
# Single-table sources (built-ins, CSV, (X, y) arrays) hold out this fraction as a fixed test split,
# never used during the search; the split seed is fixed so every search on the same data sees the same split.
TEST_SPLIT = 0.2
SPLIT_SEED = 0
# Whole-number targets with more distinct values than this, and fewer rows per value on average than
# REGRESSION_ROWS_PER_VALUE or a value seen once, are quantities (ages, counts, prices) rather than classes:
# inferred regression. (Such classes could not be split stratified anyway: a 20% test split needs 5 rows
# per class on average, and 2 of each.)
REGRESSION_MIN_VALUES = 20
REGRESSION_ROWS_PER_VALUE = 5
REGRESSION_HINT = "if the labels are quantities (ages, counts, prices), use --task regression"


@dataclass(frozen=True)
class Dataset:
    """Validated, split and standardized data ready for training.

    `x_*` are float32 of shape (N, C, H, W) for CNNs or (N, F) for MLPs. Classification labels are int64
    in 0..K-1 (`classes` holds the original labels); regression targets are float32, standardized with
    the training mean and `target_std`.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0
    x_mean: np.ndarray | None = None  # the standardization statistics (`Preprocessing`)
    x_std: np.ndarray | None = None
    notes: tuple[str, ...] = ()  # what the loader decided for the user (an inferred task), for the run's log

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def summary(self) -> dict[str, Any]:
        """JSON-safe description stored with the run (enough to rebuild a model for this data)."""
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "classes": list(self.classes),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "fingerprint": self.fingerprint(),
        }

    def preprocessing(self) -> Preprocessing:
        """What turns raw inputs into this dataset's inputs, and outputs into labels or targets."""
        assert self.x_mean is not None and self.x_std is not None
        return Preprocessing(
            task=self.task,
            input_shape=self.input_shape,
            x_mean=self.x_mean.astype(np.float32),
            x_std=self.x_std.astype(np.float32),
            classes=self.classes,
            target_mean=self.target_mean,
            target_std=self.target_std,
        )

    def fingerprint(self) -> str:
        """A hash of the prepared training and validation arrays: a resumed search checks it sees the same data."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()


# Below this many training rows a subset gives the architecture stages (batch 64) fewer than 4 optimizer
# steps an epoch: networks are then ranked by how fast they start, and the ranking need not carry over to the
# whole data (digits 5-9 at 10 %, 58 rows: the proxy's 5 best ranked inversely there, Spearman -0.87)
FEW_SUBSET_ROWS = 4 * ARCHITECTURE_STAGE_BATCH_SIZE


def few_rows_note(rows: int) -> str:
    """The caution a subset of `rows` training rows (fewer than `FEW_SUBSET_ROWS`) gets."""
    steps = -(-rows // ARCHITECTURE_STAGE_BATCH_SIZE)
    return (
        f"--subset: {rows} training rows make {steps} optimizer step(s) an epoch at batch "
        f"{ARCHITECTURE_STAGE_BATCH_SIZE}, too few for the proxy's ranking of networks to carry over to the whole "
        f"data; use a subset of at least {FEW_SUBSET_ROWS} rows (a larger --subset or --proxy)"
    )


def load_dataset(
    source: Any = "digits",
    *,
    network: str = "cnn",
    task: str | None = None,
    val_split: float = 0.2,
    image_shape: tuple[int, int, int] | None = None,
    target: str | None = None,
    delimiter: str | None = None,
    drop: tuple[str, ...] = (),
    impute: str | None = None,
    data_dir: str | Path | None = None,
    subset: float | None = None,
) -> Dataset:
    """Read `source` (built-in name, .npz/.csv path, (X, y) tuple or dict of arrays) and prepare it.
    `target`, `delimiter` (None: sniffed) and `drop` are a CSV file's label column, delimiter and columns to
    leave out. Missing feature values (NaN, empty CSV cells) are refused unless `impute` says what to do:
    `mean`/`median` fill them with the training rows' statistic, `drop` leaves their rows out. `data_dir` holds the
    files of mnist/fashion_mnist/cifar10/cifar100 (default: $DNC_DATA_DIR or ./data). `subset` keeps that
    fraction of the training rows (stratified, always the same ones), after the validation and test rows are
    split off."""
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task '{task}'; use one of: {', '.join(TASKS)}")
    if impute is not None and impute not in IMPUTE:
        raise DataError(f"unknown --impute '{impute}'; use one of: {', '.join(IMPUTE)}")
    raw = read_source(source, target=target, delimiter=delimiter, drop=drop, impute=impute, data_dir=data_dir)
    return prepare(
        raw, network=network, task=task, val_split=val_split, image_shape=image_shape, impute=impute, subset=subset
    )


def prepare(
    raw: RawData,
    *,
    network: str,
    task: str | None,
    val_split: float,
    image_shape: tuple[int, int, int] | None,
    impute: str | None = None,
    subset: float | None = None,
) -> Dataset:
    """Validate, encode labels, shape for the network, split, keep a `subset` of the training rows, fill
    missing values (`impute`) and standardize."""
    parts = {"train": (raw.x_train, raw.y_train)}
    if raw.x_val is not None:
        parts["val"] = (raw.x_val, raw.y_val)  # type: ignore[assignment]
    if raw.x_test is not None:
        parts["test"] = (raw.x_test, raw.y_test)  # type: ignore[assignment]
    for part, (x, y) in parts.items():
        _check_xy(x, y, part, missing_allowed=impute is not None)
    notes: list[str] = []
    if impute == "drop":
        parts, dropped = _drop_missing(parts)
        if dropped:
            notes.append(f"--impute drop: left out {dropped} row(s) with a missing value")
    sample_shapes = {x.shape[1:] for x, _ in parts.values()}
    if len(sample_shapes) > 1:
        raise DataError(
            f"train/val/test samples have different shapes {sorted(sample_shapes)}; give them the same shape"
        )
    note = None
    task = task or raw.task
    if task is None:
        task, note = infer_task(parts["train"][1])
        notes += [note] if note else []
    hint = REGRESSION_HINT if note and task == "classification" else ""  # (whole numbers taken as classes)
    classes, encoded = _encode_targets({p: y for p, (_, y) in parts.items()}, task, hint)
    xs = {p: _shape_for_network(x, network, image_shape) for p, (x, _) in parts.items()}

    x_train, y_train = xs["train"], encoded["train"]
    if "test" not in xs:
        x_train, y_train, xs["test"], encoded["test"] = _split(x_train, y_train, TEST_SPLIT, task, "test", hint)
    if "val" not in xs:
        if not 0.0 < val_split < 1.0:
            raise DataError(
                f"--val-split must be between 0 and 1 (exclusive), got {val_split}; "
                "the test split is never used for validation"
            )
        x_train, y_train, xs["val"], encoded["val"] = _split(x_train, y_train, val_split, task, "validation", hint)
    if subset is not None:
        n_rows = len(y_train)
        _, _, x_train, y_train = _split(x_train, y_train, subset, task, "subset", "use a larger --subset")
        notes.append(f"--subset {subset:g}: training on {len(y_train)} of the {n_rows} training rows (stratified)")
        notes += [few_rows_note(len(y_train))] if len(y_train) < FEW_SUBSET_ROWS else []

    if impute in ("mean", "median"):
        filled, count = _fill_missing({"train": x_train, "val": xs["val"], "test": xs["test"]}, impute)
        x_train, xs["val"], xs["test"] = filled["train"], filled["val"], filled["test"]
        if count:
            notes.append(f"--impute {impute}: filled {count} missing value(s) with the training rows' {impute}")

    mean, std = _standardization(x_train)
    target_mean, target_std = 0.0, 1.0
    if task == "regression":
        target_mean = float(y_train.mean())
        target_std = float(y_train.std()) or 1.0

    def x_norm(x: np.ndarray) -> np.ndarray:  # one new float32 array (never the caller's, changed in place)
        standardized = np.subtract(x, mean, dtype=np.float32)
        standardized /= std
        return standardized

    def y_norm(y: np.ndarray) -> np.ndarray:
        return ((y - target_mean) / target_std).astype(np.float32) if task == "regression" else y

    return Dataset(
        name=raw.name,
        task=task,
        x_train=x_norm(x_train),
        y_train=y_norm(y_train),
        x_val=x_norm(xs["val"]),
        y_val=y_norm(encoded["val"]),
        x_test=x_norm(xs["test"]),
        y_test=y_norm(encoded["test"]),
        classes=classes,
        target_mean=target_mean,
        target_std=target_std,
        x_mean=mean,
        x_std=std,
        notes=tuple(notes),
    )


def _check_xy(x: np.ndarray, y: np.ndarray, part: str, *, missing_allowed: bool = False) -> None:
    if x.ndim < 2:
        raise DataError(
            f"{part} x is 1-D (shape {x.shape}); give one row per sample, e.g. x.reshape(-1, 1) for one feature"
        )
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise DataError(f"{part} y has shape {y.shape}; give one label or target per sample (1-D)")
    if len(x) != len(y):
        raise DataError(f"{part} x has {len(x)} samples but y has {len(y)}; give one label per sample")
    if len(x) == 0:
        raise DataError(f"{part} data is empty; give at least a few samples per class")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{part} x has dtype {x.dtype}; features must be real numbers")
    infinite = int(np.isinf(x).sum())
    if infinite:
        raise DataError(f"{part} x holds {infinite} infinite values; replace them with finite numbers first")
    missing = int(np.isnan(x).sum())
    if missing and not missing_allowed:
        raise DataError(
            f"{part} x holds {missing} NaN values (missing); fill them in, or give --impute mean or median "
            "(fill from the training rows) or --impute drop (leave out their rows)"
        )
    if np.issubdtype(y.dtype, np.number) and not np.isfinite(y.astype(np.float64)).all():
        raise DataError(f"{part} y holds NaN or infinite values; drop those samples first")


def _drop_missing(
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Each part without its rows that hold a missing (NaN) feature, and how many rows were left out."""
    kept, dropped = {}, 0
    for part, (x, y) in parts.items():
        complete = ~np.isnan(x.reshape(len(x), -1)).any(axis=1)
        dropped += int((~complete).sum())
        if not complete.any():
            raise DataError(f"every {part} row has a missing value; fill them in or use --impute mean or median")
        kept[part] = (x[complete], y[complete]) if not complete.all() else (x, y)
    return kept, dropped


def _fill_missing(xs: dict[str, np.ndarray], how: str) -> tuple[dict[str, np.ndarray], int]:
    """The parts with their NaN features filled by the training rows' mean or median of that feature (a new
    array only where something is filled), and how many values were filled."""
    missing = np.isnan(xs["train"]).all(axis=0).reshape(-1)
    if missing.any():
        raise DataError(
            f"feature {int(np.flatnonzero(missing)[0])} has no value in the training rows, so nothing to fill "
            "it from; leave the column out (--drop) or fill it in"
        )
    fill = (np.nanmean if how == "mean" else np.nanmedian)(xs["train"], axis=0).astype(np.float32)
    filled, count = {}, 0
    for part, x in xs.items():
        holes = np.isnan(x)
        count += int(holes.sum())
        filled[part] = np.where(holes, fill, x) if holes.any() else x
    return filled, count


def infer_task(y: np.ndarray) -> tuple[str, str | None]:
    """The task targets `y` mean, and a note saying why when they are numbers: text labels mean
    classification, fractional numbers regression; whole numbers classification, unless they take many
    distinct values with few rows each, or some seen once (ages, counts, prices: regression)."""
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_):
        return "classification", None
    if not np.issubdtype(y.dtype, np.integer) and not bool(np.all(np.mod(y, 1) == 0)):
        return "regression", None
    values, counts = np.unique(y, return_counts=True)
    n_values, rows_per_value = len(values), len(y) / len(values)
    if n_values > REGRESSION_MIN_VALUES and (rows_per_value < REGRESSION_ROWS_PER_VALUE or counts.min() == 1):
        return "regression", (
            f"task: regression, inferred from whole-number targets with {n_values} distinct values, "
            f"{rows_per_value:.1f} rows per value on average and {int((counts == 1).sum())} seen once "
            "(quantities, not classes); give --task classification to treat them as classes"
        )
    return "classification", (
        f"task: classification over {n_values} classes, inferred from whole-number targets; {REGRESSION_HINT}"
    )


def _encode_targets(ys: dict[str, np.ndarray], task: str, hint: str) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    ys = {p: y.reshape(-1) for p, y in ys.items()}
    if task == "regression":
        for part, y in ys.items():
            if not np.issubdtype(y.dtype, np.number):
                raise DataError(f"{part} targets are not numbers; regression needs numeric targets")
        return (), {p: y.astype(np.float64) for p, y in ys.items()}
    y_train = ys["train"]
    if np.issubdtype(y_train.dtype, np.floating) and not np.all(np.mod(y_train, 1) == 0):
        raise DataError(
            "labels are non-integer floats but --task is classification; use integer class labels or --task regression"
        )
    if np.issubdtype(y_train.dtype, np.floating):
        ys = {p: y.astype(np.int64) if np.issubdtype(y.dtype, np.floating) else y for p, y in ys.items()}
    classes = np.unique(ys["train"])
    if len(classes) < 2:
        raise DataError(f"the training labels hold {len(classes)} class; classification needs at least 2 classes")
    encoded = {}
    for part, y in ys.items():
        unknown = np.setdiff1d(np.unique(y), classes)
        if len(unknown):
            raise DataError(
                f"{part} labels {unknown[:5].tolist()} do not occur in the training labels; "
                "make every class appear in the training data" + (f", or {hint}" if hint else "")
            )
        encoded[part] = np.searchsorted(classes, y).astype(np.int64)
    return tuple(str(c) for c in classes.tolist()), encoded


def _shape_for_network(x: np.ndarray, network: str, image_shape: tuple[int, int, int] | None) -> np.ndarray:
    x = x.astype(np.float32, copy=False)  # (a copy of data set size only when the type differs)
    if network == "mlp":
        return x.reshape(len(x), -1)
    if image_shape is not None:
        if int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
            raise DataError(
                f"--image-shape {','.join(map(str, image_shape))} holds {int(np.prod(image_shape))} values "
                f"but each sample has {int(np.prod(x.shape[1:]))}; give C,H,W whose product matches"
            )
        return x.reshape(len(x), *image_shape)
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[:, None]
    raise DataError(
        f"a CNN needs images but the samples are flat ({x.shape[1]} features); "
        "give --image-shape C,H,W or use --network mlp"
    )


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, task: str, what: str, hint: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off `fraction` of the samples, stratified by class for classification (`hint`: a way out to
    name when classes are too small, such as --task regression for numeric labels)."""
    also = f"; or, {hint}" if hint else ""
    from sklearn.model_selection import train_test_split

    n_held = int(np.ceil(fraction * len(y)))
    stratify = None
    if task == "classification":
        counts = np.bincount(y)
        present = counts[counts > 0]
        if present.min() < 2:
            raise DataError(
                f"a class has only 1 training sample, too few for a stratified {what} split; "
                "add samples of that class or remove it" + also
            )
        if n_held < len(present) or len(y) - n_held < len(present):
            raise DataError(
                f"{len(y)} samples are too few for a stratified {what} split over {len(present)} classes; "
                "give more data or a validation set of your own" + also
            )
        stratify = y
    elif n_held < 2 or len(y) - n_held < 2:
        raise DataError(f"{len(y)} samples are too few for a {what} split; give more data")
    x_keep, x_held, y_keep, y_held = train_test_split(
        x, y, test_size=n_held, random_state=SPLIT_SEED, stratify=stratify
    )
    return x_keep, y_keep, x_held, y_held


def _standardization(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel statistics for images, per-feature for flat data; constant inputs get std 1."""
    axes = (0, 2, 3) if x_train.ndim == 4 else (0,)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    return mean, std
