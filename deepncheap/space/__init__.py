"""The search space: ranges and choices of every hyperparameter, defaults, and sampling.

A config is a plain JSON-safe dict of hyperparameter values (see `CNN_KEYS`, `MLP_KEYS`). Sampling draws
points in the unit cube (uniform random or scrambled Sobol) and decodes each into a valid config, so the
channel rule (non-decreasing, at most doubling, capped) holds by construction. No torch here.

This package re-exports the public names of its modules:

- `search_space`: the `SearchSpace` dataclass (bounds, stage dimensions, decoding, the stage-wise API);
- `families`: per network family (CNN, MLP) config keys, defaults, layer decoding, reference configs, grids;
- `sampling`: unit-cube points, derived seeds, and the decoders of one unit value;
- `kernel`: the BO kernel terms of each stage and the encoding of configs they compare;
- `parsing`: validation of `--space` overrides and reading of space files.
"""

from deepncheap.space.families import (
    ARCHITECTURE_STAGE_BATCH_SIZE,
    ARCHITECTURE_STAGE_LR,
    CNN_KEYS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CNN_DROP,
    DEFAULT_CNN_INPUT_DROP,
    DEFAULT_LR,
    DEFAULT_MLP_DROP,
    DEFAULT_WEIGHT_DECAY,
    DOWNSAMPLING,
    GRID_SUB_STAGES,
    MLP_KEYS,
    NETWORKS,
    default_shortcut_every,
    doubling_channels,
    grow_channels,
)
from deepncheap.space.parsing import is_int, is_number, read_space_file
from deepncheap.space.sampling import SAMPLING_METHODS, derive_seed, unit_points
from deepncheap.space.search_space import SearchSpace

__all__ = [
    "ARCHITECTURE_STAGE_BATCH_SIZE",
    "ARCHITECTURE_STAGE_LR",
    "CNN_KEYS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CNN_DROP",
    "DEFAULT_CNN_INPUT_DROP",
    "DEFAULT_LR",
    "DEFAULT_MLP_DROP",
    "DEFAULT_WEIGHT_DECAY",
    "DOWNSAMPLING",
    "GRID_SUB_STAGES",
    "MLP_KEYS",
    "NETWORKS",
    "SAMPLING_METHODS",
    "SearchSpace",
    "default_shortcut_every",
    "derive_seed",
    "doubling_channels",
    "grow_channels",
    "is_int",
    "is_number",
    "read_space_file",
    "unit_points",
]
