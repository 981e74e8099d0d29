"""How the Bayesian optimization compares configs: each stage's kernel terms and the encoding they read.

CNN core: channels layer by layer; MLP core: total nodes and layer count; training: log10 lr, log10 weight
decay (0 mapped to the lower bound) and batch size. Terms and the GP itself live in `deepncheap.bo`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from deepncheap.bo import LayersTerm, ScalarTerm, Term

if TYPE_CHECKING:
    from deepncheap.space.search_space import SearchSpace


def kernel_terms(space: SearchSpace, stage: str, *, reference: bool = False) -> list[tuple[float, Term]]:
    """The (weight, term) pairs of a BO stage's kernel, equal weights over the stage's hyperparameters.

    CNN core: channels compared layer by layer, layer i normalized by its own bounds [first low,
    min(first high * 2^i, upper)] (`reference`: by the first layer's bounds for every layer, the
    reference's bug) with root min(i + 1, 4). MLP core: mean of total nodes (root 2) and layer count.
    Training: log10 lr, log10 weight decay (0 at the lower bound), batch size.
    """
    if stage == "training":
        return [
            (1 / 3, ScalarTerm(math.log10(space.lr[0]), math.log10(space.lr[1]))),
            (1 / 3, ScalarTerm(*(_log10_weight_decay(v, space.weight_decay) for v in space.weight_decay))),
            (1 / 3, ScalarTerm(*space.batch_size)),
        ]
    if space.network == "cnn":
        low, high = space.channels_first
        highs = [high if reference else min(high * 2**i, space.channels_upper) for i in range(space.max_layers)]
        roots = [min(i + 1, 4) for i in range(space.max_layers)]
        term = LayersTerm(tuple([float(low)] * space.max_layers), tuple(map(float, highs)), tuple(map(float, roots)))
        return [(1.0, term)]
    depth_low, depth_high = space.num_hidden_layers
    nodes = ScalarTerm(depth_low * space.hidden_nodes[0], depth_high * space.hidden_nodes[1], root=2.0)
    return [(0.5, nodes), (0.5, ScalarTerm(depth_low, depth_high))]


def encode(space: SearchSpace, stage: str, configs: list[dict[str, Any]]) -> list[np.ndarray]:
    """Configs as the arrays `kernel_terms(space, stage)` compares, one per term."""
    if stage == "training":
        return [
            np.log10([c["lr"] for c in configs]),
            np.array([_log10_weight_decay(c["weight_decay"], space.weight_decay) for c in configs]),
            np.array([c["batch_size"] for c in configs], dtype=float),
        ]
    if space.network == "cnn":
        channels = np.full((len(configs), space.max_layers), np.nan)
        for row, config in zip(channels, configs, strict=True):
            row[: len(config["channels"])] = config["channels"]
        return [channels]
    return [
        np.array([sum(c["hidden_nodes"]) for c in configs], dtype=float),
        np.array([c["num_hidden_layers"] for c in configs], dtype=float),
    ]


def _log10_weight_decay(value: float, bounds: tuple[float, float]) -> float:
    """Weight decay on its kernel scale: log10, with 0 mapped to the lower bound."""
    low = bounds[0] if bounds[0] > 0 else 1e-6
    return math.log10(value if value > 0 else low)
