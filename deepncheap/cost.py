"""Complexity measures of a model: trainable parameters, layers and forward FLOPs per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_layers(model: nn.Module) -> int:
    """Number of leaf modules (linear, convolution, normalization, activation, dropout, ... layers)."""
    return sum(1 for m in model.modules() if next(m.children(), None) is None)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward-pass FLOPs for one sample (a multiply-add counts 2), by torch.utils.flop_counter."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
