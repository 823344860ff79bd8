"""Study 3: the packed design end to end (``packed_kernels.packed_select``) against ``select``.

Usage: python benchmarks/engine/packed_greedy.py [--threads 1,2] [--rounds 3] [--m0 5,10]
    [--stochastic [--m0-stochastic 30]] [--no-apricot]
    [--out benchmarks/results/engine-packed-greedy.json]
       python benchmarks/engine/packed_greedy.py --vs-naive 300
    [--out benchmarks/results/engine-packed-vs-naive.json]

Studies 1 and 2 (``fused_rows.py``, ``packed_layout.py``) measured parts of a dense mode
that stores the symmetric cost matrix once and runs its later picks on the few entries
that can still matter, and estimated the whole at 5.5-6.2 s at 1 thread. This runs the
whole: on the engine bench's Fashion-MNIST pool (n = 30,000, d = 64, k = 3,000), fresh
processes alternate between ``select(X, 3000)`` (``lazy``, today's engine) and
:func:`packed_kernels.packed_select` (one process per ``--m0``: the number of picks made by
full passes before the entries are gathered; fewer means more entries to hold), each timing
one cold call (fresh memory), with its peak resident memory (VmHWM). numba's on-disk
cache is cleared, then filled by one untimed process per variant (its whole time,
compilation included, is ``compile_s``), so the timed processes load compiled code.

With ``--stochastic``, also ``select(optimizer="stochastic", epsilon=0.01)`` and the packed
stochastic greedy (the same sample size; its first ``--m0-stochastic`` picks evaluate the drawn
candidates from their tile rows, the later ones read the exact gains the lists keep); their
k-medoids cost is reported against the exact greedy's (``cost_ratio``).

Every round also runs the anchor of the issue's headline, apricot's lazy greedy on float64
features at 1 thread (the bench's ``features-f64`` worker, cold), so that the ratios are
measured in the same run.

Both return exact greedy picks; the study reports whether they are the same, pick for pick,
and re-scores both sets with the bench's float64 ``rescore``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
K = 3000
EPSILON = 0.01


def _child(kind: str, path: str, threads: int, picks_out: str) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    X = np.load(path)
    if kind.startswith("engine"):
        from coreselect.submodular.select import select

        opt = "stochastic" if kind == "engine-stochastic" else "lazy"
        t = time.perf_counter()
        cs = select(X, K, optimizer=opt, epsilon=EPSILON, seed=0)
        total = time.perf_counter() - t
        picks = np.asarray(cs.indices)
        phases = {"kernel": cs.meta["kernel_s"], "greedy": cs.meta["greedy_s"]}
    else:
        import numba

        numba.set_num_threads(threads)
        sys.path.insert(0, str(Path(__file__).parent))
        from packed_kernels import packed_select

        stochastic = kind.startswith("pstoch")
        m0 = int(kind.removeprefix("pstoch" if stochastic else "packed"))
        t = time.perf_counter()
        r = packed_select(X, K, m0=m0, epsilon=EPSILON if stochastic else None, seed=0)
        total = time.perf_counter() - t
        picks = r["picks"]
        phases = {key: r[key] for key in ("prep", "build", "early", "extract", "late")}
        phases.update(entries=r["entries"], entries_read=r["entries_read"])
    np.save(picks_out, picks)
    from coreselect.bench.engine import _peak_mb

    print(json.dumps({"total_s": total, "peak_mb": _peak_mb(), **phases}))


def _run(kind: str, path: Path, threads: int, picks_out: Path) -> dict:
    """One fresh process: its timings, phases and peak memory (its picks go to a file)."""
    cmd = [sys.executable, __file__, "--child", kind, str(path), str(threads), str(picks_out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def vs_naive(cases: int, out: str) -> int:
    """Random tiny pools (``tie_prone_pool``: n 2-400, d 1-7; every third with duplicated
    points, every seventh on a unit grid): the exact packed picks against
    ``select(optimizer="naive")``. Where they part, the two candidates' gains are recomputed
    in float64 from float64 distances (equal: an exact tie resolved to another index) and
    from the engine's float32 costs."""
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    import torch
    from packed_kernels import packed_select

    from coreselect.bench.engine import _machine, tie_prone_pool
    from coreselect.submodular.kernels import cost_tile, prepare_features
    from coreselect.submodular.select import select

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    parts = []
    for case in range(cases):
        X = tie_prone_pool(rng, case, max_d=8, grid_every=7)
        n, d = X.shape
        k, m0 = int(rng.integers(1, n + 1)), int(rng.integers(1, 12))
        mine = packed_select(X, k, m0=m0)["picks"]
        ref = np.asarray(select(X, k, optimizer="naive", seed=0).indices)
        if np.array_equal(mine, ref):
            continue
        t = int(np.flatnonzero(mine != ref)[0])
        Z = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
        D64 = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
        F = prepare_features(torch.from_numpy(X), "euclidean")
        C32 = cost_tile(F, F).numpy().astype(np.float64) * F.cost_scale
        np.fill_diagonal(C32, 0.0)
        row = {"case": case, "n": n, "d": d, "k": k, "m0": m0, "first_differing_pick": t}
        for name, M in (("float64", D64), ("engine_float32", C32)):
            dc = np.full(n, M.max())
            for p in ref[:t]:
                dc = np.minimum(dc, M[:, p])
            g = np.maximum(dc[:, None] - M, 0.0).sum(axis=0)
            row[f"gain_packed_{name}"] = float(g[mine[t]])
            row[f"gain_naive_{name}"] = float(g[ref[t]])
        row["picks"] = [int(mine[t]), int(ref[t])]
        row["rel_gap_float64"] = abs(row["gain_packed_float64"] - row["gain_naive_float64"]) / max(
            row["gain_naive_float64"], 1e-300
        )
        parts.append(row)
    result = {
        "command": "python benchmarks/engine/packed_greedy.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "cases": cases,
        "differing": len(parts),
        "exact_ties_float64": int(sum(r["rel_gap_float64"] <= 1e-12 for r in parts)),
        "max_rel_gap_float64": max((r["rel_gap_float64"] for r in parts), default=0.0),
        "differing_cases": parts,
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "differing_cases"}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--m0", default="5,10", help="picks made by full passes (variants)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/engine-packed-greedy.json"))
    ap.add_argument("--no-apricot", action="store_true", help="skip the apricot anchor")
    ap.add_argument("--stochastic", action="store_true", help="also the stochastic greedy")
    ap.add_argument("--m0-stochastic", default="30", help="its picks made before gathering")
    ap.add_argument("--vs-naive", type=int, metavar="CASES", help="tiny pools against naive")
    ap.add_argument("--child", nargs=4, metavar=("KIND", "X", "THREADS", "PICKS"))
    args = ap.parse_args()
    if args.vs_naive:
        return vs_naive(args.vs_naive, args.out)
    if args.child:
        kind, path, threads, picks_out = args.child
        _child(kind, path, int(threads), picks_out)
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    packed = [f"packed{int(m)}" for m in args.m0.split(",")]
    if args.stochastic:
        packed += ["engine-stochastic"] + [f"pstoch{int(m)}" for m in args.m0_stochastic.split(",")]

    from coreselect.bench.engine import _machine, _run_config, load_features, rescore

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X.npy"
        X = load_features("fmnist", 30000, 64, seed=0)
        np.save(path, X)
        shutil.rmtree(Path(__file__).parent / "__pycache__", ignore_errors=True)
        compile_s = {}
        for kind in {k.rstrip("0123456789") for k in packed if k != "engine-stochastic"}:
            first = next(k for k in packed if k.rstrip("0123456789") == kind)
            t = time.perf_counter()
            _run(first, path, 1, Path(tmp) / "warm.npy")  # compiles, fills the cache
            compile_s[first] = time.perf_counter() - t
        picks: dict = {}
        for threads in [int(x) for x in args.threads.split(",")]:
            for r in range(args.rounds):
                if not args.no_apricot and threads == int(args.threads.split(",")[0]):
                    out = Path(tmp) / f"apricot-{r}.npy"
                    cfg = {"features": str(path), "k": K, "metric": "euclidean", "epsilon": None}
                    cfg |= {"impl": "apricot", "optimizer": "lazy", "mode": "features-f64"}
                    cfg |= {"threads": 1, "repeats": 0, "picks_out": str(out)}
                    res = _run_config(cfg, timeout=900)
                    run = {"kind": "apricot", "threads": 1, "round": r}
                    run |= {"total_s": res["calls"][0]["total"], "peak_mb": res["peak_mb"]}
                    run |= {"kernel": res["calls"][0]["kernel"]}
                    run |= {"greedy": res["calls"][0]["greedy"]}
                    picks[("apricot", 1, r)] = np.load(out)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
                for kind in ("engine", *packed):
                    out = Path(tmp) / f"{kind}-{threads}-{r}.npy"
                    run = {"kind": kind, "threads": threads, "round": r}
                    run |= _run(kind, path, threads, out)
                    picks[(kind, threads, r)] = np.load(out)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
        t0 = int(args.threads.split(",")[0])
        ref = picks[("engine", t0, 0)]
        same = {f"{k}-{t}t-{r}": bool(np.array_equal(p, ref)) for (k, t, r), p in picks.items()}
        first = {}
        for (k, t, r), p in picks.items():
            diff = np.flatnonzero(p != ref)
            first[f"{k}-{t}t-{r}"] = int(diff[0]) if diff.size else None
        kinds = ("engine", *packed) + (() if args.no_apricot else ("apricot",))
        scores = {
            kind: rescore(X, picks[(kind, t0 if kind != "apricot" else 1, 0)]) for kind in kinds
        }
        for kind in kinds:  # k-medoids cost against the exact greedy's (the measure)
            scores[kind]["cost_ratio"] = scores[kind]["cost"] / scores["engine"]["cost"]
    summary = {}
    for threads in sorted({r["threads"] for r in runs}):
        for kind in ("engine", *packed):
            rs = [r for r in runs if r["threads"] == threads and r["kind"] == kind]
            skip = ("kind", "threads", "round")
            keys = [key for key in rs[0] if key not in skip and rs[0][key] is not None]
            summary[f"{kind}_{threads}t"] = {
                key: statistics.median(r[key] for r in rs) for key in keys
            }
        e = summary[f"engine_{threads}t"]
        ratio = summary[f"ratio_{threads}t"] = {}
        a = None
        if not args.no_apricot:
            rs = [r for r in runs if r["kind"] == "apricot"]
            a = {key: statistics.median(r[key] for r in rs) for key in ("total_s", "peak_mb")}
            summary["apricot_features_f64_1t"] = a
            ratio["apricot_over_engine_total"] = a["total_s"] / e["total_s"]
            ratio["engine_over_apricot_peak"] = e["peak_mb"] / a["peak_mb"]
        for kind in packed:
            p = summary[f"{kind}_{threads}t"]
            ratio[f"engine_over_{kind}_total"] = e["total_s"] / p["total_s"]
            ratio[f"{kind}_over_engine_peak"] = p["peak_mb"] / e["peak_mb"]
            if a is not None:
                ratio[f"apricot_over_{kind}_total"] = a["total_s"] / p["total_s"]
                ratio[f"{kind}_over_apricot_peak"] = p["peak_mb"] / a["peak_mb"]
    result = {
        "command": "python benchmarks/engine/packed_greedy.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "n": 30000,
        "d": 64,
        "k": K,
        "m0": [int(m) for m in args.m0.split(",")],
        "compile_s": compile_s,
        "summary_median": summary,
        "same_picks_as_engine_round0": same,
        "first_differing_pick": first,
        "rescore_float64": scores,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
