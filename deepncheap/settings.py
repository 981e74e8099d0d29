"""The options of a search, checked once at the edge and stored with the run."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from deepncheap.bo import BO_MODES
from deepncheap.errors import SettingsError
from deepncheap.objective import PENALTIES
from deepncheap.pruning import DEFAULT_PRUNE, PRUNE_MODES
from deepncheap.sources import IMPUTE
from deepncheap.space import NETWORKS, SAMPLING_METHODS, is_int, is_number

# CPU-friendly default (the reference trains 100 epochs per trial on a GPU); see the README.
DEFAULT_EPOCHS = 20
DEFAULT_MAX_TRIALS = 30  # for random/Sobol searches; the Deep-n-Cheap method's budget is its stage sizes
METHODS = ("dnc", *SAMPLING_METHODS)  # the methods `dnc search` runs
TRANSFER = "transfer"  # the method of `dnc transfer`: another run's configs (`transfer_configs`), nothing searched
EXECUTORS = ("serial", "processes", "ray")
AUGMENT = ("auto", "on", "off")  # random crops and flips of training batches; auto: on for 3x32x32 images


@dataclass(frozen=True)
class SearchSettings:
    """Every option of a search but the data itself and the output directory; see the README's table.

    `space` holds search-space overrides (name -> value, as in a `--space` file); `threads` fixes torch's
    CPU threads for the search (None: torch's default). `max_trials` caps the trainings of the whole search
    (None: 30 for random/Sobol, the stage budgets for `dnc`). `prior_points`, `bo_steps` and `candidates`
    size each Bayesian-optimization stage; `bo_mode` is `default` or `reference` (see docs/method.md). `executor`
    (`serial`, `processes`, `ray`) runs `workers` trials at once (None: as many as the CPUs allow), each
    asking `cpus_per_trial` CPUs and `gpus_per_trial` GPUs (None: 1 where there are GPUs); `ray_address`
    names a running Ray cluster. `workers` > 1 without an executor means `processes`. `target`, `delimiter`
    and `drop` read a CSV file (its label column, its delimiter when not sniffed, columns to leave out);
    `impute` (`mean`, `median`, `drop`) deals with missing feature values, which are refused otherwise;
    `subset` trains on a stratified fraction of the training rows (a cheap proxy search; validation and
    test rows stay whole);
    `augment` (`auto`, `on`, `off`; a bool works too) crops and flips training batches of images. `prune`
    (`none`, `bound`, `median`, `asha`) stops trials that cannot win or trail their stage (`pruning.py`).
    `latency_batch` is the batch of the latency measure (`--penalty latency`, `max_latency_ms`); `max_params`,
    `max_flops` (per sample), `max_latency_ms` and `max_epoch_time` (seconds) are hard constraints
    (`constraints.py`). A run of `dnc transfer` (method `transfer`) holds the run it came from (`transfer_from`)
    and the configs it trains (`transfer_configs`: `{"source_trial_id", "source_objective", "config"}` each);
    a warm-started search the earlier runs' best configs it starts from (`warm_configs`, `warm_start.py`:
    `{"source_run", "source_trial_id", "source_objective", "config"}` each). A proxy search (`--proxy`,
    `proxy.py`: on a `subset`) is followed by the transfer of its `transfer_top` best configs to the whole
    data, trained for `transfer_epochs` epochs each (None: `epochs`).
    """

    network: str = "cnn"
    wc: float = 0.1
    penalty: str = "time"
    method: str = "dnc"
    max_trials: int | None = None
    epochs: int = DEFAULT_EPOCHS
    seed: int = 0
    task: str | None = None
    val_split: float = 0.2
    subset: float | None = None
    image_shape: tuple[int, int, int] | None = None
    target: str | None = None
    delimiter: str | None = None
    drop: tuple[str, ...] = ()
    impute: str | None = None
    augment: str = "auto"
    data_dir: str | None = None
    space: dict[str, Any] | None = None
    device: str = "auto"
    threads: int | None = None
    bo_mode: str = "default"
    prior_points: int = 15
    bo_steps: int = 15
    candidates: int = 1000
    executor: str = "serial"
    workers: int | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: float | None = None
    ray_address: str | None = None
    prune: str = DEFAULT_PRUNE
    latency_batch: int = 1
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    max_epoch_time: float | None = None
    extra_training_steps: int = 0  # BO steps added to `dnc`'s training stage when a finished search is extended
    transfer_from: str | None = None
    transfer_configs: tuple[dict[str, Any], ...] = ()
    warm_configs: tuple[dict[str, Any], ...] = ()
    transfer_top: int | None = None
    transfer_epochs: int | None = None

    @classmethod
    def from_options(cls, **options: Any) -> SearchSettings:
        """Settings from keyword options, with a SettingsError naming any unknown option."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SettingsError(f"unknown option '{unknown[0]}'; use one of: {', '.join(sorted(known))}")
        given = {k: v for k, v in options.items() if v is not None}  # None: the default
        if isinstance(given.get("augment"), bool):
            given["augment"] = "on" if given["augment"] else "off"
        if isinstance(given.get("drop"), str):  # "id,name" as on the command line
            given["drop"] = [name.strip() for name in given["drop"].split(",")]
        for name in ("drop", "transfer_configs", "warm_configs"):
            if isinstance(given.get(name), (list, tuple)):
                given[name] = tuple(given[name])
        for name in ("max_params", "max_flops"):  # (2e6 is a count too)
            value = given.get(name)
            if isinstance(value, float) and math.isfinite(value) and value == int(value):
                given[name] = int(value)
        if "executor" not in given and is_int(given.get("workers")) and given["workers"] > 1:
            given["executor"] = "processes"
        settings = cls(**given)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise SettingsError on the first invalid option."""
        if self.network not in NETWORKS:
            raise SettingsError(f"unknown network '{self.network}'; use one of: {', '.join(NETWORKS)}")
        if not is_number(self.wc) or self.wc < 0:
            raise SettingsError(f"w_c must be a number >= 0, got {self.wc!r}; e.g. --wc 0.1 (0 = accuracy only)")
        if self.penalty not in PENALTIES:
            raise SettingsError(f"unknown penalty '{self.penalty}'; use one of: {', '.join(PENALTIES)}")
        if self.method not in (*METHODS, TRANSFER):
            raise SettingsError(f"unknown method '{self.method}'; use one of: {', '.join(METHODS)}")
        if (self.method == TRANSFER) != bool(self.transfer_configs):
            raise SettingsError(
                "the transfer method trains the configs of another run; use dnc transfer RUN --data OTHER "
                "(deepncheap.transfer)"
            )
        if not all(isinstance(c, dict) and isinstance(c.get("config"), dict) for c in self.transfer_configs):
            raise SettingsError("transfer_configs must be dicts holding a 'config'; use dnc transfer RUN --data OTHER")
        if self.warm_configs and self.method != "dnc":
            raise SettingsError("--warm-start starts Deep-n-Cheap's stages from earlier configs; use --method dnc")
        if not all(isinstance(c, dict) and isinstance(c.get("config"), dict) for c in self.warm_configs):
            raise SettingsError("warm_configs must be dicts holding a 'config'; use --warm-start RUN")
        if self.transfer_top is not None and (self.subset is None or self.method == TRANSFER):
            raise SettingsError(
                "--transfer-top transfers a proxy search's best configs to the whole data; give --proxy F too, "
                "e.g. --proxy 0.1 --transfer-top 5"
            )
        if self.transfer_epochs is not None and self.transfer_top is None:
            raise SettingsError("transfer_epochs sets the epochs of a proxy search's transfer; give --proxy F too")
        if self.bo_mode not in BO_MODES:
            raise SettingsError(f"unknown BO mode '{self.bo_mode}'; use one of: {', '.join(BO_MODES)}")
        if self.prune not in PRUNE_MODES:
            raise SettingsError(f"unknown --prune '{self.prune}'; use one of: {', '.join(PRUNE_MODES)}")
        if self.executor not in EXECUTORS:
            raise SettingsError(f"unknown executor '{self.executor}'; use one of: {', '.join(EXECUTORS)}")
        checks = [
            ("epochs", 1), ("seed", 0), ("prior_points", 1), ("bo_steps", 0), ("candidates", 1), ("cpus_per_trial", 1),
            ("extra_training_steps", 0), ("latency_batch", 1),
        ]  # fmt: skip
        checks += [
            (name, 1)
            for name in ("max_trials", "workers", "max_params", "max_flops", "transfer_top", "transfer_epochs")
            if getattr(self, name) is not None
        ]
        for name, minimum in checks:
            value = getattr(self, name)
            if not is_int(value) or value < minimum:
                flag = name.replace("_", "-")
                raise SettingsError(
                    f"--{flag} must be an integer >= {minimum}, got {value!r}; e.g. --{flag} {minimum + 1}"
                )
        if self.executor == "serial" and (self.workers or 1) > 1:
            raise SettingsError(
                f"the serial executor runs one trial at a time, got --workers {self.workers}; "
                "use --executor processes or ray"
            )
        gpus = self.gpus_per_trial
        if gpus is not None and (not is_number(gpus) or not 0 <= gpus < math.inf):
            raise SettingsError(f"--gpus-per-trial must be a number >= 0, got {gpus!r}; e.g. --gpus-per-trial 1")
        if self.ray_address is not None and self.executor != "ray":
            raise SettingsError("--ray-address needs --executor ray")
        if self.threads is not None and (not is_int(self.threads) or self.threads < 1):
            raise SettingsError(f"threads must be a positive integer, got {self.threads!r}")
        if not is_number(self.val_split) or math.isnan(self.val_split):
            raise SettingsError(f"--val-split must be a number, got {self.val_split!r}; e.g. --val-split 0.2")
        if self.subset is not None and (not is_number(self.subset) or not 0 < self.subset < 1):
            raise SettingsError(
                f"--subset must be a fraction between 0 and 1 (exclusive), got {self.subset!r}; e.g. --subset 0.1"
            )
        shape = self.image_shape
        if shape is not None and (len(shape) != 3 or not all(is_int(d) and d > 0 for d in shape)):
            raise SettingsError(f"image_shape must be three positive integers (C, H, W), got {shape!r}")
        if self.delimiter is not None and (not isinstance(self.delimiter, str) or len(self.delimiter) != 1):
            raise SettingsError(f"--delimiter must be one character, got {self.delimiter!r}; e.g. --delimiter ';'")
        if not isinstance(self.drop, tuple) or not all(isinstance(name, str) and name for name in self.drop):
            raise SettingsError(f"--drop takes column names, got {self.drop!r}; e.g. --drop id,name")
        if self.augment not in AUGMENT:
            raise SettingsError(f"unknown --augment '{self.augment}'; use one of: {', '.join(AUGMENT)}")
        if self.impute is not None and self.impute not in IMPUTE:
            raise SettingsError(f"unknown --impute '{self.impute}'; use one of: {', '.join(IMPUTE)}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise SettingsError(f"unknown device '{self.device}'; use auto, cpu or cuda")
        for name, example in (("max_latency_ms", "5"), ("max_epoch_time", "0.5")):
            value = getattr(self, name)
            if value is not None and (not is_number(value) or not 0 < value < math.inf):
                flag = name.replace("_", "-")
                raise SettingsError(f"--{flag} must be a positive number, got {value!r}; e.g. --{flag} {example}")
        latency = self.penalty == "latency" or self.max_latency_ms is not None
        if self.latency_batch != 1 and not latency:
            raise SettingsError("--latency-batch needs --penalty latency or --max-latency-ms")
        if latency and self.ray_address is not None:
            raise SettingsError(
                "latency is measured on the driver's device, but with --ray-address the trials run on another "
                "machine; search on that machine (or without --ray-address), or use --penalty flops / --max-flops"
            )

    @property
    def trial_budget(self) -> int | None:
        """The cap on trainings: `max_trials`, or 30 for random/Sobol searches when not given (`dnc` and
        `transfer` have budgets of their own)."""
        if self.max_trials is None and self.method in SAMPLING_METHODS:
            return DEFAULT_MAX_TRIALS
        return self.max_trials

    @classmethod
    def from_stored(cls, stored: dict[str, Any], **changes: Any) -> SearchSettings:
        """The settings a run was stored with (`RunStore.settings`), with `changes` applied. The stored
        `space` is the whole space (rebuilt by `SearchSpace.from_dict`), so no overrides are carried here."""
        values = {f.name: stored[f.name] for f in fields(cls) if f.name in stored}
        values.setdefault("prune", "none")  # (runs before pruning existed trained every trial to the end)
        values["space"] = None
        if values.get("image_shape"):
            values["image_shape"] = tuple(values["image_shape"])
        return cls.from_options(**(values | changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored with the run."""
        values = asdict(self)
        values["image_shape"] = list(self.image_shape) if self.image_shape else None
        values["drop"] = list(self.drop)
        values["transfer_configs"] = list(self.transfer_configs)
        values["warm_configs"] = list(self.warm_configs)
        values["data_dir"] = str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None
        return values


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from a number of seconds or a text such as '90', '90s', '30m', '1.5h', '2d' (None: no limit)."""
    if value is None:
        return None
    if is_number(value):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", str(value).lower())
        if not match:
            raise SettingsError(f"invalid time budget '{value}'; give seconds or a duration such as 30m or 2h")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise SettingsError(f"the time budget must be positive, got {value!r}; e.g. --time-budget 30m")
    return seconds
