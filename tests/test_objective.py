import math

import pytest

from deepncheap.objective import Baselines, complexity, objective, performance_error


def test_objective_is_log10_of_weighted_sum():
    assert objective(0.1, 0.5, 0.0) == pytest.approx(-1.0)
    assert objective(0.05, 0.5, 0.1) == pytest.approx(math.log10(0.1))


def test_f_p_floor_makes_perfect_scores_finite():
    assert performance_error(task="classification", n_val=200, val_accuracy=0.9) == pytest.approx(0.1)
    assert performance_error(task="classification", n_val=200, val_accuracy=1.0) == pytest.approx(0.5 / 200)
    assert math.isfinite(objective(performance_error(task="classification", n_val=50, val_accuracy=1.0), 0, 0))


def test_regression_f_p_is_normalized_mse_with_floor():
    assert performance_error(task="regression", n_val=10, val_mse=2.0, val_target_var=4.0) == pytest.approx(0.5)
    assert performance_error(task="regression", n_val=10, val_mse=0.0, val_target_var=4.0) == 1e-6


def test_complexity_normalizes_by_baselines():
    baselines = Baselines(n_params=1000, time_per_epoch_s=2.0)
    assert complexity(penalty="params", n_params=250, time_per_epoch_s=9, baselines=baselines) == 0.25
    assert complexity(penalty="time", n_params=250, time_per_epoch_s=1.0, baselines=baselines) == 0.5
    assert Baselines.from_dict(baselines.to_dict()) == baselines
    with pytest.raises(ValueError):
        complexity(penalty="time", n_params=1, time_per_epoch_s=1.0, baselines=Baselines(n_params=10))
