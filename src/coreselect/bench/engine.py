"""``coreselect bench engine``: the selection engine against apricot and submodlib.

Every configuration runs in its own subprocess (so its peak memory, ``ru_maxrss``, is its
own), on the same features, with the same thread count given to torch, MKL, OpenBLAS and
numba. Each process reports its first (cold) call and the median of its warm calls, with
the kernel and greedy phases timed apart. Every returned set is then re-scored here by one
float64 function (:func:`rescore`): the objective ``F(S)`` and the k-medoids cost
``C(S) = sum_i min_{j in S} d_ij`` (for rbf/cosine the deficit
``sum_i (s_ii - max_{j in S} s_ij)``), reported as a ratio to exact greedy's cost.

Anchors get the same similarity: apricot's own ``euclidean`` is *squared* (``max d^2 - d^2``),
so besides its default feature path (a different objective, timed as users run it) it is
handed our kernel precomputed, as is submodlib. The anchors' kernel is computed with
scikit-learn (``euclidean_distances``, float32) and ``max_d - d`` in place. numpy's bundled
OpenBLAS segfaults in ``X @ X.T`` (SYRK) with 2 threads at n >~ 26k (numpy issue 19685), so
apricot's feature path runs single-threaded, and so does the coreselect row it is compared
against. ``--compare apricot64-mt`` adds apricot's float64 rows with ``--threads`` numba
threads (its greedy's ``prange`` loops) and BLAS held to one thread, clear of that crash: the
same thread count on both sides for the greedy.

Data: ``fmnist`` reads the Fashion-MNIST training images (IDX, gzip) from the Debian package
``dataset-fashion-mnist`` (or ``--data-dir``), takes a seeded random subset of ``n`` images
scaled to [0, 1], centres them and projects them on the top ``d`` principal directions
(torch SVD of a seeded 10,000-image sample). ``blobs`` is a seeded mixture of 100 Gaussians
in ``d`` dimensions (any ``n``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "run_engine_bench", "load_features", "rescore"]

FMNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def _read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    count = int.from_bytes(raw[4:8], "big")
    rows = int.from_bytes(raw[8:12], "big")
    cols = int.from_bytes(raw[12:16], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows * cols)


def load_features(data: str, n: int, d: int, seed: int = 0, data_dir: str | None = None):
    """Benchmark features ``(n, d)`` float32.

    Args:
        data: ``fmnist`` (n <= 60,000) or ``blobs``.
        n: number of points; d: dimension after PCA (fmnist) or of the mixture (blobs).
        seed: seed of the subset, the PCA sample and the blobs.
        data_dir: folder holding ``train-images-idx3-ubyte.gz`` (fmnist).

    Returns:
        ``(n, d)`` float32 numpy array.
    """
    rng = np.random.default_rng(seed)
    if data == "blobs":
        centers = rng.normal(scale=4.0, size=(100, d)).astype(np.float32)
        lab = rng.integers(0, 100, size=n)
        X = centers[lab] + rng.normal(size=(n, d)).astype(np.float32)
        return np.ascontiguousarray(X, dtype=np.float32)
    if data != "fmnist":
        raise ValueError(f"unknown data {data!r}; use fmnist or blobs")
    dirs = [data_dir] if data_dir else list(FMNIST_DIRS)
    for folder in dirs:
        path = Path(folder) / "train-images-idx3-ubyte.gz"
        if path.exists():
            break
    else:
        raise ValueError(
            "Fashion-MNIST not found: install the Debian package 'dataset-fashion-mnist' "
            "or pass --data-dir"
        )
    images = _read_idx_images(path)
    if n > images.shape[0]:
        raise ValueError(f"fmnist has {images.shape[0]} training images; n={n} is too many")
    import torch

    pick = np.sort(rng.permutation(images.shape[0])[:n])
    X = torch.from_numpy(images[pick].astype(np.float32) / 255.0)
    X -= X.mean(dim=0, keepdim=True)
    sample = torch.from_numpy(rng.permutation(n)[: min(n, 10_000)])
    _, _, Vh = torch.linalg.svd(X[sample], full_matrices=False)
    Z = X @ Vh[:d].T
    return np.ascontiguousarray(Z.numpy(), dtype=np.float32)


# --------------------------------------------------------------------------------------
# shared float64 re-scoring
# --------------------------------------------------------------------------------------


def tie_prone_pool(
    rng: np.random.Generator, case: int, max_d: int = 12, grid_every: int = 5
) -> np.ndarray:
    """A random pool ``(n, d)`` float32, ``2 <= n < 400``, ``1 <= d < max_d``, that invites
    exact ties: when ``case % 3 == 0`` a third of the points are copies of others, and when
    ``case % grid_every == 0`` every coordinate is rounded to an integer (draws ``n``, ``d``,
    the points, then the copies from ``rng``)."""
    n, d = int(rng.integers(2, 400)), int(rng.integers(1, max_d))
    X = rng.normal(size=(n, d)).astype(np.float32)
    if case % 3 == 0:
        m = max(1, n // 3)
        X[rng.integers(0, n, m)] = X[rng.integers(0, n, m)]
    if case % grid_every == 0:
        X = np.round(X).astype(np.float32)
    return X


def _dist_tile(A: np.ndarray, B: np.ndarray, sqa: np.ndarray, sqb: np.ndarray) -> np.ndarray:
    D = sqa[:, None] + sqb[None, :] - 2.0 * (A @ B.T)
    np.maximum(D, 0.0, out=D)
    return np.sqrt(D, out=D)


def pool_max_distance(X: np.ndarray, block: int = 2048) -> float:
    """Largest pairwise Euclidean distance, float64, in row blocks (``O(n^2 d)``)."""
    Z = X.astype(np.float64)
    Z -= Z.mean(axis=0)
    sq = np.einsum("ij,ij->i", Z, Z)
    best = 0.0
    for s in range(0, Z.shape[0], block):
        T = _dist_tile(Z[s : s + block], Z, sq[s : s + block], sq)
        best = max(best, float(T.max()))
    return best


def rescore(
    X: np.ndarray, picks: np.ndarray, metric: str = "euclidean", max_d: float | None = None
) -> dict:
    """Objective and cost of a selection, in float64, the same for every implementation.

    Args:
        X: ``(n, d)`` features; picks: ``(k,)`` pool positions.
        metric: ``euclidean``, ``rbf`` or ``cosine``.
        max_d: the pool's largest distance (euclidean objective offset); computed if None.

    Returns:
        ``{"objective": F(S), "cost": C(S)}`` where ``C`` is the k-medoids cost
        (euclidean) or the deficit ``sum_i (1 - max_j s_ij)`` (rbf, cosine).
    """
    Z = X.astype(np.float64)
    n, d = Z.shape
    picks = np.asarray(picks, dtype=np.int64)
    if metric == "cosine":
        nrm = np.linalg.norm(Z, axis=1, keepdims=True)
        Z = np.divide(Z, nrm, out=np.zeros_like(Z), where=nrm > 0)
    else:
        Z -= Z.mean(axis=0)
    sq = np.einsum("ij,ij->i", Z, Z)
    P, sqp = Z[picks], sq[picks]
    best = np.empty(n)
    for s in range(0, n, 4096):
        if metric == "cosine":
            T = np.maximum(Z[s : s + 4096] @ P.T, 0.0)
            best[s : s + 4096] = T.max(axis=1)
        else:
            T = _dist_tile(Z[s : s + 4096], P, sq[s : s + 4096], sqp)
            best[s : s + 4096] = T.min(axis=1)
    best[picks] = 0.0 if metric != "cosine" else np.where(sq[picks] > 0, 1.0, best[picks])
    if metric == "euclidean":
        if max_d is None and n > 75_000:
            # the exact pool maximum would need an n^2 pass: cost only
            return {"objective": None, "cost": float(best.sum())}
        if max_d is None:
            max_d = pool_max_distance(X)
        return {"objective": float(n * max_d - best.sum()), "cost": float(best.sum())}
    if metric == "rbf":
        sim = np.exp(-best / d)
        return {"objective": float(sim.sum()), "cost": float((1.0 - sim).sum())}
    return {"objective": float(best.sum()), "cost": float((1.0 - best).sum())}


# --------------------------------------------------------------------------------------
# workers (one subprocess per configuration)
# --------------------------------------------------------------------------------------


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's
    high-water mark across fork/exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _anchor_kernel(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Our similarity ``max_d - d`` built the way a numpy user would (sklearn, float32)."""
    from sklearn.metrics.pairwise import euclidean_distances

    Z = X - X.mean(axis=0)
    D = euclidean_distances(Z)  # float32 in, float32 out
    np.fill_diagonal(D, 0.0)
    np.subtract(D.max(), D, out=D)
    return D, float(D.max())


def _worker(cfg: dict) -> dict:
    X = np.load(cfg["features"])
    k = cfg["k"]
    impl, opt = cfg["impl"], cfg["optimizer"]
    repeats = cfg["repeats"]
    calls = []
    picks = None
    if impl == "coreselect":
        import torch

        from coreselect.submodular.select import select

        torch.set_num_threads(cfg["threads"])
        for _ in range(1 + repeats):
            t0 = time.perf_counter()
            cs = select(
                X,
                k,
                optimizer=opt,
                epsilon=cfg.get("epsilon") or 0.01,
                mode=cfg["mode"],
                device=cfg.get("device", "cpu"),
                metric=cfg["metric"],
                seed=0,
            )
            total = time.perf_counter() - t0
            calls.append(
                {
                    "total": total,
                    "kernel": cs.meta["kernel_s"],
                    "greedy": cs.meta["greedy_s"],
                    "weights": cs.meta["weights_s"],
                    "evaluations": cs.meta["evaluations"],
                }
            )
            picks = cs.indices
            extra = {
                "engine_objective": cs.objective,
                "k_neighbors": cs.meta["k_neighbors"],
                "knn_cells_searched": cs.meta["knn_cells_searched"],
            }
            if cfg.get("device", "cpu") != "cpu":
                extra["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    elif impl == "apricot":
        import apricot
        import apricot.functions.base as abase

        for _ in range(1 + repeats):
            if cfg["mode"] in ("features", "features-f64"):
                # apricot's default path: sklearn squared distances inside fit();
                # features-f64 hands it the same features as float64 (numpy's default)
                Xa = X.astype(np.float64) if cfg["mode"] == "features-f64" else X
                spent = {"kernel": 0.0}
                orig = abase._calculate_pairwise_distances

                def timed(*a, _orig=orig, _spent=spent, **kw):
                    t = time.perf_counter()
                    out = _orig(*a, **kw)
                    _spent["kernel"] += time.perf_counter() - t
                    return out

                abase._calculate_pairwise_distances = timed
                t0 = time.perf_counter()
                sel = apricot.FacilityLocationSelection(
                    k, metric="euclidean", optimizer=opt, **_apricot_kw(cfg)
                )
                sel.fit(Xa)
                total = time.perf_counter() - t0
                abase._calculate_pairwise_distances = orig
                kern = spent["kernel"]
            else:
                t0 = time.perf_counter()
                # precomputed-f64: the same kernel built from float64 features (float64 S)
                S, _ = _anchor_kernel(X.astype(np.float64) if cfg["mode"].endswith("f64") else X)
                t1 = time.perf_counter()
                sel = apricot.FacilityLocationSelection(
                    k, metric="precomputed", optimizer=opt, **_apricot_kw(cfg)
                )
                sel.fit(S)
                total = time.perf_counter() - t0
                kern = t1 - t0
                del S
            calls.append({"total": total, "kernel": kern, "greedy": total - kern})
            picks = np.asarray(sel.ranking, dtype=np.int64)
            extra = {"thread_counts": _thread_counts()}
    elif impl == "submodlib":
        from submodlib import FacilityLocationFunction

        name = {"lazy": "LazyGreedy", "stochastic": "StochasticGreedy"}[opt]
        for _ in range(1 + repeats):
            t0 = time.perf_counter()
            S, _ = _anchor_kernel(X)
            t1 = time.perf_counter()
            obj = FacilityLocationFunction(n=S.shape[0], mode="dense", sijs=S, separate_rep=False)
            kw = {"epsilon": cfg["epsilon"]} if opt == "stochastic" else {}
            out = obj.maximize(
                budget=k,
                optimizer=name,
                stopIfZeroGain=False,
                stopIfNegativeGain=False,
                show_progress=False,
                **kw,
            )
            total = time.perf_counter() - t0
            calls.append({"total": total, "kernel": t1 - t0, "greedy": total - (t1 - t0)})
            picks = np.array([int(i) for i, _g in out], dtype=np.int64)
            del obj, S
            extra = {}
    elif impl == "floor":
        return _floor_part(X, cfg["part"], cfg["threads"])
    else:
        raise ValueError(impl)
    np.save(cfg["picks_out"], picks)
    return {"calls": calls, "peak_mb": _peak_mb(), **extra}


def _floor_part(X: np.ndarray, part: str, threads: int) -> dict:
    """One part of the floor, on a fresh ``n x n`` float32 buffer of this fresh process:
    ``cold`` times ``torch.empty`` + ``mm(out=)`` into it and then the GEMM again (warm);
    ``touch`` times ``torch.empty`` + ``fill_``; ``populate`` times ``torch.empty`` + the
    kernel mapping its pages (``madvise``, one range per thread; ``None`` where refused)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from coreselect.submodular.kernels import populate

    torch.set_num_threads(threads)
    n = X.shape[0]
    Xt = torch.from_numpy(X)
    t0 = time.perf_counter()
    buf = torch.empty((n, n), dtype=torch.float32)
    if part == "cold":
        torch.mm(Xt, Xt.T, out=buf)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.mm(Xt, Xt.T, out=buf)
        return {
            "cold_alloc_gemm_s": cold,
            "gemm_s": time.perf_counter() - t0,
            "peak_mb": _peak_mb(),
        }
    if part == "touch":
        buf.fill_(1.0)
        return {"alloc_touch_s": time.perf_counter() - t0}
    flat = buf.view(-1)
    cuts = [flat.numel() * i // threads for i in range(threads + 1)]
    with ThreadPoolExecutor(threads) as ex:
        done = list(ex.map(lambda i: populate(flat[cuts[i] : cuts[i + 1]]), range(threads)))
    return {"alloc_populate_s": time.perf_counter() - t0 if all(done) else None}


def _floor(base: dict, threads: int, timeout: float) -> dict:
    """The floor of a dense build at ``threads`` threads, each part in its own fresh process
    (fresh memory each time): ``floor_s`` is the faster first touch (``fill_`` or the
    kernel's ``madvise``) plus a warm GEMM."""
    out: dict = {}
    for part in ("cold", "touch", "populate"):
        cfg = {**base, "impl": "floor", "optimizer": "-", "mode": "-", "threads": threads}
        res = _run_config({**cfg, "repeats": 0, "part": part}, timeout)
        if "error" in res:
            return res
        out.update(res)
    touches = [t for t in (out["alloc_touch_s"], out["alloc_populate_s"]) if t is not None]
    out["floor_s"] = min(touches) + out["gemm_s"]
    return out


def _thread_counts() -> dict:
    """Threads numba and the BLAS libraries loaded in this process would use."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return {"numba": int(numba.get_num_threads()), "blas": max(blas, default=None)}


def _apricot_kw(cfg: dict) -> dict:
    if cfg["optimizer"] == "stochastic":
        return {"optimizer_kwds": {"epsilon": cfg["epsilon"]}, "random_state": 0}
    return {}


def _run_config(cfg: dict, timeout: float) -> dict:
    env = dict(os.environ)
    t = str(cfg["threads"])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = t
    if cfg.get("blas_threads"):  # BLAS held below the others (apricot64-mt)
        for var in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(cfg["blas_threads"])
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
        cfg_path = fh.name
    out_path = cfg_path + ".out"
    cmd = [sys.executable, "-m", "coreselect.bench.engine", "--worker", cfg_path, out_path]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(cfg_path)
    if proc.returncode != 0 or not os.path.exists(out_path):
        tail = (proc.stderr or "")[-600:]
        return {"error": f"exit {proc.returncode} after {time.perf_counter() - t0:.0f} s: {tail}"}
    with open(out_path) as fh:
        res = json.load(fh)
    os.unlink(out_path)
    return res


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def _git_commit() -> str | None:
    """``HEAD`` of the checkout the code runs from (``+dirty`` with uncommitted changes to
    ``src/``), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _machine() -> dict:
    from coreselect.train.record import cpu_name  # here, not at import: workers stay torch-free

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_start": list(os.getloadavg()),
        "env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "commit": _git_commit(),
    }
    try:
        info["transparent_hugepage"] = (
            Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
        )
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    info["numpy"] = np.__version__
    for mod in ("apricot", "submodlib", "sklearn", "scipy", "numba"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "installed")
        except ImportError:
            info[mod] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info


#: anchors ``--compare`` accepts
ANCHORS = ("apricot", "apricot64", "apricot64-mt", "submodlib")


def register(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``engine`` to the ``coreselect bench`` subcommands (``func`` is set)."""
    p = bench_subparsers.add_parser(
        "engine",
        help="time the selection engine against apricot and submodlib",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--n", type=int, default=30000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--data", default="fmnist", choices=["fmnist", "blobs"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--metric", default="euclidean", choices=["euclidean", "rbf", "cosine"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu | cuda (coreselect rows only)")
    p.add_argument(
        "--compare",
        default="",
        help="comma list: apricot, apricot64 (its paths fed float64 features), apricot64-mt "
        "(those with --threads numba threads, BLAS at 1), submodlib",
    )
    p.add_argument(
        "--ours",
        default="lazy,stochastic,knn",
        help="coreselect configurations: " + ", ".join(OURS),
    )
    p.add_argument("--epsilon", type=float, default=0.01, help="coreselect stochastic epsilon")
    p.add_argument("--anchor-epsilon", type=float, default=0.1, help="anchors' stochastic eps")
    p.add_argument("--repeats", type=int, default=3, help="warm calls after the cold one")
    p.add_argument("--anchor-repeats", type=int, default=1, help="warm calls for anchors")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--append", action="store_true", help="add this run's rows to an existing --out file"
    )
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_engine_bench)
    return p


#: ``--ours`` names -> (optimizer, memory mode)
OURS = {
    "lazy": ("lazy", "dense"),
    "stochastic": ("stochastic", "dense"),
    "knn": ("lazy", "knn"),
    "blockwise": ("lazy", "blockwise"),
    "naive": ("naive", "dense"),
}


def _bad_arguments(args: argparse.Namespace, compare: list[str], ours: list[str]) -> str | None:
    """What is wrong with the bench's arguments, or None."""
    checks = [
        (args.n >= 1, f"--n must be at least 1, got {args.n}"),
        (args.d >= 1, f"--d must be at least 1, got {args.d}"),
        (0.0 < args.fraction <= 1.0, f"--fraction must be in (0, 1], got {args.fraction}"),
        (args.threads >= 1, f"--threads must be at least 1, got {args.threads}"),
        (args.repeats >= 0 and args.anchor_repeats >= 0, "--repeats must be >= 0"),
        (0.0 < args.epsilon < 1.0, f"--epsilon must be in (0, 1), got {args.epsilon}"),
        (0.0 < args.anchor_epsilon < 1.0, "--anchor-epsilon must be in (0, 1)"),
        (args.timeout > 0, f"--timeout must be positive, got {args.timeout}"),
    ]
    checks += [(c in ANCHORS, f"unknown anchor {c!r} ({', '.join(ANCHORS)})") for c in compare]
    checks += [(o in OURS, f"unknown --ours entry {o!r} ({', '.join(OURS)})") for o in ours]
    problem = next((msg for ok, msg in checks if not ok), None)
    if problem is None:  # before any worker starts, not once per configuration
        from coreselect.devices import resolve_device

        try:
            resolve_device(args.device)
        except ValueError as exc:
            problem = f"--device: {exc}"
    return problem


def _error_line(error: str) -> str:
    """A worker's error (``"exit 1 after 2 s: <stderr tail>"``) as one line for the
    console: its head and the last line of the tail, the exception (the JSON keeps all)."""
    head, _, tail = error.partition(": ")
    lines = [line for line in tail.strip().splitlines() if line.strip()]
    return f"{head}: {lines[-1].strip()}" if lines else error


def run_engine_bench(args: argparse.Namespace) -> int:
    """Run the engine benchmark and write ``args.out`` (JSON). Returns an exit code."""
    n, d = args.n, args.d
    compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    ours = [c.strip() for c in args.ours.split(",") if c.strip()]
    problem = _bad_arguments(args, compare, ours)
    if problem:
        print(f"coreselect bench engine: {problem}", file=sys.stderr)
        return 2
    k = max(1, min(n, int(math.floor(args.fraction * n + 0.5))))
    X = load_features(args.data, n, d, seed=args.seed, data_dir=args.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="coreselect-bench-"))
    feat = tmp / "X.npy"
    np.save(feat, X)
    machine = _machine()
    base = {
        "features": str(feat),
        "k": k,
        "metric": args.metric,
        "epsilon": None,
        "device": args.device,
    }

    configs: list[dict] = []
    T = args.threads
    for name in ours:
        opt, mode = OURS[name]
        eps = args.epsilon if opt == "stochastic" else None
        apricot = any(c.startswith("apricot") for c in compare)
        threads = [T] + ([1] if apricot and name in ("lazy", "stochastic") and T != 1 else [])
        for t in threads:
            reps = args.repeats if name in ("lazy", "stochastic") else min(args.repeats, 1)
            configs.append(
                {
                    **base,
                    "impl": "coreselect",
                    "optimizer": opt,
                    "mode": mode,
                    "threads": t,
                    "epsilon": eps,
                    "repeats": reps,
                }
            )
    if "apricot" in compare:
        configs += [
            {
                **base,
                "impl": "apricot",
                "optimizer": "lazy",
                "mode": "features",
                "threads": 1,
                "repeats": args.anchor_repeats,
            },
            {
                **base,
                "impl": "apricot",
                "optimizer": "lazy",
                "mode": "precomputed",
                "threads": 1,
                "repeats": args.anchor_repeats,
            },
            {
                **base,
                "impl": "apricot",
                "optimizer": "stochastic",
                "mode": "precomputed",
                "threads": 1,
                "epsilon": args.anchor_epsilon,
                "repeats": 0,
            },
        ]
    if "apricot64" in compare:
        configs += [
            {
                **base,
                "impl": "apricot",
                "optimizer": "lazy",
                "mode": mode,
                "threads": 1,
                "repeats": args.anchor_repeats,
            }
            for mode in ("features-f64", "precomputed-f64")
        ]
    if "apricot64-mt" in compare and T == 1:
        print("apricot64-mt: same as apricot64 at --threads 1; skipped", file=sys.stderr)
    if "apricot64-mt" in compare and T > 1:
        # numba's prange loops get T threads; BLAS stays at 1 (numpy's SYRK crash)
        configs += [
            {
                **base,
                "impl": "apricot",
                "optimizer": "lazy",
                "mode": mode,
                "threads": T,
                "blas_threads": 1,
                "repeats": args.anchor_repeats,
            }
            for mode in ("features-f64", "precomputed-f64")
        ]
    if "submodlib" in compare:
        configs += [
            {
                **base,
                "impl": "submodlib",
                "optimizer": "lazy",
                "mode": "precomputed",
                "threads": 1,
                "repeats": 0,
            },
            {
                **base,
                "impl": "submodlib",
                "optimizer": "stochastic",
                "mode": "precomputed",
                "threads": 1,
                "epsilon": args.anchor_epsilon,
                "repeats": 0,
            },
        ]

    print(f"engine bench: n={n} d={d} k={k} data={args.data} threads={T}", flush=True)
    floor = None
    if n <= 75_000 and args.device == "cpu":
        floor = _floor(base, T, args.timeout)
        print(f"  floor: {json.dumps(floor)}", flush=True)

    max_d = pool_max_distance(X) if args.metric == "euclidean" and n <= 75_000 else None
    runs = []
    for i, cfg in enumerate(configs):
        cfg["picks_out"] = str(tmp / f"picks{i}.npy")
        res = _run_config(cfg, args.timeout)
        row = {
            "impl": cfg["impl"],
            "optimizer": cfg["optimizer"],
            "epsilon": cfg.get("epsilon"),
            "mode": cfg["mode"],
            "n": n,
            "d": d,
            "k": k,
            "threads": cfg["threads"],
            "device": cfg.get("device", "cpu") if cfg["impl"] == "coreselect" else "cpu",
            "data": args.data,
            "metric": args.metric,
        }
        if cfg.get("blas_threads"):
            row["blas_threads"] = cfg["blas_threads"]
        if "error" in res:
            row["error"] = res["error"]
            print(
                f"  {row['impl']:>10} {row['optimizer']:<10} {row['mode']:<11} "
                f"t={row['threads']}  ERROR {_error_line(res['error'])[:300]}",
                flush=True,
            )
            runs.append(row)
            continue
        calls = res["calls"]
        cold, warm = calls[0], calls[1:]
        row.update(
            {
                "cold_s": cold["total"],
                "seconds": statistics.median(c["total"] for c in warm) if warm else None,
                "kernel_s": cold["kernel"],
                "greedy_s": cold["greedy"],
                "warm_kernel_s": statistics.median(c["kernel"] for c in warm) if warm else None,
                "warm_greedy_s": statistics.median(c["greedy"] for c in warm) if warm else None,
                "peak_mb": res["peak_mb"],
                "gpu_peak_mb": res.get("gpu_peak_mb"),
                "warm_calls": len(warm),
            }
        )
        if "evaluations" in cold:
            row["evaluations"] = cold["evaluations"]
        for key in ("k_neighbors", "knn_cells_searched"):
            if res.get(key):
                row[key] = res[key]
        if res.get("thread_counts"):
            row["thread_counts"] = res["thread_counts"]
        picks = np.load(cfg["picks_out"])
        row.update(rescore(X, picks, args.metric, max_d=max_d))
        row["picks_file"] = cfg["picks_out"]
        runs.append(row)
        print(
            f"  {row['impl']:>10} {row['optimizer']:<10} {row['mode']:<11} t={row['threads']} "
            f"cold {row['cold_s']:.2f}s warm {row['seconds'] or float('nan'):.2f}s "
            f"kernel {row['kernel_s']:.2f} greedy {row['greedy_s']:.2f} "
            f"peak {row['peak_mb']:.0f}MB cost {row['cost']:.6g}",
            flush=True,
        )

    ref = next(
        (
            r
            for r in runs
            if r["impl"] == "coreselect"
            and r["optimizer"] in ("lazy", "naive")
            and r["mode"] in ("dense", "blockwise")
            and "cost" in r
        ),
        None,
    )
    ref_picks = np.load(ref["picks_file"]) if ref else None
    for r in runs:
        if ref and "cost" in r:
            r["cost_ratio"] = r["cost"] / ref["cost"]
            r["same_set_as_exact"] = bool(
                np.array_equal(np.sort(np.load(r["picks_file"])), np.sort(ref_picks))
            )
    for r in runs:
        r.pop("picks_file", None)
    machine["loadavg_end"] = list(os.getloadavg())
    result = {
        "machine": machine,
        "floor": floor,
        "config": {
            "n": n,
            "d": d,
            "k": k,
            "fraction": args.fraction,
            "data": args.data,
            "metric": args.metric,
            "threads": T,
            "seed": args.seed,
            "repeats": args.repeats,
            "anchor_repeats": args.anchor_repeats,
        },
        "runs": runs,
        "ratios": _ratios(runs),
        "notes": [
            "cold_s: first call in a fresh process (includes first touch of memory); "
            "seconds: median of the warm calls (null when none were run).",
            "peak_mb: peak resident memory (VmHWM) of the configuration's own process.",
            "objective and cost: re-scored in float64 by one shared function; cost_ratio is "
            "C(S) / C(S_exact) with S_exact = coreselect lazy dense.",
            "apricot 'features' = its default path (metric='euclidean', i.e. squared "
            "distances: a different objective), run with 1 thread because numpy's OpenBLAS "
            "segfaults in X @ X.T with 2 threads at n >~ 26k (numpy#19685); the coreselect "
            "rows with threads=1 are its like-for-like comparison.",
            "apricot 'features-f64' / 'precomputed-f64' (--compare apricot64): the same "
            "paths fed the same features as float64 (numpy's default dtype), so every matrix "
            "is float64; apricot's greedy runs faster on a float64 similarity.",
            "apricot rows with blas_threads (--compare apricot64-mt): numba (apricot's "
            "greedy) runs with `threads` threads, BLAS (its distances / our kernel's build) "
            "with blas_threads; thread_counts records what the process saw.",
            "apricot/submodlib 'precomputed': our similarity max_d - d built with sklearn "
            "euclidean_distances (float32) and handed over; kernel_s is that build.",
        ],
    }
    if args.append and args.out.exists():
        old = json.loads(args.out.read_text())
        old.setdefault("extra", []).append(result)
        result = old
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    for key, val in result.get("ratios", {}).items():
        print(f"  {key}: {val}")
    return 0


def _find(runs, **kw):
    for r in runs:
        if all(r.get(k) == v for k, v in kw.items()) and "cold_s" in r:
            return r
    return None


def _ratio(a, b, key):
    if a is None or b is None or a.get(key) in (None, 0) or b.get(key) in (None, 0):
        return None
    return round(a[key] / b[key], 3)


def _ratios(runs: list[dict]) -> dict:
    T = max((r["threads"] for r in runs), default=1)
    lazy1 = _find(runs, impl="coreselect", optimizer="lazy", mode="dense", threads=1)
    lazyT = _find(runs, impl="coreselect", optimizer="lazy", mode="dense", threads=T)
    sto1 = _find(runs, impl="coreselect", optimizer="stochastic", mode="dense", threads=1)
    stoT = _find(runs, impl="coreselect", optimizer="stochastic", mode="dense", threads=T)
    knn = _find(runs, impl="coreselect", optimizer="lazy", mode="knn")
    af = _find(runs, impl="apricot", optimizer="lazy", mode="features")
    af64 = _find(runs, impl="apricot", optimizer="lazy", mode="features-f64", threads=1)
    ap64 = _find(runs, impl="apricot", optimizer="lazy", mode="precomputed-f64", threads=1)
    # apricot64-mt: apricot's greedy on T numba threads too
    mt = {"impl": "apricot", "optimizer": "lazy", "threads": T}
    af64T = _find(runs, mode="features-f64", **mt) if T > 1 else None
    ap64T = _find(runs, mode="precomputed-f64", **mt) if T > 1 else None
    ap = _find(runs, impl="apricot", optimizer="lazy", mode="precomputed")
    sl = _find(runs, impl="submodlib", optimizer="lazy")
    ss = _find(runs, impl="submodlib", optimizer="stochastic")
    out = {
        "lazy_vs_apricot_features_cold_1thread": _ratio(af, lazy1, "cold_s"),
        "lazy_vs_apricot_features_cold_oursTthreads": _ratio(af, lazyT, "cold_s"),
        "lazy_vs_apricot_precomputed_cold_1thread": _ratio(ap, lazy1, "cold_s"),
        "lazy_vs_apricot_features_warm_1thread": _ratio(af, lazy1, "seconds"),
        "greedy_vs_apricot_precomputed_greedy": _ratio(ap, lazyT, "greedy_s"),
        "greedy_vs_apricot_precomputed_greedy_1thread": _ratio(ap, lazy1, "greedy_s"),
        "lazy_vs_submodlib_lazy_cold": _ratio(sl, lazyT, "cold_s"),
        "lazy_vs_submodlib_lazy_cold_1thread": _ratio(sl, lazy1, "cold_s"),
        "stochastic_vs_submodlib_stochastic_cold": _ratio(ss, stoT, "cold_s"),
        "stochastic_vs_apricot_lazy_features_cold_1thread": _ratio(af, sto1, "cold_s"),
        "stochastic_vs_apricot_lazy_features_cold_oursTthreads": _ratio(af, stoT, "cold_s"),
        "peak_memory_lazy_over_apricot_features": _ratio(lazyT, af, "peak_mb"),
        "peak_memory_lazy_over_apricot_precomputed": _ratio(lazyT, ap, "peak_mb"),
        "lazy_vs_apricot_features_f64_cold_1thread": _ratio(af64, lazy1, "cold_s"),
        "lazy_vs_apricot_features_f64_cold_oursTthreads": _ratio(af64, lazyT, "cold_s"),
        "stochastic_vs_apricot_features_f64_cold_1thread": _ratio(af64, sto1, "cold_s"),
        "stochastic_vs_apricot_features_f64_cold_oursTthreads": _ratio(af64, stoT, "cold_s"),
        "peak_memory_lazy_over_apricot_features_f64": _ratio(lazyT, af64, "peak_mb"),
        "peak_memory_lazy_over_apricot_precomputed_f64": _ratio(lazyT, ap64, "peak_mb"),
        "greedy_vs_apricot_precomputed_f64_greedy": _ratio(ap64, lazyT, "greedy_s"),
        "greedy_vs_apricot_precomputed_f64_greedy_1thread": _ratio(ap64, lazy1, "greedy_s"),
        "lazy_vs_apricot_features_f64_cold_bothTthreads": _ratio(af64T, lazyT, "cold_s"),
        "lazy_vs_apricot_precomputed_f64_cold_bothTthreads": _ratio(ap64T, lazyT, "cold_s"),
        "greedy_vs_apricot_precomputed_f64_greedy_bothTthreads": _ratio(ap64T, lazyT, "greedy_s"),
        "stochastic_vs_apricot_features_f64_cold_bothTthreads": _ratio(af64T, stoT, "cold_s"),
        "stochastic_cost_ratio": stoT.get("cost_ratio") if stoT else None,
        "knn_cost_ratio": knn.get("cost_ratio") if knn else None,
    }
    if lazyT and ap and lazyT.get("objective") and ap.get("objective"):
        out["objective_rel_diff_vs_apricot_precomputed"] = (
            lazyT["objective"] - ap["objective"]
        ) / abs(ap["objective"])
        out["same_set_as_apricot_precomputed"] = ap.get("same_set_as_exact")
    return {k: v for k, v in out.items() if v is not None}


def _worker_main(argv: list[str]) -> int:
    cfg_path, out_path = argv
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    res = _worker(cfg)
    with open(out_path, "w") as fh:
        json.dump(res, fh)
    return 0


if __name__ == "__main__":  # pragma: no cover - subprocess entry point
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    parser = argparse.ArgumentParser(prog="python -m coreselect.bench.engine")
    register(parser.add_subparsers(dest="suite"))
    ns = parser.parse_args(["engine", *sys.argv[1:]])
    sys.exit(ns.func(ns))
