"""kNN kernel construction, recomputed (blockwise) rows, the dense build's tiles, workspace
reuse and the select CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from coreselect import Coreset, select
from coreselect.submodular.kernels import (
    TILE_MIN_ROWS,
    _block_bounds,
    _rows_per_block,
    build_dense,
    cost_tile,
    free_workspace,
    is_symmetric,
    prepare_features,
    workspace,
    workspace_bytes,
)
from coreselect.submodular.memory import BlockwiseOracle, KnnOracle

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
    assert torch.equal(C, C.T) and is_symmetric(C)


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


def test_select_cli_memory_limit_and_neighbours(tmp_path, capsys):
    from coreselect.submodular.cli import _memory, register

    assert _memory("8G") == 8 * 2**30 and _memory("512MiB") == 512 * 2**20
    assert _memory("1.5k") == 1536 and _memory("1000") == 1000 and _memory("0") == 0
    for bad in ("-1G", "lots", "G", "", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="memory must be a size"):
            _memory(bad)
    parser = argparse.ArgumentParser(prog="coreselect")
    register(parser.add_subparsers(dest="command"))
    np.save(tmp_path / "f.npy", np.random.default_rng(2).normal(size=(200, 4)))
    out = tmp_path / "cs.npz"
    argv = ["select", str(tmp_path / "f.npy"), "--budget", "10", "--quiet", "--out", str(out)]
    # 200 x 200 float32 does not fit in 64 KiB: auto mode takes knn, with the given K
    args = parser.parse_args([*argv, "--max-memory", "64K", "--k-neighbors", "7"])
    assert args.func(args) == 0
    assert "mode knn" in capsys.readouterr().out
    assert Coreset.load(out).meta["k_neighbors"] == [7]
    args = parser.parse_args([*argv, "--max-memory", "1G"])
    assert args.func(args) == 0
    assert "mode dense" in capsys.readouterr().out
    args = parser.parse_args([*argv, "--mode", "dense", "--max-memory", "64K"])
    assert args.func(args) == 2
    assert "more than max_memory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--k-neighbors", "0"])


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
