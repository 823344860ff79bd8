"""The lazy greedy's paths on one built dense matrix, timed side by side (a GPU A/B).

One process builds the dense oracle once, then runs, alternating over ``--rounds``:

* ``batched``: the host-driven batched lazy greedy (``lazy`` on CUDA before the resident
  greedy; reads values back several times per pick);
* ``resident-eager``: :func:`~coreselect.submodular.resident.resident_lazy_greedy` with its
  steps launched one by one (``GRAPH_STEPS = 0``);
* ``resident-graph``: the same steps replayed as a CUDA graph (``GRAPH_STEPS = 32``; on CPU
  this is the eager run again).

Every path must return the first path's picks; the JSON records times, rows read, whether
the picks agree and the largest gain difference. Usage (the GPU acceptance size)::

    python3 benchmarks/gpu/greedy_paths.py --n 100000 --d 512 --fraction 0.1 \
        --device cuda --out engine-gpu-greedy-paths.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from coreselect.bench.engine import load_features
from coreselect.submodular import optimizers, resident
from coreselect.submodular.facility_location import make_oracle


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_path(oracle, k: int, path: str):
    """Run one path; returns ``(GreedyResult, seconds)``."""
    dev = oracle.device
    _sync(dev)
    t0 = time.perf_counter()
    if path == "batched":
        res = optimizers._batched_lazy_greedy(
            oracle,
            k,
            batch=optimizers.LAZY_BATCH,
            max_batch=optimizers.LAZY_MAX_BATCH,
            on_pick=None,
        )
    else:
        default = resident.GRAPH_STEPS
        resident.GRAPH_STEPS = 0 if path == "resident-eager" else default
        try:
            res = resident.resident_lazy_greedy(oracle, k)
        finally:
            resident.GRAPH_STEPS = default
    _sync(dev)
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--data", default="blobs")
    ap.add_argument("--metric", default="euclidean")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paths", default="batched,resident-eager,resident-graph")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device(args.device)
    k = max(1, int(args.fraction * args.n + 0.5))
    X = torch.from_numpy(load_features(args.data, args.n, args.d, seed=0)).to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    oracle = make_oracle(X, args.metric, "dense")
    _sync(dev)
    build_s = time.perf_counter() - t0
    paths = args.paths.split(",")
    rows, ref = [], None
    for r in range(args.rounds):
        for path in paths if r % 2 == 0 else paths[::-1]:
            res, secs = run_path(oracle, k, path)
            if ref is None:
                ref = res
            row = {
                "path": path,
                "round": r,
                "greedy_s": secs,
                "evaluations": int(res.evaluations),
                "same_picks": bool(torch.equal(res.picks.cpu(), ref.picks.cpu())),
                "max_gain_diff": float((res.gains.cpu() - ref.gains.cpu()).abs().max()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = {"python": platform.python_version(), "torch": torch.__version__}
    machine["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    machine["cpu"] = platform.processor() or platform.machine()
    machine["threads"] = torch.get_num_threads()
    out = {
        "command": "python3 benchmarks/gpu/greedy_paths.py "
        + " ".join(f"--{a} {v}" for a, v in vars(args).items() if a != "out"),
        "machine": machine,
        "n": args.n,
        "d": args.d,
        "k": k,
        "build_s": build_s,
        "runs": rows,
    }
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
