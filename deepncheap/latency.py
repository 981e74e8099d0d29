"""Inference latency (`--penalty latency`, `--max-latency-ms`): how long the network takes to predict one
batch on the search's device, measured on the untrained network before it trains (latency does not
depend on the weights).

The measure is the median of `REPEATS` timed forward passes after `WARMUP` untimed ones, in inference
mode, on a batch of `--latency-batch` zero inputs; on CUDA every pass is synchronized before the clock is
read. A shared machine only adds time to a pass, and the median ignores the passes it slowed most.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from deepncheap.data import Dataset

WARMUP = 5
REPEATS = 25


def measure_latency_ms(
    model: nn.Module, input_shape: Sequence[int], *, batch: int, device: torch.device, repeats: int = REPEATS
) -> float:
    """The median milliseconds of a forward pass of `model` on `batch` inputs of `input_shape` on `device`."""
    model = model.to(device).eval()
    inputs = torch.zeros(batch, *input_shape, device=device)
    times = []
    with torch.inference_mode():
        for step in range(WARMUP + repeats):
            start = time.perf_counter()
            model(inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= WARMUP:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


@dataclass(frozen=True)
class LatencyProbe:
    """The run's latency measure: batches of `batch` inputs on `device`."""

    batch: int
    device: str

    def of_config(self, config: dict[str, Any], dataset: Dataset) -> float:
        """The latency of `config`'s network for `dataset`, built with arbitrary weights (the global random
        state is kept)."""
        from deepncheap.models import build_model

        with torch.random.fork_rng(devices=[]):
            model = build_model(config, dataset.input_shape, dataset.num_outputs)
        return measure_latency_ms(model, dataset.input_shape, batch=self.batch, device=torch.device(self.device))
