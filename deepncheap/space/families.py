"""The network families (CNN, MLP): their config keys, defaults, layer decoding, reference configs and grids.

Everything here that differs between a CNN and an MLP: how the layer coordinates of a unit point become
depth and widths (the CNN channel rule: non-decreasing, at most doubling, capped), which advanced
hyperparameters follow, the config with every other hyperparameter at its default, the largest and the
time-reference networks, and the choices of each advanced-architecture grid sub-stage.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deepncheap.space.sampling import _choice_at, _int_at

if TYPE_CHECKING:
    from deepncheap.space.search_space import SearchSpace

NETWORKS = ("cnn", "mlp")
GRID_SUB_STAGES = {"cnn": ("downsampling", "batch_norm", "dropout", "shortcuts"), "mlp": ("dropout",)}
DOWNSAMPLING = ("maxpool", "stride")
CNN_KEYS = (
    "network",
    "num_conv_layers",
    "channels",
    "downsampling",
    "bn_frac",
    "do_frac",
    "input_drop_prob",
    "drop_prob",
    "shortcut_every",
    "lr",
    "weight_decay",
    "batch_size",
)
MLP_KEYS = ("network", "num_hidden_layers", "hidden_nodes", "drop_prob", "lr", "weight_decay", "batch_size")
# Number of unit coordinates of the advanced-architecture hyperparameters (CNN: downsampling, bn_frac,
# do_frac, input_drop_prob, drop_prob, shortcut_every; MLP: drop_prob).
ADVANCED_DIMENSION = {"cnn": 6, "mlp": 1}

# Values used while a hyperparameter is not searched (the reference implementation's defaults).
DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 256
# Training hyperparameters of the architecture stages in our default mode (the reference's 1e-3 / 256 suit
# 100 epochs on 50k samples; with few epochs on small sets they leave every network under-trained, e.g. 2
# Adam steps per epoch on breast_cancer, and the core stage then ranks architectures on noise).
ARCHITECTURE_STAGE_LR = 1e-2
ARCHITECTURE_STAGE_BATCH_SIZE = 64
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_CNN_INPUT_DROP = 0.1
DEFAULT_CNN_DROP = 0.3
DEFAULT_MLP_DROP = 0.2


def decode_layers(space: SearchSpace, u: Iterator[float]) -> tuple[int, list[int]]:
    """Depth and widths (CNN channels, MLP hidden nodes) from `1 + space.max_layers` unit values of `u`."""
    depth_bounds = space.num_conv_layers if space.network == "cnn" else space.num_hidden_layers
    depth = _int_at(next(u), *depth_bounds)
    units = [next(u) for _ in range(space.max_layers)][:depth]
    if space.network == "cnn":
        return depth, grow_channels(units, space.channels_first, space.channels_upper)
    return depth, [_int_at(w, *space.hidden_nodes) for w in units]


def decode_advanced(space: SearchSpace, u: Iterator[float]) -> dict[str, Any]:
    """The advanced-architecture hyperparameters from `ADVANCED_DIMENSION[space.network]` unit values of `u`."""
    if space.network != "cnn":
        return {"drop_prob": _choice_at(next(u), space.drop_probs_mlp)}
    config: dict[str, Any] = {}
    for key, choices in (
        ("downsampling", space.downsampling),
        ("bn_frac", space.bn_fracs),
        ("do_frac", space.do_fracs),
        ("input_drop_prob", space.input_drop_probs),
        ("drop_prob", space.drop_probs),
        ("shortcut_every", space.shortcut_every),
    ):
        config[key] = _choice_at(next(u), choices)
    return config


def layers_of(space: SearchSpace, config: dict[str, Any]) -> tuple[int, list[int]]:
    """A config's depth and widths (channels of a CNN, hidden nodes of an MLP): `default_config`'s inverse."""
    if space.network == "cnn":
        return int(config["num_conv_layers"]), [int(w) for w in config["channels"]]
    return int(config["num_hidden_layers"]), [int(w) for w in config["hidden_nodes"]]


def default_config(space: SearchSpace, *, depth: int, widths: list[int]) -> dict[str, Any]:
    """The config with the given layers and every other hyperparameter at its default."""
    training = {
        "lr": _clip(DEFAULT_LR, space.lr),
        "weight_decay": space.weight_decay[0]
        if space.weight_decay[0] == space.weight_decay[1]
        else DEFAULT_WEIGHT_DECAY,
        "batch_size": int(_clip(DEFAULT_BATCH_SIZE, space.batch_size)),
    }
    if space.network == "cnn":
        return {
            "network": "cnn",
            "num_conv_layers": depth,
            "channels": widths,
            "downsampling": _allowed("maxpool", space.downsampling),
            "bn_frac": _allowed(1.0, space.bn_fracs),
            "do_frac": _allowed(1.0, space.do_fracs),
            "input_drop_prob": _allowed(DEFAULT_CNN_INPUT_DROP, space.input_drop_probs),
            "drop_prob": _allowed(DEFAULT_CNN_DROP, space.drop_probs),
            "shortcut_every": _allowed(default_shortcut_every(depth), space.shortcut_every),
            **training,
        }
    return {
        "network": "mlp",
        "num_hidden_layers": depth,
        "hidden_nodes": widths,
        "drop_prob": _allowed(DEFAULT_MLP_DROP, space.drop_probs_mlp),
        **training,
    }


def architecture_stage_training(space: SearchSpace) -> dict[str, Any]:
    """lr and batch size the architecture stages train with in the default mode (clipped to the space)."""
    return {
        "lr": _clip(ARCHITECTURE_STAGE_LR, space.lr),
        "batch_size": int(_clip(ARCHITECTURE_STAGE_BATCH_SIZE, space.batch_size)),
    }


def largest_config(space: SearchSpace) -> dict[str, Any]:
    """The space's largest network (most layers, widest channels/nodes): the parameter baseline."""
    depth = space.max_layers
    if space.network == "cnn":
        return default_config(space, depth=depth, widths=doubling_channels(depth, space))
    return default_config(space, depth=depth, widths=[space.hidden_nodes[1]] * depth)


def smallest_configs(space: SearchSpace) -> list[dict[str, Any]]:
    """The space's smallest networks (fewest layers, narrowest channels/nodes), one per choice of the
    hyperparameters that change a CNN's size or FLOPs without changing its widths (downsampling, batch
    normalization, shortcuts): the least parameters, FLOPs and latency the space allows are among them."""
    if space.network != "cnn":
        depth = space.num_hidden_layers[0]
        return [default_config(space, depth=depth, widths=[space.hidden_nodes[0]] * depth)]
    depth = space.num_conv_layers[0]
    base = default_config(space, depth=depth, widths=[space.channels_first[0]] * depth)
    return [
        {**base, "downsampling": downsampling, "bn_frac": bn_frac, "shortcut_every": shortcut}
        for downsampling in space.downsampling
        for bn_frac in space.bn_fracs
        for shortcut in space.shortcut_every
    ]


def time_reference_config(space: SearchSpace) -> dict[str, Any]:
    """The config whose time per epoch is the time baseline.

    CNN: the fewest layers, with channels doubling from the first layer's upper bound (64-128-256-512 by
    default); MLP: the largest network.
    """
    if space.network == "cnn":
        depth = space.num_conv_layers[0]
        return default_config(space, depth=depth, widths=doubling_channels(depth, space))
    return largest_config(space)


def grid(space: SearchSpace, sub_stage: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs of an advanced-architecture sub-stage (`GRID_SUB_STAGES`): `base` with each value."""
    values: list[dict[str, Any]]
    if sub_stage == "dropout" and space.network == "cnn":
        values = [
            {"do_frac": f, "input_drop_prob": p_in, "drop_prob": p}
            for f, p_in, p in itertools.product(space.do_fracs, space.input_drop_probs, space.drop_probs)
        ]
    else:
        choices: tuple[Any, ...]
        key, choices = {
            "downsampling": ("downsampling", space.downsampling),
            "batch_norm": ("bn_frac", space.bn_fracs),
            "shortcuts": ("shortcut_every", space.shortcut_every),
            "dropout": ("drop_prob", space.drop_probs_mlp),
        }[sub_stage]
        values = [{key: choice} for choice in choices]
    return [{**base, **value} for value in values]


def doubling_channels(depth: int, space: SearchSpace) -> list[int]:
    """Channels doubling from the first layer's upper bound, capped at `channels_upper`."""
    return [min(space.channels_first[1] * 2**i, space.channels_upper) for i in range(depth)]


def grow_channels(units: list[float], first: tuple[int, int], upper: int) -> list[int]:
    """Channels per layer from unit values: first in `first`, each later one in [prev, min(2 prev, upper)]."""
    channels: list[int] = []
    for u in units:
        low, high = (first[0], first[1]) if not channels else (channels[-1], min(2 * channels[-1], upper))
        channels.append(_int_at(u, low, high))
    return channels


def default_shortcut_every(depth: int) -> int:
    """Reference rule: no shortcuts up to 8 layers, every 4 layers up to 14, every 2 beyond (0 = none)."""
    if depth <= 8:
        return 0
    return 4 if depth <= 14 else 2


def _allowed(default: Any, choices: tuple[Any, ...]) -> Any:
    """The default of a choice hyperparameter when the space allows it, else the allowed choice nearest to it
    (the first for text): a config never holds a value the user's space left out."""
    if default in choices:
        return default
    if isinstance(default, str):
        return choices[0]
    return min(choices, key=lambda choice: (abs(choice - default), choice))


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])
