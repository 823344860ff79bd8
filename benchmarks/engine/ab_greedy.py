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

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from ab import ab_parser, features, record_header  # noqa: E402  (the A/B inputs, shared with ab.py)


def main() -> int:
    ap = ab_parser(__doc__, rounds=12, threads=1, out="engine-ab-greedy.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from coreselect.submodular import incremental as new
    from coreselect.submodular.cells import SEGMENT, cell_order
    from coreselect.submodular.facility_location import make_oracle

    torch.set_num_threads(args.threads)
    Xt = torch.from_numpy(features(args.data))
    oracle = make_oracle(Xt[cell_order(Xt, SEGMENT)], "euclidean", "dense", segment=SEGMENT)

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
        **record_header("ab_greedy.py", args),
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
