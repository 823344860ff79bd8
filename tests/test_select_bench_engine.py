"""The engine benchmark's pieces: data, the shared float64 re-scoring, a tiny real run."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch

from coreselect.bench.engine import load_features, pool_max_distance, register, rescore


def _tiny_run(tmp_path, *flags: str) -> dict:
    """``coreselect bench engine`` on 300 blob points in 4-D, k = 30, ours ``lazy``, no warm
    calls, plus ``flags``; returns the written JSON."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="suite"))
    out = tmp_path / "r.json"
    args = parser.parse_args(
        ["engine", "--n", "300", "--d", "4", "--fraction", "0.1", "--data", "blobs"]
        + ["--ours", "lazy", "--repeats", "0", "--anchor-repeats", "0", "--out", str(out)]
        + list(flags)
    )
    assert args.func(args) == 0
    return json.loads(out.read_text())


def test_rescore_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    picks = np.array([3, 17, 25])
    D = np.linalg.norm(X[:, None, :].astype(np.float64) - X[None, :, :], axis=2)
    r = rescore(X, picks, "euclidean")
    assert r["cost"] == pytest.approx(D[:, picks].min(axis=1).sum(), rel=1e-9)
    assert r["objective"] == pytest.approx(40 * D.max() - r["cost"], rel=1e-9)
    assert pool_max_distance(X) == pytest.approx(D.max(), rel=1e-9)
    rb = rescore(X, picks, "rbf")
    assert rb["objective"] == pytest.approx(np.exp(-D[:, picks] / 3).max(axis=1).sum(), rel=1e-9)


def test_blobs_features_are_seeded():
    a = load_features("blobs", 500, 8, seed=1)
    b = load_features("blobs", 500, 8, seed=1)
    assert a.shape == (500, 8) and a.dtype == np.float32
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown data"):
        load_features("cifar", 10, 2)


def test_tiny_engine_run(tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="suite"))
    out = tmp_path / "r.json"
    args = parser.parse_args(
        [
            "engine",
            "--n",
            "300",
            "--d",
            "4",
            "--fraction",
            "0.1",
            "--data",
            "blobs",
            "--ours",
            "lazy",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"machine", "floor", "runs", "ratios"}
    # the floor's parts, each on fresh memory: the faster first touch plus a warm GEMM
    f = res["floor"]
    assert f["alloc_touch_s"] > 0 and f["gemm_s"] > 0 and f["cold_alloc_gemm_s"] > 0
    touches = [t for t in (f["alloc_touch_s"], f["alloc_populate_s"]) if t is not None]
    assert f["floor_s"] == pytest.approx(min(touches) + f["gemm_s"])
    (run,) = res["runs"]
    for key in (
        "impl",
        "optimizer",
        "epsilon",
        "mode",
        "n",
        "d",
        "k",
        "threads",
        "cold_s",
        "seconds",
        "kernel_s",
        "greedy_s",
        "peak_mb",
        "objective",
        "cost_ratio",
    ):
        assert key in run, key
    assert run["k"] == 30 and run["cost_ratio"] == pytest.approx(1.0)


def test_apricot64_anchor_feeds_float64_features(tmp_path):
    # the anchor rows for apricot fed numpy's default dtype: their own rows, timed and
    # re-scored like the others, and their ratios reported apart
    res = _tiny_run(tmp_path, "--compare", "apricot64", "--threads", "1")
    modes = [(r["impl"], r["mode"]) for r in res["runs"]]
    assert modes == [
        ("coreselect", "dense"),
        ("apricot", "features-f64"),
        ("apricot", "precomputed-f64"),
    ]
    feats, pre = res["runs"][1:]
    assert "error" not in feats and feats["peak_mb"] > 0
    # apricot's euclidean is squared distances: a different objective, close in cost
    assert feats["cost_ratio"] < 1.2
    # handed our similarity in float64, apricot's lazy greedy is exact greedy too
    assert pre["cost_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert "peak_memory_lazy_over_apricot_features_f64" in res["ratios"]
    assert "lazy_vs_apricot_features_f64_cold_1thread" in res["ratios"]
    assert "greedy_vs_apricot_precomputed_f64_greedy_1thread" in res["ratios"]
    assert "peak_memory_lazy_over_apricot_precomputed_f64" in res["ratios"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="suite"))
    bad = parser.parse_args(["engine", "--compare", "apricot32", "--out", str(tmp_path / "b")])
    assert bad.func(bad) == 2


def test_apricot64_mt_anchor_gives_numba_the_threads_and_holds_blas_to_one(tmp_path):
    # same thread count on both sides for apricot's greedy (numba prange), BLAS at 1 thread
    # (numpy's SYRK crash): the rows record what the worker process actually saw
    res = _tiny_run(tmp_path, "--compare", "apricot64-mt", "--threads", "2")
    rows = [(r["impl"], r["mode"], r["threads"], r.get("blas_threads")) for r in res["runs"]]
    assert rows == [
        ("coreselect", "dense", 2, None),
        ("coreselect", "dense", 1, None),
        ("apricot", "features-f64", 2, 1),
        ("apricot", "precomputed-f64", 2, 1),
    ]
    for r in res["runs"][2:]:
        assert "error" not in r
        assert r["thread_counts"] == {"numba": 2, "blas": 1}
    assert res["runs"][3]["cost_ratio"] == pytest.approx(1.0, rel=1e-6)
    for key in (
        "lazy_vs_apricot_features_f64_cold_bothTthreads",
        "lazy_vs_apricot_precomputed_f64_cold_bothTthreads",
        "greedy_vs_apricot_precomputed_f64_greedy_bothTthreads",
    ):
        assert key in res["ratios"], key
    # the 1-thread float64 ratios are not taken from these rows
    assert "lazy_vs_apricot_features_f64_cold_1thread" not in res["ratios"]


def test_a_failed_worker_prints_its_exception():
    from coreselect.bench.engine import _error_line

    tail = "Traceback (most recent call last):\n  File 'w.py'\n    ^^^^^\nValueError: no CUDA\n"
    assert _error_line(f"exit 1 after 2 s: {tail}") == "exit 1 after 2 s: ValueError: no CUDA"
    assert _error_line("timed out after 30 s") == "timed out after 30 s"


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--d", "0"], "--d must be at least 1"),
        (["--fraction", "2"], r"--fraction must be in \(0, 1\]"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--epsilon", "0"], "--epsilon must be in"),
        (["--ours", "lazy,bogus"], "unknown --ours entry 'bogus'"),
        # before: every configuration's worker failed in turn, and a result was written
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA is not available")]),
)
def test_bad_bench_arguments_exit_2_before_any_work(tmp_path, capsys, flags, needle):
    """Before, these raised ZeroDivisionError or KeyError, or wrote a result anyway."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="suite"))
    out = tmp_path / "r.json"
    args = parser.parse_args(["engine", *flags, "--out", str(out)])
    assert args.func(args) == 2
    assert re.search(needle, capsys.readouterr().err)
    assert not out.exists()
