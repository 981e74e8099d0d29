"""The search space: ranges and choices of every hyperparameter, defaults, and sampling.

A config is a plain JSON-safe dict of hyperparameter values (see `CNN_KEYS`, `MLP_KEYS`). Sampling draws
points in the unit cube (uniform random or scrambled Sobol) and decodes each into a valid config, so the
channel rule (non-decreasing, at most doubling, capped) holds by construction. No torch here.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from deepncheap.bo import LayersTerm, ScalarTerm, Term
from deepncheap.errors import SpaceError

NETWORKS = ("cnn", "mlp")
SAMPLING_METHODS = ("random", "sobol")
GRID_SUB_STAGES = {"cnn": ("downsampling", "batch_norm", "dropout", "shortcuts"), "mlp": ("dropout",)}
DOWNSAMPLING = ("maxpool", "stride")
CNN_KEYS = (
    "network",
    "num_conv_layers",
    "channels",
    "downsampling",
    "bn_frac",
    "do_frac",
    "input_drop_prob",
    "drop_prob",
    "shortcut_every",
    "lr",
    "weight_decay",
    "batch_size",
)
MLP_KEYS = ("network", "num_hidden_layers", "hidden_nodes", "drop_prob", "lr", "weight_decay", "batch_size")

# Values used while a hyperparameter is not searched (the reference's defaults, SPEC §8).
DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 256
# Training hyperparameters of the architecture stages in our default mode (the reference's 1e-3 / 256 suit
# 100 epochs on 50k samples; with few epochs on small sets they leave every network under-trained, e.g. 2
# Adam steps per epoch on breast_cancer, and the core stage then ranks architectures on noise).
ARCHITECTURE_STAGE_LR = 1e-2
ARCHITECTURE_STAGE_BATCH_SIZE = 64
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_CNN_INPUT_DROP = 0.1
DEFAULT_CNN_DROP = 0.3
DEFAULT_MLP_DROP = 0.2


@dataclass(frozen=True)
class SearchSpace:
    """Ranges (inclusive `(low, high)`) and choice lists of one network family's search space.

    Field names are the keys of a `--space` file (SPEC §10); `SearchSpace.create` validates overrides.
    `shortcut_every` uses 0 for "no shortcuts".
    """

    network: str = "cnn"
    num_conv_layers: tuple[int, int] = (4, 16)
    channels_first: tuple[int, int] = (16, 64)
    channels_upper: int = 512
    num_hidden_layers: tuple[int, int] = (0, 2)
    hidden_nodes: tuple[int, int] = (20, 400)
    lr: tuple[float, float] = (1e-5, 1e-1)
    weight_decay: tuple[float, float] = (1e-6, 1e-3)
    batch_size: tuple[int, int] = (32, 512)
    bn_fracs: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    do_fracs: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    input_drop_probs: tuple[float, ...] = (0.1, 0.2)
    drop_probs: tuple[float, ...] = (0.15, 0.3, 0.45)
    drop_probs_mlp: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    downsampling: tuple[str, ...] = DOWNSAMPLING
    shortcut_every: tuple[int, ...] = (0, 4, 2)

    @classmethod
    def create(cls, network: str = "cnn", overrides: Mapping[str, Any] | None = None) -> SearchSpace:
        """The default space of `network` with `overrides` (name -> range, number or choice list) applied."""
        if network not in NETWORKS:
            raise SpaceError(f"unknown network '{network}'; use one of: {', '.join(NETWORKS)}")
        if overrides is not None and not isinstance(overrides, Mapping):
            raise SpaceError("a search space must be a mapping from hyperparameter name to value")
        values: dict[str, Any] = {}
        for name, value in (overrides or {}).items():
            if name not in _FIELD_KINDS:
                raise SpaceError(
                    f"unknown hyperparameter '{name}' in the search space; use one of: {', '.join(_FIELD_KINDS)}"
                )
            values[name] = _parse_field(name, value)
        space = replace(cls(network=network), **values)
        space._check_consistency()
        return space

    def _check_consistency(self) -> None:
        if self.channels_first[1] > self.channels_upper:
            raise SpaceError(
                f"channels_first upper bound {self.channels_first[1]} exceeds channels_upper "
                f"{self.channels_upper}; lower channels_first or raise channels_upper"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored with the run."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SearchSpace:
        """The space `to_dict` stored."""
        return cls.create(values["network"], {k: v for k, v in values.items() if k != "network"})

    @property
    def max_layers(self) -> int:
        return self.num_conv_layers[1] if self.network == "cnn" else self.num_hidden_layers[1]

    def dimension(self, stage: str = "joint") -> int:
        """Number of unit-cube coordinates that `decode(stage=...)` consumes."""
        layers = 1 + self.max_layers
        advanced = 6 if self.network == "cnn" else 1
        return {"joint": layers + advanced + 3, "core": layers, "training": 3}[stage]

    def decode(self, point: np.ndarray, *, stage: str = "joint", base: dict[str, Any] | None = None) -> dict[str, Any]:
        """Map a point of the unit cube [0, 1)^dimension(stage) to a valid config.

        joint: every hyperparameter; core: the layers, everything else at its default or its value in `base`;
        training: lr, weight decay and batch size on top of `base` (the architecture found so far).
        """
        if len(point) != self.dimension(stage):
            raise ValueError(f"expected a point of dimension {self.dimension(stage)}, got {len(point)}")
        u: Iterator[float] = iter(float(v) for v in point)
        if stage == "training":
            if base is None:
                raise ValueError("the training stage decodes on top of a base config")
            return {**base, **self._decode_training(u)}
        depth_bounds = self.num_conv_layers if self.network == "cnn" else self.num_hidden_layers
        depth = _int_at(next(u), *depth_bounds)
        units = [next(u) for _ in range(self.max_layers)][:depth]
        if self.network == "cnn":
            widths = grow_channels(units, self.channels_first, self.channels_upper)
        else:
            widths = [_int_at(w, *self.hidden_nodes) for w in units]
        config = self.default_config(depth=depth, widths=widths)
        if stage == "core":  # `base`: values of the other hyperparameters that replace their defaults
            return config if base is None else {**config, **base}
        if self.network == "cnn":
            for key, choices in (
                ("downsampling", self.downsampling),
                ("bn_frac", self.bn_fracs),
                ("do_frac", self.do_fracs),
                ("input_drop_prob", self.input_drop_probs),
                ("drop_prob", self.drop_probs),
                ("shortcut_every", self.shortcut_every),
            ):
                config[key] = _choice_at(next(u), choices)
        else:
            config["drop_prob"] = _choice_at(next(u), self.drop_probs_mlp)
        return {**config, **self._decode_training(u)}

    def _decode_training(self, u: Iterator[float]) -> dict[str, Any]:
        return {
            "lr": _log_at(next(u), *self.lr),
            "weight_decay": _weight_decay_at(next(u), *self.weight_decay),
            "batch_size": _int_at(next(u), *self.batch_size),
        }

    def sample(
        self, n: int, *, method: str = "sobol", seed: int = 0, stage: str = "joint", base: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """`n` configs of a stage's space: uniform random or scrambled Sobol, deterministic in `seed`."""
        points = unit_points(n, self.dimension(stage), method=method, seed=seed)
        return [self.decode(point, stage=stage, base=base) for point in points]

    def grid(self, sub_stage: str, base: dict[str, Any]) -> list[dict[str, Any]]:
        """The configs of an advanced-architecture sub-stage (`GRID_SUB_STAGES`): `base` with each value."""
        values: list[dict[str, Any]]
        if sub_stage == "dropout" and self.network == "cnn":
            values = [
                {"do_frac": f, "input_drop_prob": p_in, "drop_prob": p}
                for f, p_in, p in itertools.product(self.do_fracs, self.input_drop_probs, self.drop_probs)
            ]
        else:
            choices: tuple[Any, ...]
            key, choices = {
                "downsampling": ("downsampling", self.downsampling),
                "batch_norm": ("bn_frac", self.bn_fracs),
                "shortcuts": ("shortcut_every", self.shortcut_every),
                "dropout": ("drop_prob", self.drop_probs_mlp),
            }[sub_stage]
            values = [{key: choice} for choice in choices]
        return [{**base, **value} for value in values]

    def kernel(self, stage: str, *, reference: bool = False) -> list[tuple[float, Term]]:
        """The (weight, term) pairs of a BO stage's kernel, equal weights over the stage's hyperparameters.

        CNN core: channels compared layer by layer, layer i normalized by its own bounds [first low,
        min(first high * 2^i, upper)] (`reference`: by the first layer's bounds for every layer, the
        reference's bug) with root min(i + 1, 4). MLP core: mean of total nodes (root 2) and layer count.
        Training: log10 lr, log10 weight decay (0 at the lower bound), batch size.
        """
        if stage == "training":
            return [
                (1 / 3, ScalarTerm(math.log10(self.lr[0]), math.log10(self.lr[1]))),
                (1 / 3, ScalarTerm(*(_log10_weight_decay(v, self.weight_decay) for v in self.weight_decay))),
                (1 / 3, ScalarTerm(*self.batch_size)),
            ]
        if self.network == "cnn":
            low, high = self.channels_first
            highs = [high if reference else min(high * 2**i, self.channels_upper) for i in range(self.max_layers)]
            roots = [min(i + 1, 4) for i in range(self.max_layers)]
            term = LayersTerm(tuple([float(low)] * self.max_layers), tuple(map(float, highs)), tuple(map(float, roots)))
            return [(1.0, term)]
        depth_low, depth_high = self.num_hidden_layers
        nodes = ScalarTerm(depth_low * self.hidden_nodes[0], depth_high * self.hidden_nodes[1], root=2.0)
        return [(0.5, nodes), (0.5, ScalarTerm(depth_low, depth_high))]

    def encode(self, stage: str, configs: list[dict[str, Any]]) -> list[np.ndarray]:
        """Configs as the arrays `kernel(stage)` compares, one per term."""
        if stage == "training":
            return [
                np.log10([c["lr"] for c in configs]),
                np.array([_log10_weight_decay(c["weight_decay"], self.weight_decay) for c in configs]),
                np.array([c["batch_size"] for c in configs], dtype=float),
            ]
        if self.network == "cnn":
            channels = np.full((len(configs), self.max_layers), np.nan)
            for row, config in zip(channels, configs, strict=True):
                row[: len(config["channels"])] = config["channels"]
            return [channels]
        return [
            np.array([sum(c["hidden_nodes"]) for c in configs], dtype=float),
            np.array([c["num_hidden_layers"] for c in configs], dtype=float),
        ]

    def architecture_stage_training(self) -> dict[str, Any]:
        """lr and batch size the architecture stages train with in the default mode (clipped to the space)."""
        return {
            "lr": _clip(ARCHITECTURE_STAGE_LR, self.lr),
            "batch_size": int(_clip(ARCHITECTURE_STAGE_BATCH_SIZE, self.batch_size)),
        }

    def default_config(self, *, depth: int, widths: list[int]) -> dict[str, Any]:
        """The config with the given layers and every other hyperparameter at its default."""
        training = {
            "lr": _clip(DEFAULT_LR, self.lr),
            "weight_decay": self.weight_decay[0]
            if self.weight_decay[0] == self.weight_decay[1]
            else DEFAULT_WEIGHT_DECAY,
            "batch_size": int(_clip(DEFAULT_BATCH_SIZE, self.batch_size)),
        }
        if self.network == "cnn":
            return {
                "network": "cnn",
                "num_conv_layers": depth,
                "channels": widths,
                "downsampling": "maxpool",
                "bn_frac": 1.0,
                "do_frac": 1.0,
                "input_drop_prob": DEFAULT_CNN_INPUT_DROP,
                "drop_prob": DEFAULT_CNN_DROP,
                "shortcut_every": default_shortcut_every(depth),
                **training,
            }
        return {
            "network": "mlp",
            "num_hidden_layers": depth,
            "hidden_nodes": widths,
            "drop_prob": DEFAULT_MLP_DROP,
            **training,
        }

    def largest_config(self) -> dict[str, Any]:
        """The space's largest network (most layers, widest channels/nodes): the parameter baseline."""
        depth = self.max_layers
        if self.network == "cnn":
            return self.default_config(depth=depth, widths=doubling_channels(depth, self))
        return self.default_config(depth=depth, widths=[self.hidden_nodes[1]] * depth)

    def time_reference_config(self) -> dict[str, Any]:
        """The config whose time per epoch is the time baseline (SPEC §10)."""
        if self.network == "cnn":
            depth = self.num_conv_layers[0]
            return self.default_config(depth=depth, widths=doubling_channels(depth, self))
        return self.largest_config()


def read_space_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a YAML or JSON file (`--space`), loaded with yaml.safe_load (never runs code)."""
    import yaml

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"space file not found: {file}; check the path given to --space") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read space file {file} ({exc}); give a readable YAML or JSON file") from None
    try:
        overrides = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise SpaceError(f"space file {file} is not valid YAML/JSON{at}; fix its syntax") from None
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise SpaceError(f"space file {file} must hold a mapping 'name: value'; see the README for the keys")
    return overrides


def _log10_weight_decay(value: float, bounds: tuple[float, float]) -> float:
    """Weight decay on its kernel scale: log10, with 0 mapped to the lower bound."""
    low = bounds[0] if bounds[0] > 0 else 1e-6
    return math.log10(value if value > 0 else low)


def doubling_channels(depth: int, space: SearchSpace) -> list[int]:
    """Channels doubling from the first layer's upper bound, capped at `channels_upper`."""
    return [min(space.channels_first[1] * 2**i, space.channels_upper) for i in range(depth)]


def grow_channels(units: list[float], first: tuple[int, int], upper: int) -> list[int]:
    """Channels per layer from unit values: first in `first`, each later one in [prev, min(2 prev, upper)]."""
    channels: list[int] = []
    for u in units:
        low, high = (first[0], first[1]) if not channels else (channels[-1], min(2 * channels[-1], upper))
        channels.append(_int_at(u, low, high))
    return channels


def default_shortcut_every(depth: int) -> int:
    """Reference rule: no shortcuts up to 8 layers, every 4 layers up to 14, every 2 beyond (0 = none)."""
    if depth <= 8:
        return 0
    return 4 if depth <= 14 else 2


def derive_seed(seed: int, *labels: str | int) -> int:
    """A seed derived from the search seed and labels (stage names, indices), stable across runs."""
    codes = [v if isinstance(v, int) else int.from_bytes(v.encode(), "little") % 2**31 for v in labels]
    return int(np.random.SeedSequence([seed, *codes]).generate_state(1)[0])


def unit_points(n: int, dimension: int, *, method: str, seed: int) -> np.ndarray:
    """`n` points in [0, 1)^dimension: uniform random or scrambled Sobol (scipy.stats.qmc)."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method '{method}'")
    rng = np.random.default_rng(seed)
    if method == "random":
        return rng.random((n, dimension))
    from scipy.stats import qmc  # (imported here: scipy.stats takes 0.7 s, and trial workers never sample)
    with warnings.catch_warnings():  # n need not be a power of 2 for our use
        warnings.simplefilter("ignore", UserWarning)
        return qmc.Sobol(dimension, scramble=True, seed=rng).random(n)


def _int_at(u: float, low: int, high: int) -> int:
    return int(low + min(math.floor(u * (high - low + 1)), high - low))


def _log_at(u: float, low: float, high: float) -> float:
    return float(10 ** (math.log10(low) + u * (math.log10(high) - math.log10(low))))


def _weight_decay_at(u: float, low: float, high: float) -> float:
    """Log-uniform, with the lowest decade mapped to 0 when the range spans more than one decade."""
    if low == high:
        return float(low)
    exponent = math.log10(low) + u * (math.log10(high) - math.log10(low))
    if math.log10(high) - math.log10(low) > 1 and exponent < math.log10(low) + 1:
        return 0.0
    return float(10**exponent)


def _choice_at(u: float, choices: tuple[Any, ...]) -> Any:
    return choices[min(int(u * len(choices)), len(choices) - 1)]


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


# --- validation of overrides -------------------------------------------------------------------------

_INT_RANGES = {
    "num_conv_layers": 1,
    "channels_first": 1,
    "num_hidden_layers": 0,
    "hidden_nodes": 1,
    "batch_size": 1,
}
_REAL_RANGES = ("lr", "weight_decay")
_PROB_CHOICES = ("bn_fracs", "do_fracs", "input_drop_probs", "drop_probs", "drop_probs_mlp")
_FIELD_KINDS = [f.name for f in fields(SearchSpace) if f.name != "network"]


def _parse_field(name: str, value: Any) -> Any:
    if name in _INT_RANGES or name in _REAL_RANGES:
        return _parse_range(name, value)
    if name == "channels_upper":
        if not is_int(value) or value < 1:
            raise SpaceError(f"channels_upper must be a positive integer, got {value!r}; e.g. channels_upper: 256")
        return int(value)
    return _parse_choices(name, value)


def _parse_range(name: str, value: Any) -> tuple[Any, Any]:
    integer = name in _INT_RANGES
    kind = "integers" if integer else "numbers"
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SpaceError(f"{name} must be [low, high] or a single number, got {list(value)}; e.g. {name}: [1, 4]")
        low, high = value
    else:
        low = high = value
    for v in (low, high):
        ok = is_int(v) if integer else is_number(v)
        if not ok:
            raise SpaceError(f"{name} takes {kind}, got {v!r}; give [low, high] with {kind}")
    if low > high:
        raise SpaceError(f"{name} range [{low}, {high}] is inverted; give [low, high] with low <= high")
    minimum = _INT_RANGES.get(name, 0)
    if name == "lr" and low <= 0:
        raise SpaceError(f"lr range must be positive, got [{low}, {high}]; e.g. lr: [1e-4, 1e-2]")
    if name == "weight_decay" and (low < 0 or (low == 0 and high > 0)):
        raise SpaceError(
            f"weight_decay range must be positive (its lowest decade maps to 0), got [{low}, {high}]; "
            "e.g. weight_decay: [1e-6, 1e-3], or weight_decay: 0 to fix it at 0"
        )
    if low < minimum:
        raise SpaceError(f"{name} must be at least {minimum}, got {low}; raise the lower bound")
    return (int(low), int(high)) if integer else (float(low), float(high))


def _parse_choices(name: str, value: Any) -> tuple[Any, ...]:
    choices = list(value) if isinstance(value, (list, tuple)) else [value]
    if not choices:
        raise SpaceError(f"{name} is an empty list; give at least one choice")
    if name in _PROB_CHOICES:
        for v in choices:
            if not is_number(v) or not 0 <= v < 1 + (name in ("bn_fracs", "do_fracs")):
                limit = "[0, 1]" if name in ("bn_fracs", "do_fracs") else "[0, 1)"
                raise SpaceError(f"{name} takes numbers in {limit}, got {v!r}; e.g. {name}: [0.1, 0.2]")
        return tuple(float(v) for v in choices)
    if name == "downsampling":
        for v in choices:
            if v not in DOWNSAMPLING:
                raise SpaceError(f"downsampling takes {' or '.join(DOWNSAMPLING)}, got {v!r}")
        return tuple(choices)
    parsed = []  # shortcut_every
    for v in choices:
        if v in ("none", None, 0):
            parsed.append(0)
        elif is_int(v) and v > 0:
            parsed.append(int(v))
        else:
            raise SpaceError(f"shortcut_every takes none or positive integers (2, 4), got {v!r}")
    return tuple(parsed)


def is_int(v: Any) -> bool:
    """A true integer (numpy included), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite real number (numpy included), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
