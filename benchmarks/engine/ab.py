"""Same-machine A/B of `select(optimizer=...)` between this checkout and an older commit.

Usage: python benchmarks/engine/ab.py OLD_COMMIT [--optimizer lazy] [--mode auto] [--rounds 2]
    [--threads 2] [--data fmnist|copies|corners|blobs] [--n 30000] [--k 3000] [--calls 3]
    [--groups G] [--out benchmarks/results/engine-ab.json]

OLD_COMMIT is checked out in a temporary git worktree; each round runs one fresh process per
side, old first in even rounds and new first in odd ones (ABBA), and each process times
``--calls`` calls of `select` (in ``--mode``) on the same Fashion-MNIST features (n = 30,000,
d = 64, k = 3,000 unless ``--n``/``--k`` say otherwise): the first call is cold (fresh
workspace), the others warm.
``--data copies`` draws the n points from the first 300 of them (exact duplicates),
``--data corners`` keeps the signs of their first 8 coordinates (248 distinct binary points
at n = 30,000): inputs full of exact ties; ``--data blobs`` is the engine bench's
generated blobs (any n, as in its n = 300,000 row). ``--groups G`` labels the points with
``G`` random groups (seed 0; per-group budgets). Alternation in one session is what
makes the two comparable on a shared VM whose speed drifts by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, time, numpy as np, torch
import coreselect
from coreselect.submodular.select import select
torch.set_num_threads(int(sys.argv[3]))
X = np.load(sys.argv[1])
k, ncalls, mode, groups = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
labels = np.random.default_rng(0).integers(0, groups, size=len(X)) if groups else None
calls = []
for _ in range(ncalls):
    t = time.perf_counter()
    cs = select(X, k, labels=labels, optimizer=sys.argv[2], epsilon=0.01, seed=0, mode=mode)
    calls.append({"total_s": time.perf_counter() - t, "kernel_s": cs.meta["kernel_s"],
                  "greedy_s": cs.meta["greedy_s"], "evaluations": cs.meta["evaluations"],
                  "objective": cs.objective, "grouped": cs.meta["grouped"]})
print(json.dumps(calls))
"""


DATA = ("fmnist", "copies", "corners", "blobs")


def features(variant: str, n: int = 30000):
    """The A/B input ``(n, d)`` float32: Fashion-MNIST features (d = 64), ``n`` draws
    from the first 300 of them (``copies``), or the signs of their first 8 coordinates
    (``corners``, d = 8: 248 distinct points at n = 30,000), or generated ``blobs``."""
    import numpy as np

    from coreselect.bench.engine import load_features

    if variant == "blobs":
        return load_features("blobs", n, 64, seed=0)
    X = load_features("fmnist", n, 64, seed=0)
    if variant == "copies":
        return X[:300][np.random.default_rng(0).integers(0, 300, size=n)]
    if variant == "corners":
        return (X[:, :8] > 0).astype(np.float32)
    return X


def ab_parser(doc: str, rounds: int, threads: int, out: str) -> argparse.ArgumentParser:
    """The A/B scripts' common options: OLD_COMMIT, ``--rounds``, ``--threads``, ``--data``
    and ``--out`` (default ``benchmarks/results/<out>``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--data", choices=DATA, default="fmnist")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results" / out))
    return ap


def record_header(script: str, args: argparse.Namespace) -> dict:
    """How an A/B was made: command, both commits (the new one: HEAD), data, threads,
    machine."""
    from coreselect.bench.engine import _machine

    old = subprocess.check_output(["git", "rev-parse", args.old], cwd=ROOT, text=True)
    new_commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True)
    d = 8 if args.data == "corners" else 64
    n, k = getattr(args, "n", 30000), getattr(args, "k", 3000)
    return {
        "command": f"python benchmarks/engine/{script} " + " ".join(sys.argv[1:]),
        "old_commit": old.strip(),
        "new_commit": new_commit.strip(),
        "data": {
            "name": "blobs" if args.data == "blobs" else "fmnist",
            "variant": args.data,
            "n": n,
            "d": d,
            "k": k,
            "seed": 0,
        },
        "threads": args.threads,
        "machine": _machine(),
    }


def main() -> int:
    ap = ab_parser(__doc__, rounds=2, threads=2, out="engine-ab.json")
    ap.add_argument("--optimizer", default="lazy")
    ap.add_argument("--mode", default="auto", choices=["auto", "dense", "blockwise", "knn"])
    ap.add_argument("--n", type=int, default=30000, help="pool size (at most 60,000)")
    ap.add_argument("--k", type=int, default=3000, help="budget")
    ap.add_argument("--calls", type=int, default=3, help="select calls per process")
    ap.add_argument("--groups", type=int, default=0, help="random labels in G groups (0: none)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "-q", str(wt), args.old], cwd=ROOT, check=True)
        try:
            feats = Path(tmp) / "X.npy"
            np.save(feats, features(args.data, args.n))
            rows = []
            for r in range(args.rounds):
                sides = (("old", wt / "src"), ("new", ROOT / "src"))
                # ABBA: the side that runs first alternates, so a VM speeding up (or
                # slowing down) through the session favours neither
                for side, src in sides if r % 2 == 0 else sides[::-1]:
                    env = dict(os.environ, PYTHONPATH=str(src))
                    cmd = [sys.executable, "-c", CHILD, str(feats), args.optimizer]
                    cmd += [
                        str(x) for x in (args.threads, args.k, args.calls, args.mode, args.groups)
                    ]
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if out.returncode:
                        raise SystemExit(out.stderr)
                    calls = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append({"round": r, "side": side, "calls": calls})
                    print(side, [round(c["total_s"], 2) for c in calls], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT)
    result = {
        **record_header("ab.py", args),
        "optimizer": args.optimizer,
        "mode": args.mode,
        "calls": args.calls,
        "groups": args.groups,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    for side in ("old", "new"):
        cold = [x["calls"][0] for x in rows if x["side"] == side]
        warm = [c for x in rows if x["side"] == side for c in x["calls"][1:]] or cold
        med = sorted(c["greedy_s"] for c in warm)[len(warm) // 2]
        print(
            f"{side}: cold total {[round(c['total_s'], 2) for c in cold]}, cold kernel "
            f"{[round(c['kernel_s'], 2) for c in cold]}, median "
            f"{'warm ' if args.calls > 1 else ''}greedy {med:.2f} s, "
            f"evaluations {warm[0]['evaluations']}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
