"""Tiny MNIST and CIFAR10 files in torchvision's own on-disk formats, written by the tests."""

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx (SN3 'Pascal Vincent') file of uint8 values: magic 0x08 type, big-endian dims."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def mnist_images(n: int, offset: int) -> np.ndarray:
    """(n, 28, 28) images whose pixel at flat position p of image i is (p + i + offset) % 256."""
    positions = np.arange(784)[None, :] + np.arange(n)[:, None] + offset
    return (positions % 256).reshape(n, 28, 28).astype(np.uint8)


def write_mnist(root: Path, n_train: int = 40, n_test: int = 12) -> dict[str, np.ndarray]:
    """<root>/MNIST/raw/ with the four unzipped idx files; returns the arrays written."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": mnist_images(n_train, 0),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": mnist_images(n_test, 100),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    for name, array in arrays.items():
        write_idx(raw / name, array)
    return arrays


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10) -> dict[str, np.ndarray]:
    """<root>/cifar-10-batches-py/ with 5 training batches, the test batch and batches.meta:
    pickles of {'data': (n, 3072) uint8 (R, G, B planes of 32x32), 'labels': [...]}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    arrays = {}
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(n)]
        batch = {"batch_label": name, "labels": labels, "data": data, "filenames": [""] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
        arrays[name] = data
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return arrays
