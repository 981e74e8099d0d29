"""The time measure of `--penalty time` (defect 17): the fastest timed epoch and its noise, the cost model
that ranks epochs too short to time, and a search on small data that repeats exactly and says so."""

import pytest

import deepncheap
from deepncheap import timing
from deepncheap.cli import main
from deepncheap.cost import count_flops, count_layers, count_parameters
from deepncheap.data import load_dataset
from deepncheap.models import build_model
from deepncheap.store import RunStore


def test_epoch_time_is_the_fastest_timed_epoch_and_noise_its_spread():
    assert timing.epoch_time([9.0, 2.0, 3.0, 2.5]) == (2.0, pytest.approx(0.5))  # the warm-up epoch left out
    assert timing.epoch_time([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError):
        timing.epoch_time([])


def test_epochs_shorter_than_the_threshold_are_ranked_by_the_cost_model():
    assert timing.time_measure(0.003) == timing.COST_MODEL
    assert timing.time_measure(0.3) == timing.MEASURED


def test_cost_model_grows_with_steps_layers_parameters_and_flops():
    base = dict(layers=6, n_params=10_000, flops=20_000, batch_size=64, n_train=1000)
    cost = timing.modelled_epoch_s(timing.cost_features(**base))
    for change in (dict(batch_size=16), dict(layers=12), dict(n_params=1_000_000), dict(flops=10_000_000)):
        assert timing.modelled_epoch_s(timing.cost_features(**(base | change))) > cost, change
    # a batch larger than the training set is one step, like a batch of the whole set
    whole_set = timing.cost_features(**(base | dict(batch_size=1000)))
    assert timing.cost_features(**(base | dict(batch_size=5000))) == whole_set


IRIS = dict(
    data="iris",
    network="mlp",
    penalty="time",
    wc=1.0,
    method="dnc",
    prior_points=3,
    bo_steps=2,
    epochs=3,
    seed=5,
    threads=1,
    verbose=False,
    report=False,
)


def test_time_penalty_on_small_data_repeats_exactly_and_says_so(tmp_path, capsys):
    """Before: iris epochs (a few ms) were timed, and the same seed gave other objectives and picks."""
    first = deepncheap.search(out=tmp_path / "a", **IRIS)
    second = deepncheap.search(out=tmp_path / "b", **IRIS)
    assert first.baselines["time_measure"] == timing.COST_MODEL
    runs = []
    for result in (first, second):
        with RunStore.open(result.run_dir) as store:
            runs.append([(t.config, t.f_c, t.objective) for t in store.trials()])
            assert all(t.time_noise is not None and t.time_noise >= 0 for t in store.trials(status="complete"))
    assert runs[0] == runs[1]  # f_c and objectives identical, so the same proposals and the same pick
    assert first.best_config == second.best_config

    # f_c is the config's modelled epoch over the reference config's
    best = first.metrics
    dataset = load_dataset("iris", network="mlp")
    model = build_model(first.best_config, dataset.input_shape, dataset.num_outputs)
    features = timing.cost_features(
        layers=count_layers(model),
        n_params=count_parameters(model),
        flops=count_flops(model, dataset.input_shape),
        batch_size=first.best_config["batch_size"],
        n_train=len(dataset.x_train),
    )
    assert best["f_c"] == pytest.approx(timing.modelled_epoch_s(features) / first.baselines["modelled_epoch_s"])

    assert main(["show", str(first.run_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # (lines wrapped to the terminal's width)
    assert "time measure: cost model" in out and "too short to time" in out and "noise" in out


def test_measured_time_ranks_when_the_reference_epoch_is_long_enough(tmp_path):
    """The digits CNN's reference epoch (hundreds of ms) is timed; f_c is the fastest epoch's ratio."""
    result = deepncheap.search(
        data="digits",
        network="cnn",
        space={"num_conv_layers": [4, 5], "channels_first": [16, 32], "channels_upper": 64, "batch_size": [32, 64]},
        penalty="time",
        method="random",
        max_trials=1,
        epochs=2,
        threads=1,
        out=tmp_path / "cnn",
        verbose=False,
        report=False,
    )
    baselines = result.baselines
    if baselines["time_per_epoch_s"] < timing.TIMEABLE_EPOCH_S:
        pytest.skip(f"this machine trains the reference CNN in {baselines['time_per_epoch_s']:.3f} s per epoch")
    assert baselines["time_measure"] == timing.MEASURED
    assert result.metrics["f_c"] == pytest.approx(result.metrics["time_per_epoch_s"] / baselines["time_per_epoch_s"])
