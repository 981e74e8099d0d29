"""Predictions from raw inputs: a trained network wrapped with the run's preprocessing.

`RawInputModel` is the network with the standardization in front and the softmax (classification) or the
targets' scaling (regression) behind, so it maps raw float32 inputs `(N, *input_shape)` to class
probabilities or to predictions in the targets' units. `load_run(...).predict` uses it, and `dnc export`
writes exactly this module, so a file and the in-memory model give the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from deepncheap.errors import DataError
from deepncheap.preprocessing import Preprocessing

BATCH = 2048  # samples per forward pass when predicting


class RawInputModel(nn.Module):
    """`network` behind the run's standardization: raw inputs in, probabilities (or targets) out."""

    x_mean: torch.Tensor
    x_std: torch.Tensor

    def __init__(self, network: nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.network = network.eval()
        self.classification = preprocessing.task == "classification"
        self.register_buffer("x_mean", torch.from_numpy(preprocessing.x_mean.copy()))  # (1, C, 1, 1) or (1, F)
        self.register_buffer("x_std", torch.from_numpy(preprocessing.x_std.copy()))
        self.target_mean = float(preprocessing.target_mean)
        self.target_std = float(preprocessing.target_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.network((x - self.x_mean) / self.x_std)
        if self.classification:
            return torch.softmax(outputs, dim=1)
        return outputs * self.target_std + self.target_mean


def raw_outputs(network: nn.Module, preprocessing: Preprocessing, x: Any) -> np.ndarray:
    """Probabilities `(N, K)` (classification) or predictions `(N,)` in the targets' units, from raw `x`."""
    inputs = torch.from_numpy(preprocessing.raw_inputs(x))
    model = RawInputModel(network, preprocessing)
    device = next(network.parameters()).device
    model.to(device)
    with torch.no_grad():
        outputs = torch.cat([model(inputs[i : i + BATCH].to(device)).cpu() for i in range(0, len(inputs), BATCH)])
    return outputs.numpy() if preprocessing.task == "classification" else outputs.reshape(-1).numpy()


def predict(network: nn.Module, preprocessing: Preprocessing, x: Any) -> np.ndarray:
    """Labels (classification, the original label values) or targets (regression) for raw `x`."""
    outputs = raw_outputs(network, preprocessing, x)
    if preprocessing.task == "classification":
        return preprocessing.labels(outputs.argmax(axis=1))
    return outputs


def predict_proba(network: nn.Module, preprocessing: Preprocessing, x: Any) -> np.ndarray:
    """Class probabilities `(N, K)`, columns in the order of `preprocessing.classes`."""
    if preprocessing.task != "classification":
        raise DataError("predict_proba needs a classification run; this one is regression, use predict")
    return raw_outputs(network, preprocessing, x)
