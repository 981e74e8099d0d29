import json

import numpy as np
import pytest
from helpers import stored_trials

import deepncheap
from deepncheap.errors import SpaceError
from deepncheap.space import (
    CNN_KEYS,
    MLP_KEYS,
    SearchSpace,
    default_shortcut_every,
    read_space_file,
    unit_points,
)


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_cnn_samples_within_bounds_and_channel_rule(method):
    space = SearchSpace.create("cnn")
    configs = space.sample(256, method=method, seed=3)
    for config in configs:
        assert tuple(config) == CNN_KEYS
        channels = config["channels"]
        assert len(channels) == config["num_conv_layers"]
        assert 4 <= config["num_conv_layers"] <= 16
        assert 16 <= channels[0] <= 64
        for prev, cur in zip(channels, channels[1:], strict=False):
            assert prev <= cur <= min(2 * prev, 512)
        assert config["downsampling"] in ("maxpool", "stride")
        assert config["bn_frac"] in space.bn_fracs and config["do_frac"] in space.do_fracs
        assert config["input_drop_prob"] in (0.1, 0.2) and config["drop_prob"] in (0.15, 0.3, 0.45)
        assert config["shortcut_every"] in (0, 2, 4)
        assert 1e-5 <= config["lr"] <= 1e-1
        assert config["weight_decay"] == 0 or 1e-5 <= config["weight_decay"] <= 1e-3
        assert 32 <= config["batch_size"] <= 512
    depths = {c["num_conv_layers"] for c in configs}
    assert depths == set(range(4, 17)), "every depth should be reachable"
    assert any(c["weight_decay"] == 0 for c in configs) and any(c["weight_decay"] > 0 for c in configs)
    assert max(c["channels"][-1] for c in configs) == 512


def test_mlp_samples_within_bounds():
    configs = SearchSpace.create("mlp").sample(200, method="sobol", seed=0)
    for config in configs:
        assert tuple(config) == MLP_KEYS
        assert len(config["hidden_nodes"]) == config["num_hidden_layers"] <= 2
        assert all(20 <= n <= 400 for n in config["hidden_nodes"])
        assert config["drop_prob"] in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert {c["num_hidden_layers"] for c in configs} == {0, 1, 2}


def test_configs_round_trip_through_json():
    for network in ("cnn", "mlp"):
        for config in SearchSpace.create(network).sample(20, method="random", seed=1):
            assert json.loads(json.dumps(config)) == config


def test_sampling_is_deterministic_in_seed():
    space = SearchSpace.create("cnn")
    assert space.sample(10, method="sobol", seed=5) == space.sample(10, method="sobol", seed=5)
    assert space.sample(10, method="sobol", seed=5) != space.sample(10, method="sobol", seed=6)
    assert space.sample(10, method="random", seed=5) != space.sample(10, method="sobol", seed=5)


def test_sobol_points_cover_the_cube_more_evenly_than_random():
    """Scrambled Sobol has lower discrepancy than uniform random points."""
    from scipy.stats import qmc

    sobol = unit_points(256, 6, method="sobol", seed=0)
    uniform = unit_points(256, 6, method="random", seed=0)
    assert sobol.shape == (256, 6) and np.all((sobol >= 0) & (sobol < 1))
    assert qmc.discrepancy(sobol) < qmc.discrepancy(uniform)


def test_shortcut_rule():
    assert [default_shortcut_every(d) for d in (4, 8, 9, 14, 15, 16)] == [0, 0, 4, 4, 2, 2]


def test_overrides_fix_and_narrow_values():
    space = SearchSpace.create(
        "cnn",
        {
            "num_conv_layers": 5,
            "lr": [1e-3, 1e-2],
            "shortcut_every": ["none", 2],
            "downsampling": ["stride"],
            "channels_upper": 128,
        },
    )
    for config in space.sample(50, method="random", seed=0):
        assert config["num_conv_layers"] == 5
        assert 1e-3 <= config["lr"] <= 1e-2
        assert config["shortcut_every"] in (0, 2)
        assert config["downsampling"] == "stride"
        assert max(config["channels"]) <= 128


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_layers": [1, 2]}, "unknown hyperparameter 'num_layers'"),
        ({"lr": [1e-2, 1e-4]}, "inverted"),
        ({"num_conv_layers": [2.5, 4]}, "integers"),
        ({"bn_fracs": []}, "empty"),
        ({"downsampling": ["avgpool"]}, "downsampling"),
        ({"lr": "fast"}, "numbers"),
        ({"channels_first": [16, 600]}, "channels_upper"),
        ({"lr": [0, 1e-2]}, "positive"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(SpaceError, match=match) as info:
        SearchSpace.create("cnn", overrides)
    assert "\n" not in str(info.value)


def test_unknown_network():
    with pytest.raises(SpaceError, match="unknown network"):
        SearchSpace.create("rnn")


def test_space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("num_conv_layers: [4, 6]\nlr: [0.001, 0.01]\n")
    assert read_space_file(path) == {"num_conv_layers": [4, 6], "lr": [0.001, 0.01]}
    (tmp_path / "space.json").write_text('{"batch_size": [32, 64]}')
    assert read_space_file(tmp_path / "space.json") == {"batch_size": [32, 64]}
    (tmp_path / "bad.yaml").write_text("lr: [0.1, \n  - x")
    with pytest.raises(SpaceError, match="not valid YAML"):
        read_space_file(tmp_path / "bad.yaml")
    with pytest.raises(SpaceError, match="not found"):
        read_space_file(tmp_path / "missing.yaml")


def test_baseline_configs():
    space = SearchSpace.create("cnn")
    assert space.time_reference_config()["channels"] == [64, 128, 256, 512]
    largest = space.largest_config()
    assert largest["num_conv_layers"] == 16 and largest["channels"][:4] == [64, 128, 256, 512]
    assert largest["channels"][-1] == 512 and largest["shortcut_every"] == 2
    mlp = SearchSpace.create("mlp")
    assert mlp.largest_config()["hidden_nodes"] == [400, 400] == mlp.time_reference_config()["hidden_nodes"]


def test_demo_space_file_is_valid():
    from pathlib import Path

    overrides = read_space_file(Path(__file__).parent.parent / "examples" / "demo_space.yaml")
    space = SearchSpace.create("cnn", overrides)
    assert space.num_conv_layers == (4, 6) and space.channels_upper == 128
    assert all(max(c["channels"]) <= 128 for c in space.sample(20, method="sobol", seed=0))


def test_core_stage_trains_with_the_reference_defaults_or_the_architecture_stage_values():
    space = SearchSpace.create("mlp", {"batch_size": [16, 48]})
    (reference,) = space.sample(1, stage="core", seed=0)
    assert (reference["lr"], reference["batch_size"], reference["weight_decay"]) == (1e-3, 48, 0.0)  # 256, clipped
    (ours,) = space.sample(1, stage="core", seed=0, base=space.architecture_stage_training())
    assert (ours["lr"], ours["batch_size"], ours["weight_decay"]) == (1e-2, 48, 0.0)
    assert {k: v for k, v in ours.items() if k not in ("lr",)} == {k: v for k, v in reference.items() if k != "lr"}


def test_defaults_of_unsearched_choices_are_values_the_space_allows():
    overrides = {"do_fracs": [0, 0.25, 0.5], "bn_fracs": [0.75], "downsampling": ["stride"], "drop_probs": [0.4],
                 "input_drop_probs": [0.05], "shortcut_every": [2]}  # fmt: skip
    space = SearchSpace.create("cnn", {"num_conv_layers": [4, 5], **overrides})
    (core,) = space.sample(1, stage="core", seed=0)
    assert (core["do_frac"], core["bn_frac"], core["downsampling"]) == (0.5, 0.75, "stride")
    assert (core["drop_prob"], core["input_drop_prob"], core["shortcut_every"]) == (0.4, 0.05, 2)
    (mlp,) = SearchSpace.create("mlp", {"drop_probs_mlp": [0.5]}).sample(1, stage="core", seed=0)
    assert mlp["drop_prob"] == 0.5
    default = SearchSpace.create("cnn").largest_config()  # the reference's defaults where the space allows them
    assert (default["do_frac"], default["bn_frac"], default["drop_prob"]) == (1, 1, 0.3)
    assert default["downsampling"] == "maxpool"


def test_every_trained_config_lies_in_the_space(tmp_path):
    """A search whose space leaves out the reference's default dropout fraction (1: every layer) never trains
    a config with it, nor ends with one (the core stage used to train every config at do_frac 1)."""
    space = {"num_conv_layers": [4, 4], "channels_first": [8, 8], "channels_upper": 16, "do_fracs": [0, 0.25],
             "drop_probs": [0.15], "input_drop_probs": [0.1], "bn_fracs": [1], "downsampling": ["maxpool"]}  # fmt: skip
    result = deepncheap.search(
        data="digits", network="cnn", space=space, epochs=1, prior_points=2, bo_steps=0, penalty="params",
        prune="none", out=tmp_path / "run", verbose=False, report=False,
    )  # fmt: skip
    assert {t.config["do_frac"] for t in stored_trials(result.run_dir)} <= {0.0, 0.25}
    assert result.best_config["do_frac"] in (0.0, 0.25)


@pytest.mark.parametrize("name", ["bn_fracs", "do_fracs"])
def test_fractions_are_in_the_closed_unit_interval(name):
    assert getattr(SearchSpace.create("cnn", {name: [0, 0.5, 1]}), name) == (0.0, 0.5, 1.0)
    for bad in (1.5, 1.01, -0.1):
        with pytest.raises(SpaceError, match=r"\[0, 1\]"):
            SearchSpace.create("cnn", {name: [0.5, bad]})


@pytest.mark.parametrize("name", ["input_drop_probs", "drop_probs", "drop_probs_mlp"])
def test_probabilities_are_in_the_half_open_unit_interval(name):
    assert getattr(SearchSpace.create("cnn", {name: [0, 0.99]}), name) == (0.0, 0.99)
    for bad in (1, 1.5, -0.1):
        with pytest.raises(SpaceError, match=r"\[0, 1\)"):
            SearchSpace.create("cnn", {name: [0.5, bad]})


def test_batch_size_bounded_by_the_training_set():
    space = SearchSpace.create("mlp")
    bounded, note = space.bounded_by_training_set(120)
    assert bounded.batch_size == (32, 120)
    assert note == "batch_size range [32, 512] bounded to [32, 120]: the training set has 120 samples"
    assert bounded == SearchSpace.create("mlp", {"batch_size": [32, 120]})  # nothing else changed
    assert all(c["batch_size"] <= 120 for c in bounded.sample(50, method="random", seed=0))
    assert bounded.default_config(depth=1, widths=[20])["batch_size"] == 120  # the default 256, clipped
    assert SearchSpace.from_dict(bounded.to_dict()) == bounded


def test_batch_size_bounded_below_the_lower_bound():
    bounded, note = SearchSpace.create("cnn", {"batch_size": [64, 256]}).bounded_by_training_set(10)
    assert bounded.batch_size == (10, 10)
    assert note == "batch_size range [64, 256] bounded to [10, 10]: the training set has 10 samples"
    assert SearchSpace.create("cnn").bounded_by_training_set(1)[1] == (
        "batch_size range [32, 512] bounded to [1, 1]: the training set has 1 sample"
    )


def test_batch_size_not_bounded_when_the_training_set_is_large_enough():
    space = SearchSpace.create("cnn")
    assert space.bounded_by_training_set(512) == (space, None)
    assert space.bounded_by_training_set(50_000) == (space, None)
    with pytest.raises(ValueError, match="at least 1"):
        space.bounded_by_training_set(0)


def test_space_files_read_exponent_numbers_as_numbers(tmp_path):
    from deepncheap.space import read_space_file

    for name, text in (
        ("space.yaml", "lr: [1e-4, 1e-2]\nweight_decay: 1E-5\n"),
        ("space.json", '{"lr": [1e-4, 1e-2]}'),
    ):
        (tmp_path / name).write_text(text)
        overrides = read_space_file(tmp_path / name)
        assert overrides["lr"] == [1e-4, 1e-2]
        assert SearchSpace.create("mlp", overrides).lr == (1e-4, 1e-2)
    assert read_space_file(tmp_path / "space.yaml")["weight_decay"] == 1e-5
