"""Tests of `dnc show` (deepncheap.show): what a person reads fits the terminal."""

import io

import pytest
from helpers import instant_trial, stored_trials
from rich.console import Console

import deepncheap
from deepncheap import trial
from deepncheap.show import show_run, summarize_config, wrap_config
from deepncheap.store import EpochRecord, RunStore


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished random CNN search over the default space (long configs), with instant trials, plus a
    failed trial with a long error and a trial still running."""
    patch = pytest.MonkeyPatch()
    patch.setattr(trial, "run_trial", instant_trial)
    try:
        result = deepncheap.search(
            data="digits",
            network="cnn",
            method="random",
            max_trials=4,
            epochs=2,
            penalty="params",
            out=tmp_path_factory.mktemp("show") / "run",
            verbose=False,
            report=False,
        )
    finally:
        patch.undo()
    config = stored_trials(result.run_dir)[0].config
    with RunStore.open(result.run_dir, readonly=False) as store:
        failed = store.start_trial(stage="joint", stage_index=90, config=config)
        store.finish_trial(failed, status="failed", wall_s=1.0, error="RuntimeError: " + "a long error " * 20)
        running = store.start_trial(stage="joint", stage_index=91, config=config)
        for epoch in (1, 2):
            store.add_epoch(EpochRecord(running, epoch, 0.5, 1.0, 0.25))
    return result.run_dir


def _shown(run, width):
    output = io.StringIO()
    show_run(run, Console(file=output, width=width, highlight=False, markup=False))
    return output.getvalue().splitlines()


def _config_column(lines):
    """The text of the table's config column, read from the header's position down to the table's end."""
    header = next(i for i, line in enumerate(lines) if line.startswith("id ") and line.rstrip().endswith("config"))
    start = lines[header].index("config")
    column = []
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        column.append(line[start:].strip())
    return "".join(column).replace(" ", "")


@pytest.mark.parametrize("width", [80, 120])
def test_show_fits_the_width_and_wraps_whole_configs(run, width):
    lines = _shown(run, width)
    assert max(len(line) for line in lines) <= width
    assert "…" not in "\n".join(lines)
    configs = _config_column(lines)
    for t in stored_trials(run):  # (a failed trial's config too: its error is listed under the table)
        assert summarize_config(t.config).replace(" ", "") in configs
    assert "failed: #5: RuntimeError: a long error" in "\n".join(lines)


def test_show_uses_the_terminal_width(run, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    show_run(run)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80 and "best overall" in "\n".join(lines)


def test_the_columns_that_matter_least_go_first_at_narrow_widths(run):
    narrow = next(line for line in _shown(run, 80) if line.startswith("id "))
    wide = next(line for line in _shown(run, 140) if line.startswith("id "))
    assert "noise" in wide and "FLOPs" in wide and "noise" not in narrow
    for name in ("objective", "val acc", "params", "config"):  # (params: the penalty of this search)
        assert name in narrow


def test_config_summary_is_short():
    cnn = {
        "network": "cnn",
        "channels": [16, 32, 32, 64, 64],
        "downsampling": "maxpool",
        "bn_frac": 0.75,
        "do_frac": 0.5,
        "shortcut_every": 2,
        "lr": 0.003,
        "weight_decay": 1e-5,
        "batch_size": 64,
    }
    assert summarize_config(cnn) == "L5 16-32x2-64x2 pool bn.75 do.5 sc2 lr3e-3 wd1e-5 b64"
    mlp = {"network": "mlp", "hidden_nodes": [256, 64], "drop_prob": 0.2, "lr": 0.012, "weight_decay": 0.0}
    assert summarize_config(mlp | {"batch_size": 32}) == "H2 256-64 do.2 lr1.2e-2 wd0 b32"


def test_wrap_config_breaks_long_channel_lists_after_a_dash():
    text = "L9 16-32-64-128-256-512-512-512-512 pool bn1"
    lines = wrap_config(text, 16).splitlines()
    assert max(len(line) for line in lines) <= 16
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert all(line.endswith("-") for line in lines[:-2])
