"""Recall of the knn mode's inverted-file neighbour lists against brute force.

Usage: python benchmarks/engine/knn_recall.py [--data blobs|fmnist] [--n 300000]
    [--k-neighbors 400] [--nprobe N] [--queries 1000] [--threads 2]
    [--out benchmarks/results/engine-knn-recall.json]

Above 16,384 points (65,536 before the eleventh session) `select(mode="knn")` lists each
point's neighbours from an inverted file (k-means cells, each searched against its nearest
cells: 8 before 811a939, now as many as a 0.95 recall needs), which is approximate. This
script builds those lists for the engine bench's generated blobs (the n = 300,000 row,
K = 400 = its default ``max(32, 4 n / k)`` at k = 3,000), then computes the exact K nearest of
``--queries`` seeded random points by brute force and reports recall@K (the share of exact
neighbours listed) and the ratio of the K-th listed cost to the exact K-th cost.
``--data fmnist`` runs the same inverted file on Fashion-MNIST features (at most 60,000
points: real data rather than a Gaussian mixture).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("blobs", "fmnist"), default="blobs")
    ap.add_argument("--n", type=int, default=300000)
    ap.add_argument("--k-neighbors", type=int, default=400)
    ap.add_argument(
        "--nprobe", type=int, default=None, help="cells searched per cell (default: the library's)"
    )
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-knn-recall.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from coreselect.bench.engine import _machine, load_features
    from coreselect.submodular import memory
    from coreselect.submodular.kernels import prepare_features

    torch.set_num_threads(args.threads)
    K = args.k_neighbors
    X = load_features(args.data, args.n, 64, seed=0)
    F = prepare_features(torch.from_numpy(X), "euclidean")
    t0 = time.perf_counter()
    info: dict = {}
    cost, idx, _c0 = memory._knn_ivf(F, K, nprobe=args.nprobe, info=info)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    q = torch.from_numpy(rng.choice(args.n, args.queries, replace=False))
    key = memory._rank_key(F, F.X[q], F, torch.empty((q.numel(), args.n)))
    key[torch.arange(q.numel()), q] = -float("inf")  # itself first, as in the lists
    vals, exact = torch.topk(key, K, dim=1, largest=False)
    exact_cost = memory._key_to_cost(F, vals, F.sq[q])
    recall = [len(set(a) & set(b)) / K for a, b in zip(exact.tolist(), idx[q].tolist())]
    kth = (cost[q].max(1).values / exact_cost.max(1).values).numpy()
    result = {
        "command": "python benchmarks/engine/knn_recall.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "data": {"name": args.data, "n": args.n, "d": 64, "seed": 0},
        "k_neighbors": K,
        "nprobe": info["cells_searched"],
        "nprobe_chosen_by_library": args.nprobe is None,
        "queries": int(q.numel()),
        "ivf_build_s": build_s,
        "recall_mean": float(np.mean(recall)),
        "recall_min": float(np.min(recall)),
        "kth_cost_ratio_median": float(np.median(kth)),
        "kth_cost_ratio_max": float(kth.max()),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
