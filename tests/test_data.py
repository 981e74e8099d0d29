"""Tests of deepncheap.data: sources, validation, splits, standardization and error messages."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from deepncheap.data import TEST_SPLIT, Dataset, load_dataset
from deepncheap.errors import DataError, DNCError
from deepncheap.sources import RawData, read_source

DIGITS_N = 1797


# ---------------------------------------------------------------------------------------------------------
# helpers


def make_xy(n: int = 60, features: int = 4, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small classification table: `n` samples, balanced labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, features)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def make_images(n: int = 60, shape: tuple[int, int, int] = (1, 4, 4), classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 0.2, size=(n, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def split_sizes(n: int, val_split: float) -> tuple[int, int, int]:
    """(train, val, test) sizes expected from a single table of `n` samples."""
    n_test = math.ceil(TEST_SPLIT * n)
    n_val = math.ceil(val_split * (n - n_test))
    return n - n_test - n_val, n_val, n_test


def assert_one_line_with_hint(error: BaseException) -> str:
    message = str(error)
    assert isinstance(error, DataError) and isinstance(error, DNCError)
    assert "\n" not in message and "\r" not in message, f"message is not one line: {message!r}"
    what, sep, hint = message.partition(";")
    assert sep == ";" and what.strip() and hint.strip(), f"message lacks a hint after ';': {message!r}"
    return message


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# built-in datasets


def test_digits_cnn_shape_and_splits():
    data = load_dataset("digits", network="cnn")
    assert isinstance(data, Dataset)
    assert data.task == "classification"
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert data.x_val.shape[1:] == (1, 8, 8) and data.x_test.shape[1:] == (1, 8, 8)
    assert data.input_shape == (1, 8, 8)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.num_outputs == 10
    n_train, n_val, n_test = split_sizes(DIGITS_N, 0.2)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (n_train, n_val, n_test)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == DIGITS_N
    # per-channel standardization with the training statistics
    assert abs(float(data.x_train.mean())) < 1e-4
    assert abs(float(data.x_train.std()) - 1.0) < 1e-3


def test_digits_mlp_is_flat():
    data = load_dataset("digits", network="mlp")
    assert data.x_train.shape[1:] == (64,)
    assert data.input_shape == (64,)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == DIGITS_N


@pytest.mark.parametrize(
    ("name", "n", "features", "classes"),
    [("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("iris", 150, 4, 3)],
)
def test_builtin_classification(name, n, features, classes):
    data = load_dataset(name, network="mlp")
    assert data.name == name
    assert data.task == "classification"
    assert data.x_train.shape[1:] == (features,)
    assert len(data.classes) == classes == data.num_outputs
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(n, 0.2)
    for y in (data.y_train, data.y_val, data.y_test):
        assert y.dtype == np.int64
        assert set(np.unique(y).tolist()) == set(range(classes))


def _check_diabetes(data: Dataset) -> None:
    assert data.task == "regression"
    assert data.classes == ()
    assert data.num_outputs == 1
    assert data.x_train.shape[1:] == (10,)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(442, 0.2)
    for y in (data.y_train, data.y_val, data.y_test):
        assert y.dtype == np.float32
    assert data.target_std > 0
    assert abs(float(data.y_train.mean())) < 1e-4
    assert abs(float(data.y_train.std()) - 1.0) < 1e-3
    summary = data.summary()
    assert summary["task"] == "regression" and summary["target_std"] == data.target_std


def test_diabetes_is_inferred_as_regression():
    _check_diabetes(load_dataset("diabetes", network="mlp"))


def test_diabetes_with_explicit_regression_task():
    _check_diabetes(load_dataset("diabetes", network="mlp", task="regression"))


def test_validation_split_is_stratified():
    data = load_dataset("digits", network="mlp")
    train_counts = np.bincount(data.y_train, minlength=10)
    val_counts = np.bincount(data.y_val, minlength=10)
    assert (val_counts > 0).all()
    n_train, n_val = len(data.y_train), len(data.y_val)
    expected = (train_counts + val_counts) * n_val / (n_train + n_val)
    assert np.all(np.abs(val_counts - expected) <= 1.0), (val_counts, expected)


def test_validation_split_fraction_follows_val_split():
    x, y = make_xy(100)
    for val_split in (0.1, 0.3, 0.5):
        data = load_dataset((x, y), network="mlp", val_split=val_split)
        assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(100, val_split)


def test_splits_are_deterministic():
    first = load_dataset("wine", network="mlp")
    second = load_dataset("wine", network="mlp")
    for attr in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, attr), getattr(second, attr))


# ---------------------------------------------------------------------------------------------------------
# standardization uses the training statistics only


def test_standardization_uses_train_statistics_dict():
    rng = np.random.default_rng(1)
    xtr = rng.normal(5.0, 3.0, size=(30, 4)).astype(np.float32)
    xtr[:, 2] = 7.0  # a constant feature: std taken as 1
    xva = rng.normal(-2.0, 0.5, size=(12, 4)).astype(np.float32)
    xte = rng.normal(10.0, 4.0, size=(15, 4)).astype(np.float32)
    ytr, yva, yte = np.arange(30) % 3, np.arange(12) % 3, np.arange(15) % 3
    source = {"xtr": xtr, "ytr": ytr, "xva": xva, "yva": yva, "xte": xte, "yte": yte}
    data = load_dataset(source, network="mlp")

    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(data.x_train, (xtr - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.x_val, (xva - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.x_test, (xte - mean) / std, rtol=1e-5, atol=1e-5)
    # given val/test parts are used as-is, in order
    np.testing.assert_array_equal(data.y_val, yva)
    np.testing.assert_array_equal(data.y_test, yte)
    non_constant = [0, 1, 3]
    np.testing.assert_allclose(data.x_train[:, non_constant].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train[:, non_constant].std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(data.x_train[:, 2], 0.0, atol=1e-6)
    # val/test were not standardized with their own statistics
    assert abs(float(data.x_val[:, 0].mean())) > 1.0


def test_standardization_uses_train_statistics_single_table():
    """For an (X, y) table, recover each split's raw rows through an index column and recompute."""
    n = 60
    x, y = make_xy(n, features=3)
    x = np.concatenate([np.arange(n, dtype=np.float32)[:, None], x], axis=1)  # column 0: row index
    data = load_dataset((x, y), network="mlp")
    parts = (data.x_train, data.x_val, data.x_test)
    # standardization is increasing-affine per feature, so the ranks of column 0 give back the raw indices
    all_col0 = np.concatenate([p[:, 0] for p in parts])
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(all_col0)] = np.arange(n)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    train_idx, val_idx, test_idx = (ranks[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert sorted(np.concatenate([train_idx, val_idx, test_idx]).tolist()) == list(range(n))

    raw_train = x[train_idx]
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    np.testing.assert_allclose(data.x_train, (raw_train - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.x_val, (x[val_idx] - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.x_test, (x[test_idx] - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(data.y_val, y[val_idx])
    np.testing.assert_array_equal(data.y_test, y[test_idx])


def test_image_standardization_is_per_channel():
    x, y = make_images(60, shape=(2, 3, 3))
    x[:, 1] = x[:, 1] * 10 + 100
    data = load_dataset((x, y), network="cnn")
    assert data.x_train.shape[1:] == (2, 3, 3)
    np.testing.assert_allclose(data.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# .npz files


def test_npz_images(tmp_path):
    xtr, ytr = make_images(60, shape=(3, 4, 4))
    xte, yte = make_images(15, shape=(3, 4, 4), seed=1)
    path = tmp_path / "imgs.npz"
    np.savez(path, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    data = load_dataset(path, network="cnn")
    assert data.name == "imgs"
    assert data.x_train.shape[1:] == (3, 4, 4)
    assert len(data.y_test) == 15  # the given test part is used whole
    assert len(data.y_train) + len(data.y_val) == 60
    assert len(data.y_val) == math.ceil(0.2 * 60)
    np.testing.assert_array_equal(data.y_test, yte)


def test_npz_flat(tmp_path):
    xtr, ytr = make_xy(60, features=5)
    xte, yte = make_xy(12, features=5, seed=1)
    path = tmp_path / "flat.npz"
    np.savez(path, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    data = load_dataset(str(path), network="mlp")
    assert data.x_train.shape[1:] == (5,)
    assert len(data.y_test) == 12 and len(data.y_train) + len(data.y_val) == 60
    raw = read_source(path)
    assert isinstance(raw, RawData) and raw.x_val is None
    np.testing.assert_array_equal(raw.x_test, xte)


def test_npz_with_validation_used_as_is(tmp_path):
    xtr, ytr = make_xy(30, features=4)
    xva, yva = make_xy(9, features=4, seed=1)
    xte, yte = make_xy(12, features=4, seed=2)
    path = tmp_path / "withval.npz"
    np.savez(path, xtr=xtr, ytr=ytr, xva=xva, yva=yva, xte=xte, yte=yte)
    data = load_dataset(path, network="mlp", val_split=0.5)  # val_split is ignored when xva is given
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (30, 9, 12)
    np.testing.assert_array_equal(data.y_train, ytr)
    np.testing.assert_array_equal(data.y_val, yva)
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    np.testing.assert_allclose(data.x_val, (xva - mean) / std, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# .csv files


def test_csv_numeric_labels(tmp_path):
    x, y = make_xy(60, features=3)
    lines = ["f1,label,f2,f3"] + [f"{a},{lab},{b},{c}" for (a, b, c), lab in zip(x.tolist(), y.tolist(), strict=True)]
    path = write_csv(tmp_path / "table.csv", "\n".join(lines) + "\n")
    data = load_dataset(path, network="mlp", target="label")
    assert data.name == "table"
    assert data.task == "classification"
    assert len(data.classes) == 3 and data.y_train.dtype == np.int64
    assert data.x_train.shape[1:] == (3,)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(60, 0.2)
    raw = read_source(path, target="label")
    np.testing.assert_allclose(raw.x_train, x, rtol=1e-6)  # the target column is dropped from the features
    np.testing.assert_array_equal(raw.y_train, y)


def test_csv_text_labels(tmp_path):
    x, y = make_xy(60, features=2)
    names = np.array(["dog", "cat", "fish"])[y]
    lines = ["a,b,label"] + [f"{a},{b},{lab}" for (a, b), lab in zip(x.tolist(), names.tolist(), strict=True)]
    path = write_csv(tmp_path / "pets.csv", "\n".join(lines) + "\n")
    data = load_dataset(path, network="mlp", target="label")
    assert data.task == "classification"
    assert data.classes == ("cat", "dog", "fish")
    assert data.num_outputs == 3
    decoded = np.array(data.classes)[np.concatenate([data.y_train, data.y_val, data.y_test])]
    assert sorted(decoded.tolist()) == sorted(names.tolist())


def test_csv_float_labels_are_regression(tmp_path):
    x, _ = make_xy(60, features=2)
    target = x[:, 0] * 2.5 + 0.25
    lines = ["a,b,label"] + [f"{a},{b},{t}" for (a, b), t in zip(x.tolist(), target.tolist(), strict=True)]
    path = write_csv(tmp_path / "reg.csv", "\n".join(lines) + "\n")
    data = load_dataset(path, network="mlp", target="label")
    assert data.task == "regression"
    assert data.y_train.dtype == np.float32 and data.target_std > 0


# ---------------------------------------------------------------------------------------------------------
# in-memory arrays, image shapes, label types


def test_tuple_source():
    x, y = make_xy(60)
    data = load_dataset((x, y), network="mlp")
    assert data.name == "arrays"
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(60, 0.2)
    for part in (data.y_train, data.y_val, data.y_test):
        assert set(np.unique(part).tolist()) == {0, 1, 2}


def test_dict_source_without_test_part():
    x, y = make_xy(60)
    data = load_dataset({"xtr": x, "ytr": y}, network="mlp")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == split_sizes(60, 0.2)


def test_image_shape_reshapes_flat_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 64)).astype(np.float32)
    y = np.arange(60) % 3
    data = load_dataset((x, y), network="cnn", image_shape=(1, 8, 8))
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 60
    assert data.input_shape == (1, 8, 8)


def test_three_dimensional_samples_get_a_channel_axis():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5, 5)).astype(np.float32)
    data = load_dataset((x, np.arange(60) % 3), network="cnn")
    assert data.x_train.shape[1:] == (1, 5, 5)


def test_integer_valued_float_labels_are_classification():
    x, _ = make_xy(60)
    y = np.where(np.arange(60) % 2 == 0, 1.0, 2.0)
    data = load_dataset((x, y), network="mlp")
    assert data.task == "classification"
    assert len(data.classes) == 2 and data.num_outputs == 2
    assert data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train).tolist()) == {0, 1}


def test_integer_valued_float_labels_get_integer_class_names():
    x, _ = make_xy(60)
    y = np.where(np.arange(60) % 2 == 0, 1.0, 2.0)
    assert load_dataset((x, y), network="mlp").classes == ("1", "2")


def test_csv_integer_labels_keep_their_names(tmp_path):
    lines = ["a,label"] + [f"{i * 0.5},{i % 3}" for i in range(60)]
    path = write_csv(tmp_path / "ints.csv", "\n".join(lines) + "\n")
    assert load_dataset(path, network="mlp", target="label").classes == ("0", "1", "2")


def test_integer_labels_have_integer_class_names():
    x, y = make_xy(60)
    assert load_dataset((x, y), network="mlp").classes == ("0", "1", "2")


def test_float_labels_with_explicit_regression():
    x, _ = make_xy(60)
    y = np.linspace(0.0, 10.0, 60) + 0.5
    data = load_dataset((x, y), network="mlp", task="regression")
    assert data.task == "regression"
    assert data.y_train.dtype == np.float32
    assert data.target_std > 0
    # targets are standardized with the training mean and target_std
    restored = np.sort(np.concatenate([data.y_train, data.y_val, data.y_test]) * data.target_std + data.target_mean)
    np.testing.assert_allclose(restored, np.sort(y), rtol=1e-5, atol=1e-4)


def test_integer_labels_with_explicit_regression():
    x, _ = make_xy(60)
    y = np.arange(60)
    data = load_dataset((x, y), network="mlp", task="regression")
    assert data.task == "regression" and data.num_outputs == 1


# ---------------------------------------------------------------------------------------------------------
# bad inputs: each raises a one-line DataError with a hint after ';'


def _x():
    return make_xy(60)[0]


def _y():
    return make_xy(60)[1]


def _bad_npz_missing_keys(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, xtr=_x(), ytr=_y())
    return load_dataset(path, network="mlp")


def _bad_npz_object_array(tmp_path):
    path = tmp_path / "objects.npz"
    xtr = np.empty(60, dtype=object)
    xtr[:] = [[1.0, 2.0]] * 60
    np.savez(path, xtr=xtr, ytr=_y(), xte=_x()[:10], yte=_y()[:10])
    return load_dataset(path, network="mlp")


def _bad_npz_garbage(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"definitely not a numpy archive \x00\x01\x02\xff" * 20)
    return load_dataset(path, network="mlp")


def _bad_npz_truncated_zip(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04" + b"\x00garbage" * 20)
    return load_dataset(path, network="mlp")


def _with_nan(_tmp_path):
    x = _x()
    x[3, 1] = np.nan
    return load_dataset((x, _y()), network="mlp")


def _with_inf(_tmp_path):
    x = _x()
    x[5, 0] = np.inf
    return load_dataset((x, _y()), network="mlp")


def _csv(tmp_path, text, **kwargs):
    path = write_csv(tmp_path / "bad.csv", text)
    return load_dataset(path, network="mlp", **kwargs)


BAD_INPUTS = [
    pytest.param(lambda tp: load_dataset("no_such_dataset"), "unknown dataset", id="unknown-dataset-name"),
    pytest.param(lambda tp: load_dataset(tp / "absent.npz"), "not found", id="missing-npz"),
    pytest.param(lambda tp: load_dataset(tp / "absent.csv", target="label"), "not found", id="missing-csv"),
    pytest.param(_bad_npz_garbage, "npz", id="garbage-npz"),
    pytest.param(_bad_npz_truncated_zip, "cannot read", id="corrupt-zip-npz"),
    pytest.param(_bad_npz_missing_keys, "lacks keys xte, yte", id="npz-missing-keys"),
    pytest.param(_bad_npz_object_array, "Python objects", id="npz-object-array"),
    pytest.param(lambda tp: load_dataset((_x(), _y()[:50]), network="mlp"), "samples", id="length-mismatch"),
    pytest.param(_with_nan, "NaN", id="nan-in-x"),
    pytest.param(_with_inf, "infinite", id="inf-in-x"),
    pytest.param(lambda tp: load_dataset((np.arange(60.0), _y()), network="mlp"), "1-D", id="one-dim-x"),
    pytest.param(lambda tp: load_dataset("breast_cancer", network="cnn"), "image", id="cnn-on-flat"),
    pytest.param(
        lambda tp: load_dataset((_x(), np.zeros(60, dtype=np.int64)), network="mlp"),
        "at least 2 classes",
        id="single-class",
    ),
    pytest.param(
        lambda tp: load_dataset((_x(), np.linspace(0, 1, 60) + 0.5), network="mlp", task="classification"),
        "non-integer",
        id="float-labels-classification",
    ),
    pytest.param(lambda tp: _csv(tp, "a,b,y\n1,2,0\n3,4,1\n", target="label"), "no column 'label'", id="csv-no-target"),
    pytest.param(
        lambda tp: _csv(tp, "a,b,label\n1,2,0\n3,red,1\n", target="label"),
        "non-numeric",
        id="csv-text-feature",
    ),
    pytest.param(lambda tp: _csv(tp, "", target="label"), "empty", id="csv-zero-bytes"),
    pytest.param(lambda tp: _csv(tp, "a,b,label\n", target="label"), "empty", id="csv-header-only"),
    pytest.param(lambda tp: load_dataset("iris", network="mlp", task="ranking"), "unknown task", id="unknown-task"),
    pytest.param(
        lambda tp: load_dataset("digits", network="cnn", image_shape=(1, 7, 7)),
        "image-shape",
        id="image-shape-product",
    ),
    pytest.param(lambda tp: load_dataset("iris", network="mlp", val_split=0.0), "val-split", id="val-split-0"),
    pytest.param(lambda tp: load_dataset("iris", network="mlp", val_split=1.0), "val-split", id="val-split-1"),
]


@pytest.mark.parametrize(("load", "match"), BAD_INPUTS)
def test_bad_input_raises_one_line_data_error(tmp_path, load, match):
    with pytest.raises(DataError, match=match) as info:
        load(tmp_path)
    assert_one_line_with_hint(info.value)


class _MakesSentinel:
    """Unpickling this object creates a directory: a visible trace that a pickle was run."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.mkdir, (self.sentinel,))


def test_object_arrays_in_npz_are_never_unpickled(tmp_path):
    sentinel = tmp_path / "unpickled"
    path = tmp_path / "objects.npz"
    xtr = np.empty(60, dtype=object)
    xtr[:] = [_MakesSentinel(str(sentinel))] * 60
    np.savez(path, xtr=xtr, ytr=_y(), xte=_x(), yte=_y())
    with pytest.raises(DataError, match="Python objects") as info:
        load_dataset(path, network="mlp")
    assert_one_line_with_hint(info.value)
    assert not sentinel.exists()
    # the sentinel does work: what unpickling would call creates it
    make, arguments = xtr[0].__reduce__()
    make(*arguments)
    assert sentinel.exists()


def test_garbage_npz_is_reported_as_unreadable(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        _bad_npz_garbage(tmp_path)


def test_csv_error_with_multiline_cell_stays_one_line(tmp_path):
    with pytest.raises(DataError, match="non-numeric") as info:
        _csv(tmp_path, 'a,b,label\n1,2,0\n"x\ny",3,1\n', target="label")
    assert_one_line_with_hint(info.value)


def test_csv_error_reports_the_file_line(tmp_path):
    with pytest.raises(DataError, match="line 4"):
        _csv(tmp_path, "a,b,label\n\n1,2,0\n3,red,1\n", target="label")


def test_dict_with_only_one_of_a_pair():
    with pytest.raises(DataError, match="only one of xva/yva") as info:
        load_dataset({"xtr": _x(), "ytr": _y(), "xva": _x()}, network="mlp")
    assert_one_line_with_hint(info.value)


def test_csv_without_target_argument(tmp_path):
    with pytest.raises(DataError, match="no --target") as info:
        _csv(tmp_path, "a,b,label\n1,2,0\n3,4,1\n")
    assert_one_line_with_hint(info.value)


def test_text_labels_for_regression_are_refused(tmp_path):
    x, y = make_xy(60, features=2)
    lines = ["a,b,label"] + [f"{a},{b},c{lab}" for (a, b), lab in zip(x.tolist(), y.tolist(), strict=True)]
    path = write_csv(tmp_path / "t.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="not numbers") as info:
        load_dataset(path, network="mlp", target="label", task="regression")
    assert_one_line_with_hint(info.value)


# ---------------------------------------------------------------------------------------------------------
# the task inferred from whole-number targets


def _ages(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A table whose target is a whole number with many values and few rows each (an age)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, np.round(40 + 15 * x[:, 0] + rng.normal(size=n)).astype(np.int64)


def test_whole_number_quantities_are_inferred_as_regression_with_a_note():
    data = load_dataset(_ages(), network="mlp")
    assert data.task == "regression" and data.num_outputs == 1
    (note,) = data.notes
    assert note.startswith("task: regression") and "--task classification" in note and "\n" not in note


def test_whole_number_quantities_in_a_csv_are_regression(tmp_path):
    x, age = _ages()
    lines = ["a,b,c,d,age"] + [",".join(f"{v:.3f}" for v in row) + f",{a}" for row, a in zip(x, age, strict=True)]
    assert load_dataset(write_csv(tmp_path / "ages.csv", "\n".join(lines)), network="mlp", target="age").task == (
        "regression"
    )


def test_task_classification_forces_classes_on_whole_number_quantities():
    x, y = np.repeat(_x()[:25], 3, axis=0), np.repeat(np.arange(25), 3)  # 25 values, 3 rows each
    parts = {"xtr": x, "ytr": y, "xva": x[::3], "yva": y[::3], "xte": x[::3], "yte": y[::3]}
    assert load_dataset(parts, network="mlp").task == "regression"
    forced = load_dataset(parts, network="mlp", task="classification")
    assert forced.task == "classification" and len(forced.classes) == 25 and not forced.notes


def test_whole_number_classes_say_how_they_were_taken():
    data = load_dataset(make_xy(60), network="mlp")
    assert data.task == "classification" and "--task regression" in data.notes[0]


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer"])
def test_builtin_classification_sets_stay_classification_without_a_note(name):
    data = load_dataset(name, network="mlp")
    assert data.task == "classification" and data.notes == ()


def test_diabetes_stays_regression_without_a_note():
    data = load_dataset("diabetes", network="mlp")
    assert data.task == "regression" and data.notes == ()


def test_too_small_classes_of_whole_numbers_name_task_regression():
    x, _ = make_xy(60)
    y = np.arange(60) % 15  # 15 values (too few to infer regression), 4 rows each
    y[0] = 99  # one value seen once
    with pytest.raises(DataError, match="--task regression") as info:
        load_dataset((x, y), network="mlp")
    assert "a class has only 1 training sample" in assert_one_line_with_hint(info.value)


def test_target_is_refused_for_sources_that_have_their_own_labels(tmp_path):
    for source in ("digits", (_x(), _y())):
        with pytest.raises(DataError, match="leave out --target") as info:
            load_dataset(source, network="mlp", target="label")
        assert_one_line_with_hint(info.value)


# ---------------------------------------------------------------------------------------------------------
# CSV dialects and columns


def _table(delimiter: str = ",", n: int = 60) -> str:
    x, y = make_xy(n)
    rows = [delimiter.join(["id", "a", "b", "c", "d", "label"])]
    rows += [delimiter.join([str(i), *(f"{v:.4f}" for v in x[i]), str(y[i])]) for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path, delimiter):
    path = write_csv(tmp_path / "table.csv", _table(delimiter))
    data = load_dataset(path, network="mlp", target="label")
    assert data.input_shape == (5,) and data.classes == ("0", "1", "2")


def test_csv_delimiter_can_be_named(tmp_path):
    path = write_csv(tmp_path / "table.csv", _table(";"))
    assert load_dataset(path, network="mlp", target="label", delimiter=";").input_shape == (5,)
    with pytest.raises(DataError, match="no column 'label'"):
        load_dataset(path, network="mlp", target="label", delimiter=",")


def test_a_missed_delimiter_points_to_the_option(tmp_path):
    path = write_csv(tmp_path / "table.csv", "a:b:label\n" + "".join(f"{i}:{i}:{i % 2}\n" for i in range(20)))
    with pytest.raises(DataError, match="--delimiter") as info:
        load_dataset(path, network="mlp", target="label")
    assert "no column 'label'" in assert_one_line_with_hint(info.value)


def test_delimiter_is_refused_for_other_sources():
    with pytest.raises(DataError, match="leave out --delimiter"):
        load_dataset("iris", network="mlp", delimiter=";")


def test_csv_columns_can_be_dropped(tmp_path):
    path = write_csv(tmp_path / "table.csv", _table().replace("\n", ",x\n").replace("label,x", "label,name"))
    data = load_dataset(path, network="mlp", target="label", drop=("id", "name"))
    assert data.input_shape == (4,)
    with pytest.raises(DataError, match="non-numeric value 'x'.*--drop name"):
        load_dataset(path, network="mlp", target="label")


@pytest.mark.parametrize(
    ("drop", "match"), [(("nope",), "no column 'nope' to drop"), (("label",), "names the target column")]
)
def test_dropping_unknown_columns_or_the_target_is_refused(tmp_path, drop, match):
    path = write_csv(tmp_path / "table.csv", _table())
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path, network="mlp", target="label", drop=drop)
    assert_one_line_with_hint(info.value)


def test_drop_is_refused_for_other_sources():
    with pytest.raises(DataError, match="leave out --drop"):
        load_dataset("iris", network="mlp", drop=("id",))


# ---------------------------------------------------------------------------------------------------------
# missing values


def _with_holes(tmp_path: Path, *, label_hole: bool = False) -> Path:
    lines = _table().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "", 1)  # line 4 of the file: column 'b' empty
    lines[8] = ",".join(["7", "NA", *lines[8].split(",")[2:]])  # line 9: column 'a' holds NA
    if label_hole:
        lines[12] = lines[12].rsplit(",", 1)[0] + ","
    return write_csv(tmp_path / "holes.csv", "\n".join(lines) + "\n")


def test_an_empty_csv_cell_is_named_a_missing_value_with_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(_with_holes(tmp_path), network="mlp", target="label")
    message = assert_one_line_with_hint(info.value)
    assert "line 4, column 'b' is empty, a missing value" in message and "--impute" in message
    assert "encode categories" not in message


@pytest.mark.parametrize("how", ["mean", "median"])
def test_impute_fills_missing_values_from_the_training_rows(tmp_path, how):
    data = load_dataset(_with_holes(tmp_path), network="mlp", target="label", impute=how, drop=("id",))
    assert all(np.isfinite(x).all() for x in (data.x_train, data.x_val, data.x_test))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60
    assert any(note.startswith(f"--impute {how}: filled 2 missing value(s)") for note in data.notes)


def test_impute_mean_uses_training_statistics_only():
    x, y = make_xy(60)
    x_test = x[:12].copy()
    x_test[0, 1] = np.nan
    data = load_dataset({"xtr": x, "ytr": y, "xte": x_test, "yte": y[:12]}, network="mlp", impute="mean")
    x_train_raw = data.x_train * data.x_std + data.x_mean  # (standardization undone)
    restored = data.x_test[0, 1] * data.x_std[0, 1] + data.x_mean[0, 1]
    assert restored == pytest.approx(x_train_raw[:, 1].mean(), abs=1e-4)


def test_impute_drop_leaves_out_rows_with_a_missing_value_or_label(tmp_path):
    data = load_dataset(_with_holes(tmp_path, label_hole=True), network="mlp", target="label", impute="drop")
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 57
    assert "--impute drop: left out 2 row(s) with a missing value" in data.notes


def test_a_missing_label_names_impute_drop(tmp_path):
    path = _with_holes(tmp_path, label_hole=True)
    with pytest.raises(DataError, match=r"line 13 has no label .*--impute drop"):
        load_dataset(path, network="mlp", target="label", impute="mean")


def test_nan_in_arrays_names_impute():
    x, y = make_xy(60)
    x[5, 2] = np.nan
    with pytest.raises(DataError, match="NaN values .missing.; fill them in, or give --impute"):
        load_dataset((x, y), network="mlp")
    assert load_dataset((x, y), network="mlp", impute="median").x_train.shape == (38, 4)


def test_unknown_impute_is_refused():
    with pytest.raises(DataError, match="unknown --impute 'zero'"):
        load_dataset("iris", network="mlp", impute="zero")


def test_many_whole_number_values_with_one_seen_once_are_regression():
    x, age = _ages(1000)  # 1000 rows: about 14 per value, but the tails are seen once
    assert len(np.unique(age)) > 20 and len(age) / len(np.unique(age)) >= 5
    data = load_dataset((x, age), network="mlp")
    assert data.task == "regression" and "seen once" in data.notes[0]
