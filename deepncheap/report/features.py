"""The searched hyperparameters of a run as plottable features: the config keys whose values vary across its
complete trials, lists of layer widths summarised by their depth and total width, each with a label, and
whether its axis is categorical, linear or logarithmic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepncheap.store import Trial

LABELS = {
    "num_conv_layers": "conv layers (depth)",
    "num_hidden_layers": "hidden layers (depth)",
    "downsampling": "downsampling",
    "bn_frac": "fraction of layers with batch norm",
    "do_frac": "fraction of layers with dropout",
    "input_drop_prob": "input dropout probability",
    "drop_prob": "dropout probability",
    "shortcut_every": "residual shortcut every N layers (0: none)",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "batch_size": "batch size",
}
# Hyperparameters drawn from a short list of choices: one column of points per choice.
CHOICES = ("downsampling", "bn_frac", "do_frac", "input_drop_prob", "drop_prob", "shortcut_every")


@dataclass(frozen=True)
class Feature:
    """One plotted hyperparameter: its values by trial id and how to draw its axis."""

    key: str
    label: str
    values: dict[int, Any]
    categorical: bool = False
    scale: str = "linear"  # linear | log | symlog
    linthresh: float = 1.0  # (symlog: the linear range around 0)
    integer: bool = False  # whole numbers (ticks too)


def searched_features(trials: list[Trial]) -> list[Feature]:
    """The features that vary across `trials`, in config order; one whose values repeat another's (a depth
    and its `num_*_layers` key) is left out."""
    keys: list[str] = []
    for trial in trials:
        keys += [k for k in trial.config if k not in keys and k != "network"]
    features: list[Feature] = []
    for key in keys:
        values = {t.trial_id: t.config[key] for t in trials if key in t.config}
        if any(isinstance(v, list) for v in values.values()):
            width = "channels" if key == "channels" else key.replace("_", " ")
            candidates = [
                _numeric(f"{key}_depth", f"{width}: depth (layers)", {i: len(v) for i, v in values.items()}),
                _numeric(f"{key}_total", f"total {width} (sum over layers)", {i: sum(v) for i, v in values.items()}),
            ]
        elif key in CHOICES or any(isinstance(v, str) for v in values.values()):
            candidates = [Feature(key, LABELS.get(key, key), values, categorical=True)]
        else:
            candidates = [_numeric(key, LABELS.get(key, key), values)]
        for feature in candidates:
            varies = len({repr(v) for v in feature.values.values()}) > 1
            if varies and all(feature.values != other.values for other in features):
                features.append(feature)
    return features


def _numeric(key: str, label: str, values: dict[int, Any]) -> Feature:
    """A numeric feature, on a log axis when it spans a factor of 10 or more (symlog when it includes 0)."""
    numbers = [float(v) for v in values.values()]
    integer = all(isinstance(v, int) for v in values.values())
    positive = [v for v in numbers if v > 0]
    if positive and max(positive) >= 10 * min(positive):
        if len(positive) == len(numbers):
            return Feature(key, f"{label} (log scale)", values, scale="log", integer=integer)
        label += " (symmetric log scale)"
        return Feature(key, label, values, scale="symlog", linthresh=min(positive), integer=integer)
    return Feature(key, label, values, integer=integer)
