"""One trial: seed, build the model a config describes, measure its cost, train it.

Returns raw measurements only; scoring them is the objective's job and recording them the store's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepncheap.cost import count_flops, count_parameters
from deepncheap.models import build_model
from deepncheap.space import derive_seed
from deepncheap.train import DeviceData, TrainResult, seed_everything, train


@dataclass
class TrialMeasurements:
    """Everything measured for one config."""

    n_params: int
    flops: int
    training: TrainResult

    @property
    def model(self) -> nn.Module:
        return self.training.model


def trial_seed(search_seed: int, stage: str, index: int) -> int:
    """Seed of a trial from the search seed, its stage and its index within the stage (not its store row,
    so a trial run again after a resume trains identically)."""
    return derive_seed(search_seed, stage, index)


def run_trial(
    config: dict[str, Any],
    data: DeviceData,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    epochs: int,
    seed: int,
) -> TrialMeasurements:
    """Build, cost and train `config` on `data` for `epochs` epochs with the given seed."""
    seed_everything(seed)
    model = build_model(config, input_shape, num_outputs).to(data.device)
    n_params = count_parameters(model)
    flops = count_flops(model, input_shape)
    training = train(
        model,
        data,
        lr=float(config["lr"]),
        weight_decay=float(config["weight_decay"]),
        batch_size=int(config["batch_size"]),
        epochs=epochs,
        seed=seed,
    )
    return TrialMeasurements(n_params=n_params, flops=flops, training=training)


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
