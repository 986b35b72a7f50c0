"""Class-incremental benchmarks: Patches (the paper's toy), Split-MNIST and Split-Digits.

Each benchmark is a list of tasks; a task holds its own train and test tensors (inputs in [0, 1]) and its classes.
The head is one 10-way (or 4-way) output shared by all tasks: class-incremental, no task labels at test time.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sleeptrain.errors import DataError


@dataclass
class Task:
    """`x_train`/`y_train` are what SGD trains on; `x_seen`, when set, is every training input of the task's classes
    (the authors train on the first 5000 MNIST images of a task but take SRC's mean input and normalisation from all
    of them); `seen` falls back to `x_train`."""
    name: str
    classes: list[int]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_seen: torch.Tensor | None = None
    y_seen: torch.Tensor | None = None
    x_val: torch.Tensor | None = None   # `validation=N`: images held out of the training set (continual/validation.py)
    y_val: torch.Tensor | None = None

    @property
    def seen(self) -> torch.Tensor:
        return self.x_train if self.x_seen is None else self.x_seen

    @property
    def seen_labels(self) -> torch.Tensor:
        return self.y_train if self.y_seen is None else self.y_seen


@dataclass
class Benchmark:
    name: str
    tasks: list[Task]
    n_inputs: int
    n_classes: int
    image_shape: tuple[int, int] | None
    notes: str = ""
    sleep_source: str = "seen"   # seen: SRC replays the mean of all tasks so far | first: task 1's only (cross-modal)


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


IDX_SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion)",
}


def find_idx(root: Path, stem: str, key: str, dataset: str) -> Path:
    """`root/stem` or `root/stem.gz`; a one-line error naming the file and where the dataset is published."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{key}: no {stem}(.gz) in {str(root)!r} ({dataset} in idx format: {IDX_SOURCES[dataset]})")


def load_idx_split(path: str | Path, split: str, key: str = "data_path", dataset: str = "mnist"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 784) float32 in [0, 1] and labels (n,) int64 of MNIST-format `split` ('train' or 't10k')."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{key}: {str(root)!r} is not a folder ({dataset} in idx format: {IDX_SOURCES[dataset]})")
    images = read_idx(find_idx(root, f"{split}-images-idx3-ubyte", key, dataset))
    labels = read_idx(find_idx(root, f"{split}-labels-idx1-ubyte", key, dataset))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{key}: {split} images {images.shape} and labels {labels.shape} of {str(root)!r} do not "
                        f"match (expected (n, rows, cols) and (n,))")
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)


def split_idx(path: str | Path, order: list[int] | None = None, train_per_task: int | None = 5000,
              name: str = "split_mnist", key: str = "data_path", dataset: str = "mnist") -> Benchmark:
    """Class-incremental split of an MNIST-format dataset, as the authors' scripts: 5 tasks of 2 classes; each task
    trains on the first `train_per_task` of its training images in file order (`indices(1:5000)`; null: all of
    them) and keeps all of them as `x_seen` for SRC; tests on the standard test set."""
    x_tr, y_tr = load_idx_split(path, "train", key, dataset)
    x_te, y_te = load_idx_split(path, "t10k", key, dataset)
    tasks = []
    for t, classes in enumerate(task_pairs(order or list(range(10))), 1):
        tr, te = np.flatnonzero(np.isin(y_tr, classes)), np.isin(y_te, classes)
        used = tr[:train_per_task] if train_per_task else tr
        tasks.append(Task(f"t{t}", list(classes), torch.from_numpy(x_tr[used]), torch.from_numpy(y_tr[used]),
                          torch.from_numpy(x_te[te]), torch.from_numpy(y_te[te]),
                          torch.from_numpy(x_tr[tr]), torch.from_numpy(y_tr[tr])))
    n_train = sum(len(t.y_train) for t in tasks)
    return Benchmark(name, tasks, x_tr.shape[1], 10, (28, 28),
                     f"{dataset} train {len(y_tr)} / test {len(y_te)}: {n_train} training images used "
                     f"({train_per_task or 'all'} per task), all {len(y_tr)} seen by SRC, tested on {len(y_te)}")


def split_mnist(path: str | Path, order: list[int] | None = None, train_per_task: int | None = 5000) -> Benchmark:
    return split_idx(path, order, train_per_task, "split_mnist", "data_path", "mnist")


def split_fashion(path: str | Path, order: list[int] | None = None, train_per_task: int | None = 5000) -> Benchmark:
    return split_idx(path, order, train_per_task, "split_fashion", "fashion_path", "fashion-mnist")


def cross_modal(mnist_path: str | Path, fashion_path: str | Path) -> Benchmark:
    """The authors' cross-modal task (`CrossModalMNIST/run_sleep_with_replay.m`): task 1 = all 60k MNIST training
    images, task 2 = all 60k Fashion-MNIST images, on the same 10 output neurons (digit k and garment k share
    output k); tested on both 10k test sets."""
    tasks = []
    for t, (path, key, dataset) in enumerate(((mnist_path, "data_path", "mnist"),
                                              (fashion_path, "fashion_path", "fashion-mnist")), 1):
        x_tr, y_tr = load_idx_split(path, "train", key, dataset)
        x_te, y_te = load_idx_split(path, "t10k", key, dataset)
        tasks.append(Task(f"t{t}", list(range(10)), torch.from_numpy(x_tr), torch.from_numpy(y_tr),
                          torch.from_numpy(x_te), torch.from_numpy(y_te)))
    return Benchmark("cross_modal", tasks, 784, 10, (28, 28),
                     "task 1 MNIST (60k), task 2 Fashion-MNIST (60k), one shared 10-way output; tested on both 10k "
                     "sets; both sleeps replay MNIST's mean image, as the code (`training_data = train_x1`)",
                     sleep_source="first")


FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
FEATURE_SOURCES = ("CUB-200: the authors' ResNet-50 features, CUB200/cub200_resnet50_{train,test}.mat in "
                   "github.com/tmtadros/SleepReplayConsolidation (scipy.io.loadmat, then np.savez with x_train = X, "
                   "y_train = y - 1, ...); CIFAR-10: features of a pretrained CNN, as the paper's Methods describe")


def feature_tasks(path: str | Path, classes_per_task: int,
                  order: Callable[[int], list[int]] | None = None) -> Benchmark:
    """Class-incremental tasks over pretrained features: an `.npz` with `x_train` (n, d) float, `y_train` (n,) int
    labels 0..C-1, `x_test`, `y_test` (the authors ran CUB-200 and CIFAR-10 this way: ResNet features into an MLP).
    Classes are grouped `classes_per_task` at a time in the order `order(C)` gives (default 0..C-1). Features are used as given; SRC's
    input probability clips at 1, so features far above 1 saturate it: rescale them to [0, 1] first if so."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"features_path: no file {str(file)!r} ({FEATURE_SOURCES})")
    try:
        with np.load(file) as data:
            missing = [k for k in FEATURE_KEYS if k not in data.files]
            if missing:
                raise DataError(f"features_path: {str(file)!r} lacks {', '.join(missing)} (an .npz needs "
                                f"{', '.join(FEATURE_KEYS)})")
            x_tr, y_tr, x_te, y_te = (np.asarray(data[k]) for k in FEATURE_KEYS)
    except (OSError, ValueError) as exc:
        raise DataError(f"features_path: cannot read {str(file)!r} as .npz ({exc})") from None
    if x_tr.ndim != 2 or x_te.ndim != 2 or x_tr.shape[1] != x_te.shape[1] or len(x_tr) != len(y_tr) \
            or len(x_te) != len(y_te):
        raise DataError(f"features_path: shapes x_train {x_tr.shape}, y_train {y_tr.shape}, x_test {x_te.shape}, "
                        f"y_test {y_te.shape} do not fit (n, d) features with (n,) labels")
    if not np.issubdtype(y_tr.dtype, np.integer) or y_tr.min() < 0:
        raise DataError("features_path: labels must be integers 0..C-1")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    if n_classes % classes_per_task:
        raise DataError(f"classes_per_task: {classes_per_task} does not divide the {n_classes} classes")
    order = order(n_classes) if order else list(range(n_classes))
    groups = [order[i:i + classes_per_task] for i in range(0, n_classes, classes_per_task)]
    x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
    tasks = []
    for t, classes in enumerate(groups, 1):
        tr, te = np.isin(y_tr, classes), np.isin(y_te, classes)
        tasks.append(Task(f"t{t}", list(classes), torch.from_numpy(x_tr[tr]), torch.from_numpy(y_tr[tr].astype(np.int64)),
                          torch.from_numpy(x_te[te]), torch.from_numpy(y_te[te].astype(np.int64))))
    return Benchmark("features", tasks, x_tr.shape[1], n_classes, None,
                     f"features {file.name}: {len(y_tr)} train / {len(y_te)} test, {n_classes} classes in "
                     f"{len(groups)} tasks")


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
    """4 binary side x side images: `overlap` pixels on in all of them, plus each one's own unique pixels, all at
    seeded random positions (`Patches/create_permutations.m`). The code gives each image `width^2 / 6 - overlap`
    own pixels, a fraction for width 10 that MATLAB cannot index with; here it is floor(100 / 6) - overlap = 16 -
    overlap, so at overlap 16 the four images are identical."""
    n_pixels = side * side
    unique = n_pixels // 6 - overlap
    if unique < 0:
        raise DataError(f"overlaps: at most {n_pixels // 6} for {side}x{side} patches, got {overlap}")
    rng = np.random.default_rng([seed, 0xFA7C4])
    chosen = rng.permutation(n_pixels)[:overlap + n_images * unique]
    images = np.zeros((n_images, n_pixels), dtype=np.float32)
    images[:, chosen[:overlap]] = 1.0
    for i in range(n_images):
        images[i, chosen[overlap + i * unique: overlap + (i + 1) * unique]] = 1.0
    return images


def patches(overlap: int, seed: int = 0, copies: int = 1) -> Benchmark:
    """T1 = images 1-2, T2 = images 3-4 (classes 0-1 and 2-3), tested on all four. The authors' script
    (`Patches/run_patches_all_overlap.m`) trains on `X(1:2,:)` itself, one copy of each image, batch 2: one SGD step
    per epoch; `copies` > 1 repeats each image in the training set (this project's earlier default was 10)."""
    images = patch_images(overlap, seed)
    tasks = []
    for t, classes in enumerate([[0, 1], [2, 3]], 1):
        x = torch.from_numpy(np.repeat(images[classes], copies, axis=0))
        y = torch.tensor(np.repeat(classes, copies), dtype=torch.long)
        tasks.append(Task(f"t{t}", classes, x, y, torch.from_numpy(images[classes]), torch.tensor(classes)))
    return Benchmark("patches", tasks, 100, 4, (10, 10), f"overlap {overlap}, {copies} cop{'y' if copies == 1 else 'ies'} per image")
