"""The trainer, the hot path: fit one model with Adam and report validation per epoch and time per epoch.

Data sits in tensors on the device (moved once per search, `DeviceData`); batches are index slices of a
shuffled permutation; with `augment`, each batch is randomly cropped and flipped there too (`augment_batch`).
The clock runs around the training pass only, after a CUDA synchronize. After every
epoch the trainer calls `on_epoch` with an `EpochReport`; the hook answers whether to stop the training
there (the driver's "stop this trial"), or raises KeyboardInterrupt to abandon it (a stop request).
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deepncheap.data import Dataset
from deepncheap.errors import SettingsError
from deepncheap.timing import epoch_time

LR_DROP_FACTOR = 0.2
EVAL_BATCH = 2048
# Held by whatever seeds and draws from the process-wide generators (a trial trained in the driver, and
# saving or restoring their states): searches in threads of one process then take turns, trial by trial.
GENERATORS_LOCK = threading.Lock()
AUGMENT_PAD = 4  # pixels of padding for the random crops of augmentation (as the reference does for CIFAR)


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class DeviceData:
    """Training and validation tensors on the training device."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset: Dataset, device: torch.device) -> DeviceData:
        def put(array: np.ndarray) -> torch.Tensor:
            with warnings.catch_warnings():  # read-only arrays (mapped files, Ray's object store): never written
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        return cls(dataset.task, put(dataset.x_train), put(dataset.y_train), put(dataset.x_val), put(dataset.y_val))

    @property
    def device(self) -> torch.device:
        return self.x_train.device


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: its number (1-based), validation score (accuracy, or MSE in standardized units
    for regression), validation loss and the time of its training pass."""

    epoch: int
    val_score: float
    val_loss: float
    epoch_time_s: float


EpochHook = Callable[[EpochReport], bool]  # True: stop training after this epoch


@dataclass
class TrainResult:
    """What one training run measured; `model` holds the weights of the best validation epoch."""

    model: nn.Module
    val_curve: list[float]  # per epoch: accuracy (classification) or MSE (regression, standardized units)
    best_epoch: int  # 0-based
    val_accuracy: float | None  # best over epochs (classification)
    val_loss: float  # cross-entropy at the best epoch, or the best MSE (standardized units)
    epoch_times_s: list[float]
    stopped: bool = False  # the epoch hook stopped it before its last epoch
    train_losses: list[float] = field(default_factory=list)  # per epoch: the mean training loss of its batches

    @property
    def time_per_epoch_s(self) -> float:
        """The fastest epoch after the first (warm-up) one; the only epoch's time when there is one."""
        return epoch_time(self.epoch_times_s)[0]

    @property
    def time_noise(self) -> float:
        """Relative spread of the timed epochs (`timing.epoch_time`)."""
        return epoch_time(self.epoch_times_s)[1]


def seed_everything(seed: int) -> None:
    """Seed Python's random, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def process_state_kept() -> Iterator[None]:
    """Whatever runs inside may seed the process-wide generators (Python's, numpy's, torch's) and set torch's
    thread count: all of them are as they were afterwards, so the library leaves no process-wide change."""
    with GENERATORS_LOCK:
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        with GENERATORS_LOCK:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])


def lr_milestones(epochs: int) -> list[int]:
    """Epochs at which the lr drops: floor(E/2) and floor(3E/4), without 0 and without repeats."""
    return sorted({m for m in (epochs // 2, (3 * epochs) // 4) if m > 0})


def train(
    model: nn.Module,
    data: DeviceData,
    *,
    lr: float,
    weight_decay: float,
    batch_size: int,
    epochs: int,
    seed: int,
    on_epoch: EpochHook | None = None,
    keep_best: bool = True,
    augment: bool = False,
) -> TrainResult:
    """Train `model` (already on `data.device`) for `epochs` epochs, calling `on_epoch` after each; raise
    TrialDiverged on a NaN loss. The model ends with the weights of its best validation epoch, or with
    those of its last epoch when not `keep_best` (a final model; its validation part may then be empty).
    `augment`: random crops and flips of every training batch (images)."""
    device = data.device
    # the functional losses: calling a loss module costs ~10 us per batch (benchmarks/trainer_speed.py)
    loss_fn = nn.functional.cross_entropy if data.task == "classification" else nn.functional.mse_loss
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestones(epochs), gamma=LR_DROP_FACTOR)
    generator = torch.Generator(device=device).manual_seed(seed)
    x, y = data.x_train, data.y_train
    if data.task == "regression":
        y = y.reshape(-1, 1)
    n = len(x)
    batch_size = max(1, min(batch_size, n))

    curve: list[float] = []
    losses: list[float] = []
    train_losses: list[float] = []
    times: list[float] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    stopped = False
    for epoch in range(epochs):
        model.train()
        _synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        batches = 0
        for first in range(0, n, batch_size):
            index = order[first : first + batch_size]
            if len(index) < 2 < n:  # a lone sample breaks batch norm; it is seen in other epochs
                continue
            inputs = augment_batch(x[index], generator) if augment else x[index]
            loss = loss_fn(model(inputs), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            batches += 1
        _synchronize(device)
        times.append(time.perf_counter() - start)
        schedule.step()
        train_loss = loss_sum.item() / max(batches, 1)
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"training loss became {train_loss} in epoch {epoch + 1}")
        train_losses.append(train_loss)

        score, val_loss = evaluate(model, data) if len(data.x_val) else (math.nan, math.nan)
        curve.append(score)
        losses.append(val_loss)
        improved = score > curve[best_epoch] if data.task == "classification" else score < curve[best_epoch]
        if keep_best and (best_state is None or improved):
            best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
        elif not keep_best:
            best_epoch = epoch
        if on_epoch is not None and on_epoch(EpochReport(epoch + 1, score, val_loss, times[-1])) and epoch + 1 < epochs:
            stopped = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(
        model=model,
        val_curve=curve,
        best_epoch=best_epoch,
        val_accuracy=curve[best_epoch] if data.task == "classification" else None,
        val_loss=losses[best_epoch],
        epoch_times_s=times,
        stopped=stopped,
        train_losses=train_losses,
    )


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = AUGMENT_PAD) -> torch.Tensor:
    """Each image of a batch (N, C, H, W) cropped at a random offset from its copy padded by `pad` zero
    pixels (the mean, as inputs are standardized) and mirrored left-right with probability 1/2: two gathers
    on the batch's device, with the offsets and flips drawn from `generator` (so a seeded trial repeats)."""
    n, c, h, w = images.shape
    device = images.device
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, n, 1), device=device, generator=generator)
    flipped = torch.randint(0, 2, (n, 1), device=device, generator=generator).bool()
    rows = offsets[0] + torch.arange(h, device=device)  # (N, H): the rows each crop takes
    columns = torch.arange(w, device=device)
    columns = torch.where(flipped, w - 1 - columns, columns) + offsets[1]  # (N, W), reversed for a flip
    cropped = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return cropped.gather(3, columns[:, None, None, :].expand(n, c, h, w))


def uses_augmentation(setting: str, input_shape: tuple[int, ...]) -> bool:
    """Whether trials augment their batches: `on`, or `auto` for 3x32x32 images (the CIFAR shape); `on` needs
    images (a CNN's (C, H, W) inputs)."""
    if setting == "on" and len(input_shape) != 3:
        raise SettingsError(
            f"--augment on crops and flips images, but the inputs are flat ({input_shape[0]} features); "
            "use --network cnn (with --image-shape C,H,W for flat data) or leave out --augment"
        )
    return setting == "on" or (setting == "auto" and tuple(input_shape) == (3, 32, 32))


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData) -> tuple[float, float]:
    """Validation (accuracy, cross-entropy) for classification, (MSE, MSE) for regression; eval mode."""
    model.eval()
    outputs = torch.cat([model(data.x_val[i : i + EVAL_BATCH]) for i in range(0, len(data.x_val), EVAL_BATCH)])
    if data.task == "classification":
        accuracy = (outputs.argmax(dim=1) == data.y_val).float().mean().item()
        return accuracy, nn.functional.cross_entropy(outputs.float(), data.y_val).item()
    mse = nn.functional.mse_loss(outputs.float().reshape(-1), data.y_val).item()
    return mse, mse


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
