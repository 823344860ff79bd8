"""How much fused row passes would save: the engine's torch row passes against numba loops.

Usage: python benchmarks/engine/fused_rows.py [--threads 1] [--rounds 3]
    [--out benchmarks/results/engine-fused-rows.json]

On the Fashion-MNIST pool of the engine bench (n = 30,000, d = 64, cell order and segmented
dense matrix as `select` builds it) this times, per cost row:

* the full gain pass after the first pick (``DenseOracle.gains_all``: ``sub``, ``clamp_``,
  ``sum`` over cache-sized row chunks) against one fused numba loop;
* the row decrease of the second pick's changed points (``incremental._row_decrease``:
  ``sub``, ``clamp_``, ``minimum``, column ``sum``) against one fused numba loop;
* the read floor: ``torch.mv`` over the same rows (one streaming pass).

numba (the ``bench`` extra, for apricot) is not a dependency of the engine; this script
measures what adopting it for these two passes would be worth. Its compile time (no cache)
is reported too, since every cold process would pay it or load it from a cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _best_us_per_row(fn, rows: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / rows * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-fused-rows.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numba
    import numpy as np
    import torch

    from coreselect.bench.engine import _machine, load_features
    from coreselect.submodular.cells import SEGMENT, cell_order
    from coreselect.submodular.facility_location import make_oracle
    from coreselect.submodular.incremental import _row_decrease

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    X = load_features("fmnist", 30000, 64, seed=0)
    X = torch.from_numpy(np.ascontiguousarray(X[0] if isinstance(X, tuple) else X, np.float32))
    perm = cell_order(X, SEGMENT, metric="euclidean")
    oracle = make_oracle(X[perm], "euclidean", "dense", segment=SEGMENT)
    n = oracle.n
    # the padded (n, width) matrix: C-contiguous, so that numba vectorizes the row loops
    C = oracle.segments.view(n, -1).numpy()
    # the costs after pick 1 and the changed points of pick 2, as the greedy sees them
    p1 = int(oracle.g0.argmax())
    dcur = oracle.C[p1].clone()
    p2 = int(oracle.gains_all(dcur).argmax())
    ix = torch.from_numpy(np.flatnonzero(C[p2, :n] < dcur.numpy()))
    old, new = dcur[ix].clone(), oracle.C[p2][ix].clone()

    @numba.njit(fastmath=True, parallel=True)
    def fused_gains(C, d, out):  # out_j = sum_i max(0, d_i - c_ji)
        for j in numba.prange(C.shape[0]):
            s = np.float32(0.0)
            for i in range(d.shape[0]):
                v = d[i] - C[j, i]
                s += v if v > 0 else np.float32(0.0)
            out[j] = s

    @numba.njit(fastmath=True)
    def fused_decrease(C, pts, o, w, acc):  # acc_j += sum_i min(max(0, o_i - c_ij), o_i - w_i)
        for t in range(pts.shape[0]):
            r, oi, wi = pts[t], o[t], w[t]
            for j in range(acc.shape[0]):
                c = C[r, j]
                c = wi if c < wi else c
                c = oi if c > oi else c
                acc[j] += oi - c

    dn, pn, on, wn = dcur.numpy(), ix.numpy(), old.numpy(), new.numpy()
    out32 = np.empty(n, np.float32)
    acc32 = np.zeros(n, np.float32)
    t = time.perf_counter()
    fused_gains(C[:2], dn, out32[:2])
    fused_decrease(C, pn[:2], on, wn, acc32)
    compile_s = time.perf_counter() - t

    ref_g = oracle.gains_all(dcur).numpy()
    fused_gains(C, dn, out32)
    ref_d = _row_decrease(oracle, ix, old, old - new).numpy()
    acc32[:] = 0
    fused_decrease(C, pn, on, wn, acc32)
    m = int(ix.numel())
    ones = torch.ones(n)
    rows = {
        "gains_torch_us": _best_us_per_row(lambda: oracle.gains_all(dcur), n, args.rounds),
        "gains_numba_us": _best_us_per_row(lambda: fused_gains(C, dn, out32), n, args.rounds),
        "decrease_torch_us": _best_us_per_row(
            lambda: _row_decrease(oracle, ix, old, old - new), m, args.rounds
        ),
        "decrease_numba_us": _best_us_per_row(
            lambda: (acc32.fill(0), fused_decrease(C, pn, on, wn, acc32)), m, args.rounds
        ),
        "read_floor_mv_us": _best_us_per_row(lambda: torch.mv(oracle.C, ones), n, args.rounds),
    }
    result = {
        "command": "python benchmarks/engine/fused_rows.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "threads": args.threads,
        "numba": numba.__version__,
        "n": n,
        "changed_points_pick2": m,
        "numba_compile_s": compile_s,
        "per_row": rows,
        "speedup": {
            "gains": rows["gains_torch_us"] / rows["gains_numba_us"],
            "decrease": rows["decrease_torch_us"] / rows["decrease_numba_us"],
        },
        "max_rel_diff": {
            "gains": float(np.abs(out32 - ref_g).max() / np.abs(ref_g).max()),
            "decrease": float(np.abs(acc32 - ref_d).max() / np.abs(ref_d).max()),
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("per_row", "speedup", "max_rel_diff")}, indent=1))
    print(f"numba compile {compile_s:.2f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
