"""The search objective f = log10(f_p + w_c * f_c): its terms, the baselines that make f_c dimensionless
(and their measurement), and the scorer that turns a trial's measurements into f_p, f_c and f."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from deepncheap import timing

if TYPE_CHECKING:
    from deepncheap.data import Dataset
    from deepncheap.executors import Executor
    from deepncheap.latency import LatencyProbe
    from deepncheap.space import SearchSpace
    from deepncheap.trial import TrialMeasurements

PENALTIES = ("time", "params", "flops", "latency")
REGRESSION_FLOOR = 1e-6
BASELINE_EPOCHS = 3  # of the time baseline: one warm-up epoch, then two timed


@dataclass(frozen=True)
class Baselines:
    """Normalizers of the complexity: the space's largest network's parameter count; the reference config's
    FLOPs per sample and, for the latency penalty, its latency; for the time penalty (and
    `--max-epoch-time`), its time per epoch, measured (once per search) and modelled (`timing`), and which
    of the two ranks the trials (`time_measure`: the cost model when the measured epoch is too short to
    time)."""

    n_params: int
    time_per_epoch_s: float | None = None
    modelled_epoch_s: float | None = None
    time_measure: str | None = None  # timing.MEASURED or timing.COST_MODEL; None without a time baseline
    flops: int | None = None  # (stores before step 9 have none)
    latency_ms: float | None = None
    smallest_epoch_s: float | None = None  # (stores before the second point have none)
    smallest_modelled_epoch_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        text = f"{self.n_params:,} parameters (largest network)"
        if self.flops is not None:
            text += f", {self.flops:,} FLOPs per sample (reference config)"
        if self.latency_ms is not None:
            text += f", {self.latency_ms:.3g} ms latency (reference config)"
        if self.time_per_epoch_s is not None:
            text += f", {self.time_per_epoch_s:.3f} s per epoch (reference config)"
            if self.time_measure == timing.COST_MODEL:
                text += (
                    f"; epochs this short are ranked by timing noise, so f_c uses the cost model of an epoch "
                    f"(steps, layers, parameters, FLOPs) instead of measured time (below {timing.TIMEABLE_EPOCH_S} s)"
                )
        if self.smallest_epoch_s is not None:
            text += f", {self.smallest_epoch_s:.3f} s per epoch (smallest network)"
        return text

    @property
    def reference_epoch_s(self) -> float | None:
        """The reference config's epoch in the measure that ranks the trials."""
        return self.modelled_epoch_s if self.time_measure == timing.COST_MODEL else self.time_per_epoch_s

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Baselines:
        return cls(
            n_params=int(values["n_params"]),
            time_per_epoch_s=values.get("time_per_epoch_s"),
            modelled_epoch_s=values.get("modelled_epoch_s"),
            # stores written before the cost model existed timed every run
            time_measure=values.get("time_measure", timing.MEASURED if values.get("time_per_epoch_s") else None),
            flops=values.get("flops"),
            latency_ms=values.get("latency_ms"),
            smallest_epoch_s=values.get("smallest_epoch_s"),
            smallest_modelled_epoch_s=values.get("smallest_modelled_epoch_s"),
        )

    def epoch_points(self) -> list[tuple[float, float]]:
        """The (modelled, measured) seconds per epoch of the timed baselines (reference, then smallest)."""
        points = [
            (self.modelled_epoch_s, self.time_per_epoch_s),
            (self.smallest_modelled_epoch_s, self.smallest_epoch_s),
        ]
        return [(m, t) for m, t in points if m and t]


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
    floor = performance_floor(task=task, n_val=n_val)
    if task == "classification":
        if val_accuracy is None:
            raise ValueError("classification needs val_accuracy")
        return max(1.0 - val_accuracy, floor)
    if val_mse is None:
        raise ValueError("regression needs val_mse")
    return max(val_mse / val_target_var, floor)


def performance_floor(*, task: str, n_val: int) -> float:
    """The lowest f_p: half a validation sample's error (classification), or 1e-6 (regression)."""
    return 0.5 / n_val if task == "classification" else REGRESSION_FLOOR


def complexity(
    *,
    penalty: str,
    n_params: int,
    time_per_epoch_s: float,
    baselines: Baselines,
    flops: int | None = None,
    latency_ms: float | None = None,
) -> float:
    """f_c: the trial's cost divided by the baseline's cost (`time_per_epoch_s` in the baselines'
    `time_measure`)."""
    if penalty == "params":
        return n_params / baselines.n_params
    if penalty in ("flops", "latency"):
        value, reference = (flops, baselines.flops) if penalty == "flops" else (latency_ms, baselines.latency_ms)
        if value is None or not reference:
            raise ValueError(f"the {penalty} of the trial or of the baseline was not measured")
        return value / reference
    if penalty == "time":
        if not baselines.reference_epoch_s:
            raise ValueError("the time baseline was not measured")
        return time_per_epoch_s / baselines.reference_epoch_s
    raise ValueError(f"unknown penalty '{penalty}'")


def objective(f_p: float, f_c: float, wc: float) -> float:
    """log10(f_p + w_c * f_c), to be minimized."""
    return math.log10(f_p + wc * f_c)


@dataclass(frozen=True)
class Scorer:
    """Turns a trial's measurements into f_p, f_c, the objective and the metrics the store keeps; `latency`
    measures a config's latency (`--penalty latency`, `--max-latency-ms`)."""

    dataset: Dataset
    penalty: str
    wc: float
    baselines: Baselines
    latency: LatencyProbe | None = None

    def score(self, measured: TrialMeasurements, known: KnownCost | None = None) -> dict[str, Any]:
        """The metrics of a training (`known`: what its config was found to cost before it trained)."""
        training = measured.training
        f_p = self.performance(training.val_accuracy, training.val_loss)
        latency_ms = known.latency_ms if known is not None else None
        f_c = complexity(
            penalty=self.penalty,
            n_params=measured.n_params,
            time_per_epoch_s=(
                measured.modelled_epoch_s
                if self.baselines.time_measure == timing.COST_MODEL
                else training.time_per_epoch_s
            ),
            baselines=self.baselines,
            flops=measured.flops,
            latency_ms=latency_ms,
        )
        val_loss = training.val_loss
        if self.dataset.task == "regression":  # report MSE in the targets' own units
            val_loss *= self.dataset.target_std**2
        return {
            "objective": self.value(f_p, f_c),
            "f_p": f_p,
            "f_c": f_c,
            "val_accuracy": training.val_accuracy,
            "val_loss": val_loss,
            "n_params": measured.n_params,
            "flops": measured.flops,
            "time_per_epoch_s": training.time_per_epoch_s,
            "epochs": len(training.val_curve),
            "time_noise": training.time_noise,
            "modelled_epoch_s": measured.modelled_epoch_s,
            "latency_ms": latency_ms,
        }

    def value(self, f_p: float, f_c: float) -> float:
        """The objective of f_p and f_c with the run's w_c."""
        return objective(f_p, f_c, self.wc)

    @property
    def floor(self) -> float:
        """The lowest f_p of the run's validation split (`performance_floor`)."""
        return performance_floor(task=self.dataset.task, n_val=len(self.dataset.y_val))

    def bound(self, f_c: float) -> float:
        """The lowest objective a trial of complexity f_c can reach: its f_p at the floor."""
        return self.value(self.floor, f_c)

    def partial(self, val_scores: list[float], epoch_times_s: list[float], f_c: float | None) -> float:
        """The objective of a training so far (its best validation epoch, and its cost: `f_c` when known
        before training, else its epochs' time)."""
        return self.value(self.error_so_far(val_scores), self.timed_cost(epoch_times_s) if f_c is None else f_c)

    def error_so_far(self, val_scores: list[float]) -> float:
        """f_p of a training so far: its best validation epoch."""
        classification = self.dataset.task == "classification"
        best = max(val_scores) if classification else min(val_scores)
        return self.performance(best if classification else None, None if classification else best)

    def performance(self, val_accuracy: float | None, val_mse: float | None) -> float:
        """f_p of a best validation accuracy (classification) or MSE in standardized units (regression)."""
        return performance_error(
            task=self.dataset.task,
            n_val=len(self.dataset.y_val),
            val_accuracy=val_accuracy,
            val_mse=val_mse,
            val_target_var=float(np.var(self.dataset.y_val)) or 1.0,
        )

    def timed_cost(self, epoch_times_s: list[float]) -> float:
        """f_c of measured epochs (`--penalty time`, measured): the fastest timed epoch over the reference's."""
        return complexity(
            penalty="time", n_params=0, time_per_epoch_s=timing.epoch_time(epoch_times_s)[0], baselines=self.baselines
        )

    @property
    def cost_known_before_training(self) -> bool:
        """Whether f_c follows from the config alone (parameters, FLOPs, latency measured before training;
        the time cost model), not from training."""
        return self.penalty != "time" or self.baselines.time_measure == timing.COST_MODEL

    def cost_of(self, config: dict[str, Any]) -> KnownCost:
        """What `config` costs, from the config (`models.parameter_count`, `models.flop_count`) and the network
        built on the meta device (no memory, no training), and its latency measured on the search's device
        when the run needs it."""
        import torch

        from deepncheap.cost import count_layers
        from deepncheap.models import build_model, flop_count, parameter_count

        dataset = self.dataset
        shape, outputs = dataset.input_shape, dataset.num_outputs
        with torch.device("meta"):
            layers = count_layers(build_model(config, shape, outputs))
        n_params, flops = parameter_count(config, shape, outputs), flop_count(config, shape, outputs)
        features = timing.cost_features(
            layers=layers,
            n_params=n_params,
            flops=flops,
            batch_size=int(config["batch_size"]),
            n_train=len(dataset.y_train),
        )
        modelled = timing.modelled_epoch_s(features)
        latency_ms = None if self.latency is None else self.latency.of_config(config, dataset)
        f_c = None
        if self.cost_known_before_training:
            f_c = complexity(
                penalty=self.penalty,
                n_params=n_params,
                time_per_epoch_s=modelled,
                baselines=self.baselines,
                flops=flops,
                latency_ms=latency_ms,
            )
        return KnownCost(n_params, flops, modelled, f_c, latency_ms)

    def params_bound(self, config: dict[str, Any]) -> float:
        """The bound of `config` under `--penalty params`, from its parameter count alone (cheaper than
        `cost_of`: no FLOPs are counted)."""
        return self.bound(self.params_cost(config))

    def params_cost(self, config: dict[str, Any]) -> float:
        """f_c of `config` under `--penalty params`: its parameter count over the baseline's."""
        return self.n_params(config) / self.baselines.n_params

    def cost_rank(self, config: dict[str, Any]) -> float:
        """What `config` costs before training, to order configs by: its f_c when known before training
        (the parameter count alone with `--penalty params`), else the cost model's epoch."""
        if self.penalty == "params":
            return self.n_params(config)
        cost = self.cost_of(config)
        return cost.modelled_epoch_s if cost.f_c is None else cost.f_c

    def n_params(self, config: dict[str, Any]) -> int:
        """`config`'s trainable parameters (`models.parameter_count`: from the config, nothing built)."""
        from deepncheap.models import parameter_count

        return parameter_count(config, self.dataset.input_shape, self.dataset.num_outputs)


@dataclass(frozen=True)
class KnownCost:
    """What a config costs before any training: parameters, FLOPs per sample, the cost model's epoch, f_c
    when the penalty follows from these (`Scorer.cost_known_before_training`, else None) and its latency
    when measured."""

    n_params: int
    flops: int
    modelled_epoch_s: float
    f_c: float | None
    latency_ms: float | None = None


class BaselineFailed(Exception):
    """The time baseline's reference config could not be trained (the message says why)."""


def measure_baselines(
    space: SearchSpace,
    dataset: Dataset,
    executor: Executor,
    *,
    penalty: str,
    seed: int,
    augment: bool = False,
    timed: bool = False,
    smallest: bool = False,
    latency: LatencyProbe | None = None,
) -> Baselines:
    """Parameter count of the space's largest network (built on the meta device, no memory used), the
    FLOPs per sample of the space's reference config and its latency (with a `latency` probe) and, for the
    time penalty (or `timed`: `--max-epoch-time`), its time per epoch measured as the trials will run:
    on every slot of the executor at once (the median of them), so that side-by-side trials are compared
    with a baseline that shared the machine alike (and augmented its batches as they do); and its modelled
    epoch, with the measure that ranks. `smallest`: the space's smallest network is timed alike.
    KeyboardInterrupt when a stop is requested meanwhile."""
    import torch

    from deepncheap.cost import count_flops
    from deepncheap.models import build_model
    from deepncheap.trial import TrialTask, trial_seed

    reference = space.time_reference_config()
    with torch.device("meta"):
        largest = build_model(space.largest_config(), dataset.input_shape, dataset.num_outputs)
        flops = count_flops(build_model(reference, dataset.input_shape, dataset.num_outputs), dataset.input_shape)
    n_params = sum(p.numel() for p in largest.parameters())
    sizes = Baselines(
        n_params=n_params, flops=flops, latency_ms=None if latency is None else latency.of_config(reference, dataset)
    )

    def epoch(config: dict[str, Any], index: int) -> tuple[float, float]:
        """(measured, modelled) seconds per epoch of `config`, on every slot at once."""
        task = TrialTask(-1, config, trial_seed(seed, "baseline", index), BASELINE_EPOCHS, augment)
        for slot in range(executor.slots):
            executor.submit(replace(task, trial_id=-1 - slot))
        outcomes = [executor.next_outcome(lambda *_: False) for _ in range(executor.slots)]
        if any(o.status == "interrupted" for o in outcomes):
            raise KeyboardInterrupt
        measured = [o.measured for o in outcomes if o.measured is not None]
        if len(measured) < len(outcomes):
            raise BaselineFailed(next(str(o.error) for o in outcomes if o.measured is None))
        return float(np.median([m.training.time_per_epoch_s for m in measured])), measured[0].modelled_epoch_s

    if not (penalty == "time" or timed):
        return sizes
    time_per_epoch, modelled = epoch(reference, 0)
    timed_sizes = replace(
        sizes,
        time_per_epoch_s=time_per_epoch,
        modelled_epoch_s=modelled,
        time_measure=timing.time_measure(time_per_epoch),
    )
    if not smallest:
        return timed_sizes
    small_s, small_modelled = epoch(space.smallest_configs()[0], 1)
    return replace(timed_sizes, smallest_epoch_s=small_s, smallest_modelled_epoch_s=small_modelled)
