import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepncheap.cli import main
from deepncheap.store import RunStore

FAST = ["--network", "mlp", "--max-trials", "2", "--epochs", "2", "--penalty", "params", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    paths = {}

    def npz(name, **arrays):
        paths[name] = root / f"{name}.npz"
        np.savez(paths[name], **arrays)

    npz("good", xtr=x, ytr=y, xte=x[:10], yte=y[:10])
    npz("missing_keys", xtr=x, ytr=y)
    npz("objects", xtr=np.array([{"a": 1}] * 40, dtype=object), ytr=y, xte=x[:10], yte=y[:10])
    npz("mismatch", xtr=x, ytr=y[:30], xte=x[:10], yte=y[:10])
    nan = x.copy()
    nan[3, 1] = np.nan
    npz("nan", xtr=nan, ytr=y, xte=x[:10], yte=y[:10])
    npz("flat1d", xtr=x[:, 0], ytr=y, xte=x[:10, 0], yte=y[:10])
    npz("one_class", xtr=x, ytr=np.zeros(40, int), xte=x[:10], yte=np.zeros(10, int))
    npz("float_labels", xtr=x, ytr=rng.normal(size=40), xte=x[:10], yte=rng.normal(size=10))
    paths["corrupt"] = root / "corrupt.npz"
    paths["corrupt"].write_bytes(b"PK\x03\x04 this is not really a zip archive")
    paths["csv"] = root / "table.csv"
    paths["csv"].write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    paths["text_csv"] = root / "text.csv"
    paths["text_csv"].write_text("a,colour,label\n" + "".join(f"{i},red,{i % 2}\n" for i in range(40)))
    paths["empty_csv"] = root / "empty.csv"
    paths["empty_csv"].write_text("")
    for name, text in {
        "unknown_name": "num_layers: [1, 2]\n",
        "inverted": "lr: [0.1, 0.001]\n",
        "empty_range": "batch_size: []\n",
        "empty_choices": "bn_fracs: []\n",
        "wrong_type": "num_hidden_layers: [one, two]\n",
        "broken": "lr: [0.001, 0.1\nbatch_size: 32\n",
    }.items():
        paths[f"space_{name}"] = root / f"space_{name}.yaml"
        paths[f"space_{name}"].write_text(text)
    paths["file"] = root / "plain-file"
    paths["file"].write_text("x")
    return paths


BAD_INPUTS = [
    (["--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["--data", "{root}/nope.npz"], "file not found"),
    (["--data", "{corrupt}"], "cannot read"),
    (["--data", "{missing_keys}"], "lacks keys xte, yte"),
    (["--data", "{objects}"], "Python objects"),
    (["--data", "{mismatch}"], "40 samples but y has 30"),
    (["--data", "{nan}"], "NaN values (missing); fill them in, or give --impute"),
    (["--data", "{flat1d}"], "1-D"),
    (["--data", "breast_cancer", "--network", "cnn"], "--image-shape"),
    (["--data", "{one_class}"], "at least 2 classes"),
    (["--data", "{float_labels}", "--task", "classification"], "non-integer float"),
    (["--data", "{csv}", "--target", "species"], "no column 'species'"),
    (["--data", "{text_csv}", "--target", "label"], "non-numeric"),
    (["--data", "{empty_csv}", "--target", "label"], "empty"),
    (["--network", "transformer"], "unknown network"),
    (["--wc", "-1"], "w_c must be a number >= 0"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--seed", "1.5"], "--seed: invalid int value"),
    (["--out", "{file}/run"], "cannot write to output directory"),
    (["--penalty", "money"], "unknown penalty"),
    (["--val-split", "0"], "--val-split must be between 0 and 1"),
    (["--image-shape", "1,8"], "invalid image shape"),
    (["--space", "{root}/space.yaml"], "space file not found"),
    (["--space", "{space_unknown_name}"], "unknown hyperparameter 'num_layers'"),
    (["--space", "{space_inverted}"], "inverted"),
    (["--space", "{space_empty_range}"], "batch_size must be [low, high]"),
    (["--space", "{space_empty_choices}"], "bn_fracs is an empty list"),
    (["--space", "{space_wrong_type}"], "num_hidden_layers takes integers"),
    (["--space", "{space_broken}"], "not valid YAML"),
    (["--bo-mode", "fast"], "unknown BO mode"),
    (["--method", "grid"], "unknown method"),
    (["--data", "iris", "--target", "species"], "built-in data set iris, with labels of their own; leave out --target"),
    (["--data", "{good}", "--target", "label"], "(not a .csv file), with labels of their own"),
    (["--data", "{csv}", "--target", "label", "--delimiter", ";;"], "--delimiter must be one character"),
    (["--impute", "zero"], "invalid choice: 'zero'"),
    (["--augment", "maybe"], "invalid choice: 'maybe'"),
    (["--data", "iris", "--augment", "on"], "--augment on crops and flips images, but the inputs are flat"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_line_error_and_exit_2(files, tmp_path, capsys, args, message):
    names = {k: str(v) for k, v in files.items()} | {"root": str(files["good"].parent)}
    args = [a.format(**names) for a in args]
    if "--network" not in args:
        args += ["--network", "mlp"]
    out = tmp_path / "run"
    argv = ["search", "--max-trials", "1", "--epochs", "1", "--quiet", *args]  # the last value given wins
    if "--out" not in args:
        argv += ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnc: error: ") and "; " in err, err
    assert message in err
    assert "Traceback" not in err
    assert not (out / "best.json").exists() and not out.exists()


def test_search_on_a_semicolon_csv(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;label\n" + "".join(f"{i * 0.1:.1f};{i % 3};{i % 2}\n" for i in range(40)))
    assert main(["search", "--data", str(path), "--target", "label", *FAST, "--out", str(tmp_path / "run")]) == 0


def test_search_on_a_csv_without_its_id_column_and_with_a_missing_value(tmp_path, capsys):
    path = tmp_path / "ids.csv"
    path.write_text("id,a,b,label\n" + "".join(f"row{i},{i * 0.1:.1f},{i % 5 or ''},{i % 2}\n" for i in range(40)))
    run = tmp_path / "run"
    options = ["--target", "label", "--drop", "id", "--impute", "mean", *FAST, "--out", str(run)]
    assert main(["search", "--data", str(path), *options]) == 0
    with RunStore.open(run) as store:
        assert store.settings["drop"] == ["id"] and store.settings["impute"] == "mean"
        assert store.settings["data"]["input_shape"] == [2]
        assert any(line.startswith("--impute mean: filled 8 missing value(s)") for line in store.log_lines())
    assert main(["resume", str(run), "--max-trials", "3", "--quiet"]) == 0  # (the stored --drop applies again)


def test_json_prints_one_event_per_line_on_stdout_and_nothing_else(tmp_path, capsys):
    run = tmp_path / "run"
    loud = [a for a in FAST if a != "--quiet"]
    assert main(["search", "--data", "iris", *loud, "--method", "random", "--json", "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["search_started", "stage_changed", "trial_started"] and kinds[-1] == "search_ended"
    assert kinds.count("trial_started") == kinds.count("trial_ended") == 2 and kinds.count("epoch") == 4
    started, ended = events[0], events[-1]
    assert started["data"] | {"input_shape": None} == {
        "name": "iris", "task": "classification", "input_shape": None, "n_train": 96, "n_val": 24, "n_test": 30,
    }  # fmt: skip
    trial_ends = [e for e in events if e["event"] == "trial_ended"]
    assert all(e["status"] == "complete" and e["metrics"]["val_accuracy"] is not None for e in trial_ends)
    assert ended["run_dir"] == str(run) and ended["finished"] and ended["state"] == "finished"
    assert ended["best"]["trial_id"] in {e["trial_id"] for e in trial_ends} and "objective" in ended["best"]["metrics"]
    # people's progress went to stderr, with the split sizes and the small-validation warning
    assert "data: iris, 96 train / 24 val / 30 test rows" in err
    assert "validation accuracies are coarse (steps of 1/24 = 0.042)" in err
    with RunStore.open(run) as store:
        assert any("validation accuracies are coarse" in line for line in store.log_lines())

    assert main(["resume", str(run), "--json", "--max-trials", "3", "--quiet"]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == [
        "search_started", "stage_changed", "trial_started", "epoch", "epoch", "trial_ended", "search_ended",
    ]  # fmt: skip
    assert events[0]["finished_trials"] == 2 and events[-1]["trials"] == 3 and err == ""

    assert main(["resume", str(run), "--json", "--quiet"]) == 0  # finished: only its end
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["event"] == "search_ended" and json.loads(line)["finished"]


def test_a_search_with_enough_validation_rows_does_not_warn(tmp_path, capsys):
    loud = [a for a in FAST if a != "--quiet"]
    assert main(["search", "--data", "digits", *loud, "--method", "random", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "data: digits, 1149 train / 288 val / 360 test rows" in err and "coarse" not in err


def test_search_and_show(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--data", str(files["good"]), *FAST, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "parameters" in out and "time per epoch" in out and str(run) in out
    assert main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "2 complete" in shown and "best overall: trial #" in shown and "objective" in shown


@pytest.mark.parametrize("command", ["show", "resume"])
def test_a_run_that_does_not_exist_is_named_so(tmp_path, capsys, command):
    assert main([command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"dnc: error: {tmp_path / 'nope'} does not exist; give the directory of a run made by dnc search\n"
    assert not (tmp_path / "nope").exists()


def test_show_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a run" in capsys.readouterr().err


def test_search_refuses_an_existing_run(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--data", str(files["good"]), *FAST, "--out", str(run)]) == 0
    assert main(["search", "--data", str(files["good"]), *FAST, "--out", str(run)]) == 2
    assert "already holds a search" in capsys.readouterr().err


def dnc(*args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    command = [str(Path(sys.executable).parent / "dnc"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_end_to_end(tmp_path):
    """The installed `dnc` command: a real search in a subprocess, default run directory, then show."""
    done = dnc("search", "--data", "iris", *FAST[:-1], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trial 1/2" in done.stderr and "trial 2/2" in done.stderr  # per-trial progress lines
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("iris-mlp-")
    assert (run / "best.json").is_file() and (run / "trials.csv").is_file()
    shown = dnc("show", str(run), cwd=tmp_path)
    assert shown.returncode == 0 and "best overall: trial #" in shown.stdout


def test_console_script_bad_input_has_no_traceback(tmp_path):
    done = dnc("search", "--data", "nothing-here", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dnc: error: unknown dataset 'nothing-here'; use a built-in (digits, breast_cancer, wine, iris, diabetes) "
        "or a .npz/.csv path"
    ]
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_stops_with_130_and_records_the_running_trial(tmp_path, wait_for_running_trial):
    """SIGINT during a trial: exit 130, the trial in progress is `interrupted`, the store stays readable."""
    import signal

    from deepncheap.store import RunStore

    run = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "dnc"),
        "search",
        "--data",
        "digits",
        "--network",
        "mlp",
        "--epochs",
        "400",
        "--max-trials",
        "3",
        "--penalty",
        "params",
        "--quiet",
        "--out",
        str(run),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_running_trial(run, process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with RunStore.open(run) as store:
        assert [t.status for t in store.trials()][-1] == "interrupted"
    assert not (run / "best.json").exists()
