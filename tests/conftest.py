"""Shared fixtures: Fashion-MNIST when installed (a failure, not a skip, under CI=true)."""

from __future__ import annotations

import os

import pytest
import torch

from coreselect.data import fashion_mnist_available, load_dataset

torch.set_num_threads(min(2, torch.get_num_threads()))


def require_fashion_mnist() -> None:
    """Skip locally, fail under CI, when Fashion-MNIST is missing."""
    if fashion_mnist_available():
        return
    message = (
        "Fashion-MNIST is not installed (Debian package 'dataset-fashion-mnist'; "
        "or set CORESELECT_DATA)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fmnist_5k():
    """Fashion-MNIST with the first 5,000 training images (validation 5,000, test 10,000)."""
    require_fashion_mnist()
    return load_dataset("fashion-mnist", limit=5000)


@pytest.fixture(scope="session")
def blobs():
    return load_dataset("blobs")
