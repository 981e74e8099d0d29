import pytest
import torch

from deepncheap.data import load_dataset
from deepncheap.models import build_model
from deepncheap.space import SearchSpace
from deepncheap.train import DeviceData, TrialDiverged, lr_milestones, seed_everything, train

MLP = {
    "network": "mlp",
    "num_hidden_layers": 1,
    "hidden_nodes": [64],
    "drop_prob": 0.1,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "batch_size": 64,
}


@pytest.fixture(scope="module")
def digits_mlp():
    dataset = load_dataset("digits", network="mlp")
    return dataset, DeviceData.from_dataset(dataset, torch.device("cpu"))


def fit(data, dataset, config, epochs, seed=0):
    seed_everything(seed)
    model = build_model(config, dataset.input_shape, dataset.num_outputs)
    return train(
        model,
        data,
        lr=config["lr"],
        weight_decay=config["weight_decay"],
        batch_size=config["batch_size"],
        epochs=epochs,
        seed=seed,
    )


def test_trainer_reaches_90_percent_on_digits_mlp_in_a_few_epochs(digits_mlp):
    dataset, data = digits_mlp
    result = fit(data, dataset, MLP, epochs=4)
    assert result.val_accuracy > 0.9
    assert len(result.val_curve) == 4 == len(result.epoch_times_s)
    assert result.val_accuracy == max(result.val_curve) == result.val_curve[result.best_epoch]
    assert result.time_per_epoch_s == min(result.epoch_times_s[1:])  # the fastest after the warm-up epoch
    timed = result.epoch_times_s[1:]
    assert result.time_noise == pytest.approx((max(timed) - min(timed)) / min(timed))


def test_returned_model_holds_the_best_epoch_weights(digits_mlp):
    from deepncheap.train import evaluate

    dataset, data = digits_mlp
    result = fit(data, dataset, dict(MLP, lr=0.05), epochs=5)
    accuracy, _ = evaluate(result.model, data)
    assert accuracy == pytest.approx(result.val_accuracy)


def test_training_is_repeatable_with_a_seed(digits_mlp):
    dataset, data = digits_mlp
    first = fit(data, dataset, MLP, epochs=2, seed=7)
    second = fit(data, dataset, MLP, epochs=2, seed=7)
    assert first.val_curve == second.val_curve and first.val_loss == second.val_loss


def test_nan_loss_raises_trial_diverged(digits_mlp):
    dataset, data = digits_mlp
    with pytest.raises(TrialDiverged, match="nan|inf"):
        fit(data, dataset, dict(MLP, lr=1e36), epochs=2)


def test_regression_training_reduces_mse():
    dataset = load_dataset("diabetes", network="mlp")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    result = fit(data, dataset, dict(MLP, lr=1e-2, batch_size=32), epochs=5)
    assert result.val_accuracy is None
    assert result.val_loss == min(result.val_curve) < 0.8  # standardized units: 1.0 = predicting the mean


def test_cnn_with_batch_norm_trains_on_one_by_one_maps():
    """A last batch of one sample at a 1x1 map would break batch norm; the trainer skips it."""
    dataset = load_dataset("digits", network="cnn")
    small = DeviceData(
        dataset.task,
        *(
            torch.from_numpy(a)
            for a in (dataset.x_train[:65], dataset.y_train[:65], dataset.x_val[:40], dataset.y_val[:40])
        ),
    )
    widths = [64, 128, 256, 512]
    config = SearchSpace.create("cnn").default_config(depth=4, widths=widths) | {"do_frac": 0.0, "batch_size": 32}
    assert fit(small, dataset, config, epochs=1).val_accuracy is not None


def test_lr_milestones():
    assert lr_milestones(1) == []
    assert lr_milestones(2) == [1]
    assert lr_milestones(4) == [2, 3]
    assert lr_milestones(100) == [50, 75]
