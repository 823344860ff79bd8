"""How much fused row passes would save: the engine's torch row passes against numba loops.

Usage: python benchmarks/engine/fused_rows.py [--threads 1] [--rounds 3]
    [--out benchmarks/results/engine-fused-rows.json]
       python benchmarks/engine/fused_rows.py --end-to-end [--threads 1] [--rounds 3]
    [--out benchmarks/results/engine-fused-e2e.json]

Per row (default; each pass timed in turn, ``--rounds`` times, medians): on the
Fashion-MNIST pool of the engine bench (n = 30,000, d = 64, cell order and segmented dense
matrix as `select` builds it) this times, per cost row:

* the full gain pass after the first pick (``DenseOracle.gains_all``: ``sub``, ``clamp_``,
  ``sum`` over cache-sized row chunks) against one fused loop
  (:func:`fused_kernels.gains_rows`);
* the row update of the second pick's changed points (``incremental._row_decrease``: ``sub``,
  ``clamp_``, ``minimum``, column ``sum``) against one fused loop
  (:func:`fused_kernels.decrease_rows`);
* the read floor: ``torch.mv`` over the same rows (one streaming pass).

End to end (``--end-to-end``): fresh processes alternate between the engine as it is and
the engine with those two passes swapped for the fused loops
(:func:`fused_kernels.patch_engine`); each times 3 calls of ``select(X, 3000)`` (``lazy``):
the first cold, the others warm. numba's on-disk cache is cleared first, so the first
fused process compiles (its cold call includes that) and the later ones load the cache.

numba (the ``bench`` extra, for apricot) is not a dependency of the engine; this script
measures what adopting it for these passes would be worth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

CHILD = r"""
import hashlib, json, sys, time
import numpy as np, torch
side, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
t0 = time.perf_counter()
if side == "fused":
    import numba
    numba.set_num_threads(threads)
    from fused_kernels import patch_engine
    patch_engine()
import_s = time.perf_counter() - t0
from coreselect import select
X = np.load(path)
calls = []
for _ in range(3):
    t = time.perf_counter()
    cs = select(X, 3000)
    calls.append({"total_s": time.perf_counter() - t, "kernel_s": cs.meta["kernel_s"],
                  "greedy_s": cs.meta["greedy_s"], "objective": cs.objective,
                  "picks_md5": hashlib.md5(cs.indices.tobytes()).hexdigest()})
print(json.dumps({"import_s": import_s, "calls": calls}))
"""


def _interleaved_us_per_row(fns: dict, rows: int, rounds: int) -> dict:
    """Median µs per row of each function, timed in turn within every round (this VM's
    speed drifts between runs, so the sides alternate)."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / rows * 1e6)
    return {name: sorted(v)[len(v) // 2] for name, v in times.items()}


def per_row(args) -> dict:
    """Per-row times of the two passes, torch against fused, on one built matrix."""
    import numba
    import numpy as np
    import torch

    from coreselect.bench.engine import load_features
    from coreselect.submodular.cells import SEGMENT, cell_order
    from coreselect.submodular.facility_location import make_oracle
    from coreselect.submodular.incremental import _row_decrease

    sys.path.insert(0, str(HERE))
    from fused_kernels import decrease_rows, gains_rows

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    X = torch.from_numpy(load_features("fmnist", 30000, 64, seed=0))
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
    dn, pn, on, wn = dcur.numpy(), ix.numpy(), old.numpy(), new.numpy()
    out = np.empty(n)
    acc = np.zeros(n)
    t = time.perf_counter()
    gains_rows(C[:2], dn, out[:2])
    decrease_rows(C, pn[:2], on, wn, acc)
    compile_s = time.perf_counter() - t  # or the cache load, when fused_kernels has one

    ref_g = oracle.gains_all(dcur).numpy()
    gains_rows(C, dn, out)
    ref_d = _row_decrease(oracle, ix, old, old - new).numpy()
    acc[:] = 0
    decrease_rows(C, pn, on, wn, acc)
    m = int(ix.numel())
    ones = torch.ones(n)
    rows = _interleaved_us_per_row(
        {
            "gains_torch_us": lambda: oracle.gains_all(dcur),
            "gains_fused_us": lambda: gains_rows(C, dn, out),
            "read_floor_mv_us": lambda: torch.mv(oracle.C, ones),
        },
        n,
        args.rounds,
    )
    rows |= _interleaved_us_per_row(
        {
            "decrease_torch_us": lambda: _row_decrease(oracle, ix, old, old - new),
            "decrease_fused_us": lambda: (acc.fill(0), decrease_rows(C, pn, on, wn, acc)),
        },
        m,
        args.rounds,
    )
    return {
        "numba": numba.__version__,
        "n": n,
        "changed_points_pick2": m,
        "numba_compile_or_load_s": compile_s,
        "per_row": rows,
        "speedup": {
            "gains": rows["gains_torch_us"] / rows["gains_fused_us"],
            "decrease": rows["decrease_torch_us"] / rows["decrease_fused_us"],
        },
        "max_rel_diff": {
            "gains": float(np.abs(out - ref_g).max() / np.abs(ref_g).max()),
            "decrease": float(np.abs(acc - ref_d).max() / np.abs(ref_d).max()),
        },
    }


def end_to_end(args) -> dict:
    """Alternated fresh processes, engine as is against fused passes; 3 calls each."""
    import numpy as np

    from coreselect.bench.engine import load_features

    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)  # numba's cache lives there
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X.npy"
        np.save(path, load_features("fmnist", 30000, 64, seed=0))
        for r in range(args.rounds):
            for side in ("torch", "fused"):
                cmd = [sys.executable, "-c", CHILD, side, str(path), str(args.threads)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if res.returncode:
                    raise SystemExit(res.stderr)
                row = {"round": r, "side": side, **json.loads(res.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(side, [round(c["total_s"], 2) for c in row["calls"]], flush=True)
    summary = {}
    for side in ("torch", "fused"):
        mine = [x for x in rows if x["side"] == side]
        warm = sorted(c["greedy_s"] for x in mine for c in x["calls"][1:])
        summary[side] = {
            "cold_total_s": [round(x["calls"][0]["total_s"], 3) for x in mine],
            "cold_greedy_s": [round(x["calls"][0]["greedy_s"], 3) for x in mine],
            "median_warm_greedy_s": warm[len(warm) // 2],
            "picks_md5": sorted({c["picks_md5"] for x in mine for c in x["calls"]}),
        }
    summary["same_picks"] = summary["torch"]["picks_md5"] == summary["fused"]["picks_md5"]
    return {"rows": rows, "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from coreselect.bench.engine import _machine

    name = "engine-fused-e2e.json" if args.end_to_end else "engine-fused-rows.json"
    out = Path(args.out or ROOT / "benchmarks/results" / name)
    result = {
        "command": "python benchmarks/engine/fused_rows.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "threads": args.threads,
        "kernels_md5": hashlib.md5((HERE / "fused_kernels.py").read_bytes()).hexdigest(),
        **(end_to_end(args) if args.end_to_end else per_row(args)),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("summary",) if args.end_to_end else ("per_row", "speedup", "max_rel_diff")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
