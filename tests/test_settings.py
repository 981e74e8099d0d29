import pytest

import deepncheap
from deepncheap.errors import DNCError, SettingsError
from deepncheap.settings import DEFAULT_EPOCHS, SearchSettings, parse_duration


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"network": "rnn"}, "unknown network"),
        ({"wc": -0.5}, "w_c must be a number >= 0"),
        ({"wc": float("nan")}, "w_c must be a number >= 0"),
        ({"epochs": 0}, "--epochs must be an integer >= 1"),
        ({"seed": 1.5}, "--seed must be an integer"),
        ({"seed": "7"}, "--seed must be an integer"),
        ({"max_trials": 0}, "--max-trials must be an integer >= 1"),
        ({"penalty": "energy"}, "unknown penalty"),
        ({"method": "grid"}, "unknown method"),
        ({"device": "tpu"}, "unknown device"),
        ({"image_shape": (1, 8)}, "three positive integers"),
        ({"learning_rate": 0.1}, "unknown option 'learning_rate'"),
        ({"bo_mode": "fast"}, "unknown BO mode"),
        ({"prior_points": 0}, "--prior-points must be an integer >= 1"),
        ({"candidates": 0}, "--candidates must be an integer >= 1"),
    ],
)
def test_invalid_options_raise_settings_error(options, match, tmp_path):
    with pytest.raises(SettingsError, match=match) as info:
        deepncheap.search(data="iris", out=tmp_path / "run", verbose=False, report=False, **options)
    assert isinstance(info.value, DNCError) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_defaults_and_stored_form():
    settings = SearchSettings.from_options(network="mlp", max_trials=None, image_shape=[1, 8, 8])
    assert settings.epochs == DEFAULT_EPOCHS and settings.seed == 0 and settings.method == "dnc"
    assert settings.max_trials is None and settings.trial_budget is None  # dnc: the stage budgets
    assert SearchSettings.from_options(method="sobol").trial_budget == 30
    assert SearchSettings.from_options(method="sobol", max_trials=7).trial_budget == 7
    stored = settings.to_dict()
    assert stored["network"] == "mlp" and stored["image_shape"] == [1, 8, 8] and stored["space"] is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), (90, 90), ("90s", 90), ("30m", 1800), ("1.5h", 5400), ("2h", 7200), ("1d", 86400)]
)
def test_time_budget_parsing(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "2 hours", "-5", "0", "0m", "h", "1e400"])
def test_invalid_time_budgets_are_refused(text):
    with pytest.raises(SettingsError, match="time budget"):
        parse_duration(text)
