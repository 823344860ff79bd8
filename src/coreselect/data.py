"""Datasets available without a network: Fashion-MNIST (Debian package), digits, blobs.

Every loader returns a :class:`Splits` of float32 image tensors ``(N, C, H, W)`` (standardized
with training-set statistics) and int64 label tensors ``(N,)``. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "digits", "blobs")


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are not on this machine (they are never downloaded)."""


@dataclass
class Splits:
    """Train / validation / test tensors of one dataset.

    ``x_*``: float32 ``(N, C, H, W)``; ``y_*``: int64 ``(N,)``. ``classes`` names the labels.
    ``source`` says where the data came from.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    source: str = ""
    noisy: torch.Tensor | None = None  # bool (N,): training labels flipped by label_noise

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one example."""
        return tuple(self.x_train.shape[1:])


def load_dataset(
    name: str,
    *,
    val: int | float | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    label_noise: float = 0.0,
) -> Splits:
    """Load ``name`` ("fashion-mnist", "digits" or "blobs") as train / validation / test.

    Args:
        name: the dataset.
        val: validation examples held out of the training set (seeded, so disjoint from train):
            an int count or a float fraction of the training set. Default: 5,000 for
            Fashion-MNIST, 10 % of the training set for smaller sets. ``0`` keeps none.
        seed: seeds the validation split (and digits' train/test split, and blobs).
        data_dir: folder holding Fashion-MNIST's four IDX ``.gz`` files; default
            ``$CORESELECT_DATA``, else the Debian package's folder.
        limit: keep the first ``limit`` training examples, after the validation set is carved.
        label_noise: share of training labels replaced by a different class, drawn uniformly
            (seeded); validation and test labels stay clean. ``Splits.noisy`` marks them.

    Returns:
        :class:`Splits` with images standardized by the training-set mean and std.
    """
    key = name.lower().replace("_", "-")
    if key in ("fmnist", "fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key == "fashion-mnist":
        x_tr, y_tr, x_te, y_te, source = _fashion_arrays(data_dir)
        classes = FASHION_CLASSES
        default_val = 5000
    elif key == "digits":
        x_tr, y_tr, x_te, y_te = _digits_arrays(seed)
        classes = tuple(str(i) for i in range(10))
        source = "scikit-learn load_digits (bundled)"
        default_val = 0.1
    elif key == "blobs":
        x_tr, y_tr, x_te, y_te = _blobs_arrays(seed)
        classes = tuple(f"blob{i}" for i in range(int(y_tr.max()) + 1))
        source = "synthetic Gaussian blobs (seeded)"
        default_val = 0.1
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")

    n_val = _val_count(default_val if val is None else val, len(y_tr))
    perm = np.random.default_rng(seed).permutation(len(y_tr))
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    x_val, y_val = x_tr[val_idx], y_tr[val_idx]
    x_tr, y_tr = x_tr[tr_idx], y_tr[tr_idx]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        x_tr, y_tr = x_tr[:limit], y_tr[:limit]
    noisy = None
    if label_noise:
        y_tr, noisy = flip_labels(y_tr, label_noise, len(classes), seed)

    mean, std = float(x_tr.mean()), float(x_tr.std()) or 1.0

    def prep(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    def lab(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))

    return Splits(
        key,
        prep(x_tr),
        lab(y_tr),
        prep(x_val),
        lab(y_val),
        prep(x_te),
        lab(y_te),
        classes,
        source,
        noisy,
    )


def flip_labels(y: np.ndarray, share: float, num_classes: int, seed: int):
    """Replace ``round(share·N)`` seeded-random labels of ``y`` ``(N,)`` by another class.

    Returns the new labels and a bool tensor ``(N,)`` marking the flipped ones.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {share}")
    rng = np.random.default_rng([seed, 7])
    idx = rng.choice(y.size, size=int(round(share * y.size)), replace=False)
    y = y.copy()
    y[idx] = (y[idx] + rng.integers(1, num_classes, size=idx.size)) % num_classes
    mask = np.zeros(y.size, dtype=bool)
    mask[idx] = True
    return y, torch.from_numpy(mask)


def _val_count(val: int | float, n: int) -> int:
    """Validation size from a count (int) or a fraction of ``n`` (float in [0, 1))."""
    if isinstance(val, float):
        if not 0.0 <= val < 1.0:
            raise ValueError(f"validation fraction must be in [0, 1), got {val}")
        return int(round(val * n))
    if not 0 <= int(val) < n:
        raise ValueError(f"validation size must be in [0, {n}), got {val}")
    return int(val)


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding Fashion-MNIST's four IDX files, or raise DataNotFoundError."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    elif os.environ.get("CORESELECT_DATA"):
        candidates.append(Path(os.environ["CORESELECT_DATA"]))
    else:
        candidates.append(DEBIAN_FASHION_DIR)
        candidates.extend(_dpkg_dirs())
    for folder in candidates:
        for sub in (folder, folder / "fashion-mnist"):
            if all((sub / f).exists() for f in FASHION_FILES.values()):
                return sub
    where = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"Fashion-MNIST files not found (looked in {where}). Install Debian's package "
        "'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist) or pass --data-dir / "
        "set CORESELECT_DATA to a folder with " + ", ".join(FASHION_FILES.values()) + "."
    )


def fashion_mnist_available(data_dir: str | os.PathLike | None = None) -> bool:
    """True when :func:`find_fashion_mnist` would succeed."""
    try:
        find_fashion_mnist(data_dir)
    except DataNotFoundError:
        return False
    return True


def _dpkg_dirs() -> list[Path]:
    if shutil.which("dpkg") is None:
        return []
    try:
        out = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(
        {Path(line).parent for line in out.splitlines() if line.endswith("idx3-ubyte.gz")}
    )


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (images ``(N, 28, 28)`` or labels ``(N,)``) as uint8."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_arrays(data_dir):
    folder = find_fashion_mnist(data_dir)
    arr = {k: read_idx(folder / f) for k, f in FASHION_FILES.items()}
    x_tr = arr["train_images"][:, None].astype(np.float32) / 255.0
    x_te = arr["test_images"][:, None].astype(np.float32) / 255.0
    return x_tr, arr["train_labels"], x_te, arr["test_labels"], str(folder)


def _digits_arrays(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed, shuffle=True
    )
    return x_tr, y_tr, x_te, y_te


def _blobs_arrays(seed: int, n_train: int = 2000, n_test: int = 500, classes: int = 4):
    """Seeded Gaussian blobs as 1×4×4 'images': overlapping classes, not trivially separable."""
    rng = np.random.default_rng(seed + 12345)
    centers = rng.normal(0.0, 1.0, size=(classes, 16)).astype(np.float32)

    def draw(n: int):
        y = rng.integers(0, classes, size=n)
        x = centers[y] + rng.normal(0.0, 0.8, size=(n, 16)).astype(np.float32)
        return x.reshape(n, 1, 4, 4).astype(np.float32), y.astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te
