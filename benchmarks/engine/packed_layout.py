"""What storing the symmetric cost matrix once would buy: build time, memory, row reads.

Usage: python benchmarks/engine/packed_layout.py [--rounds 3] [--threads 1,2]
    [--out benchmarks/results/engine-packed-layout.json]

The dense mode stores all ``n x n`` costs although the matrix is symmetric. This prototype
(not engine code) builds the same Euclidean costs of the engine bench's Fashion-MNIST pool
(n = 30,000, d = 64) into fresh memory, one process per build so that every build pays its
first touch, in two layouts (the pool in the engine's cell order, as ``select`` lays it out):

* ``full``: row-major ``n x n`` (today's layout), 128-row blocks: touch, one GEMM, norms,
  clamp, sqrt;
* ``tiles``: a grid of 128 x 128 tiles, each contiguous, of which only the tiles
  ``(I, J)``, ``I <= J`` are written (stripe by stripe, one batched GEMM per stripe, with
  every tile's row and column minima): the pages of the others are never touched, so never
  backed — half the memory, half the first touch, GEMM and elementwise work;

and times, in the ``tiles`` layout, what the greedy's per-pick reads would cost: a whole
cost row of a point ``p`` is then the row ``p`` of its own stripe's tiles plus the column
``p`` of one tile in every earlier stripe (two strided copies), against a contiguous row
copy in the ``full`` layout; and the one pass that would collect, after the exact greedy's
first 10 picks, the entries that can still matter (``c_ij < dcur_i``: ~2.7 % of them), the
switch to a sparse representation that the greedy's later picks would need in the ``tiles``
layout, where a single row costs a strided gather: with torch's compare, ``nonzero`` and
masked gather in both layouts, and in ``tiles`` also as a compiled count-then-fill loop
(numba, the ``bench`` extra) that reads only the tile rows and columns whose minimum is
below their point's cost.

The processes alternate (full, tiles, full, tiles, ...) per thread count, as the engine A/B
does, because this VM's speed drifts by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
layout, threads, path, dpath = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(threads)
X = torch.from_numpy(np.load(path))
n, T = X.shape[0], 128
X = X - X.mean(0)
sq = (X * X).sum(1)
starts = list(range(0, n, T))
t0 = time.perf_counter()
if layout == "full":
    C = torch.empty(n * n).view(n, n)
    for s in starts:
        e = min(s + T, n)
        blk = C[s:e]
        blk.fill_(0.0)  # first touch with plain stores, as the engine's build does
        torch.addmm(sq.unsqueeze(0), X[s:e], X.T, alpha=-2.0, out=blk)
        blk.add_(sq[s:e, None]).clamp_(min=0.0).sqrt_()
else:
    # a grid of nt x nt tiles of T x T, tile (I, J) contiguous at (I * nt + J) * T * T;
    # only the tiles I <= J are ever written, so the pages of the others are never backed
    nt = -(-n // T)
    Xp = torch.zeros(nt * T, X.shape[1]); Xp[:n] = X
    sqp = torch.zeros(nt * T); sqp[:n] = sq
    buf = torch.empty(nt * nt * T * T)
    rmin = torch.full((nt, nt, T), float("inf"))
    cmin = torch.full((nt, nt, T), float("inf"))
    for i in range(nt):
        # stripe i: tiles (i, i..nt-1), contiguous in the grid
        tiles = buf[(i * nt + i) * T * T:(i + 1) * nt * T * T].view(nt - i, T, T)
        tiles.fill_(0.0)
        A = Xp[i * T:(i + 1) * T]  # (T, d)
        B = Xp[i * T:].view(nt - i, T, -1)  # (nJ, T, d)
        torch.matmul(A.unsqueeze(0), B.transpose(1, 2), out=tiles)
        tiles.mul_(-2.0).add_(sqp[i * T:(i + 1) * T].view(1, T, 1))
        tiles.add_(sqp[i * T:].view(nt - i, 1, T)).clamp_(min=0.0).sqrt_()
        tiles[-1, :, n - (nt - 1) * T:] = float("inf")  # padding candidates never count
        # row and column minima of every tile, as the engine keeps its segment minima
        torch.amin(tiles, dim=2, out=rmin[i, i:])
        torch.amin(tiles, dim=1, out=cmin[i, i:])
build_s = time.perf_counter() - t0
rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
# per-pick row reads: 3,000 random points, whole rows into a contiguous buffer
rng = np.random.default_rng(0)
picks = rng.integers(0, n, 3000).tolist()
row = torch.empty(n)
if layout == "full":
    t0 = time.perf_counter()
    for p in picks:
        row.copy_(C[p])
    read_us = (time.perf_counter() - t0) / len(picks) * 1e6
    check = None
else:
    # row p = column r of the tiles (J, I), J < I (strided), then row r of (I, J >= I)
    rowp = torch.empty(nt * T)
    def read(p):
        I, r = divmod(p, T)
        if I:
            col = buf.as_strided((I, T), (nt * T * T, T), I * T * T + r)
            rowp[: I * T].view(I, T).copy_(col)
        own = buf.as_strided((nt - I, T), (T * T, 1), (I * nt + I) * T * T + r * T)
        rowp[I * T:].view(nt - I, T).copy_(own)
    t0 = time.perf_counter()
    for p in picks:
        read(p)
    read_us = (time.perf_counter() - t0) / len(picks) * 1e6
    # the gathered row equals the directly computed distances
    p = picks[0]
    d = ((X - X[p]) ** 2).sum(1).sqrt()
    read(p)
    check = float((rowp[:n] - d).abs().max() / d.max())
# the entries that can still matter after the first 10 greedy picks: c_ij < dcur_i,
# collected in one pass over the stored tiles (both orientations), as (point, candidate)
dcur = torch.from_numpy(np.load(dpath))
entries = 0
t0 = time.perf_counter()
if layout == "full":
    for s in starts:
        e = min(s + T, n)
        m = C[s:e] < dcur[s:e, None]
        nz = m.nonzero()
        vals = C[s:e][m]
        entries += int(vals.numel())
else:
    dp = torch.full((nt * T,), -1.0); dp[:n] = dcur
    for i in range(nt):
        tiles = buf[(i * nt + i) * T * T:(i + 1) * nt * T * T].view(nt - i, T, T)
        m = tiles < dp[i * T:(i + 1) * T].view(1, T, 1)  # points of stripe i
        nz, vals = m.nonzero(), tiles[m]
        entries += int(vals.numel())
        m = tiles[1:] < dp[(i + 1) * T:].view(nt - i - 1, 1, T)  # points of later stripes
        nz, vals = m.nonzero(), tiles[1:][m]
        entries += int(vals.numel())
extract_s = time.perf_counter() - t0
compiled = {}
if layout == "tiles":
    # the same collection as one compiled loop (numba, bench extra): count, then fill
    import numba
    numba.set_num_threads(threads)

    @numba.njit
    def scan(tiles, base, step, T, thr, point, cand0, k, pt, cand, cost, write):
        # one tile row (step 1) or column (step T): the entries below the point's cost
        for q in range(T):
            c = tiles[base + q * step]
            if c < thr:
                if write:
                    pt[k], cand[k], cost[k] = point, cand0 + q, c
                k += 1
        return k

    @numba.njit(parallel=True)
    def collect(tiles, dp, rmin, cmin, nt, T, start, pt, cand, cost, write):
        # count (write=False: start[i] receives stripe i's count) or fill from start[i]
        for i in numba.prange(nt):
            k = start[i] if write else 0
            base = (i * nt + i) * T * T
            for J in range(i, nt):
                t0 = base + (J - i) * T * T
                for a in range(T):  # points of stripe i: the tile rows that can hold one
                    if rmin[i, J, a] < dp[i * T + a]:
                        k = scan(tiles, t0 + a * T, 1, T, dp[i * T + a], i * T + a, J * T,
                                 k, pt, cand, cost, write)
                for b in range(T if J > i else 0):  # points of stripe J: the tile columns
                    if cmin[i, J, b] < dp[J * T + b]:
                        k = scan(tiles, t0 + b, T, T, dp[J * T + b], J * T + b, i * T,
                                 k, pt, cand, cost, write)
            if not write:
                start[i] = k

    flat, dpn, rm, cm = buf.numpy(), dp.numpy(), rmin.numpy(), cmin.numpy()
    none_i, none_f = np.empty(0, np.int32), np.empty(0, np.float32)
    per = np.zeros(nt, dtype=np.int64)
    t0 = time.perf_counter()
    collect(flat, dpn, rm, cm, 1, T, per[:1], none_i, none_i, none_f, False)  # compile
    collect(flat, dpn, rm, cm, 1, T, np.zeros(1, np.int64), np.empty(per[0], np.int32),
            np.empty(per[0], np.int32), np.empty(per[0], np.float32), True)
    compiled["compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    collect(flat, dpn, rm, cm, nt, T, per, none_i, none_i, none_f, False)
    start = np.concatenate([[0], np.cumsum(per)[:-1]])
    total = int(per.sum())
    pt, cand = np.empty(total, np.int32), np.empty(total, np.int32)
    cost = np.empty(total, np.float32)
    collect(flat, dpn, rm, cm, nt, T, start, pt, cand, cost, True)
    compiled["extract10_compiled_s"] = time.perf_counter() - t0
    compiled["entries10_compiled"] = total
    dpt = dpn.reshape(nt, 1, T)
    live = (rm < dpt.transpose(0, 1, 2)).sum() + (cm < dpn.reshape(1, nt, T)).sum()
    compiled["live_rows_cols10"] = float(live / (2 * nt * nt * T))
print(json.dumps({"layout": layout, "threads": threads, "build_s": build_s,
                  "peak_gib": rss_gib, "row_read_us": read_us, "row_check_rel": check,
                  "extract10_s": extract_s, "entries10": entries, **compiled}))
"""


COSTS_AFTER = r"""
import sys, numpy as np, torch
from coreselect import select
from coreselect.submodular.cells import SEGMENT, cell_order
X = torch.from_numpy(np.load(sys.argv[1]))
idx = torch.from_numpy(select(X.numpy(), int(sys.argv[3])).indices)
dcur = torch.cdist(X, X[idx]).amin(dim=1)
# the pool in the engine's cell order (nearby points in the same tiles), as select lays it out
perm = cell_order(X, SEGMENT, metric="euclidean")
np.save(sys.argv[1], X[perm].numpy())
np.save(sys.argv[2], dcur[perm].numpy())
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-packed-layout.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from coreselect.bench.engine import _machine, load_features

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path, dpath = Path(tmp) / "X.npy", Path(tmp) / "dcur10.npy"
        X = load_features("fmnist", 30000, 64, seed=0)
        np.save(path, X)
        # distance of every point to the nearest of the exact greedy's first 10 picks, and
        # the pool put in the engine's cell order, in a process of its own (a child
        # inherits its parent's peak-memory mark)
        subprocess.run(
            [sys.executable, "-c", COSTS_AFTER, str(path), str(dpath), "10"],
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        for threads in [int(t) for t in args.threads.split(",")]:
            for r in range(args.rounds):
                for layout in ("full", "tiles"):
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, layout, str(threads), str(path), str(dpath)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    runs.append({"round": r, **json.loads(out)})
                    print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for threads in sorted({r["threads"] for r in runs}):
        for layout in ("full", "tiles"):
            rs = [r for r in runs if r["threads"] == threads and r["layout"] == layout]
            keys = [k for k in rs[0] if k not in ("round", "layout", "threads", "row_check_rel")]
            summary[f"{layout}_{threads}t"] = {
                key: statistics.median(r[key] for r in rs) for key in keys
            }
        full, tiles = summary[f"full_{threads}t"], summary[f"tiles_{threads}t"]
        summary[f"ratio_{threads}t"] = {
            "build_full_over_tiles": full["build_s"] / tiles["build_s"],
            "peak_tiles_over_full": tiles["peak_gib"] / full["peak_gib"],
            "row_read_tiles_over_full": tiles["row_read_us"] / full["row_read_us"],
        }
    result = {
        "command": "python benchmarks/engine/packed_layout.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "n": 30000,
        "d": 64,
        "tile": 128,
        "summary_median": summary,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
