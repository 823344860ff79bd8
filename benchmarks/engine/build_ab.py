"""Warm dense builds of an older commit's `build_dense` against this checkout's, in one process.

Usage: python benchmarks/engine/build_ab.py OLD_COMMIT [--threads 2] [--rounds 4]
    [--data fmnist] [--n 30000] [--out benchmarks/results/engine-build-ab.json]

Both `kernels` modules are loaded side by side (the old one from ``git show``), and each
round builds the cost matrix of the same features (``--data`` as in ``ab.py``, d = 64) into
the same buffer, laid out as `select` lays it out on CPU (this checkout's layout): the pool in
cell order, rows padded to whole segments (``cells.SEGMENT`` columns, ``segment_count``)
with the segment minima. The order of the two
sides alternates by round (ABBA). Every build is checked bitwise against the first (matrix,
row sums, ``c0``, segment minima). Only the build is timed: warm memory, no greedy.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "engine"))
sys.path.insert(0, str(ROOT / "src"))


def load_module(name: str, path: Path):
    """Import the file ``path`` as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    from ab import ab_parser, features, record_header

    from coreselect.submodular import kernels
    from coreselect.submodular.cells import SEGMENT, cell_order
    from coreselect.submodular.memory import segment_count

    ap = ab_parser(__doc__, rounds=4, threads=2, out="engine-build-ab.json")
    ap.add_argument("--n", type=int, default=30000, help="pool size (at most 60,000)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernels_old.py"
        path.write_text(
            subprocess.check_output(
                ["git", "show", f"{args.old}:src/coreselect/submodular/kernels.py"],
                cwd=ROOT,
                text=True,
            )
        )
        sides = {"old": load_module("kernels_old", path), "new": kernels}
    X = torch.as_tensor(features(args.data, args.n))
    X = X[cell_order(X, SEGMENT, metric="euclidean")]
    n = X.shape[0]
    nseg = segment_count(n)
    out = torch.zeros(n, nseg * SEGMENT)
    smin = torch.empty(n, nseg)
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    reference = None
    for r in range(args.rounds):
        for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
            module = sides[side]
            F = module.prepare_features(X, "euclidean")
            t = time.perf_counter()
            rowsum, c0 = module.build_dense(F, out, segment_min=smin)
            seconds[side].append(time.perf_counter() - t)
            got = (out.clone(), rowsum, c0, smin.clone())
            if reference is None:
                reference = got
            same = all(torch.equal(a, b) for a, b in zip(got[:2], reference[:2]))
            if not (same and c0 == reference[2] and torch.equal(got[3], reference[3])):
                raise SystemExit(f"round {r}: the {side} build differs from the first build")
            print(side, round(seconds[side][-1], 3), flush=True)
    result = {
        **record_header("build_ab.py", args),
        "layout": {"segment": SEGMENT, "width": nseg * SEGMENT, "cell_order": True},
        "seconds": seconds,
        "median_s": {side: statistics.median(v) for side, v in seconds.items()},
        "bitwise_equal": True,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print({side: round(v, 3) for side, v in result["median_s"].items()}, f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
