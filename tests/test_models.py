import pytest
import torch

from deepncheap.models import build_model, cnn_layout
from deepncheap.space import SearchSpace


def cnn_config(channels, **overrides):
    config = SearchSpace.create("cnn").default_config(depth=len(channels), widths=list(channels))
    config.update(overrides)
    return config


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("depth", [4, 16])
@pytest.mark.parametrize("downsampling", ["maxpool", "stride"])
def test_cnn_builds_and_runs_at_smallest_and_largest_depth(shape, depth, downsampling):
    space = SearchSpace.create("cnn")
    widths = [64 * 2**i if 64 * 2**i < 512 else 512 for i in range(depth)] if depth == 16 else [16] * depth
    config = space.default_config(depth=depth, widths=widths)
    config["downsampling"] = downsampling
    model = build_model(config, shape, 10)
    model.train()
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)
    out.sum().backward()
    model.eval()
    assert model(torch.randn(1, *shape)).shape == (1, 10)


def test_downsampling_never_shrinks_below_one_pixel():
    layout = cnn_layout(cnn_config([64, 128, 256, 512]), (1, 8, 8))
    assert layout.downsample == (False, True, True, True)  # 8 -> 4 -> 2 -> 1
    layout = cnn_layout(cnn_config([64, 128, 256, 512]), (1, 4, 4))
    assert layout.downsample == (False, True, True, False)  # 4 -> 2 -> 1, third pool dropped
    layout = cnn_layout(cnn_config([16, 32, 64, 64]), (1, 8, 8))
    assert layout.downsample == (False,) * 4  # no layer exceeds 64 channels


def test_bn_dropout_and_shortcut_layout():
    config = cnn_config([16] * 8, bn_frac=0.25, do_frac=0.5, input_drop_prob=0.2, drop_prob=0.45, shortcut_every=2)
    layout = cnn_layout(config, (1, 8, 8))
    assert layout.batch_norm == (False,) * 6 + (True,) * 2  # placed as late as possible
    assert layout.dropout == (0.0,) * 4 + (0.45,) * 4
    assert layout.shortcut_groups == ((1, 2), (3, 4), (5, 6))
    full = cnn_layout(cnn_config([16] * 4, do_frac=1.0, input_drop_prob=0.2, drop_prob=0.3), (1, 8, 8))
    assert full.dropout == (0.2, 0.3, 0.3, 0.3)  # the first dropout acts on the input image
    assert cnn_layout(cnn_config([16] * 9, shortcut_every=4), (1, 8, 8)).shortcut_groups == ((1, 4), (5, 8))


def test_residual_with_downsampling_inside_group_matches_shapes():
    for downsampling in ("maxpool", "stride"):
        config = cnn_config([32, 64, 128, 128, 256, 256, 512, 512, 512], shortcut_every=4, downsampling=downsampling)
        for size in (7, 8, 9, 32):
            assert build_model(config, (2, size, size), 3)(torch.randn(2, 2, size, size)).shape == (2, 3)


def test_mlp_builds():
    config = {
        "network": "mlp",
        "num_hidden_layers": 2,
        "hidden_nodes": [30, 20],
        "drop_prob": 0.1,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 32,
    }
    model = build_model(config, (64,), 10)
    assert model(torch.randn(5, 64)).shape == (5, 10)
    linear = dict(config, num_hidden_layers=0, hidden_nodes=[])
    assert build_model(linear, (1, 8, 8), 1)(torch.randn(5, 1, 8, 8)).shape == (5, 1)


@pytest.mark.parametrize(("shape", "stride"), [((1, 1, 40), (1, 2)), ((2, 40, 1), (2, 1))])
@pytest.mark.parametrize("downsampling", ["maxpool", "stride"])
@pytest.mark.parametrize("shortcut_every", [0, 2, 4])
def test_a_one_pixel_high_signal_is_downsampled_along_its_length(shape, stride, downsampling, shortcut_every):
    config = cnn_config([64, 128, 256, 512, 512], downsampling=downsampling, shortcut_every=shortcut_every)
    layout = cnn_layout(config, shape)
    assert layout.downsample == (False, True, True, True, False)
    assert layout.strides == ((1, 1), stride, stride, stride, (1, 1))
    features = build_model(config, shape, 3).features(torch.randn(2, *shape))
    assert features.shape == (2, 512, *(5 if n == 40 else 1 for n in shape[1:]))  # 40 -> 20 -> 10 -> 5


def test_a_one_by_one_map_is_not_downsampled():
    assert cnn_layout(cnn_config([64, 128, 256, 512]), (3, 1, 1)).downsample == (False,) * 4


def test_a_cnn_on_a_one_dimensional_signal_trains():
    from deepncheap.data import load_dataset
    from deepncheap.train import DeviceData, train

    rng = torch.Generator().manual_seed(0)
    x = torch.randn(120, 40, generator=rng).numpy()
    y = (x[:, :20].sum(axis=1) > 0).astype(int)
    data = load_dataset((x, y), network="cnn", image_shape=(1, 1, 40))
    assert data.input_shape == (1, 1, 40)
    config = cnn_config([16, 32, 128, 256], shortcut_every=2, batch_size=32)
    model = build_model(config, data.input_shape, 2)
    result = train(model, DeviceData.from_dataset(data, torch.device("cpu")), lr=1e-2, weight_decay=0.0,
                   batch_size=32, epochs=2, seed=0)  # fmt: skip
    assert len(result.val_curve) == 2 and result.val_accuracy is not None


@pytest.mark.parametrize(
    ("network", "shape", "overrides"),
    [
        ("cnn", (1, 8, 8), {}),
        ("cnn", (3, 32, 32), {"shortcut_every": [0, 3]}),
        ("cnn", (3, 7, 9), {"num_conv_layers": [1, 6], "shortcut_every": [1, 2], "downsampling": "stride"}),
        ("cnn", (1, 1, 60), {"num_conv_layers": [1, 6], "shortcut_every": [1, 2]}),
        ("mlp", (64,), {}),
        ("mlp", (3, 8, 8), {"num_hidden_layers": [0, 3]}),
    ],
)
def test_the_parameter_and_flop_counts_from_the_config_are_those_of_the_built_network(network, shape, overrides):
    """The search bounds and orders its candidates by the counts from the config alone: they must be exact
    (torch's FLOP count, the built network's parameters)."""
    from deepncheap.cost import count_flops, count_parameters
    from deepncheap.models import flop_count, parameter_count

    space = SearchSpace.create(network, overrides)
    for outputs in (1, 10):
        for config in space.sample(60, method="random", seed=outputs):
            with torch.device("meta"):
                model = build_model(config, shape, outputs)
                built, counted = count_parameters(model), count_flops(model, shape)
            assert parameter_count(config, shape, outputs) == built, config
            assert flop_count(config, shape, outputs) == counted, config
