"""Exact ties in tests: float64 similarities from the features, and a check that two greedy
pick sequences are equal or part only where two gains tie.

Two gains that tie exactly in real arithmetic (copies of a point; two points that only
cover each other, whose gains are ``o_a + o_b - c_ab`` and ``o_b + o_a - c_ba``) are
decided by float32 rounding, which differs between memory modes, between the grouped and
the per-group arithmetic, and between CPUs (seen on AMD EPYC against Intel Xeon: its BLAS
rounds small products another way, and copies then cost a few 1e-4 to each other instead
of 0).
"""

from __future__ import annotations

import numpy as np


def similarity64(X: np.ndarray, metric: str) -> np.ndarray:
    """The engine's similarity of ``metric`` computed in float64 from ``X`` ``(n, d)``:
    ``(n, n)`` (copies are at distance 0 exactly)."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True).clip(min=1e-300)
        return np.maximum(Xn @ Xn.T, 0.0)
    Xc = X - X.mean(axis=0)
    D = np.sqrt(((Xc[:, None, :] - Xc[None, :, :]) ** 2).sum(-1))
    return D.max() - D if metric == "euclidean" else np.exp(-D / X.shape[1])


def assert_same_or_parted_at_tie(
    a: list[int], b: list[int], S: np.ndarray, what: object = None, rtol: float = 1e-12
) -> bool:
    """Pick sequences ``a`` and ``b`` (pool positions) are equal, or their first differing
    picks have gains within ``rtol`` of each other on the float64 similarity ``S`` after
    the common prefix. Returns whether they parted."""
    if a == b:
        return False
    t = next((i for i, (p, q) in enumerate(zip(a, b)) if p != q), None)
    assert t is not None, (what, "one sequence is a prefix of the other", a, b)
    prefix = list(a[:t])
    base = np.maximum(S[:, prefix].max(axis=1), 0).sum() if prefix else 0.0
    ga, gb = (np.maximum(S[:, prefix + [j]].max(axis=1), 0).sum() - base for j in (a[t], b[t]))
    assert abs(ga - gb) <= rtol * max(abs(ga), abs(gb)), (what, t, a, b, ga, gb)
    return True
