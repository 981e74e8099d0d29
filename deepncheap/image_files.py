"""Readers of the standard image-set files users keep locally: MNIST / Fashion-MNIST (IDX, optionally
gzipped, also in torchvision's `<Name>/raw` layout) and CIFAR-10 / CIFAR-100 (the binary versions).

Nothing is downloaded, and the pickled "python version" of CIFAR is never read (unpickling runs code).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from deepncheap.errors import DataError

IDX_SETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR_SETS = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}
FILE_DATASETS = (*IDX_SETS, *CIFAR_SETS)
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
}
_CIFAR_IMAGE_BYTES = 3 * 32 * 32


def read_image_set(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of a standard image set, images as (N, C, H, W) uint8."""
    if name in IDX_SETS:
        folder = _find_folder(
            name, data_dir, [IDX_SETS[name], f"{IDX_SETS[name]}/raw", name], "train-images-idx3-ubyte"
        )
        return (
            read_idx(_file(folder, "train-images-idx3-ubyte"))[:, None],
            read_idx(_file(folder, "train-labels-idx1-ubyte")),
            read_idx(_file(folder, "t10k-images-idx3-ubyte"))[:, None],
            read_idx(_file(folder, "t10k-labels-idx1-ubyte")),
        )
    if name == "cifar10":
        folder = _find_folder(name, data_dir, [CIFAR_SETS[name], name], "data_batch_1.bin")
        parts = [read_cifar(folder / f"data_batch_{i}.bin", label_bytes=1) for i in range(1, 6)]
        test = read_cifar(folder / "test_batch.bin", label_bytes=1)
    else:
        folder = _find_folder(name, data_dir, [CIFAR_SETS[name], name], "train.bin")
        parts = [read_cifar(folder / "train.bin", label_bytes=2)]
        test = read_cifar(folder / "test.bin", label_bytes=2)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test[0], test[1]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic 0,0,dtype,ndim, big-endian int32 dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} ({exc}); download the file again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file; give the original MNIST-format file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    dtype = _IDX_DTYPES[raw[2]]
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes, its header promises {expected}; download the file again")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims)).copy()


def read_cifar(path: Path, *, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR binary batch: records of label byte(s) then 3x32x32 pixels; the last label byte is the class
    (CIFAR-100's fine label)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc}); download the CIFAR binary version again") from None
    record = label_bytes + _CIFAR_IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path} is not a CIFAR binary batch ({raw.size} bytes); download the binary version again")
    rows = raw.reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, label_bytes - 1].astype(np.int64)


def _find_folder(name: str, data_dir: Path, candidates: list[str], marker: str) -> Path:
    for folder in [data_dir, *(data_dir / c for c in candidates)]:
        if (folder / marker).is_file() or (folder / f"{marker}.gz").is_file():
            return folder
    raise DataError(
        f"no {name} files in {data_dir} (looked for {marker} there and in {', '.join(candidates)}); "
        f"put the standard {name} files there or pass --data-dir"
    )


def _file(folder: Path, stem: str) -> Path:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    raise DataError(f"{folder} lacks {stem}[.gz]; put all four files of the set there")
