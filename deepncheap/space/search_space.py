"""The `SearchSpace` dataclass: one network family's ranges and choices, and the stage-wise sampling API.

It holds the bounds (validated on creation), says how many unit coordinates each stage consumes, decodes
unit points into configs, and hands the per-family work to `families`, the unit-value decoders and
point generation to `sampling`, the BO kernel and encodings to `kernel`, and override checks to `parsing`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from deepncheap.bo import Term
from deepncheap.errors import SpaceError
from deepncheap.space import families
from deepncheap.space.families import ADVANCED_DIMENSION, DOWNSAMPLING, NETWORKS
from deepncheap.space.kernel import encode as encode_configs
from deepncheap.space.kernel import kernel_terms
from deepncheap.space.parsing import parse_overrides
from deepncheap.space.sampling import _int_at, _log_at, _weight_decay_at, unit_points


@dataclass(frozen=True)
class SearchSpace:
    """Ranges (inclusive `(low, high)`) and choice lists of one network family's search space.

    Field names are the keys of a `--space` file (a YAML or JSON mapping, see the README);
    `SearchSpace.create` validates overrides. `shortcut_every` uses 0 for "no shortcuts".
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
        names = [f.name for f in fields(cls) if f.name != "network"]
        space = replace(cls(network=network), **parse_overrides(overrides, names))
        space._check_consistency()
        return space

    def _check_consistency(self) -> None:
        if self.channels_first[1] > self.channels_upper:
            raise SpaceError(
                f"channels_first upper bound {self.channels_first[1]} exceeds channels_upper "
                f"{self.channels_upper}; lower channels_first or raise channels_upper"
            )

    def bounded_by_training_set(self, n_train: int) -> tuple[SearchSpace, str | None]:
        """The space with the batch-size range clipped to `n_train` samples, and a one-line note for the user.

        Both bounds are clipped (a batch cannot hold more samples than the training set); the note says what
        changed, and is None (with the space itself) when the training set already holds the largest batch.
        """
        if n_train < 1:
            raise ValueError(f"the training set must hold at least 1 sample, got {n_train}")
        low, high = self.batch_size
        if high <= n_train:
            return self, None
        bounded = (min(low, n_train), n_train)
        note = (
            f"batch_size range [{low}, {high}] bounded to [{bounded[0]}, {bounded[1]}]: "
            f"the training set has {n_train} sample{'s' if n_train > 1 else ''}"
        )
        return replace(self, batch_size=bounded), note

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
        return {"joint": layers + ADVANCED_DIMENSION[self.network] + 3, "core": layers, "training": 3}[stage]

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
        depth, widths = families.decode_layers(self, u)
        config = self.default_config(depth=depth, widths=widths)
        if stage == "core":  # `base`: values of the other hyperparameters that replace their defaults
            return config if base is None else {**config, **base}
        return {**config, **families.decode_advanced(self, u), **self._decode_training(u)}

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
        return families.grid(self, sub_stage, base)

    def kernel(self, stage: str, *, reference: bool = False) -> list[tuple[float, Term]]:
        """The (weight, term) pairs of a BO stage's kernel (see `deepncheap.space.kernel.kernel_terms`)."""
        return kernel_terms(self, stage, reference=reference)

    def encode(self, stage: str, configs: list[dict[str, Any]]) -> list[np.ndarray]:
        """Configs as the arrays `kernel(stage)` compares, one per term."""
        return encode_configs(self, stage, configs)

    def architecture_stage_training(self) -> dict[str, Any]:
        """lr and batch size the architecture stages train with in the default mode (clipped to the space)."""
        return families.architecture_stage_training(self)

    def default_config(self, *, depth: int, widths: list[int]) -> dict[str, Any]:
        """The config with the given layers and every other hyperparameter at its default."""
        return families.default_config(self, depth=depth, widths=widths)

    def core_config(self, config: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
        """`config`'s layers (depth and widths) as a core-stage config: every other hyperparameter at its
        default or its value in `base`, as `decode(stage="core")` makes them."""
        depth, widths = families.layers_of(self, config)
        core = self.default_config(depth=depth, widths=widths)
        return core if base is None else {**core, **base}

    def largest_config(self) -> dict[str, Any]:
        """The space's largest network (most layers, widest channels/nodes): the parameter baseline."""
        return families.largest_config(self)

    def smallest_configs(self) -> list[dict[str, Any]]:
        """The smallest networks of the space (`families.smallest_configs`)."""
        return families.smallest_configs(self)

    def time_reference_config(self) -> dict[str, Any]:
        """The config whose time per epoch is the time baseline (see `families.time_reference_config`)."""
        return families.time_reference_config(self)
