"""The device-resident lazy greedy (the CUDA dense path of ``lazy``), run on every device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreselect.submodular import lazy_greedy, naive_greedy
from coreselect.submodular import resident as resident_mod
from coreselect.submodular.facility_location import make_oracle
from coreselect.submodular.resident import _Resident, fits_resident, resident_lazy_greedy

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
METRICS = ["euclidean", "rbf", "cosine"]


def _pool(seed: int, n_max: int = 80):
    """A random pool: a third drawn from few distinct points (exact ties), a seventh on an
    integer grid; returns ``(X, k)`` with ``k <= n - 2``."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, n_max))
    X = rng.normal(size=(n, int(rng.integers(1, 6)))) * rng.uniform(0.1, 10)
    if seed % 3 == 0:
        X = X[rng.integers(0, max(1, n // 4), size=n)]
    if seed % 7 == 0:
        X = np.round(X)
    return X.astype(np.float32), int(rng.integers(1, n - 1))


def _same(a, b, device: str) -> None:
    assert a.picks.tolist() == b.picks.tolist()
    if device == "cpu":  # the same float32 sums: bitwise
        assert torch.equal(a.gains, b.gains)
        assert torch.equal(a.dcur, b.dcur)
    else:
        torch.testing.assert_close(a.gains, b.gains, rtol=1e-6, atol=1e-6)
    assert torch.equal(a.assign, b.assign)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_resident_greedy_is_naive_greedy(metric, device):
    # picks, gains, costs and nearest picks of naive greedy (ties to the lowest position),
    # on pools full of exact ties
    for seed in range(40):
        X, k = _pool(seed)
        oracle = make_oracle(torch.as_tensor(X, device=device), metric, "dense")
        assert fits_resident(oracle, k)
        got = resident_lazy_greedy(oracle, k)
        _same(got, naive_greedy(oracle, k), device)
        assert (got.evaluations > 0) == (k > 1)


@pytest.mark.parametrize("device", DEVICES)
def test_resident_greedy_on_copies_and_a_small_block(device):
    # 1,500 copies of 40 points (every gain tied 30-40 ways), and a pool where only two
    # candidates are left after the last pick (B = 1: one stale bound and q per step)
    rng = np.random.default_rng(5)
    base = rng.normal(size=(40, 3)).astype(np.float32)
    X = torch.as_tensor(base[rng.integers(0, 40, size=1500)], device=device)
    oracle = make_oracle(X, "euclidean", "dense")
    _same(resident_lazy_greedy(oracle, 200), naive_greedy(oracle, 200), device)
    small = make_oracle(torch.as_tensor(base, device=device), "rbf", "dense")
    assert resident_mod._block_size(small, 38) == 1
    _same(resident_lazy_greedy(small, 38), naive_greedy(small, 38), device)


@pytest.mark.parametrize("device", DEVICES)
def test_resident_steps_never_read_back(device, monkeypatch):
    # a step is a fixed sequence of device operations: nothing in it reads a value back to
    # the host (on CUDA, every synchronisation is an error)
    X = np.random.default_rng(11).normal(size=(60, 3)).astype(np.float32)
    oracle = make_oracle(torch.as_tensor(X, device=device), "euclidean", "dense")
    assert fits_resident(oracle, 20)
    state = _Resident(oracle, 20)
    state.first()

    def refuse(*_a, **_kw):
        raise AssertionError("a step read a tensor back")

    with monkeypatch.context() as m:
        for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__"):
            m.setattr(torch.Tensor, name, refuse)
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(60):
                state.step()
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    res = state.result()
    assert res.picks.tolist() == naive_greedy(oracle, 20).picks.tolist()


def test_resident_progress_and_refusals():
    X, _k = _pool(3)
    n = X.shape[0]
    oracle = make_oracle(torch.as_tensor(X), "cosine", "dense")
    seen: list[int] = []
    res = resident_lazy_greedy(oracle, n - 2, on_pick=seen.append)
    assert seen[0] == 1 and seen[-1] == n - 2 and seen == sorted(set(seen))
    assert len(res.picks) == n - 2
    # one candidate left after the last pick, a permuted layout, a segmented matrix
    assert not fits_resident(oracle, n - 1)
    with pytest.raises(ValueError, match="cannot take"):
        resident_lazy_greedy(oracle, n - 1)
    with pytest.raises(ValueError, match="cannot take"):
        resident_lazy_greedy(oracle, 0)
    oracle.ids = torch.arange(n)
    assert not fits_resident(oracle, 2)
    segmented = make_oracle(torch.as_tensor(X), "cosine", "dense", segment=8)
    assert not fits_resident(segmented, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_lazy_takes_the_resident_greedy_on_cuda_only(device, monkeypatch):
    calls = []
    real = resident_mod.resident_lazy_greedy

    def spy(oracle, k, **kw):
        calls.append(k)
        return real(oracle, k, **kw)

    monkeypatch.setattr(resident_mod, "resident_lazy_greedy", spy)
    X, k = _pool(8)
    oracle = make_oracle(torch.as_tensor(X, device=device), "euclidean", "dense")
    got = lazy_greedy(oracle, k)
    assert got.picks.tolist() == naive_greedy(oracle, k).picks.tolist()
    assert calls == ([k] if device == "cuda" else [])
