import numpy as np
import pytest
import torch

from coreselect.data import DataNotFoundError, find_fashion_mnist, load_dataset
from tests.conftest import require_fashion_mnist


def test_fashion_mnist_splits_are_disjoint_and_seeded():
    require_fashion_mnist()
    a = load_dataset("fashion-mnist")
    assert a.x_train.shape == (55000, 1, 28, 28) and a.x_val.shape == (5000, 1, 28, 28)
    assert a.x_test.shape == (10000, 1, 28, 28) and a.num_classes == 10
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    # validation rows are not training rows (up to the exact duplicates in the data)
    flat_tr = a.x_train.reshape(55000, -1).numpy()
    flat_val = a.x_val.reshape(5000, -1).numpy()
    hashes = {hash(r.tobytes()) for r in flat_tr}
    overlap = sum(hash(r.tobytes()) in hashes for r in flat_val)
    assert overlap <= 5  # Fashion-MNIST has a handful of exact duplicate images
    b = load_dataset("fashion-mnist")
    assert torch.equal(a.y_val, b.y_val)
    c = load_dataset("fashion-mnist", seed=1)
    assert not torch.equal(a.y_val, c.y_val)


def test_limit_keeps_first_examples_after_validation_is_carved():
    require_fashion_mnist()
    full = load_dataset("fashion-mnist")
    small = load_dataset("fashion-mnist", limit=100)
    assert len(small.y_train) == 100
    assert torch.equal(small.y_train, full.y_train[:100])
    assert torch.equal(small.y_val, full.y_val)


def test_digits_stratified_split_and_default_validation():
    d = load_dataset("digits")
    n_total = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert n_total == 1797
    assert len(d.y_test) == 360  # 20 %
    assert len(d.y_val) == round(0.1 * (1797 - 360))
    test_counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # stratified
    assert d.input_shape == (1, 8, 8)


def test_blobs_are_seeded():
    a, b = load_dataset("blobs", seed=3), load_dataset("blobs", seed=3)
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, load_dataset("blobs", seed=4).x_train)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="fashion-mnist, digits, blobs"):
        load_dataset("cifar10")


def test_missing_fashion_mnist_names_package_and_option(tmp_path):
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist.*--data-dir"):
        find_fashion_mnist(tmp_path)
    with pytest.raises(DataNotFoundError):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_bad_validation_size():
    with pytest.raises(ValueError, match="validation"):
        load_dataset("blobs", val=1.5)
    with pytest.raises(ValueError, match="validation"):
        load_dataset("blobs", val=10**6)


def test_label_noise_flips_the_given_share_to_other_classes_only_in_train():
    clean = load_dataset("blobs", seed=2)
    noisy = load_dataset("blobs", seed=2, label_noise=0.3)
    changed = clean.y_train != noisy.y_train
    assert torch.equal(changed, noisy.noisy)
    assert changed.float().mean().item() == pytest.approx(0.3, abs=1e-3)
    assert torch.equal(clean.y_val, noisy.y_val) and torch.equal(clean.y_test, noisy.y_test)
    assert noisy.y_train.max() < clean.num_classes
    with pytest.raises(ValueError, match="label_noise"):
        load_dataset("blobs", label_noise=1.5)
