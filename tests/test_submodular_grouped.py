"""The grouped greedies: every group's result equals naive greedy on that group (lazy),
or the stochastic greedy on that group alone with the same seed (stochastic)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from coreselect import select
from coreselect.submodular import grouped as grouped_mod
from coreselect.submodular import naive_greedy, stochastic_greedy
from coreselect.submodular.facility_location import make_oracle
from coreselect.submodular.grouped import (
    build_grouped_dense,
    grouped_lazy_greedy,
    grouped_stochastic_greedy,
)
from coreselect.submodular.partition import group_budgets
from tests.ties import assert_same_or_parted_at_tie, similarity64

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
METRICS = ["euclidean", "rbf", "cosine"]


def _case(seed: int):
    """Uneven groups: a singleton, a pair (smaller than its share), duplicated points,
    an all-equal group, and larger random groups; features of dimension 1 to 5."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 6))
    scale = rng.uniform(0.1, 10)
    parts = [rng.normal(size=(1, d)), rng.normal(size=(2, d))]
    base = rng.normal(size=(int(rng.integers(3, 7)), d))
    parts.append(np.concatenate([base, base, base[:2]]))  # duplicates
    parts.append(np.full((int(rng.integers(2, 6)), d), float(rng.normal())))  # all equal
    for _ in range(int(rng.integers(1, 4))):
        parts.append(rng.normal(size=(int(rng.integers(4, 30)), d)) + rng.normal(size=d))
    X = np.concatenate(parts) * scale
    labels = np.concatenate([np.full(len(p), 10 * i + 3) for i, p in enumerate(parts)])
    perm = rng.permutation(len(X))
    return X[perm], labels[perm]


def _members(labels):
    classes, inverse = np.unique(labels, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(len(classes))]


def _check_against_naive(X, labels, k, metric, device, rule="proportional", **kw):
    members = _members(labels)
    budgets = group_budgets([m.size for m in members], k, rule)
    live = [g for g, b in enumerate(budgets) if b > 0]
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
    data = build_grouped_dense(Xt, [members[g] for g in live], metric)
    C = data.C.clone()  # the per-group oracles below reuse the same workspace
    stats: dict = {}
    got = grouped_lazy_greedy(data, [budgets[g] for g in live], stats=stats, **kw)
    for i, g in enumerate(live):
        oracle = make_oracle(Xt[torch.as_tensor(members[g], device=device)], metric, "dense")
        ng = oracle.n
        assert torch.equal(C[i, :ng, :ng], oracle.C), "costs are not the per-group ones"
        assert not C[i, ng:].any() and not C[i, :, ng:].any(), "padding must be zero"
        ref = naive_greedy(oracle, budgets[g])
        res = got[i]
        assert res.picks.tolist() == ref.picks.tolist(), (g, res.picks, ref.picks)
        assert torch.equal(res.gains, ref.gains), (g, res.gains - ref.gains)
        assert torch.equal(res.dcur, ref.dcur)
        assert torch.equal(res.assign, ref.assign)
    return stats


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_grouped_lazy_equals_per_group_naive(metric, device):
    ties = 0
    for seed in range(8):
        X, labels = _case(seed)
        n = len(X)
        for k in (1, len(np.unique(labels)), n // 3, n - 2, n):
            for rule in ("proportional", "equal"):
                stats = _check_against_naive(X, labels, k, metric, device, rule)
                ties += stats["ties"]
    assert ties > 0  # the exact tie resolution was exercised


@pytest.mark.parametrize("device", DEVICES)
def test_grouped_small_batches_and_buffers(device, monkeypatch):
    # batch 1 and a tiny cap: many failed certificates; a one-row term buffer: a flush
    # before every pick after the first
    monkeypatch.setattr(grouped_mod, "_HISTORY_BYTES", 1)
    monkeypatch.setattr(grouped_mod, "_CHUNK_BYTES", 1)
    for seed in (1, 2):
        X, labels = _case(seed)
        for metric in METRICS:
            _check_against_naive(X, labels, len(X) // 2, metric, device, batch=1, max_batch=2)


@pytest.mark.parametrize("device", DEVICES)
def test_grouped_larger_pools(device):
    rng = np.random.default_rng(5)
    sizes = (300, 170, 41, 1)
    X = np.concatenate([rng.normal(size=(s, 4)) + 2 * i for i, s in enumerate(sizes)])
    X[5] = X[7]  # a duplicate inside the largest group
    labels = np.repeat(np.arange(len(sizes)), sizes)
    stats = _check_against_naive(X, labels, 120, "euclidean", device)
    assert stats["rounds"] < 120  # groups advance together: about max_g k_g rounds


@pytest.mark.parametrize("device", DEVICES)
def test_grouped_rounding_of_padded_sums_does_not_change_picks(device):
    # every point twice: exactly tied gains whose padded (width m) and per-group (width
    # n_g) float32 sums round differently; without the margin of grouped_tolerance these
    # seeds pick the other twin in some group (rbf, cosine; seen on an AVX-512 CPU)
    for seed in (7, 10):
        rng = np.random.default_rng(seed)
        d = int(rng.integers(1, 4))
        sizes = [2 * int(rng.integers(10, 45)) for _ in range(3)]
        parts = []
        for s in sizes:
            base = rng.normal(size=(s // 2, d))
            parts.append(np.concatenate([base, base]))
        X = np.concatenate(parts)
        labels = np.repeat(np.arange(3), sizes)
        for metric in METRICS:
            stats = _check_against_naive(X, labels, sum(sizes) // 2, metric, device)
            assert stats["ties"] > 0


def _same(a, b):
    assert a.indices.tolist() == b.indices.tolist()
    assert np.array_equal(a.gains, b.gains)
    assert np.array_equal(a.weights, b.weights)
    assert a.objective == b.objective


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_select_grouped_equals_one_group_at_a_time(metric, device, monkeypatch):
    for seed in range(4):
        X, labels = _case(10 + seed)
        n = len(X)
        for k in (2, n // 4, n // 2 + 1, n):
            for rule in ("proportional", "equal"):
                for normalize in (True, False):
                    kw = dict(
                        labels=labels,
                        metric=metric,
                        group_budget=rule,
                        normalize=normalize,
                        device=device,
                    )
                    monkeypatch.setattr(grouped_mod, "ENABLED", True)
                    got = select(X, k, **kw)
                    monkeypatch.setattr(grouped_mod, "ENABLED", False)
                    ref = select(X, k, **kw)
                    assert got.meta["grouped"] and not ref.meta["grouped"]
                    assert got.meta["rounds"] is not None and ref.meta["rounds"] is None
                    _same(got, ref)
                    if not normalize:
                        assert np.all(got.weights >= 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_select_grouped_weights_are_exact_cluster_sizes(metric, device):
    X, labels = _case(3)
    cs = select(X, len(X) // 2, labels=labels, metric=metric, normalize=False, device=device)
    assert cs.meta["grouped"]
    for mem in _members(labels):
        # the merged order keeps each group's pick order
        mine = np.flatnonzero(np.isin(cs.indices, mem))
        if mine.size == 0:
            continue
        picks = np.searchsorted(mem, cs.indices[mine])  # pool positions
        # the costs select computes: its prepared features from X as given (float64)
        o = make_oracle(torch.as_tensor(X[mem], device=device), metric)
        C = o.C.double().cpu().numpy()
        # nearest pick (lowest cost), ties to the earliest pick; picks own their cluster
        near = np.argmin(C[picks].T, axis=1)
        near[picks] = np.arange(picks.size)
        sizes = np.bincount(near, minlength=picks.size).astype(np.float32)
        assert cs.weights[mine].tolist() == sizes.tolist()


def test_select_falls_back_when_the_padded_matrices_do_not_fit():
    X, labels = _case(4)
    members = _members(labels)
    m = max(s.size for s in members)
    # enough for the largest group alone, not for the padded (G, m, m) buffer
    limit = grouped_mod.grouped_dense_bytes([m] * len(members)) - 1
    a = select(X, len(X) // 2, labels=labels, mode="dense", max_memory=limit)
    assert not a.meta["grouped"]
    b = select(X, len(X) // 2, labels=labels, mode="dense")
    assert b.meta["grouped"]
    _same(a, b)


def test_select_other_optimizers_and_modes_keep_the_per_group_path():
    X, labels = _case(6)
    k = len(X) // 2
    for kw in (
        dict(optimizer="naive"),
        dict(mode="blockwise"),
        dict(mode="knn", k_neighbors=8),
    ):
        cs = select(X, k, labels=labels, **kw)
        assert not cs.meta["grouped"] and len(cs) == k and np.unique(cs.indices).size == k
    naive = select(X, k, labels=labels, optimizer="naive")
    lazy = select(X, k, labels=labels, optimizer="lazy")
    assert lazy.meta["grouped"]
    _same(naive, lazy)
    # one labelled group, or no labels: the per-group path as before
    assert not select(X, k, labels=np.zeros(len(X), int)).meta["grouped"]
    assert not select(X, k).meta["grouped"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", METRICS)
def test_grouped_stochastic_equals_per_group_stochastic(metric, device):
    runs = parted = 0
    for seed in range(6):
        X, labels = _case(40 + seed)
        members = _members(labels)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        for k in (len(members), len(X) // 3, len(X)):
            for eps, chunk in ((0.01, 8), (0.5, 1), (0.9, 3)):
                budgets = group_budgets([m.size for m in members], k, "proportional")
                live = [g for g, b in enumerate(budgets) if b > 0]
                data = build_grouped_dense(Xt, [members[g] for g in live], metric)
                stats: dict = {}
                seeds = [7 * seed + g for g in live]
                got = grouped_stochastic_greedy(
                    data,
                    [budgets[g] for g in live],
                    epsilon=eps,
                    seeds=seeds,
                    chunk=chunk,
                    stats=stats,
                )
                assert stats["rounds"] == max(budgets)
                for i, g in enumerate(live):
                    Xg = Xt[torch.as_tensor(members[g], device=device)]
                    oracle = make_oracle(Xg, metric, "dense")
                    ref = stochastic_greedy(oracle, budgets[g], epsilon=eps, seed=seeds[i])
                    res = got[i]
                    runs += 1
                    # copies tie exactly: float32 rounding, summed another way, decides
                    S = similarity64(X[members[g]], metric)
                    a, b = res.picks.tolist(), ref.picks.tolist()
                    if assert_same_or_parted_at_tie(a, b, S, (seed, k, g), rtol=1e-9):
                        parted += 1
                        continue
                    # gains summed in another order than the optimizer's float64 sums
                    torch.testing.assert_close(res.gains, ref.gains, rtol=1e-5, atol=1e-6)
                    assert torch.equal(res.dcur, ref.dcur)
                    assert torch.equal(res.assign, ref.assign)
    assert parted <= runs // 10, (parted, runs)


@pytest.mark.parametrize("device", DEVICES)
def test_select_grouped_stochastic_equals_one_group_at_a_time(device, monkeypatch):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1600, 5)).astype(np.float32)
    # many small groups, some with one pick; then three of 500+ points, which the
    # one-group-at-a-time path samples in their cell order (the grouped path maps its draws)
    cases = [(X[:600], rng.integers(0, 40, size=600)), (X, rng.integers(0, 3, size=1600))]
    for (X, labels), (k, eps, seed) in itertools.product(
        cases, ((60, 0.01, 0), (200, 0.1, 3), (45, 0.5, 1))
    ):
        kw = dict(labels=labels, optimizer="stochastic", epsilon=eps, seed=seed, device=device)
        monkeypatch.setattr(grouped_mod, "ENABLED", True)
        got = select(X, k, **kw)
        monkeypatch.setattr(grouped_mod, "ENABLED", False)
        ref = select(X, k, **kw)
        assert got.meta["grouped"] and not ref.meta["grouped"]
        assert got.meta["rounds"] == max(got.meta["group_budgets"])
        # the same picks in every group; gains equal to float32 rounding
        assert sorted(got.indices.tolist()) == sorted(ref.indices.tolist())
        for g in np.unique(labels):
            assert [i for i in got.indices if labels[i] == g] == [
                i for i in ref.indices if labels[i] == g
            ]
        pos = {int(i): t for t, i in enumerate(ref.indices)}
        order = [pos[int(i)] for i in got.indices]
        np.testing.assert_allclose(got.gains, ref.gains[order], rtol=1e-5)
        np.testing.assert_array_equal(got.weights, ref.weights[order])
        assert got.objective == pytest.approx(ref.objective, rel=1e-9)


def test_grouped_rejects_bad_budgets():
    X, labels = _case(0)
    members = _members(labels)
    data = build_grouped_dense(torch.as_tensor(X, dtype=torch.float32), members, "euclidean")
    with pytest.raises(ValueError, match="budgets"):
        grouped_lazy_greedy(data, [1] * (len(members) - 1))
    with pytest.raises(ValueError, match="n_g"):
        grouped_lazy_greedy(data, [0] + [1] * (len(members) - 1))
    with pytest.raises(ValueError, match="budgets"):
        grouped_stochastic_greedy(data, [1] * (len(members) - 1))
    with pytest.raises(ValueError, match="epsilon"):
        grouped_stochastic_greedy(data, [1] * len(members), epsilon=1.0)
    with pytest.raises(ValueError, match="seeds"):
        grouped_stochastic_greedy(data, [1] * len(members), seeds=[0])
