"""The search objective f = log10(f_p + w_c * f_c) and the baselines that make f_c dimensionless."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

PENALTIES = ("time", "params")
REGRESSION_FLOOR = 1e-6


@dataclass(frozen=True)
class Baselines:
    """Normalizers of the complexity: the space's largest network's parameter count, and the time per
    epoch of the space's reference config (measured once per search; None when not measured)."""

    n_params: int
    time_per_epoch_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        text = f"{self.n_params:,} parameters (largest network)"
        if self.time_per_epoch_s is not None:
            text += f", {self.time_per_epoch_s:.3f} s per epoch (reference config)"
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Baselines:
        return cls(n_params=int(values["n_params"]), time_per_epoch_s=values.get("time_per_epoch_s"))


def performance_error(
    *,
    task: str,
    n_val: int,
    val_accuracy: float | None = None,
    val_mse: float | None = None,
    val_target_var: float = 1.0,
) -> float:
    """f_p: 1 - best validation accuracy, floored at 0.5/n_val; regression: best MSE / Var(y_val),
    floored at 1e-6."""
    if task == "classification":
        if val_accuracy is None:
            raise ValueError("classification needs val_accuracy")
        return max(1.0 - val_accuracy, 0.5 / n_val)
    if val_mse is None:
        raise ValueError("regression needs val_mse")
    return max(val_mse / val_target_var, REGRESSION_FLOOR)


def complexity(*, penalty: str, n_params: int, time_per_epoch_s: float, baselines: Baselines) -> float:
    """f_c: the trial's cost divided by the baseline's cost."""
    if penalty == "params":
        return n_params / baselines.n_params
    if penalty == "time":
        if not baselines.time_per_epoch_s:
            raise ValueError("the time baseline was not measured")
        return time_per_epoch_s / baselines.time_per_epoch_s
    raise ValueError(f"unknown penalty '{penalty}'")


def objective(f_p: float, f_c: float, wc: float) -> float:
    """log10(f_p + w_c * f_c), to be minimized."""
    return math.log10(f_p + wc * f_c)
