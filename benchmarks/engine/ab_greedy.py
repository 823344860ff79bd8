"""Same-process A/B of the exact incremental greedy between this checkout and an older commit.

Usage: python benchmarks/engine/ab_greedy.py OLD_COMMIT [--rounds 12] [--threads 1]
    [--data fmnist|copies|corners] [--out benchmarks/results/engine-ab-greedy.json]

The pool is built once (this checkout's kernel, cell order and segmented matrix); then the
two versions of ``incremental.py`` (OLD_COMMIT's is loaded from a temporary git worktree)
run ``incremental_greedy`` on that same oracle in turn, the order swapped every round. Only
the greedy loop differs, and the two sides share every minute of the VM's drift, which moves
separate processes by tens of percent. Both must return the same picks. Data as in
``ab.py`` (n = 30,000, k = 3,000).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", choices=("fmnist", "copies", "corners"), default="fmnist")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-ab-greedy.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np
    import torch

    from coreselect.bench.engine import _machine, load_features
    from coreselect.submodular import incremental as new
    from coreselect.submodular.cells import SEGMENT, cell_order
    from coreselect.submodular.facility_location import make_oracle

    torch.set_num_threads(args.threads)
    X = load_features("fmnist", 30000, 64, seed=0)
    if args.data == "copies":
        X = X[:300][np.random.default_rng(0).integers(0, 300, size=30000)]
    elif args.data == "corners":
        X = (X[:, :8] > 0).astype(np.float32)
    Xt = torch.from_numpy(X)
    oracle = make_oracle(Xt[cell_order(Xt, SEGMENT)], "euclidean", "dense", segment=SEGMENT)

    new_commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True)
    times: dict[str, list[float]] = {"old": [], "new": []}
    evaluations = {}
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "-q", str(wt), args.old], cwd=ROOT, check=True)
        try:
            path = wt / "src/coreselect/submodular/incremental.py"
            spec = importlib.util.spec_from_file_location("incremental_old", path)
            old = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(old)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT)
        picks = {}
        for r in range(args.rounds):
            sides = [("old", old), ("new", new)]
            for side, mod in sides if r % 2 == 0 else sides[::-1]:
                t = time.perf_counter()
                res = mod.incremental_greedy(oracle, 3000)
                times[side].append(time.perf_counter() - t)
                picks[side], evaluations[side] = res.picks.tolist(), res.evaluations
            if picks["old"] != picks["new"]:
                raise SystemExit("the two greedy loops returned different picks")
            print(r, {s: round(v[-1], 2) for s, v in times.items()}, flush=True)
    result = {
        "command": "python benchmarks/engine/ab_greedy.py " + " ".join(sys.argv[1:]),
        "old_commit": subprocess.check_output(
            ["git", "rev-parse", args.old], cwd=ROOT, text=True
        ).strip(),
        "new_commit": new_commit.strip(),
        "data": {"name": "fmnist", "variant": args.data, "n": 30000, "k": 3000, "seed": 0},
        "threads": args.threads,
        "machine": _machine(),
        "greedy_s": times,
        "median_s": {s: statistics.median(v) for s, v in times.items()},
        "evaluations": evaluations,
        "same_picks": True,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    for side in ("old", "new"):
        print(f"{side}: median greedy {result['median_s'][side]:.2f} s, rows {evaluations[side]}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
