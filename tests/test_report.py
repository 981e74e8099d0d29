"""The report: `dnc search` writes report.html (self-contained), plots/*.png and MODEL_CARD.md from real small
searches; `dnc report` rewrites them, reads final.json when there is one, survives failed, running and
pruned trials, and refuses what is not a run; `--no-report` writes none; a failing report loses nothing."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from matplotlib.image import imread

import deepncheap
from deepncheap.cli import build_parser, main
from deepncheap.report import MODEL_CARD, PLOTS_DIR, REPORT_HTML
from deepncheap.report.features import searched_features
from deepncheap.report.model_card import describe_architecture
from deepncheap.report.screenshot import CHROMIUM, screenshot
from deepncheap.store import RunStore
from tests.helpers import stored_trials

TINY = {"network": "mlp", "method": "random", "epochs": 2, "penalty": "params", "verbose": False}
PLOTS = {"objective", "score_vs_parameters", "score_vs_flops", "score_vs_time", "learning_curves",
         "hyperparameters", "search_cost"}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    deepncheap.search(data="digits", max_trials=5, seed=1, out=out, **TINY)
    return out


@pytest.fixture(scope="module")
def regression_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "regression"
    deepncheap.search(data="diabetes", max_trials=3, out=out, **TINY)
    return out


def check_self_contained(html: str, plots: Path) -> None:
    """No resource is fetched: no external link, stylesheet or script; every image is an embedded PNG, one per
    file in plots/."""
    assert 'src="http' not in html and "src='http" not in html and "<link" not in html and "<script" not in html
    sources = re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]*)", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(list(plots.glob("*.png")))


def check_plots(plots: Path, names: set[str]) -> None:
    assert {p.stem for p in plots.glob("*.png")} == names
    for path in plots.glob("*.png"):
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0  # (not blank)


def test_search_writes_a_self_contained_report_its_plots_and_a_model_card(run_dir):
    html = (run_dir / REPORT_HTML).read_text()
    check_self_contained(html, run_dir / PLOTS_DIR)
    check_plots(run_dir / PLOTS_DIR, PLOTS)
    for heading in ("Summary", "Data", "Chosen trial", "Final model", "Best trial of each stage", "Pareto front",
                    "Trade-off"):  # fmt: skip
        assert f"<h2>{heading}" in html
    assert "Not trained yet" in html and "Small validation set" not in html  # (digits: 288 validation rows)
    best = json.loads((run_dir / "best.json").read_text())
    assert f"#{best['trial_id']}" in html
    card = (run_dir / MODEL_CARD).read_text()
    assert "digits" in card and ("hidden layer" in card or "a linear model" in card)
    assert f'deepncheap.load_run("{run_dir}")' in card and "dnc predict" in card and "Not tested yet" in card


def test_the_model_card_rebuilds_the_search_command(run_dir):
    card = (run_dir / MODEL_CARD).read_text()
    line = next(line for line in card.splitlines() if line.startswith("dnc search "))
    args = build_parser().parse_args(shlex.split(line)[1:])
    with RunStore.open(run_dir) as store:
        settings = store.settings
    assert (args.data, args.network, args.method, args.max_trials, args.epochs, args.penalty, args.seed) == (
        "digits", "mlp", "random", 5, 2, "params", 1)  # fmt: skip
    assert args.wc == settings["wc"] and args.task == settings["task"] and args.space is None


def test_dnc_report_reads_the_final_model_and_survives_trials_without_an_objective(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / PLOTS_DIR / "stale.png").write_bytes(b"")
    best = json.loads((run / "best.json").read_text())
    other = next(t for t in stored_trials(run) if t.trial_id != best["trial_id"])  # (`dnc train --trial ID`)
    final = {"trial_id": other.trial_id, "config": other.config, "epochs": 4, "test_accuracy": 0.9722,
             "test_loss": 0.1234, "train_loss_curve": [1.0, 0.5, 0.3, 0.2], "epoch_times_s": [0.1] * 4,
             "wall_s": 0.5, "n_train": 1437, "n_test": 360}  # fmt: skip
    (run / "final").mkdir()
    (run / "final" / "final.json").write_text(json.dumps(final))
    with RunStore.open(run, readonly=False) as store:
        config = best["config"]
        store.start_trial(stage="joint", stage_index=90, config=config)  # left running
        failed = store.start_trial(stage="joint", stage_index=91, config=config)
        store.finish_trial(failed, status="failed", error="CUDA out of memory", wall_s=0.2)
        pruned = store.start_trial(stage="joint", stage_index=92, config=config)
        store.finish_trial(pruned, status="pruned", metrics={"objective": -0.1, "n_params": 10}, wall_s=0.1)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert str(run / REPORT_HTML) in out and str(run / MODEL_CARD) in out
    html = (run / REPORT_HTML).read_text()
    check_self_contained(html, run / PLOTS_DIR)
    check_plots(run / PLOTS_DIR, PLOTS)  # (the stale plot is gone)
    assert "Final model (test metrics)" in html and "test_accuracy" in html and "0.9722" in html
    card = (run / MODEL_CARD).read_text()
    assert "test_accuracy | 0.9722" in card and "final=True" in card and "Not tested yet" not in card
    assert f"trial #{other.trial_id}'s config trained again for 4 epochs on 1,437" in card and "--final" in card
    assert f"{other.n_params:,} parameters" in card
    assert "1 failed" in card and "1 running" in card and "1 pruned" in card


def test_a_regression_report_shows_losses_and_warns_of_a_small_validation_set(regression_dir):
    html = (regression_dir / REPORT_HTML).read_text()
    check_self_contained(html, regression_dir / PLOTS_DIR)
    check_plots(regression_dir / PLOTS_DIR, PLOTS)
    assert "validation MSE" in html and "Small validation set" in html
    assert "validation MSE" in (regression_dir / MODEL_CARD).read_text()


def test_dnc_report_refuses_what_is_not_a_run_on_one_line(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with RunStore.open(run_dir) as store:
        settings = store.settings
    RunStore.create(empty, settings).close()  # a run with no trial yet
    missing = tmp_path / "missing"
    for target, message in ((missing, str(missing)), (tmp_path, "is not a run"), (empty, "no complete trial yet")):
        assert main(["report", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dnc: error: ") and message in err and err.count("\n") == 1
    assert not (empty / REPORT_HTML).exists()


def test_no_report_writes_none_and_overwrite_removes_an_earlier_one(tmp_path):
    out = tmp_path / "run"
    argv = ["search", "--data", "iris", "--network", "mlp", "--method", "random", "--max-trials", "2", "--epochs", "1"]
    argv += ["--penalty", "params", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert (out / REPORT_HTML).is_file() and (out / MODEL_CARD).is_file() and list((out / PLOTS_DIR).glob("*.png"))
    assert main([*argv, "--overwrite", "--no-report"]) == 0
    assert (out / "best.json").is_file()
    assert not (out / REPORT_HTML).exists() and not (out / MODEL_CARD).exists()
    assert not list((out / PLOTS_DIR).glob("*.png"))


def test_resume_takes_no_report_too():
    assert build_parser().parse_args(["resume", "runs/x", "--no-report"]).no_report
    assert not build_parser().parse_args(["resume", "runs/x"]).no_report


def test_a_report_that_fails_to_render_loses_no_result(tmp_path, monkeypatch, capsys):
    def broken(run_dir, **_):
        raise RuntimeError("no fonts")

    monkeypatch.setattr("deepncheap.report.write_report", broken)
    options = TINY | {"verbose": True}
    result = deepncheap.search(data="iris", max_trials=2, out=tmp_path / "run", **options)
    assert result.finished and (tmp_path / "run" / "best.json").is_file()
    assert len(stored_trials(tmp_path / "run")) == 2
    assert "the report was not written (RuntimeError: no fonts)" in capsys.readouterr().err


def test_the_architecture_in_words():
    config = {"network": "cnn", "num_conv_layers": 5, "channels": [16, 32, 32, 96, 96], "downsampling": "maxpool",
              "bn_frac": 0.8, "do_frac": 0.5, "input_drop_prob": 0.1, "drop_prob": 0.3, "shortcut_every": 2,
              "lr": 3.2e-3, "weight_decay": 0.0, "batch_size": 64}  # fmt: skip
    words = describe_architecture(config, {"input_shape": [1, 8, 8], "num_outputs": 10})
    assert words.startswith("5 conv layers (3×3, ReLU) with 16-32-32-96-96 channels; max-pool downsampling before")
    assert "batch norm on layers 2–5" in words and "dropout 0.3 before layers 4–5" in words
    assert "residual shortcuts around layers 2–3, 4–5" in words and "linear layer to 10 outputs" in words
    mlp = {"network": "mlp", "num_hidden_layers": 0, "hidden_nodes": [], "drop_prob": 0.2}
    assert "a linear model" in describe_architecture(mlp, {"input_shape": [4], "num_outputs": 3})


def test_searched_features_summarise_lists_and_drop_repeats(run_dir):
    features = {f.key: f for f in searched_features(stored_trials(run_dir))}
    assert "hidden_nodes_total" in features and "network" not in features
    assert "hidden_nodes_depth" not in features or "num_hidden_layers" not in features  # (the same values)
    assert features["lr"].scale == "log"


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless Chromium is not installed ({CHROMIUM})")
def test_the_report_renders_in_headless_chromium(run_dir, tmp_path):
    png = screenshot(run_dir, tmp_path / "shot.png")
    image = imread(png)
    assert image.shape[1] == 1280 and image.shape[0] > 3000 and image.std() > 0
