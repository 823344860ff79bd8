"""kNN kernel construction (exact and inverted file), recomputed (blockwise) rows, the dense
build's tiles, workspace reuse and the select CLI."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from coreselect import Coreset, select
from coreselect.submodular import memory
from coreselect.submodular.kernels import (
    TILE_MIN_ROWS,
    _block_bounds,
    _rows_per_block,
    build_dense,
    cost_tile,
    free_workspace,
    prepare_features,
    single_thread,
    workspace,
    workspace_bytes,
)
from coreselect.submodular.memory import (
    BlockwiseOracle,
    KnnOracle,
    _knn_build,
    _knn_ivf,
    by_candidate,
    knn_bytes,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["euclidean", "rbf", "cosine"])
def test_knn_lists_are_exact_nearest(metric, device):
    rng = np.random.default_rng(1)
    X = torch.as_tensor(rng.normal(size=(300, 6)), dtype=torch.float32, device=device)
    F = prepare_features(X, metric)
    K = 7
    # small tiles: several column tiles per row block, exercising compaction
    o = KnnOracle(F, K, row_block=64, col_block=32)
    C = cost_tile(F, F)
    C.fill_diagonal_(0)
    ref = torch.sort(C, dim=1).values[:, :K]
    for j in range(300):
        s, e = int(o.ptr[j]), int(o.ptr[j + 1])
        assert torch.all(o.pt[s:e] >= 0)
    got = torch.zeros(300, K, device=device)
    fill = [0] * 300
    for j in range(300):
        s, e = int(o.ptr[j]), int(o.ptr[j + 1])
        for i, v in zip(o.pt[s:e].tolist(), o.val[s:e].tolist()):
            got[i, fill[i]] = v
            fill[i] += 1
    assert fill == [K] * 300
    got = torch.sort(got, dim=1).values
    assert torch.allclose(got, ref, atol=2e-3)
    if metric == "euclidean":
        assert o.c0 == pytest.approx(float(C.max()), rel=1e-4)


def _clustered(n, d, seed):
    """``(n, d)`` float32: ``n`` points around 12 well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, d)) * 4
    return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["euclidean", "rbf", "cosine"])
def test_ivf_knn_searching_every_cell_is_the_exact_knn(metric, device):
    # the inverted file serves pools above EXACT_KNN_MAX (the n = 300,000 bench row); with
    # every cell probed it must find the brute-force lists, to rounding
    n, K = 600, 20
    F = prepare_features(torch.as_tensor(_clustered(n, 6, 0), device=device), metric)
    cost, idx, c0 = _knn_build(F, K, 256, 8192)
    icost, iidx, ic0 = _knn_ivf(F, K, nprobe=n)
    assert iidx.shape == (n, K) and icost.dtype == torch.float32
    rows = torch.arange(n, device=device)
    self_at = iidx == rows[:, None]  # itself listed once, at cost 0
    assert torch.equal(self_at.sum(1), torch.ones_like(rows)) and torch.all(icost[self_at] == 0)
    assert all(len(set(r)) == K for r in iidx.tolist())  # no candidate listed twice
    # the listed costs are the true costs of the listed candidates ...
    C = cost_tile(F, F)
    C.fill_diagonal_(0)
    assert torch.allclose(icost, C.gather(1, iidx), atol=1e-5)
    # ... and the K smallest of each row (sets may differ only at ties)
    assert torch.allclose(icost.sort(1).values, cost.sort(1).values, atol=1e-5)
    if metric == "euclidean":
        assert float(icost.max()) <= ic0 <= c0 * (1 + 1e-6)  # a lower bound of max_ij d_ij
    else:
        assert ic0 == c0 == 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_ivf_knn_default_probes_and_select(monkeypatch, device):
    X = _clustered(2000, 8, 1)
    F = prepare_features(torch.as_tensor(X, device=device), "euclidean")
    exact = _knn_build(F, 30, 256, 8192)[1].tolist()
    approx = _knn_ivf(F, 30)[1].tolist()  # 44 cells, as many probed as reach 0.95
    recall = np.mean([len(set(a) & set(b)) / 30 for a, b in zip(exact, approx)])
    assert recall >= 0.95
    dense = select(X, 100, mode="dense", device=device, normalize=False)
    knn = select(X, 100, mode="knn", k_neighbors=30, device=device, normalize=False)
    monkeypatch.setattr(memory, "EXACT_KNN_MAX", 1000)  # select takes the inverted file
    chosen = []
    choose = memory._ivf_nprobe
    monkeypatch.setattr(memory, "_ivf_nprobe", lambda *a: chosen.append(choose(*a)) or chosen[-1])
    built = []  # progress: every point's list counted once, cell by cell
    ivf = select(
        X,
        100,
        mode="knn",
        k_neighbors=30,
        device=device,
        normalize=False,
        progress=lambda stage, done, total: stage == "build" and built.append((done, total)),
    )
    assert len(built) > 10 and built[-1] == (2000, 2000)
    assert [d for d, _ in built] == sorted({d for d, _ in built})
    assert ivf.meta["mode"] == "knn" and knn.meta["knn_cells_searched"] is None
    assert ivf.meta["knn_cells_searched"] == chosen and 1 <= chosen[0] < 44  # 4 here
    assert len(set(ivf.indices.tolist())) == 100
    assert ivf.weights.sum() == pytest.approx(2000)
    # nearly the exact lists, so nearly the exact knn set (here 86 of 100 shared, cost
    # 1.007 of dense greedy's against 1.008 for the exact lists; lists whose ids were
    # permuted against their costs gave 48 and 1.046 with 8 cells)
    assert len(set(ivf.indices.tolist()) & set(knn.indices.tolist())) >= 75
    Xd = X.astype(np.float64)
    cost = {name: cdist(Xd, Xd[cs.indices]).min(1).sum() for name, cs in (("d", dense), ("i", ivf))}
    assert cost["i"] <= 1.02 * cost["d"]


@pytest.mark.parametrize("device", DEVICES)
def test_ivf_knn_probes_enough_cells_for_the_recall_asked(device):
    # unclustered points: neighbours spread over many of the 54 cells
    X = np.random.default_rng(5).normal(size=(3000, 6)).astype(np.float32)
    F = prepare_features(torch.as_tensor(X, device=device), "euclidean")
    exact_cost, exact, _ = _knn_build(F, 25, 256, 8192)
    chosen = []
    for target in (0.5, 0.9, 1.0):
        # every point sampled: the estimate is then a bound of the lists' recall
        info = {}
        cost, idx, _ = _knn_ivf(F, 25, recall=target, sample=3000, info=info)
        chosen.append(info["cells_searched"])
        assert info["cells"] == 54
        hits = [len(set(a) & set(b)) for a, b in zip(exact.tolist(), idx.tolist())]
        assert sum(hits) >= target * 3000 * 25
    assert chosen[0] < chosen[1] < chosen[2] <= 54 and chosen[0] > 1
    assert torch.allclose(cost.sort(1).values, exact_cost.sort(1).values, atol=1e-5)  # exact


@pytest.mark.parametrize("device", DEVICES)
def test_knn_lists_by_candidate_and_their_gains(device):
    # lists that skip candidates (no self entries): some candidates are listed by nobody
    rng = np.random.default_rng(3)
    n, K = 50, 4
    nbr_idx = torch.as_tensor(
        np.stack([rng.choice(40, K, replace=False) for _ in range(n)]), device=device
    )
    nbr_cost = torch.as_tensor(rng.random((n, K)), dtype=torch.float32, device=device)
    arrays = [by_candidate(nbr_idx, nbr_cost, use_scipy=u) for u in (False, True)]
    for a, b in zip(*arrays):
        assert torch.equal(a, b) and a.device == nbr_idx.device
    pt, val, ptr = arrays[0]
    listed = {
        (i, j): c for i in range(n) for j, c in zip(nbr_idx[i].tolist(), nbr_cost[i].tolist())
    }
    for j in range(n):
        s, e = int(ptr[j]), int(ptr[j + 1])
        pts = pt[s:e].tolist()
        assert pts == sorted(i for i, jj in listed if jj == j)  # increasing, all of them
        assert val[s:e].tolist() == [listed[i, j] for i in pts]
    o = KnnOracle.__new__(KnnOracle)
    o.n, o.device, o.pt, o.val, o.ptr = n, nbr_idx.device, pt, val, ptr
    dcur = torch.as_tensor(rng.random(n), dtype=torch.float32, device=device)
    idx = torch.as_tensor([45, 3, 3, 0, 49, 17, 41], device=device)  # 41+: nobody lists them
    ref = [
        sum(max(0.0, float(dcur[i]) - c) for (i, jj), c in listed.items() if jj == j)
        for j in idx.tolist()
    ]
    got = o.gains(idx, dcur)
    assert got.dtype == torch.float64 and got.tolist() == pytest.approx(ref, rel=1e-6)
    assert got[[0, 4, 6]].tolist() == [0.0, 0.0, 0.0]
    assert torch.equal(o.gains_all(dcur)[idx], got)
    assert o.gains(idx[:0], dcur).shape == (0,)


@pytest.mark.parametrize("device", DEVICES)
def test_knn_quality_and_exact_weights(device):
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(size=(200, 4)) + c for c in (0, 4, 8)])
    exact = select(X, 30, mode="dense", device=device, normalize=False)
    knn = select(X, 30, mode="knn", device=device, normalize=False)
    assert knn.meta["mode"] == "knn"
    assert knn.weights.sum() == pytest.approx(600)
    assert knn.objective >= 0.98 * exact.objective


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["euclidean", "rbf", "cosine"])
def test_a_blockwise_row_does_not_depend_on_the_rows_computed_with_it(metric, device):
    # a 1- or 2-row product takes another BLAS path (MKL: GEMV) and rounded differently:
    # before, the row read for a pick (one row) differed from the same row in a gain block
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(700, 12, generator=gen).to(device)
    o = BlockwiseOracle(prepare_features(X, metric))
    dcur = torch.full((700,), float(o.c0), device=device) * 0.7
    for p in (0, 5, 333, 699):
        block = torch.arange(max(0, p - 5), min(700, p + 20), device=device)
        rows = o.rows_into(block, torch.empty(o.chunk, 700, device=device))
        assert torch.equal(o.row(p), rows[int((block == p).nonzero())])
        one = o.gains(torch.tensor([p], device=device), dcur)
        assert torch.equal(one, o.gains(block, dcur)[block == p])
        assert torch.equal(one, o.gains_all(dcur)[p : p + 1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["copies", "binary"])
def test_blockwise_lazy_equals_naive_on_exact_ties(kind, device):
    # copies of a point tie exactly only when their rows round alike: before, 10 of 18
    # such pools (1,500 points, Fashion-MNIST copies or binary corners) parted at a tie
    rng = np.random.default_rng(4)
    if kind == "copies":
        X = rng.normal(size=(40, 8))[rng.integers(0, 40, 600)]
    else:
        X = (rng.normal(size=(600, 6)) > 0).astype(np.float64)
    a = select(X, 150, mode="blockwise", optimizer="lazy", device=device)
    b = select(X, 150, mode="blockwise", optimizer="naive", device=device)
    assert a.indices.tolist() == b.indices.tolist()
    assert np.array_equal(a.gains, b.gains)


def test_the_dense_build_has_no_short_tail_block():
    # a tail block of one row was a one-row product (MKL: GEMV) that rounded unlike its
    # column: the matrix was not symmetric, and lazy fell back to the slower batched greedy
    for n, rows in ((1025, 64), (1026, 64), (1031, 64), (64, 64), (5, 64), (20, 3)):
        bounds = _block_bounds(n, rows)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(e - s >= min(n, rows, TILE_MIN_ROWS) for s, e in bounds)
    gen = torch.Generator().manual_seed(0)
    F = prepare_features(torch.randn(1025, 10, generator=gen), "euclidean")
    C = torch.empty(1025, 1025)
    build_dense(F, C, block_rows=64)
    assert torch.equal(C, C.T)


def test_the_dense_build_rounds_every_row_as_a_whole_row_tile():
    # each block computes only its columns right of the diagonal: the last blocks' narrow
    # products must still round as the same row computed whole (as blockwise computes it)
    gen = torch.Generator().manual_seed(2)
    cases = [(200, 8, 3), (203, 16, 17), (130, 8, 64), (1000, 64, 5), (1000, 10, 17)]
    for n, rows, d in cases + [
        (int(m), 8 + int(m) % 50, 3 + int(m) % 30) for m in range(90, 900, 37)
    ]:
        F = prepare_features(torch.randn(n, d, generator=gen), "euclidean")
        C = torch.empty(n, n)
        build_dense(F, C, block_rows=rows)
        with single_thread():  # a tile split between BLAS threads rounds by part
            tiles = [cost_tile(F.subset(torch.arange(s, e)), F) for s, e in _block_bounds(n, rows)]
        whole = torch.cat(tiles)
        upper = torch.ones(n, n, dtype=torch.bool).triu(1)
        assert torch.equal(C[upper], whole[upper]), (n, rows, d)


def test_the_dense_build_does_not_depend_on_the_thread_count():
    # the build's blocks are cut per worker thread (at least two each), so 1 and 2 threads
    # tile the matrix differently; every row must still round the same
    gen = torch.Generator().manual_seed(1)
    F = prepare_features(torch.randn(1500, 10, generator=gen), "euclidean")
    old = torch.get_num_threads()
    built = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            built[threads] = _rows_per_block(1500, torch.device("cpu"))
            C = torch.empty(1500, 1500)
            rowsum, c0 = build_dense(F, C)
            built[threads] = (built[threads], C, rowsum, c0)
    finally:
        torch.set_num_threads(old)
    (rows1, C1, s1, c1), (rows2, C2, s2, c2) = built[1], built[2]
    assert rows1 != rows2  # the two tilings differ
    assert torch.equal(C1, C2) and torch.equal(s1, s2) and c1 == c2


def test_workspace_is_reused_and_freed():
    free_workspace()
    a = workspace(1000)
    b = workspace(500)
    assert a.data_ptr() == b.data_ptr()
    assert workspace_bytes("cpu") >= 4000
    c = workspace(5000)  # grows
    assert c.numel() == 5000
    free_workspace()
    assert workspace_bytes() == 0
    X = np.random.default_rng(0).normal(size=(64, 3))
    select(X, 5, mode="dense", device="cpu")
    ptr = workspace(64 * 64).data_ptr()
    select(X, 5, mode="dense", device="cpu")
    assert workspace(64 * 64).data_ptr() == ptr
    free_workspace()


def test_select_cli(tmp_path, capsys):
    from coreselect.submodular.cli import register

    parser = argparse.ArgumentParser(prog="coreselect")
    register(parser.add_subparsers(dest="command"))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(120, 5)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, size=120))
    out = tmp_path / "cs.npz"
    args = parser.parse_args(
        [
            "select",
            str(tmp_path / "f.npy"),
            "--budget",
            "0.1",
            "--labels",
            str(tmp_path / "y.npy"),
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "selected 12 of 120" in text and "objective" in text and "seconds" in text
    assert "kernel" in text and "greedy" in text
    cs = Coreset.load(out)
    assert len(cs) == 12 and cs.weights.mean() == pytest.approx(1.0, rel=1e-5)
    args = parser.parse_args(
        ["select", str(tmp_path / "f.npy"), "--budget", "500", "--out", str(out)]
    )
    assert args.func(args) == 2
    assert "larger than the pool" in capsys.readouterr().err


def test_memory_sizes_read_and_written():
    from coreselect.submodular.memory import as_bytes, format_bytes

    assert as_bytes(4 * 2**20) == as_bytes("4M") == as_bytes(" 4 MiB ") == as_bytes(4.0 * 2**20)
    assert as_bytes(np.int64(7)) == 7 and as_bytes("0") == 0
    for bad in (-1, "4X", True, None, float("inf"), [4]):
        with pytest.raises(ValueError, match="memory must be a size"):
            as_bytes(bad)
    assert [format_bytes(b) for b in (0, 1023, 1024, 3 * 2**20 + 2**19, 5 * 2**40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.5 MiB",
        "5.0 TiB",
    ]
    # select reads the same sizes: 2,000 x 2,048 float32 does not fit in "4M"
    X = np.random.default_rng(2).normal(size=(2000, 4))
    a = select(X, 10, max_memory="4M", k_neighbors=7)
    b = select(X, 10, max_memory=4 * 2**20, k_neighbors=7)
    assert a.meta["mode"] == b.meta["mode"] == "knn"
    assert np.array_equal(a.indices, b.indices)


def test_select_cli_memory_limit_and_neighbours(tmp_path, capsys):
    from coreselect.submodular.cli import _memory, register

    assert _memory("8G") == 8 * 2**30 and _memory("512MiB") == 512 * 2**20
    assert _memory("1.5k") == 1536 and _memory("1000") == 1000 and _memory("0") == 0
    for bad in ("-1G", "lots", "G", "", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="memory must be a size"):
            _memory(bad)
    parser = argparse.ArgumentParser(prog="coreselect")
    register(parser.add_subparsers(dest="command"))
    np.save(tmp_path / "f.npy", np.random.default_rng(2).normal(size=(2000, 4)))
    out = tmp_path / "cs.npz"
    argv = ["select", str(tmp_path / "f.npy"), "--budget", "10", "--quiet", "--out", str(out)]
    # 2,000 x 2,048 float32 does not fit in 4 MiB: auto mode takes knn, with the given K
    args = parser.parse_args([*argv, "--max-memory", "4M", "--k-neighbors", "7"])
    assert args.func(args) == 0
    assert "mode knn" in capsys.readouterr().out
    assert Coreset.load(out).meta["k_neighbors"] == [7]
    args = parser.parse_args([*argv, "--max-memory", "1G"])
    assert args.func(args) == 0
    assert "mode dense" in capsys.readouterr().out
    args = parser.parse_args([*argv, "--mode", "dense", "--max-memory", "64K"])
    assert args.func(args) == 2
    assert "more than max_memory" in capsys.readouterr().err
    # nor do its knn lists with the default K (800 = 4 n / k) fit in 4 MiB
    args = parser.parse_args([*argv, "--max-memory", "4M"])
    assert args.func(args) == 2
    assert "knn mode needs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--k-neighbors", "0"])


@pytest.mark.parametrize("mode", ["auto", "knn"])
def test_knn_lists_that_would_not_fit_are_refused(mode):
    X = np.random.default_rng(4).normal(size=(3000, 5))
    limit = knn_bytes(3000, 100) - 1  # the default K at k = 120 is 4 n / k = 100
    with pytest.raises(ValueError, match="knn mode needs") as err:
        select(X, 120, mode=mode, max_memory=limit)
    fit = int(re.search(r"k_neighbors=(\d+) would fit", str(err.value)).group(1))
    assert fit == 99 and knn_bytes(3000, fit) <= limit < knn_bytes(3000, fit + 1)
    cs = select(X, 120, mode=mode, max_memory=limit, k_neighbors=fit)
    assert cs.meta["mode"] == "knn" and cs.meta["k_neighbors"] == [fit]
    # groups run one at a time: the largest pool's lists count
    labels = np.repeat([0, 1], [2000, 1000])
    assert select(X, 120, labels=labels, mode=mode, max_memory=limit).meta["mode"] == "knn"


def test_select_cli_reads_a_one_array_npz(tmp_path, capsys):
    from coreselect.submodular.cli import register

    parser = argparse.ArgumentParser(prog="coreselect")
    register(parser.add_subparsers(dest="command"))
    X = np.random.default_rng(1).normal(size=(40, 3))
    np.savez(tmp_path / "one.npz", features=X)
    np.savez(tmp_path / "two.npz", a=X, b=X[:, 0])
    out = tmp_path / "cs.npz"
    argv = ["select", str(tmp_path / "one.npz"), "--budget", "4", "--quiet"]
    args = parser.parse_args([*argv, "--out", str(out)])
    assert args.func(args) == 0
    assert "selected 4 of 40" in capsys.readouterr().out
    argv = ["select", str(tmp_path / "two.npz"), "--budget", "4", "--quiet"]
    args = parser.parse_args([*argv, "--out", str(out)])
    assert args.func(args) == 2
    assert "2 arrays (a, b)" in capsys.readouterr().err
    # a text file, or an object array, is named as not numbers (numpy's words speak of pickles)
    (tmp_path / "f.txt").write_text("1 2\n3 4\n")
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    for name in ("f.txt", "obj.npy"):
        args = parser.parse_args(
            ["select", str(tmp_path / name), "--budget", "1", "--out", str(out)]
        )
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert f"{name} is not a .npy file or .npz archive of numbers" in err
        assert "pickle" not in err
