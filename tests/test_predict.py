"""Predictions from raw data: load_run's predict/predict_proba against the in-memory model on the stored
splits, and dnc predict's CSV (from .npy, .npz, .csv files) against predict; bad inputs."""

import csv
import shutil

import numpy as np
import pytest
import torch
from helpers import write_csv, write_final_model

import deepncheap
from deepncheap.cli import main
from deepncheap.data import load_dataset
from deepncheap.store import RunStore


@pytest.mark.parametrize("name", ["mlp", "cnn", "regression"])
def test_raw_predictions_equal_the_in_memory_model_on_the_stored_splits(model_runs, name):
    run = model_runs[name]
    result = deepncheap.load_run(run["dir"])
    dataset = load_dataset(run["source"], network=run["network"], target=run.get("target"), task=run.get("task"))
    assert dataset.fingerprint() == result.settings["data"]["fingerprint"]  # the splits the search used
    for x in (dataset.x_train, dataset.x_val, dataset.x_test):
        raw = x * dataset.x_std + dataset.x_mean
        with torch.no_grad():
            outputs = result.model(torch.from_numpy(x))
        if dataset.task == "classification":
            expected = torch.softmax(outputs, dim=1).numpy()
            assert np.abs(result.predict_proba(raw) - expected).max() <= 1e-5
            labels = np.asarray(dataset.classes)[expected.argmax(axis=1)]
            assert np.mean(result.predict(raw).astype(str) == labels) > 0.99  # (a near tie may flip)
        else:
            expected = outputs.numpy().reshape(-1) * dataset.target_std + dataset.target_mean
            assert np.abs(result.predict(raw) - expected).max() <= 1e-5 * dataset.target_std


def _write(path, kind, x, run):
    """`x` in a file of `kind`: npy, npz (with another array beside), csv, or csv with the target column."""
    if kind == "npy":
        np.save(path, x)
    elif kind == "npz":
        np.savez(path, xte=x, yte=np.zeros(len(x)))
    elif kind == "csv_with_target":
        write_csv(path, x.reshape(len(x), -1), np.zeros(len(x)), target=run["target"])
    else:
        write_csv(path, x.reshape(len(x), -1))
    return path


@pytest.mark.parametrize(
    "name, kind, proba",
    [
        ("mlp", "csv_with_target", True),
        ("mlp", "csv", False),
        ("cnn", "npy", True),
        ("cnn", "npz", False),
        ("cnn", "csv", True),
        ("regression", "csv", False),
        ("regression", "npy", False),
    ],
)
def test_predict_writes_a_csv_of_the_models_predictions(model_runs, tmp_path, capsys, name, kind, proba):
    run = model_runs[name]
    x = run["x"][::6]
    data = _write(tmp_path / f"samples.{kind.split('_')[0]}", kind, x, run)
    out = tmp_path / "out" / "preds.csv"  # (its folder is made)
    args = ["predict", str(run["dir"]), "--data", str(data), *(["--proba"] if proba else [])]
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with out.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    result = deepncheap.load_run(run["dir"])
    if name == "regression":
        assert header == ["prediction"]
        assert [float(r[0]) for r in rows] == result.predict(x).tolist()
    else:
        assert header == ["prediction", *(f"p_{c}" for c in result.classes if proba)]
        assert [r[0] for r in rows] == [str(label) for label in result.predict(x).tolist()]
        if proba:
            assert np.array_equal(np.asarray([r[1:] for r in rows], dtype=np.float64), result.predict_proba(x))
    assert main([*args, "--out", "-"]) == 0
    assert capsys.readouterr().out == out.read_text()


@pytest.fixture
def run_copy(model_runs, tmp_path):
    """A copy of the MLP run (on a CSV of iris: 4 features, column 'species'), free to change."""
    path = tmp_path / "run"
    shutil.copytree(model_runs["mlp"]["dir"], path)
    return path


def test_final_predicts_with_the_model_dnc_train_wrote(model_runs, run_copy, tmp_path, capsys):
    write_final_model(run_copy)
    x = model_runs["mlp"]["x"]
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(run_copy), "--data", str(tmp_path / "x.npy"), "--out", "-", "--final", "--proba"]) == 0
    header, *rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    probabilities = np.asarray([r[1:] for r in rows], dtype=np.float64)
    assert np.array_equal(probabilities, deepncheap.load_run(run_copy, final=True).predict_proba(x))
    assert not np.allclose(probabilities, deepncheap.load_run(run_copy).predict_proba(x), atol=1e-3)


def _bad_files(root, iris):
    """name -> a file of samples that cannot be predicted from."""
    files = {"three_features.npy": iris[:, :3], "nan.npy": np.where(np.eye(5, 4) > 0, np.nan, iris[:5])}
    for name, array in files.items():
        np.save(root / name, array)
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(root / "unnamed.npz", a=iris, b=iris)
    (root / "garbage.npy").write_bytes(b"not an array")
    (root / "samples.txt").write_text("1,2,3,4\n")
    write_csv(root / "three_features.csv", iris[:, :3], np.zeros(len(iris)), target="species")
    texts = {
        "empty.csv": "",
        "no_header.csv": "5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.2\n",
        "missing.csv": "a,b,c,d\n5.1,,1.4,0.2\n",
        "text.csv": "a,b,c,d\n5.1,3.5,big,0.2\n",
        "nan.csv": "a,b,c,d\n5.1,3.5,nan,0.2\n",
        "ragged.csv": "a,b,c,d\n5.1,3.5,1.4\n",
    }
    for name, text in texts.items():
        (root / name).write_text(text)
    return root


BAD_DATA = [
    ("nope.npy", "file not found"),
    (".", "is a directory; point --data at a .npy, .npz or .csv file"),
    ("three_features.npy", "inputs have shape (150, 3) but the model takes samples of shape (4,)"),
    ("three_features.csv", "has 3 feature columns besides 'species' but the model takes 4"),
    ("nan.npy", "inputs hold 4 NaN or infinite values; impute or drop them"),
    ("nan.csv", "inputs hold 1 NaN or infinite values"),
    ("objects.npy", "Object arrays cannot be loaded when allow_pickle=False"),
    ("garbage.npy", "save plain numeric arrays with numpy.save or numpy.savez"),
    ("unnamed.npz", "holds arrays a, b; name the samples' array 'x'"),
    ("samples.txt", "unsupported file type '.txt'"),
    ("empty.csv", "is empty (it needs a header row and data rows)"),
    ("no_header.csv", "has no header row (its first row is numbers)"),
    ("missing.csv", "line 2, column 'b' is empty (a missing value); features must be numbers"),
    ("text.csv", "line 2, column 'c' holds non-numeric value 'big'"),
    ("ragged.csv", "line 2 has 3 fields, the header has 4"),
]


@pytest.mark.parametrize("data, message", BAD_DATA)
def test_bad_data_gives_one_line_error_and_writes_nothing(model_runs, run_copy, tmp_path, capsys, data, message):
    root = _bad_files(tmp_path, model_runs["mlp"]["x"])
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_copy), "--data", str(root / data), "--out", str(out)]) == 2
    assert message in _error(capsys)
    assert not out.exists()


def _error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnc: error: "), err
    return err


def test_bad_runs_and_outputs(model_runs, run_copy, tmp_path, capsys):
    data = str(tmp_path / "x.npy")
    np.save(data, model_runs["mlp"]["x"])
    (tmp_path / "not-a-run").mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "nope")], "nope"),
        ([str(tmp_path / "not-a-run")], "is not a run"),
        ([str(run_copy), "--final"], "has no final model yet; train it first with: dnc train"),
        ([str(model_runs["regression"]["dir"]), "--proba"], "--proba needs a classification run"),
        ([str(run_copy), "--out", str(a_file / "p.csv")], f"cannot write {a_file / 'p.csv'} ({a_file} is a file)"),
        ([str(run_copy), "--out", str(tmp_path)], f"cannot write {tmp_path} (Is a directory)"),
    ]
    for args, message in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "p.csv")]
        assert main(["predict", *args, "--data", data, *out]) == 2
        assert message in _error(capsys)
    with RunStore.open(run_copy, readonly=False) as store:
        store.put("preprocessing", None)  # (as in a run made before deepncheap stored it)
    assert main(["predict", str(run_copy), "--data", data, "--out", "-"]) == 2
    assert "did not store its preprocessing" in _error(capsys)
    (run_copy / "best_model.safetensors").unlink()
    assert main(["predict", str(run_copy), "--data", data, "--out", "-"]) == 2
    assert "has no best_model.safetensors" in _error(capsys)
    assert main(["predict", str(run_copy), "--data", data]) == 2
    assert "the following arguments are required: --out" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "not-a-run", "run", "x.npy"]
