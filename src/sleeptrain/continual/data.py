"""Class-incremental benchmarks: Patches (the paper's toy), Split-MNIST and Split-Digits.

Each benchmark is a list of tasks; a task holds its own train and test tensors (inputs in [0, 1]) and its classes.
The head is one 10-way (or 4-way) output shared by all tasks: class-incremental, no task labels at test time.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sleeptrain.errors import DataError


@dataclass
class Task:
    name: str
    classes: list[int]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class Benchmark:
    name: str
    tasks: list[Task]
    n_inputs: int
    n_classes: int
    image_shape: tuple[int, int] | None
    notes: str = ""


def split_by_classes(x_train, y_train, x_test, y_test, pairs: list[list[int]]) -> list[Task]:
    tasks = []
    for t, classes in enumerate(pairs, 1):
        tr = np.isin(y_train, classes)
        te = np.isin(y_test, classes)
        tasks.append(Task(f"t{t}", list(classes), torch.from_numpy(x_train[tr]).float(),
                          torch.from_numpy(y_train[tr]).long(), torch.from_numpy(x_test[te]).float(),
                          torch.from_numpy(y_test[te]).long()))
    return tasks


def task_pairs(order: list[int]) -> list[list[int]]:
    """Consecutive digit pairs of a class order: [0,1,...,9] -> [[0,1],[2,3],...]."""
    return [order[i:i + 2] for i in range(0, len(order), 2)]


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x5717])
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(test))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            magic = fh.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
                raise DataError(f"{path}: not an unsigned-byte IDX file")
            dims = struct.unpack(">" + "I" * magic[3], fh.read(4 * magic[3]))
            data = np.frombuffer(fh.read(), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def split_mnist(path: str | Path, order: list[int] | None = None, test_fraction: float = 0.2,
                seed: int = 0) -> Benchmark:
    """Split-MNIST from the 10k MNIST test set (the 60k training images are not available here): a seeded,
    class-stratified split into train (80%) and test (20%), then 5 tasks of 2 digits."""
    root = Path(path)
    images = next(iter(sorted(root.glob("t10k-images-idx3-ubyte*"))), None) if root.is_dir() else None
    labels = next(iter(sorted(root.glob("t10k-labels-idx1-ubyte*"))), None) if root.is_dir() else None
    if images is None or labels is None:
        raise DataError(f"data.path: no t10k-images-idx3-ubyte(.gz) / t10k-labels-idx1-ubyte(.gz) in {str(root)!r}")
    x = read_idx(images).reshape(-1, 28 * 28).astype(np.float32) / 255.0
    y = read_idx(labels).astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    tasks = split_by_classes(x[tr], y[tr], x[te], y[te], task_pairs(order or list(range(10))))
    return Benchmark("split_mnist", tasks, 784, 10, (28, 28),
                     f"MNIST t10k split {1 - test_fraction:.0%}/{test_fraction:.0%} train/test (seed {seed})")


def split_digits(order: list[int] | None = None, test_fraction: float = 0.2, seed: int = 0) -> Benchmark:
    """scikit-learn's bundled 8x8 digits (1,797 images), 5 tasks of 2 digits: fast enough for tests."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("benchmark=split_digits needs scikit-learn (pip install scikit-learn)") from None
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    tasks = split_by_classes(x[tr], y[tr], x[te], y[te], task_pairs(order or list(range(10))))
    return Benchmark("split_digits", tasks, 64, 10, (8, 8), "scikit-learn digits, stratified 80/20 split")


def patch_images(overlap: int, seed: int, side: int = 10, n_images: int = 4) -> np.ndarray:
    """4 binary side x side images: `overlap` pixels on in all of them, plus each one's own unique pixels
    (100 // 6 - overlap of them, as in the paper's construction), all placed at seeded random positions."""
    n_pixels = side * side
    unique = n_pixels // 6 - overlap
    if unique < 1:
        raise DataError(f"overlap: at most {n_pixels // 6 - 1} for {side}x{side} patches, got {overlap}")
    rng = np.random.default_rng([seed, 0xFA7C4])
    chosen = rng.permutation(n_pixels)[:overlap + n_images * unique]
    images = np.zeros((n_images, n_pixels), dtype=np.float32)
    images[:, chosen[:overlap]] = 1.0
    for i in range(n_images):
        images[i, chosen[overlap + i * unique: overlap + (i + 1) * unique]] = 1.0
    return images


def patches(overlap: int, seed: int = 0, copies: int = 100) -> Benchmark:
    """T1 = images 1-2, T2 = images 3-4 (classes 0-1 and 2-3). Training sets repeat each image `copies` times
    (the SGD batches of 2 then see each image many times); test = the clean images."""
    images = patch_images(overlap, seed)
    tasks = []
    for t, classes in enumerate([[0, 1], [2, 3]], 1):
        x = torch.from_numpy(np.repeat(images[classes], copies, axis=0))
        y = torch.tensor(np.repeat(classes, copies), dtype=torch.long)
        tasks.append(Task(f"t{t}", classes, x, y, torch.from_numpy(images[classes]), torch.tensor(classes)))
    return Benchmark("patches", tasks, 100, 4, (10, 10), f"overlap {overlap}, {copies} copies per image")
