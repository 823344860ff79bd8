"""kNN kernel construction, workspace reuse and the select CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from coreselect import Coreset, select
from coreselect.submodular.kernels import (
    cost_tile,
    free_workspace,
    prepare_features,
    workspace,
    workspace_bytes,
)
from coreselect.submodular.memory import KnnOracle

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
