"""Cold `select` with the workspace's pages mapped by `madvise` or touched with stores (A/B).

Usage: python benchmarks/engine/cold_touch.py [--threads 1,2] [--rounds 3]
    [--out benchmarks/results/engine-cold-touch.json]

Each process times one cold ``select(X, 3000, optimizer="lazy")`` on 30,000 Fashion-MNIST
features (d = 64): ``madvise`` as shipped, or ``stores`` with ``kernels._MADVISE = False``
(the plain stores used before, and where the kernel refuses). Every round runs
madvise, stores, stores, madvise (ABBA) in fresh processes, so neither side always follows
the other: on these VMs the first touch of fresh memory varies by process by 2x or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "engine"))

CHILD = """
import json, sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from coreselect.submodular import kernels
if sys.argv[2] == "stores":
    kernels._MADVISE = False
from coreselect.submodular.select import select
X = np.load(sys.argv[1])
t = time.perf_counter()
cs = select(X, 3000, optimizer="lazy", seed=0)
print(json.dumps({"total_s": time.perf_counter() - t, "kernel_s": cs.meta["kernel_s"],
                  "objective": cs.objective}))
"""


def main() -> None:
    from ab import features

    from coreselect.bench.engine import _machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-cold-touch.json"))
    args = ap.parse_args()
    X = features("fmnist")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "X.npy")
        np.save(path, X)
        rows = []
        for T in map(int, args.threads.split(",")):
            for r in range(args.rounds):
                for side in ("madvise", "stores", "stores", "madvise"):
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, path, side, str(T)],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    row = {"threads": T, "round": r, "side": side, **json.loads(out)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = {}
    for T in map(int, args.threads.split(",")):
        for side in ("madvise", "stores"):
            k = [x["kernel_s"] for x in rows if x["threads"] == T and x["side"] == side]
            summary[f"{side}_{T}t_median_cold_kernel_s"] = statistics.median(k)
    print(json.dumps(summary, indent=1))
    res = {
        "command": "python benchmarks/engine/cold_touch.py " + " ".join(sys.argv[1:]),
        "commit": subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, text=True
        ).strip(),
        "machine": _machine(),
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
