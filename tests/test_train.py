import numpy as np
import pytest
import torch

from deepncheap.data import load_dataset
from deepncheap.errors import SettingsError
from deepncheap.models import build_model
from deepncheap.space import SearchSpace
from deepncheap.train import (
    DeviceData,
    TrialDiverged,
    augment_batch,
    lr_milestones,
    seed_everything,
    train,
    uses_augmentation,
)

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


# ---------------------------------------------------------------------------------------------------------
# augmentation


def cifar_shaped(n=64, seed=0):
    """Synthetic data of CIFAR's shape: `n` random 3x32x32 images in 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 32, 32)).astype(np.float32), np.arange(n) % 10


def test_augmented_batches_are_padded_crops_or_their_mirror_images():
    images = torch.from_numpy(cifar_shaped(16)[0])
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert not torch.equal(out, images)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for i in range(len(images)):
        windows = {(dy, dx): padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)}
        crops = {
            (*key, flip): window.flip(-1) if flip else window for key, window in windows.items() for flip in (0, 1)
        }
        matches = [key for key, crop in crops.items() if torch.equal(crop, out[i])]
        assert len(matches) == 1
        flips += matches[0][2]
    assert 0 < flips < len(images)


def test_augmentation_repeats_with_the_seed_and_changes_with_it():
    images = torch.from_numpy(cifar_shaped()[0])
    first = augment_batch(images, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment_batch(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, augment_batch(images, torch.Generator().manual_seed(4)))


def test_a_trial_with_augmentation_is_reproducible_and_differs_from_one_without():
    x, y = cifar_shaped()
    dataset = load_dataset((x, y), network="cnn")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    config = SearchSpace.create("cnn").default_config(depth=4, widths=[8, 8, 16, 16]) | {"batch_size": 16}

    def fit_augmented(augment):
        seed_everything(0)
        model = build_model(config, dataset.input_shape, dataset.num_outputs)
        result = train(model, data, lr=1e-2, weight_decay=0.0, batch_size=16, epochs=2, seed=0, augment=augment)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), result.val_curve

    weights, curve = fit_augmented(True)
    again, curve_again = fit_augmented(True)
    assert torch.equal(weights, again) and curve == curve_again
    assert not torch.equal(weights, fit_augmented(False)[0])


def test_augmentation_is_on_by_default_for_cifar_shaped_images_only():
    assert uses_augmentation("auto", (3, 32, 32))
    assert not uses_augmentation("auto", (1, 8, 8))  # digits
    assert not uses_augmentation("auto", (3072,))  # CIFAR flattened for an MLP
    assert not uses_augmentation("off", (3, 32, 32))
    assert uses_augmentation("on", (1, 8, 8))
    with pytest.raises(SettingsError, match="--augment on crops and flips images, but the inputs are flat"):
        uses_augmentation("on", (64,))
