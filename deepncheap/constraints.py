"""Hard constraints (`--max-params`, `--max-flops`, `--max-latency-ms`, `--max-epoch-time`): what the
searched model must comply with, and which configs do.

Parameters and FLOPs per sample are exact from the config (the network built on the meta device), and
latency is measured on the untrained network before training (`latency.py`): a config that violates one
of these is never trained (prior points and grid configs are replaced by complying ones, BO candidates
are checked before one is chosen). Time per epoch is known only once a trial trains: it is predicted
before (`EpochTimeModel`, fitted to the measured trials and the time baselines), prior points and grid
configs are those `LIKELY` to comply, BO weights expected improvement by the probability of complying,
and a trial found to violate stops at its first timed epoch, is recorded with its real cost and is never
chosen as best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from deepncheap.data import Dataset
    from deepncheap.latency import LatencyProbe
    from deepncheap.settings import SearchSettings
    from deepncheap.space import SearchSpace
    from deepncheap.store import Trial


@dataclass(frozen=True)
class Constraints:
    """The limits of a search (None: no limit)."""

    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    max_epoch_time: float | None = None

    @classmethod
    def of(cls, values: Any) -> Constraints:
        """The constraints among a settings object's (or a dict's) fields."""
        get = values.get if isinstance(values, dict) else lambda name: getattr(values, name, None)
        return cls(get("max_params"), get("max_flops"), get("max_latency_ms"), get("max_epoch_time"))

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    @property
    def exact(self) -> bool:
        """Whether a constraint is known before training (parameters, FLOPs, latency)."""
        return any(v is not None for v in (self.max_params, self.max_flops, self.max_latency_ms))

    def violations(
        self,
        *,
        n_params: int | None = None,
        flops: int | None = None,
        latency_ms: float | None = None,
        epoch_time_s: float | None = None,
    ) -> list[str]:
        """What the given costs violate, one text each (e.g. `params 120,000 > --max-params 100,000`);
        a cost that is not given is not checked."""
        found = []
        for value, limit, name, flag, fmt in self.checks(n_params, flops, latency_ms, epoch_time_s):
            if value is not None and limit is not None and value > limit:
                found.append(f"{name} {fmt(value)} > --{flag} {fmt(limit)}")
        return found

    def margins(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Each constraint's limit minus the value in `metrics` (n_params, flops, latency_ms,
        time_per_epoch_s), by option name; negative when violated."""
        values = (
            metrics.get("n_params"),
            metrics.get("flops"),
            metrics.get("latency_ms"),
            metrics.get("time_per_epoch_s"),
        )
        return {
            flag.replace("-", "_"): float(limit) - float(value)
            for value, limit, _name, flag, _fmt in self.checks(*values)
            if limit is not None and value is not None
        }

    def describe(self) -> str:
        """One line, e.g. `params <= 100,000, epoch time <= 0.5 s (predicted)`."""
        parts = [f"{name} <= {fmt(limit)}" for _v, limit, name, _f, fmt in self.checks(None, None, None, None) if limit]
        if self.max_epoch_time is not None:
            parts[-1] += " (predicted before training)"
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def checks(
        self, n_params: int | None, flops: int | None, latency_ms: float | None, epoch_time_s: float | None
    ) -> list[tuple[Any, Any, str, str, Any]]:
        """(value, limit, name, option, format) of each constraint."""
        return [
            (n_params, self.max_params, "params", "max-params", lambda v: f"{int(v):,}"),
            (flops, self.max_flops, "FLOPs", "max-flops", lambda v: f"{int(v):,}"),
            (latency_ms, self.max_latency_ms, "latency", "max-latency-ms", lambda v: f"{v:.3g} ms"),
            (epoch_time_s, self.max_epoch_time, "epoch time", "max-epoch-time", lambda v: f"{v:.3g} s"),
        ]


MIN_SIGMA = 0.1  # the least uncertainty of a predicted log epoch time (about 10 %)
# ... and the uncertainty before three points are measured: the cost model's epoch was 25 % off between
# the two baselines of the digits CNN (demo space), so two points tell the slope but not the spread
PRIOR_SIGMA = 0.3
# configs trained without expected improvement's say (prior points, grids, fallbacks) must comply with
# at least this probability: at 0.5, half of those predicted right at the limit violate it
LIKELY = 0.8


@dataclass(frozen=True)
class EpochTimeModel:
    """Predicted seconds per epoch from the cost model's epoch: log t = a + b log m, fitted by least squares
    to the measured trials and the time baselines (b = 1 while one point is known), with the residuals'
    spread (at least `MIN_SIGMA`; `PRIOR_SIGMA` until three points are known) as its uncertainty."""

    a: float
    b: float
    sigma: float

    @classmethod
    def fit(cls, modelled_s: list[float], measured_s: list[float]) -> EpochTimeModel:
        """From pairs of (modelled, measured) seconds per epoch; at least one pair."""
        x, y = np.log(modelled_s), np.log(measured_s)
        if len(x) >= 2 and np.ptp(x) > 0:
            b, a = np.polyfit(x, y, 1)
        else:
            b, a = 1.0, float(np.mean(y - x))
        residuals = y - (a + b * x)
        dof = max(len(x) - 2, 1)
        if len(x) < 3:
            return cls(float(a), float(b), PRIOR_SIGMA)
        sigma = math.sqrt(float(np.sum(residuals**2)) / dof)
        return cls(float(a), float(b), max(sigma, MIN_SIGMA))

    def predict_s(self, modelled_s: float) -> float:
        """The predicted seconds per epoch (the median of the prediction)."""
        return math.exp(self.a + self.b * math.log(modelled_s))

    def comply_probability(self, modelled_s: float, limit_s: float) -> float:
        """P(seconds per epoch <= limit_s)."""
        z = (math.log(limit_s) - (self.a + self.b * math.log(modelled_s))) / self.sigma
        return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True)
class EpochTimeLimit:
    """`--max-epoch-time`, predicted before training: the limit, a config's cost-model epoch
    (`modelled_s`), and the time baselines' (modelled, measured) seconds per epoch
    (`Baselines.epoch_points`)."""

    limit_s: float
    modelled_s: Callable[[dict[str, Any]], float]
    baselines: tuple[tuple[float, float], ...]

    def model(self, trials: Iterable[Trial]) -> EpochTimeModel:
        """The prediction fitted to the trials that measured an epoch, and the baseline."""
        pairs = [
            (t.modelled_epoch_s, t.time_per_epoch_s)
            for t in trials
            if t.modelled_epoch_s and t.time_per_epoch_s and t.epochs
        ]
        modelled, measured = zip(*[*pairs, *self.baselines], strict=True)
        return EpochTimeModel.fit(list(modelled), list(measured))

    def probability(self, trials: Iterable[Trial]) -> Callable[[dict[str, Any]], float]:
        """P(a config's epoch <= the limit), by the model fitted to `trials`."""
        model = self.model(trials)
        return lambda config: model.comply_probability(self.modelled_s(config), self.limit_s)


def latency_probe(settings: SearchSettings, device: torch.device) -> LatencyProbe | None:
    """The run's latency measure when it needs one (`--penalty latency`, `--max-latency-ms`)."""
    from deepncheap.latency import LatencyProbe

    if settings.penalty != "latency" and settings.max_latency_ms is None:
        return None
    return LatencyProbe(batch=int(settings.latency_batch), device=str(device))


def check_achievable(
    constraints: Constraints, space: SearchSpace, dataset: Dataset, latency: LatencyProbe | None
) -> None:
    """SettingsError when even the space's smallest networks (`SearchSpace.smallest_configs`) violate an
    exact constraint, naming the least the space allows."""
    import torch

    from deepncheap.cost import count_flops, count_parameters
    from deepncheap.errors import SettingsError
    from deepncheap.models import build_model

    if not constraints.exact:
        return
    smallest = space.smallest_configs()
    with torch.device("meta"):
        models = [build_model(c, dataset.input_shape, dataset.num_outputs) for c in smallest]
        params = min(count_parameters(m) for m in models)
        flops = min(count_flops(m, dataset.input_shape) for m in models) if constraints.max_flops else None
    latency_ms = None
    if constraints.max_latency_ms is not None and latency is not None:
        latency_ms = min(latency.of_config(c, dataset) for c in smallest)
    for value, limit, name, flag, fmt in constraints.checks(params, flops, latency_ms, None):
        if value is not None and limit is not None and value > limit:
            raise SettingsError(
                f"--{flag} {fmt(limit)} cannot be met: the smallest network of the space needs {fmt(value)} {name}; "
                f"raise --{flag} to at least {fmt(value)}, or allow smaller networks in the space "
                "(fewer layers, fewer channels or nodes)"
            )
