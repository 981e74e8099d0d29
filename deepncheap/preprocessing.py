"""What turns raw inputs into a network's inputs, and its outputs into predictions, stored with the run.

A search standardizes inputs with the training split's statistics (per channel for images, per feature
otherwise), encodes class labels as 0..K-1 and standardizes regression targets. `Preprocessing` keeps those
statistics, the label names and the input shape, so that a stored model predicts from raw data: the same
arrays a user would give to `dnc search`, in the run's input shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepncheap.errors import DataError


@dataclass(frozen=True)
class Preprocessing:
    """Standardization statistics (`x_mean`, `x_std` broadcast over `(N, *input_shape)`), label names
    (`classes`, classification) and target statistics (regression)."""

    task: str
    input_shape: tuple[int, ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    classes: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored with the run."""
        return {
            "task": self.task,
            "input_shape": list(self.input_shape),
            "x_mean": self.x_mean.reshape(-1).tolist(),
            "x_std": self.x_std.reshape(-1).tolist(),
            "stats_shape": list(self.x_mean.shape),
            "classes": list(self.classes),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Preprocessing:
        shape = tuple(stored["stats_shape"])
        return cls(
            task=stored["task"],
            input_shape=tuple(int(d) for d in stored["input_shape"]),
            x_mean=np.asarray(stored["x_mean"], dtype=np.float32).reshape(shape),
            x_std=np.asarray(stored["x_std"], dtype=np.float32).reshape(shape),
            classes=tuple(stored["classes"]),
            target_mean=float(stored["target_mean"]),
            target_std=float(stored["target_std"]),
        )

    def raw_inputs(self, x: Any) -> np.ndarray:
        """Raw samples `(N, *input_shape)` (or flat `(N, prod(input_shape))`, or `(N, H, W)` for one-channel
        images) checked and shaped as the network's inputs, float32, not standardized; a clear error for
        anything else."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"inputs have dtype {x.dtype}; give real numbers")
        size = int(np.prod(self.input_shape))
        if x.ndim < 2 or (x.shape[1:] != self.input_shape and int(np.prod(x.shape[1:])) != size):
            raise DataError(
                f"inputs have shape {x.shape} but the model takes samples of shape {self.input_shape} "
                f"({size} values each); give an array (N, {', '.join(map(str, self.input_shape))})"
            )
        if not np.isfinite(x).all():
            raise DataError(f"inputs hold {int((~np.isfinite(x)).sum())} NaN or infinite values; impute or drop them")
        return x.reshape(len(x), *self.input_shape).astype(np.float32, copy=False)

    def inputs(self, x: Any) -> np.ndarray:
        """Raw samples (as `raw_inputs` takes them) standardized: what the network was trained on."""
        standardized = np.subtract(self.raw_inputs(x), self.x_mean, dtype=np.float32)
        standardized /= self.x_std
        return standardized

    def labels(self, class_indices: np.ndarray) -> np.ndarray:
        """Class indices as the original labels (numbers when every label is a number, else text)."""
        names = np.asarray(self.classes)
        try:
            numbers = np.asarray([float(c) for c in self.classes])
        except ValueError:
            return names[class_indices]
        if np.all(np.mod(numbers, 1) == 0):
            return numbers.astype(np.int64)[class_indices]
        return numbers[class_indices]

    def targets(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs (standardized units) in the targets' own units."""
        return outputs.reshape(-1) * self.target_std + self.target_mean
