"""Config -> torch.nn.Module for the two network families (CNN, MLP).

The CNN's derived layout (where to downsample, which layers get batch norm and dropout, which layers a
shortcut spans) is computed here from the config and the input shape by `cnn_layout`, a pure function.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# Downsample before the first layer whose channels exceed each threshold (at most three, as the reference).
DOWNSAMPLE_THRESHOLDS = (64, 128, 256)


@dataclass(frozen=True)
class CNNLayout:
    """Per-layer architecture derived from a CNN config and the input shape."""

    channels: tuple[int, ...]
    downsample: tuple[bool, ...]  # downsample at the input of this layer
    strides: tuple[tuple[int, int], ...]  # its factor along (height, width): (1, 1) where it does not
    batch_norm: tuple[bool, ...]
    dropout: tuple[float, ...]  # dropout probability at the input of this layer (layer 0: the image)
    shortcut_groups: tuple[tuple[int, int], ...]  # (first, last) layer indices a residual connection spans


def cnn_layout(config: dict[str, Any], input_shape: Sequence[int]) -> CNNLayout:
    """Derive the layout. Downsampling halves the axes longer than 1 pixel (a 1xW signal along W only) and
    is dropped once the map is 1x1, so 8x8 images work at any depth."""
    channels = tuple(int(c) for c in config["channels"])
    depth = len(channels)
    if depth != config.get("num_conv_layers", depth) or depth < 1:
        raise ValueError(f"num_conv_layers={config.get('num_conv_layers')} but {depth} channels given")
    candidates = sorted(
        {
            next(i for i, c in enumerate(channels) if c > t)
            for t in DOWNSAMPLE_THRESHOLDS
            if any(c > t for c in channels)
        }
    )
    height, width = int(input_shape[-2]), int(input_shape[-1])
    strides = [(1, 1)] * depth
    for i in candidates:
        strides[i] = (2 if height > 1 else 1, 2 if width > 1 else 1)
        height, width = math.ceil(height / strides[i][0]), math.ceil(width / strides[i][1])
    return CNNLayout(
        channels=channels,
        downsample=tuple(stride != (1, 1) for stride in strides),
        strides=tuple(strides),
        batch_norm=_last_fraction(depth, float(config["bn_frac"])),
        dropout=tuple(
            (float(config["input_drop_prob"]) if i == 0 else float(config["drop_prob"])) if on else 0.0
            for i, on in enumerate(_last_fraction(depth, float(config["do_frac"])))
        ),
        shortcut_groups=_shortcut_groups(depth, int(config["shortcut_every"])),
    )


def _last_fraction(n: int, fraction: float) -> tuple[bool, ...]:
    """`round(fraction * n)` of `n` layers switched on, placed as late as possible."""
    count = int(round(fraction * n))
    return tuple(i >= n - count for i in range(n))


def _shortcut_groups(depth: int, every: int) -> tuple[tuple[int, int], ...]:
    """Residual connections over consecutive groups of `every` layers, starting at the second layer."""
    if every <= 0:
        return ()
    return tuple((start, start + every - 1) for start in range(1, depth - every + 1, every))


class ConvBlock(nn.Sequential):
    """[dropout] -> [max-pool] -> 3x3 conv (strided when downsampling by stride) -> [BN] -> ReLU; `stride` is
    the downsampling factor along (height, width), e.g. (1, 2) for a 1xW signal."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        dropout: float,
        downsample: str | None,
        batch_norm: bool,
        stride: tuple[int, int] = (2, 2),
    ):
        layers: list[nn.Module] = []
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if downsample == "maxpool":
            layers.append(nn.MaxPool2d(stride, ceil_mode=True))
        conv_stride = stride if downsample == "stride" else (1, 1)
        layers.append(nn.Conv2d(c_in, c_out, 3, stride=conv_stride, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Residual(nn.Module):
    """`body(x) + shortcut(x)`; the shortcut is a 1x1 conv with the body's total `stride` (height, width) when
    the shape changes, else identity."""

    def __init__(self, body: nn.Sequential, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__()
        self.body = body
        self.shortcut: nn.Module = (
            nn.Identity()
            if c_in == c_out and stride == (1, 1)
            else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ConvNet(nn.Module):
    """Conv blocks (some wrapped in residual groups), global average pooling, linear head."""

    def __init__(self, config: dict[str, Any], input_shape: Sequence[int], num_outputs: int):
        super().__init__()
        layout = cnn_layout(config, input_shape)
        mode = str(config["downsampling"])
        c_in = [int(input_shape[0]), *layout.channels[:-1]]
        blocks = [
            ConvBlock(
                c_in[i],
                c,
                dropout=layout.dropout[i],
                downsample=mode if layout.downsample[i] else None,
                batch_norm=layout.batch_norm[i],
                stride=layout.strides[i],
            )
            for i, c in enumerate(layout.channels)
        ]
        stages: list[nn.Module] = []
        i = 0
        groups = dict(layout.shortcut_groups)
        while i < len(blocks):
            if i in groups:
                last = groups[i]
                body = nn.Sequential(*blocks[i : last + 1])
                group = layout.strides[i : last + 1]
                stride = (math.prod(s[0] for s in group), math.prod(s[1] for s in group))
                stages.append(Residual(body, c_in[i], layout.channels[last], stride))
                i = last + 1
            else:
                stages.append(blocks[i])
                i += 1
        self.features = nn.Sequential(*stages)
        self.head = nn.Linear(layout.channels[-1], num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def build_mlp(config: dict[str, Any], input_shape: Sequence[int], num_outputs: int) -> nn.Sequential:
    """Linear -> ReLU -> dropout per hidden layer, then the linear output layer."""
    widths = [int(w) for w in config["hidden_nodes"]]
    if len(widths) != config.get("num_hidden_layers", len(widths)):
        raise ValueError(f"num_hidden_layers={config.get('num_hidden_layers')} but {len(widths)} widths given")
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(int(d) for d in input_shape)
    for width in widths:
        layers += [nn.Linear(n_in, width), nn.ReLU(inplace=True)]
        if config["drop_prob"] > 0:
            layers.append(nn.Dropout(float(config["drop_prob"])))
        n_in = width
    layers.append(nn.Linear(n_in, num_outputs))
    return nn.Sequential(*layers)


def parameter_count(config: dict[str, Any], input_shape: Sequence[int], num_outputs: int) -> int:
    """The trainable parameters of `build_model(config, input_shape, num_outputs)`, counted from the config
    alone (no module is built: the search bounds a thousand candidates a step by it)."""
    if config["network"] == "cnn":
        layout = cnn_layout(config, input_shape)
        c_in = [int(input_shape[0]), *layout.channels[:-1]]
        total = sum(
            c_in[i] * c * 9 + (2 * c if layout.batch_norm[i] else c)  # 3x3 conv; BN's scale and shift, or a bias
            for i, c in enumerate(layout.channels)
        )
        for first, last in layout.shortcut_groups:  # a 1x1 conv shortcut where the group changes the shape
            group = layout.strides[first : last + 1]
            if c_in[first] != layout.channels[last] or any(s != (1, 1) for s in group):
                total += c_in[first] * layout.channels[last]
        return total + layout.channels[-1] * num_outputs + num_outputs
    widths = [math.prod(int(d) for d in input_shape), *(int(w) for w in config["hidden_nodes"]), num_outputs]
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(widths))


def flop_count(config: dict[str, Any], input_shape: Sequence[int], num_outputs: int) -> int:
    """The forward FLOPs per sample of `build_model(config, input_shape, num_outputs)` as `cost.count_flops`
    counts them (2 per multiply-add of the convolutions and linear layers; biases, normalization, pooling and
    activations free), from the config alone."""
    if config["network"] != "cnn":
        widths = [math.prod(int(d) for d in input_shape), *(int(w) for w in config["hidden_nodes"]), num_outputs]
        return sum(2 * n_in * n_out for n_in, n_out in itertools.pairwise(widths))
    layout = cnn_layout(config, input_shape)
    c_in = [int(input_shape[0]), *layout.channels[:-1]]
    height, width = int(input_shape[-2]), int(input_shape[-1])
    maps = []  # each layer's output map (height, width): a downsampling layer halves it, rounding up
    for stride_h, stride_w in layout.strides:
        height, width = math.ceil(height / stride_h), math.ceil(width / stride_w)
        maps.append((height, width))
    total = sum(2 * h * w * c_in[i] * c * 9 for i, (c, (h, w)) in enumerate(zip(layout.channels, maps, strict=True)))
    for first, last in layout.shortcut_groups:  # the 1x1 conv shortcuts (where the group changes the shape)
        group = layout.strides[first : last + 1]
        if c_in[first] != layout.channels[last] or any(s != (1, 1) for s in group):
            h, w = maps[last]
            total += 2 * h * w * c_in[first] * layout.channels[last]
    return total + 2 * layout.channels[-1] * num_outputs


def architecture_key(config: dict[str, Any], input_shape: Sequence[int]) -> tuple[Any, ...]:
    """What decides the network a config trains and how: configs with equal keys train the same model
    (e.g. dropout probabilities of a network with no dropout layer), so a grid trains one of them."""
    training = (float(config["lr"]), float(config["weight_decay"]), int(config["batch_size"]))
    return (*network_key(config, input_shape), training)


def network_key(config: dict[str, Any], input_shape: Sequence[int]) -> tuple[Any, ...]:
    """What decides the network a config builds, whatever it trains with (`architecture_key` without the
    training hyperparameters)."""
    if config["network"] == "cnn":
        layout = cnn_layout(config, input_shape)
        mode = config["downsampling"] if any(layout.downsample) else None
        return ("cnn", layout, mode)
    nodes = tuple(int(n) for n in config["hidden_nodes"])
    return ("mlp", nodes, float(config["drop_prob"]) if nodes else 0.0)


def build_model(config: dict[str, Any], input_shape: Sequence[int], num_outputs: int) -> nn.Module:
    """The network a config describes, for samples of `input_shape` and `num_outputs` outputs."""
    if config["network"] == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"a CNN needs (C, H, W) inputs, got shape {tuple(input_shape)}")
        return ConvNet(config, input_shape, num_outputs)
    if config["network"] == "mlp":
        return build_mlp(config, input_shape, num_outputs)
    raise ValueError(f"unknown network '{config['network']}'")
