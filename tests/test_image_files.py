import gzip
import struct

import numpy as np
import pytest

from deepncheap.data import load_dataset
from deepncheap.errors import DataError
from deepncheap.image_files import read_idx


def write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files_in_torchvision_layout(tmp_path, compress):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_x = rng.integers(0, 256, size=(50, 28, 28))
    train_y = np.arange(50) % 5
    write_idx(raw / "train-images-idx3-ubyte", train_x, compress)
    write_idx(raw / "train-labels-idx1-ubyte", train_y, compress)
    write_idx(raw / "t10k-images-idx3-ubyte", train_x[:10], compress)
    write_idx(raw / "t10k-labels-idx1-ubyte", train_y[:10], compress)
    data = load_dataset("mnist", network="cnn", data_dir=tmp_path)
    assert data.x_train.shape[1:] == (1, 28, 28) and len(data.y_test) == 10
    assert len(data.y_train) + len(data.y_val) == 50 and data.classes == ("0", "1", "2", "3", "4")
    np.testing.assert_array_equal(read_idx(next(raw.glob("train-labels*"))), train_y)


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()

    def batch(path, n):
        labels = (np.arange(n) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        path.write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
        return labels, pixels

    labels, pixels = batch(folder / "data_batch_1.bin", 20)
    for i in range(2, 6):
        batch(folder / f"data_batch_{i}.bin", 20)
    batch(folder / "test_batch.bin", 10)
    data = load_dataset("cifar10", network="cnn", data_dir=tmp_path)
    assert data.x_train.shape[1:] == (3, 32, 32) and len(data.y_train) + len(data.y_val) == 100
    assert data.num_outputs == 10 and len(data.y_test) == 10


def test_missing_or_broken_files_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no cifar100 files in"):
        load_dataset("cifar100", data_dir=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3i", 5, 28, 28))
    with pytest.raises(DataError, match="header promises"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
