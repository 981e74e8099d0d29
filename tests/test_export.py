"""dnc export: ONNX and TorchScript files predict from raw inputs as the in-memory model does, in a process
without deepncheap; which models can be exported; bad inputs give one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import write_final_model

import deepncheap
from deepncheap.cli import main
from deepncheap.errors import SettingsError
from deepncheap.export import export_run

# Runs exported files with onnxruntime or torch alone, at batch sizes 1, 7 and all samples; prints what the
# files say of themselves and whether anything imported deepncheap.
RUN_FILES = """
import json, sys
import numpy as np

jobs, file_format = json.loads(sys.argv[1]), sys.argv[2]
report = {}
for job in jobs:
    if file_format == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
        metadata = session.get_modelmeta().custom_metadata_map
        names = [session.get_inputs()[0].name, session.get_outputs()[0].name]
        run = lambda x: session.run(None, {"input": x})[0]
    else:
        import torch
        extra = {"deepncheap.json": ""}
        model = torch.jit.load(job["model"], _extra_files=extra)
        metadata, names = json.loads(extra["deepncheap.json"]), None
        run = lambda x: model(torch.from_numpy(x)).detach().numpy()
    x = np.load(job["inputs"])
    np.savez(job["outputs"], *[run(x[:n]) for n in (1, 7, len(x))])
    report[job["model"]] = {"metadata": metadata, "names": names}
report["deepncheap_imported"] = any(name.split(".")[0] == "deepncheap" for name in sys.modules)
print(json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["onnx", "torchscript"])
def test_the_file_predicts_from_raw_inputs_as_the_model_does_without_deepncheap(model_runs, tmp_path, file_format):
    jobs = {}
    for name, run in model_runs.items():
        jobs[name] = {
            "model": str(export_run(run["dir"], format=file_format, out=tmp_path / f"{name}.{file_format}")),
            "inputs": str(tmp_path / f"{name}-x.npy"),
            "outputs": str(tmp_path / f"{name}-out.npz"),
        }
        np.save(jobs[name]["inputs"], run["x"])
    command = [sys.executable, "-c", RUN_FILES, json.dumps(list(jobs.values())), file_format]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    assert report["deepncheap_imported"] is False
    for name, run in model_runs.items():
        result = deepncheap.load_run(run["dir"])
        preprocessing = result.preprocessing
        classification = preprocessing.task == "classification"
        expected = result.predict_proba(run["x"]) if classification else result.predict(run["x"])[:, None]
        # probabilities within 1e-5; regression targets within 1e-5 of the network's standardized units
        tolerance = 1e-5 if classification else 1e-5 * preprocessing.target_std
        with np.load(jobs[name]["outputs"]) as saved:
            for n, key in zip((1, 7, len(run["x"])), saved.files, strict=True):
                outputs = saved[key]
                assert outputs.shape == (n, expected.shape[1]) and outputs.dtype == np.float32
                difference = float(np.abs(outputs - expected[:n]).max())
                print(f"{file_format} {name} batch {n}: max abs difference {difference:.3g}")
                assert difference <= tolerance
        described = report[jobs[name]["model"]]
        output = "probabilities" if classification else "predictions"
        metadata = {
            "task": preprocessing.task,
            "classes": list(result.classes),
            "input_shape": list(run["x"].shape[1:]),
            "input": "input",
            "output": output,
            "model": "best",
            "trial_id": result.trial_id,
        }
        if file_format == "onnx":  # (ONNX metadata are strings)
            metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
            assert described["names"] == ["input", output]
        assert described["metadata"] == metadata
    assert deepncheap.load_run(model_runs["mlp"]["dir"]).classes == ("setosa", "versicolor", "virginica")


@pytest.fixture
def run_copy(model_runs, tmp_path):
    """A copy of the regression run (the quickest to export), free to change."""
    path = tmp_path / "run"
    shutil.copytree(model_runs["regression"]["dir"], path)
    return path


def test_cli_writes_the_best_trial_to_its_default_place(run_copy, capsys):
    best = deepncheap.load_run(run_copy).trial_id
    assert main(["export", str(run_copy), "--format", "torchscript", "--trial", str(best)]) == 0
    path = run_copy / "export" / "best_model.pt"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    assert path.is_file() and not list(path.parent.glob(".*"))


def _error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnc: error: "), err
    return err


def test_final_exports_the_model_dnc_train_wrote(run_copy, tmp_path):
    write_final_model(run_copy)
    path = export_run(run_copy, format="torchscript", final=True)
    assert path == run_copy / "export" / "final_model.pt"
    extra = {"deepncheap.json": ""}
    model = torch.jit.load(path, _extra_files=extra)
    assert json.loads(extra["deepncheap.json"])["model"] == "final"
    x = np.random.default_rng(0).normal(size=(9, 10)).astype(np.float32) * 0.05  # (diabetes-like features)
    result = deepncheap.load_run(run_copy, final=True)
    final = result.predict(x)
    assert (
        np.abs(model(torch.from_numpy(x)).detach().numpy()[:, 0] - final).max()
        <= 1e-5 * result.preprocessing.target_std
    )
    assert np.abs(deepncheap.load_run(run_copy).predict(x) - final).max() > 1.0  # (another model)


def test_only_the_trial_whose_weights_are_kept_can_be_exported(run_copy, capsys):
    best = deepncheap.load_run(run_copy).trial_id
    other = 3 - best  # (the run's trials are 1 and 2)
    assert main(["export", str(run_copy), "--format", "torchscript", "--trial", str(other)]) == 2
    err = _error(capsys)
    assert f"trial {other}'s weights are not kept" in err and f"#{best}" in err
    assert f"dnc train {run_copy} --trial {other}" in err and "--final" in err
    assert main(["export", str(run_copy), "--format", "torchscript", "--trial", "99"]) == 2
    assert "has no trial 99; its trials are 1..2" in _error(capsys)
    assert not (run_copy / "export").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "torchscript", "--final"], "has no final model yet; train it first with: dnc train"),
        (["--format", "pickle"], "invalid choice: 'pickle'"),
        (["--format", "onnx", "--trial", "1", "--final"], "give --trial or --final, not both"),
        (["--trial", "1"], "the following arguments are required: --format"),
    ],
)
def test_bad_options_give_one_line_errors(run_copy, capsys, args, message):
    assert main(["export", str(run_copy), *args]) == 2
    assert message in _error(capsys)


def test_missing_run_and_run_without_weights(run_copy, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "nope" in _error(capsys)
    (run_copy / "best_model.safetensors").unlink()
    assert main(["export", str(run_copy), "--format", "torchscript"]) == 2
    assert "has no best_model.safetensors" in _error(capsys)


def test_onnx_without_the_export_extra_names_it(run_copy, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # (import onnx now raises ImportError)
    with pytest.raises(SettingsError, match=r"pip install 'deepncheap\[export\]'"):
        export_run(run_copy, format="onnx")
    assert main(["export", str(run_copy), "--format", "onnx"]) == 2
    assert "deepncheap[export]" in _error(capsys)
    assert not (run_copy / "export").exists()


def test_unwritable_output_leaves_nothing_behind(run_copy, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, reason in [(a_file / "model.pt", f"{a_file} is a file"), (tmp_path, "Is a directory")]:
        assert main(["export", str(run_copy), "--format", "torchscript", "--out", str(out)]) == 2
        err = _error(capsys)
        assert f"cannot write {out} ({reason}" in err and "choose a writable --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "run"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory(run_copy, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["export", str(run_copy), "--format", "torchscript", "--out", str(locked / "m.pt")]) == 2
    assert "Permission denied" in _error(capsys)
    assert not list(locked.iterdir())
