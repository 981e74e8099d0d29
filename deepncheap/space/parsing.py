"""Validation of user overrides of the search space (`--space` files, `SearchSpace.create`).

Reads a YAML/JSON space file, checks every name and value (ranges, numbers, choice lists) and turns them
into the types `SearchSpace` holds; every error is a one-line `SpaceError` that says how to fix it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepncheap.errors import SpaceError
from deepncheap.space.families import DOWNSAMPLING

# Integer ranges and their smallest allowed lower bound.
_INT_RANGES = {
    "num_conv_layers": 1,
    "channels_first": 1,
    "num_hidden_layers": 0,
    "hidden_nodes": 1,
    "batch_size": 1,
}
_REAL_RANGES = ("lr", "weight_decay")
_FRACTION_CHOICES = ("bn_fracs", "do_fracs")  # fractions of the layers: [0, 1]
_PROBABILITY_CHOICES = ("input_drop_probs", "drop_probs", "drop_probs_mlp")  # dropout probabilities: [0, 1)


def read_space_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a YAML or JSON file (`--space`), loaded with yaml's safe loader (never runs code).
    Numbers such as 1e-3 are numbers, as in JSON and YAML 1.2 (YAML 1.1, which PyYAML follows, would read
    them as text)."""
    import yaml

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"space file not found: {file}; check the path given to --space") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read space file {file} ({exc}); give a readable YAML or JSON file") from None
    try:
        overrides = _safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise SpaceError(f"space file {file} is not valid YAML/JSON{at}; fix its syntax") from None
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise SpaceError(f"space file {file} must hold a mapping 'name: value'; see the README for the keys")
    return overrides


def parse_overrides(overrides: Any, names: Collection[str]) -> dict[str, Any]:
    """`overrides` (name -> range, number or choice list) checked and parsed; `names`: the allowed names."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise SpaceError("a search space must be a mapping from hyperparameter name to value")
    values: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in names:
            raise SpaceError(f"unknown hyperparameter '{name}' in the search space; use one of: {', '.join(names)}")
        values[name] = _parse_field(name, value)
    return values


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
    if name in _FRACTION_CHOICES or name in _PROBABILITY_CHOICES:
        fraction = name in _FRACTION_CHOICES
        for v in choices:
            if not is_number(v) or not (0 <= v <= 1 if fraction else 0 <= v < 1):
                limit = "[0, 1]" if fraction else "[0, 1)"
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


def _safe_load(text: str) -> Any:
    """`yaml.safe_load` that also reads exponent numbers without a dot (1e-3) as floats."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    exponent = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+0123456789"))
    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
