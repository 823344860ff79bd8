"""Fused numba loops for the incremental greedy's two whole-row passes (a measurement aid).

Not engine code: numba is only in the ``bench`` extra. :func:`patch_engine` swaps them into
a running engine (``DenseOracle.gains_all`` and ``incremental._row_decrease``) so that
``fused_rows.py --end-to-end`` can time whole selections with and without them. Both keep
the engine's contracts: float64 results of the same sums, within float32 rounding (the
incremental greedy re-evaluates every candidate near the best one with its own exact
arithmetic, so the picks stay naive greedy's).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

_COLS = 2048  # columns per parallel block of the row update
_ROWS = 8  # rows summed in float32 before a float64 accumulation (as the torch pass)
_PART = 256  # terms summed in float32 before a float64 accumulation


@numba.njit(fastmath=True, parallel=True, cache=True)
def gains_rows(C, d, out):
    """``out[j] = sum_i max(0, d[i] - C[j, i])`` for ``i < len(d)``; ``C`` ``(m, >= len(d))``
    float32 C-contiguous, ``d`` ``(n,)`` float32, ``out`` ``(m,)`` float64 (float32 partial
    sums added in float64: the greedy takes these gains as exact up to ``rel_tol``)."""
    n = d.shape[0]
    for j in numba.prange(C.shape[0]):
        s = 0.0
        for lo in range(0, n, _PART):  # float32 partial sums of _PART terms, in float64
            p = np.float32(0.0)
            for i in range(lo, min(lo + _PART, n)):
                v = d[i] - C[j, i]
                p += v if v > 0 else np.float32(0.0)
            s += np.float64(p)
        out[j] = s


@numba.njit(fastmath=True, parallel=True, cache=True)
def decrease_rows(C, pts, o, w, acc):
    """``acc[j] += sum_t min(max(0, o[t] - C[pts[t], j]), o[t] - w[t])`` for ``j < len(acc)``
    (float32 sums of ``_ROWS`` rows added in float64), in parallel over blocks of columns."""
    n = acc.shape[0]
    for b in numba.prange((n + _COLS - 1) // _COLS):
        lo = b * _COLS
        hi = min(lo + _COLS, n)
        part = np.zeros(hi - lo, dtype=np.float32)
        for t0 in range(0, pts.shape[0], _ROWS):  # float32 over _ROWS rows, then float64
            for t in range(t0, min(t0 + _ROWS, pts.shape[0])):
                r, ot, wt = pts[t], o[t], w[t]
                for j in range(lo, hi):
                    c = C[r, j]
                    c = wt if c < wt else c
                    c = ot if c > ot else c
                    part[j - lo] += ot - c
            for j in range(lo, hi):
                acc[j] += np.float64(part[j - lo])
                part[j - lo] = 0.0


def patch_engine() -> None:
    """Route the engine's full gain pass and whole-row update through the fused loops."""
    from coreselect.submodular import incremental, memory

    def gains_all(self, dcur: torch.Tensor) -> torch.Tensor:
        if not self.skips_segments:  # only the padded CPU layout is patched
            return original_gains_all(self, dcur)
        out = np.empty(self.n, dtype=np.float64)
        gains_rows(self._segs.reshape(self.n, -1), dcur.numpy(), out)
        return torch.from_numpy(out)

    def row_decrease(oracle, pts, old, drop):
        acc = np.zeros(oracle.n, dtype=np.float64)
        C = oracle._segs.reshape(oracle.n, -1)
        new = (old - drop).numpy()
        decrease_rows(C, pts.numpy(), old.numpy(), new, acc)
        return torch.from_numpy(acc)

    original_gains_all = memory.DenseOracle.gains_all
    memory.DenseOracle.gains_all = gains_all
    incremental._row_decrease = row_decrease
