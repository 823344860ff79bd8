"""Similarity kernels in *cost form*, computed tile by tile in float32 with torch.

Every metric is expressed as a cost ``c_ij >= 0`` (``c_ii = 0``) and an "uncovered" cost
``c0`` such that the similarity is ``s_ij = c0 - c_ij >= 0``:

==========  =====================================  ======================
metric      cost ``c_ij``                          ``c0``
==========  =====================================  ======================
euclidean   ``d_ij`` (Euclidean distance)          ``max_ij d_ij`` (pool)
rbf         ``1 - exp(-d_ij / D)``, D = feature    ``1``
            dimension (computed with ``expm1``)
cosine      ``1 - max(cos_ij, 0)``                 ``1``
==========  =====================================  ======================

So ``euclidean`` is CRAIG's ``s = max_d - d``, ``rbf`` is submodlib's ``exp(-d/D)`` and
``cosine`` is ``max(cos, 0)``. Facility-location gains are then computed as
``sum_i max(0, dcur_i - c_ij)``, which never subtracts two large similarities (no float32
cancellation of ``max_d - d``).

Features are first centred in float64 (euclidean, rbf) and scaled by a power of two so
that their largest magnitude lies in ``[0.5, 1)`` (:func:`unit_scale`): the scaling is exact
in floating point, so scaling ``X`` changes only the units, while squared distances can
neither overflow float32 (inputs near ``1e19``) nor vanish below it (near ``1e-19``), and a
common offset is gone before float32 rounding. Euclidean costs are then in those scaled
units (:attr:`PreparedFeatures.cost_scale` converts gains back); ``rbf`` applies the scale
inside its exponent.

Distances use the Gram identity ``|a|^2 + |b|^2 - 2 a.b`` on *centred* features (smaller
norms, less rounding), as one GEMM on Gram factors that carry the norms
(:meth:`PreparedFeatures.factors`); the diagonal is set to exactly zero. A zero feature vector under
``cosine`` has cosine 0 with every other point (cost 1) and cost 0 with itself.

The dense ``n x n`` matrix lives in a module-level workspace that is reused across calls
(first touch of fresh memory costs far more than filling it; a fresh buffer's pages are
mapped block by block, with one ``madvise`` call each where Linux offers it (:func:`populate`)
or else with plain stores, before a GEMM writes there: :func:`claim_fresh`);
:func:`free_workspace` releases it. It is plain ``torch.empty`` memory: advising it for
transparent huge pages (``MADV_HUGEPAGE``) made the first touch of 3.6 GB slower on this
project's machines (1.7-2.5 s instead of 1.1-1.2 s by hand, with direct compaction on
fault), more than the greedy gains from fewer TLB misses.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch

METRICS = ("euclidean", "rbf", "cosine")

__all__ = [
    "METRICS",
    "PreparedFeatures",
    "prepare_features",
    "unit_scale",
    "cost_tile",
    "build_dense",
    "workspace",
    "claim_fresh",
    "populate",
    "free_workspace",
    "workspace_bytes",
    "available_memory",
    "run_blocks",
    "cpu_workers",
    "single_thread",
]


# --------------------------------------------------------------------------------------
# Block parallelism with Python threads (torch releases the GIL inside its kernels).
#
# On CPU, tile loops are split across Python threads that each run single-threaded torch
# ops, pulling blocks from a shared queue. Compared with torch's intra-op OpenMP threads
# this has no fork/join barrier per operation, so a core taken by another process slows
# the loop down gracefully instead of stalling every small operation.
# --------------------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def cpu_workers(device: torch.device) -> int:
    """Workers for block loops on ``device``: torch's thread count on CPU, else 1."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@contextlib.contextmanager
def single_thread():
    """Temporarily set torch's intra-op threads to 1 (restored on exit)."""
    old = torch.get_num_threads()
    if old != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if old != 1:
            torch.set_num_threads(old)


def _pool(size: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < size:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="coreselect")
            _POOL_SIZE = size
        return _POOL


def run_blocks(fn, starts, workers: int) -> None:
    """Call ``fn(start, worker)`` for every block start, on ``workers`` threads.

    Args:
        fn: callable ``(start: int, worker: int) -> None``; must only write to memory
            owned by its block (and per-worker scratch indexed by ``worker``).
        starts: iterable of block starts.
        workers: number of threads (1 runs inline).
    """
    starts = list(starts)
    if workers <= 1 or len(starts) <= 1:
        # a single block on CPU runs with one intra-op thread too: on a small block an
        # OpenMP fork/join costs more than it saves, and waits a whole scheduler slice
        # (milliseconds) when the other core is busy
        with single_thread() if workers > 1 else contextlib.nullcontext():
            for s in starts:
                fn(s, 0)
        return
    workers = min(workers, len(starts))
    lock = threading.Lock()
    it = iter(starts)
    stop = threading.Event()  # set by a failed block: no thread takes another one

    def loop(w: int) -> None:
        while not stop.is_set():
            with lock:
                s = next(it, None)
            if s is None:
                return
            try:
                fn(s, w)
            except BaseException:
                stop.set()
                raise

    with single_thread():
        futures = [_pool(workers - 1).submit(loop, w) for w in range(1, workers)]
        try:
            loop(0)
        finally:
            # also when this thread failed (a KeyboardInterrupt too): wait for the blocks
            # still running, so that none writes to the caller's memory (the reusable
            # workspace) after this returns or raises
            wait(futures)
        for f in futures:
            f.result()


class PreparedFeatures:
    """Features ready for tile computations.

    Attributes:
        X: ``(n, d)`` float32 tensor: centred (euclidean, rbf) or row-normalised (cosine).
        sq: ``(n,)`` float32 squared row norms of ``X`` (all ones/zeros for cosine).
        metric: one of :data:`METRICS`.
        dim: the original feature dimension ``D`` (rbf bandwidth).
        scale: power of two: a distance between rows of ``X`` times ``scale`` is the
            distance between the caller's points (see :func:`unit_scale`).
    """

    def __init__(
        self, X: torch.Tensor, sq: torch.Tensor, metric: str, dim: int, scale: float = 1.0
    ) -> None:
        self.X = X
        self.sq = sq
        self.metric = metric
        self.dim = dim
        self.scale = float(scale)
        self._factors: tuple[torch.Tensor, torch.Tensor] | None = None

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gram factors ``(L, R)``, each ``(n, d + 2)`` (``(n, d + 1)`` for cosine) float32,
        such that ``L_a . R_b`` is the squared distance ``|a|^2 + |b|^2 - 2 a.b`` (or
        ``1 - cos``) of rows ``a`` and ``b``: ``L = [|x|^2, 1, -2x]``, ``R = [1, |x|^2, x]``
        (``L = [1, -x]``, ``R = [1, x]`` for cosine). Built once and cached.

        The GEMM accumulates ``|a|^2 + |b|^2`` first (exact in either order) and then the
        same products ``-2 a_k b_k`` for ``(a, b)`` and ``(b, a)``, so ``c(a, b)`` and
        ``c(b, a)`` round identically when the GEMM sums ``k`` in order: a row recomputed on
        its own (blockwise) equals the dense build's, whose columns left of its block are
        copied from the rows above."""
        if self._factors is None:
            ones = torch.ones((self.n, 1), dtype=torch.float32, device=self.X.device)
            if self.metric == "cosine":
                L = torch.cat([ones, -self.X], dim=1)
                R = torch.cat([ones, self.X], dim=1)
            else:
                sq = self.sq.unsqueeze(1)
                L = torch.cat([sq, ones, -2.0 * self.X], dim=1)
                R = torch.cat([ones, sq, self.X], dim=1)
            self._factors = (L.contiguous(), R.contiguous())
        return self._factors

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.X.shape[0])

    @property
    def cost_scale(self) -> float:
        """Factor from the computed costs (and gains, ``c0``) to the caller's units:
        ``scale`` for ``euclidean``, ``1.0`` for ``rbf`` and ``cosine`` (unit-free)."""
        return self.scale if self.metric == "euclidean" else 1.0

    @property
    def rbf_factor(self) -> float:
        """``-scale / D``: the rbf cost is ``-expm1(rbf_factor * d)`` for a computed
        distance ``d`` (held to the float32 range, so ``0 * factor`` stays 0)."""
        return max(-self.scale / self.dim, -torch.finfo(torch.float32).max)

    def subset(self, idx: torch.Tensor) -> PreparedFeatures:
        """The prepared features of rows ``idx`` (``(m,)`` long tensor)."""
        return PreparedFeatures(self.X[idx], self.sq[idx], self.metric, self.dim, self.scale)


def unit_scale(X: torch.Tensor, centre: bool = False) -> tuple[torch.Tensor, float]:
    """``X`` (centred when asked) as float32, divided by the power of two ``scale`` that
    puts its largest magnitude in ``[0.5, 1)``.

    The work is done in float64 and the division is exact (it only shifts exponents), so
    the float32 result is the correctly rounded ``(X - mean) / scale``: features near
    ``1e19`` (whose squared norms would overflow float32) or ``1e-19`` (whose squared
    distances would vanish) give the picks of unit-scale features, ``X * 2**e`` gives
    exactly the picks of ``X``, and a large common offset (float64 input around ``1e9``
    with unit spread) is removed before float32 rounding could erase the spread.

    Args:
        X: ``(n, d)`` finite float tensor (any float dtype, any device).
        centre: subtract the column means (computed in float64).

    Returns:
        ``(Xs, scale)``: ``(n, d)`` float32 tensor with ``Xs * scale`` equal to ``X``
        (centred) up to float32 rounding, and ``scale`` (a float power of two; ``1.0`` for
        an all-zero result).
    """
    X = X.to(torch.float64)
    exponent = _exponent(X)  # first to unit scale: the column sums cannot overflow
    if exponent:
        X = X * math.ldexp(1.0, -exponent)
    if centre:
        X = X - X.mean(dim=0, keepdim=True)
        shift = _exponent(X)
        if shift:
            X = X * math.ldexp(1.0, -shift)
        exponent += shift
    return X.to(torch.float32), math.ldexp(1.0, exponent)


def _exponent(X: torch.Tensor) -> int:
    """``e`` with ``max |X|`` in ``[2**(e-1), 2**e)``; 0 for an empty or all-zero ``X``."""
    top = float(X.abs().max().item()) if X.numel() else 0.0
    return math.frexp(top)[1] if top > 0.0 and math.isfinite(top) else 0


def prepare_features(X: torch.Tensor, metric: str) -> PreparedFeatures:
    """Centre (euclidean, rbf) or L2-normalise (cosine) ``X``.

    Args:
        X: ``(n, d)`` float tensor on the target device.
        metric: one of :data:`METRICS`.

    Returns:
        :class:`PreparedFeatures` with float32 ``X`` ``(n, d)`` (centred in float64 and
        divided by its :func:`unit_scale`), ``sq`` ``(n,)`` and ``scale``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    dim = int(X.shape[1])
    Xp, scale = unit_scale(X, centre=metric != "cosine")
    if metric == "cosine":
        norms = torch.linalg.vector_norm(Xp, dim=1, keepdim=True)
        Xp = torch.where(norms > 0, Xp / norms.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    Xp = Xp.contiguous()
    sq = (Xp * Xp).sum(dim=1)
    if metric == "rbf" and Xp.numel():
        _warn_if_rbf_unresolved(float(sq.max().item()), scale, dim)
    return PreparedFeatures(Xp, sq, metric, dim, scale)


#: largest error of an rbf similarity ``exp(-d / D)`` between near points, from float32
#: rounding of the squared distance, beyond which :func:`prepare_features` warns
RBF_WARN_ERROR = 0.1


def _warn_if_rbf_unresolved(max_sq: float, scale: float, dim: int) -> None:
    """Warn when float32 cannot resolve the distances the rbf kernel depends on.

    A squared distance from the Gram factors carries an error of a few float32 ulps of the
    squared norms (``max_sq``, unit-scaled): near points and copies come out up to
    ``delta = sqrt(4 eps max_sq)`` apart instead of 0, and their similarity
    ``exp(-d scale / D)`` off by about ``delta * scale / D``, about ``5e-4`` times the
    largest norm over ``D``. That is small for features whose spread is near the bandwidth
    ``D`` or below (Fashion-MNIST in 64-D: 1e-4), but for features spread hundreds of
    times wider (coordinates in metres, unscaled counts) the similarities of near points,
    the only ones above 0, are noise (by hand, 276 1-D points spread over 6e5, the nearest
    about 2 apart: a pick of float64 gain 1.0034 was taken over one of 1.1051).
    """
    err = scale / dim * math.sqrt(4.0 * torch.finfo(torch.float32).eps * max_sq)
    if err > RBF_WARN_ERROR:
        warnings.warn(  # one text per D, so that a warning filter shows it once
            f"rbf similarities exp(-d / D) with D = {dim}: these features spread so far "
            "beyond D that float32 cannot resolve the distances between near points (the "
            "only ones with similarities above 0), whose similarities may be off by more "
            f"than {RBF_WARN_ERROR}. Scale the features (e.g. standardize them) or use "
            "metric='euclidean'",
            UserWarning,
            stacklevel=3,
        )


def cost_tile(
    A: PreparedFeatures,
    B: PreparedFeatures,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cost tile ``c(A_i, B_j)`` as float32, computed in place.

    Args:
        A: prepared features of the ``m`` row points.
        B: prepared features of the ``p`` column points (same metric).
        out: optional preallocated ``(m, p)`` contiguous float32 tensor to fill.

    Returns:
        ``(m, p)`` float32 tensor of costs (``out`` when given). Self-pairs are *not*
        zeroed here (the caller knows which entries are the diagonal).
    """
    m, p = A.X.shape[0], B.X.shape[0]
    if out is None:
        out = torch.empty((m, p), dtype=torch.float32, device=A.X.device)
    # one GEMM on the Gram factors gives 1 - cos, or |a|^2 + |b|^2 - 2 a.b with the norms
    # summed first: no pass to add them, and c(a, b), c(b, a) round identically (the
    # incremental greedy reads c_ij from row i; see PreparedFeatures.factors)
    torch.mm(A.factors()[0], B.factors()[1].T, out=out)
    if A.metric == "cosine":
        return out.clamp_(0.0, 1.0)  # cost of s = max(cos, 0)
    out.clamp_(min=0.0).sqrt_()
    if A.metric == "rbf":
        # 1 - exp(-d / D) == -expm1(-d / D), accurate for small d.
        out.mul_(A.rbf_factor).expm1_().neg_()
    return out


#: progress callback of a kernel build: called with the number of rows just finished
OnRows = Callable[[int], None]


#: fewest rows of a GEMM tile (the dense build's blocks, the blockwise oracle's tiles): a
#: BLAS takes other code paths for very short products (on this project's MKL, 1 and 2 rows
#: round differently from 3 or more), so a short tile's rows would round unlike the same
#: rows elsewhere (a dense matrix not symmetric, a blockwise row that depends on its tile)
TILE_MIN_ROWS = 8


#: fewest columns of the dense build's GEMM tiles: the last blocks need only a few columns
#: right of the diagonal, but a very narrow product takes other code paths (on this
#: project's MKL, 8 columns rounded unlike the same columns of a wide tile, 24 or more alike),
#: and a row of the dense matrix should round as the same row computed whole (blockwise)
TILE_MIN_COLS = 64


#: bytes of one dense-build block on CPU: its GEMM and elementwise passes run from the last
#: level cache. Larger blocks amortize the GEMM's packing of the ``(n, d + 2)`` factor, which
#: is repacked for every block: on an AMD EPYC VM (32 MiB L3), 30,000 points, the warm build
#: took 3.2-4.9 s with 4 MiB blocks (32 rows) against 2.8-4.1 s with 16 MiB (128 rows) at 1
#: thread, and 2.1-3.3 s against 1.8-2.2 s at 2 (fresh processes, alternated)
BUILD_BLOCK_BYTES = 16 << 20

#: rows of the source tiles of the dense build's transposed copy on CPU (see build_dense)
MIRROR_TILE_ROWS = 512


def _rows_per_block(n: int, device: torch.device) -> int:
    """Rows per tile so that one tile stays cache-resident on CPU
    (:data:`BUILD_BLOCK_BYTES`, and at least two tiles per worker thread), at least
    :data:`TILE_MIN_ROWS` (or ``n``)."""
    if device.type != "cpu":
        rows = (256 << 20) // max(4 * n, 1)
    else:
        per_worker = -(-n // (2 * cpu_workers(device)))
        rows = min(BUILD_BLOCK_BYTES // max(4 * n, 1), per_worker)
        rows = rows - rows % 8 if rows >= 16 else rows
    return max(1, min(n, max(TILE_MIN_ROWS, rows)))


def _block_bounds(n: int, rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[(start, end), ...]`` of ``rows`` rows covering ``0..n``; a tail shorter
    than :data:`TILE_MIN_ROWS` joins the block before it."""
    bounds = [(s, min(s + rows, n)) for s in range(0, n, rows)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < TILE_MIN_ROWS:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def build_dense(
    F: PreparedFeatures,
    out: torch.Tensor,
    block_rows: int | None = None,
    segment_min: torch.Tensor | None = None,
    touch: bool = False,
    on_rows: OnRows | None = None,
) -> tuple[torch.Tensor, float]:
    """Fill the dense ``n x n`` cost matrix in fused, cache-sized row blocks.

    The matrix is symmetric, so each block of rows ``s:e`` computes only its columns
    ``s:n`` (GEMM, in-place distance transform, zero diagonal; at least
    :data:`TILE_MIN_COLS` columns) and copies its columns ``0:s`` from the rows above,
    transposed: half the GEMM and half the transform, and a
    matrix that is bitwise symmetric by construction, whatever order a BLAS sums in. Then,
    while the block is still in cache, its row sums and maxima (first-step gains and
    ``c0``) and, when asked, its segment minima. No ``n^2`` temporary is ever created.

    A block copies from the blocks above it in order, waiting for each as its rows come due:
    blocks are handed out in order, so with ``w`` worker threads only the last ``w - 1`` of
    them can still be running, and they are copied last.

    Args:
        F: prepared features, ``n`` points.
        out: ``(n, n)`` float32 tensor with unit column stride to fill (e.g. a
            :func:`workspace` view), or ``(n, nseg * seg)`` with ``segment_min``: the
            columns past ``n`` are set to ``+inf`` (padding of the last segment).
        block_rows: rows per block; default keeps a block near BUILD_BLOCK_BYTES on CPU.
        segment_min: optional ``(n, nseg)`` float32 tensor filled with the minimum of
            every row over each segment of ``seg`` consecutive columns.
        touch: map each block's pages (:func:`populate`, else zero it) just before its
            GEMM (for fresh memory, see :func:`claim_fresh`).
        on_rows: optional callback with the number of rows of each finished block (called
            from the worker threads), for progress.

    Returns:
        ``(rowsum, c0)``: ``(n,)`` float64 row sums of the cost matrix, and ``c0`` (float):
        the maximum cost for ``euclidean``, ``1.0`` otherwise.
    """
    n = F.n
    dev = F.X.device
    bounds = _block_bounds(n, block_rows or _rows_per_block(n, dev))
    order = {s: i for i, (s, _e) in enumerate(bounds)}
    finished = [threading.Event() for _ in bounds]
    failed: list[BaseException] = []
    # the transposed copy runs in tiles of source rows on CPU (torch's strided copy: 512 rows
    # of a 128-row block moved 1.8 GB in 0.8 s at 1 thread, against 1.1 s with 128 and
    # 4.6 s untiled); one copy per block elsewhere
    tile = MIRROR_TILE_ROWS if dev.type == "cpu" else max(n, 1)
    rowsum = torch.empty(n, dtype=torch.float32, device=dev)
    rowmax = torch.empty(n, dtype=torch.float32, device=dev)

    def block(s: int, _w: int) -> None:
        i = order[s]
        try:
            e = bounds[i][1]
            full = out[s:e]
            if touch and not populate(full):
                full.zero_()
            # the GEMM from column lo <= s: at least TILE_MIN_COLS columns (the copy below
            # overwrites those left of s)
            lo = max(0, min(s, n - TILE_MIN_COLS))
            cost_tile(_slice(F, s, e), _slice(F, lo, n), out=full[:, lo:n])
            # the diagonal tile from its strict upper triangle too (the GEMM need not round
            # c(a, b) and c(b, a) alike)
            diag = full[:, s:e]
            tri = diag.triu(1)
            torch.add(tri, tri.T, out=diag)
            above = 0  # blocks above known finished: wait for each only when its rows are due
            for a in range(0, s, tile):
                b = min(a + tile, s)
                while above < i and bounds[above][0] < b:
                    finished[above].wait()
                    above += 1
                if failed:
                    return
                full[:, a:b].copy_(out[a:b, s:e].T)
            blk = full[:, :n]
            torch.sum(blk, dim=1, out=rowsum[s:e])  # float32 cascade sum, accurate enough
            if F.metric == "euclidean":
                torch.amax(blk, dim=1, out=rowmax[s:e])
            if segment_min is not None:
                full[:, n:] = float("inf")
                torch.amin(full.view(e - s, segment_min.shape[1], -1), dim=2, out=segment_min[s:e])
            if on_rows is not None:
                on_rows(e - s)
        except BaseException as err:
            failed.append(err)
            raise
        finally:
            finished[i].set()  # a block below must not wait forever on a failed one

    run_blocks(block, list(order), cpu_workers(dev))
    c0 = float(rowmax.max().item()) if F.metric == "euclidean" else 1.0
    return rowsum.to(torch.float64), c0


def _slice(F: PreparedFeatures, s: int, e: int) -> PreparedFeatures:
    out = PreparedFeatures(F.X[s:e], F.sq[s:e], F.metric, F.dim, F.scale)
    L, R = F.factors()
    out._factors = (L[s:e], R[s:e])
    return out


# --------------------------------------------------------------------------------------
# Workspace: one reusable float32 buffer per device.
# --------------------------------------------------------------------------------------

_WS_LOCK = threading.Lock()
_WORKSPACE: dict[str, torch.Tensor] = {}
_FRESH: set[str] = set()  # devices whose workspace was allocated and not yet claimed


def workspace(numel: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A 1-D float32 buffer of at least ``numel`` elements, reused across calls.

    The buffer is cached per device and only grows; views of it are handed out, so a
    caller must not keep one past its own call. Use :func:`free_workspace` to release it.

    Args:
        numel: required number of float32 elements.
        device: target device.

    Returns:
        ``(numel,)`` float32 view of the cached buffer.
    """
    device = torch.device(device)
    key = str(device)
    with _WS_LOCK:
        cached = _WORKSPACE.get(key)
        if cached is not None and cached.numel() >= numel:
            return cached[:numel]
        # release the old buffer before allocating a larger one
        _WORKSPACE.pop(key, None)
        cached = None
        buf = torch.empty(numel, dtype=torch.float32, device=device)
        if device.type == "cpu":
            _FRESH.add(key)
        _WORKSPACE[key] = buf
        return buf[:numel]


#: ``madvise`` advice that maps and zero-fills pages in the kernel (Linux >= 5.14)
_MADV_POPULATE_WRITE = 23
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: the C library's ``madvise`` (None: not tried yet; False: unavailable or refused)
_MADVISE = None


def _madvise():
    global _MADVISE
    if _MADVISE is None:
        _MADVISE = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _MADVISE = fn
            except (OSError, AttributeError):
                pass
    return _MADVISE


def populate(t: torch.Tensor) -> bool:
    """Map the pages under the CPU tensor ``t`` (its whole span, views included) with one
    system call, ``madvise(MADV_POPULATE_WRITE)``, instead of one page fault per 4 KiB page
    on first write.

    The kernel zero-fills the pages as a fault would, without a trap per page. On this
    project's VMs (Firecracker guests) a cold ``select`` of 30,000 points spent a median
    2.12 s in its kernel phase against 2.34 s with stores at 2 threads, 4.64 s against 4.80 s
    at 1 (``benchmarks/engine/cold_touch.py``, ABBA in fresh processes; the first touch of
    fresh memory there varies by process by 2x either way). Returns False, having done nothing,
    where the call is unavailable (not Linux, a kernel before 5.14): the caller then touches
    the memory with stores. Pages at the two ends that are only partly ``t``'s are left to
    fault normally.
    """
    fn = _madvise()
    if not fn or t.device.type != "cpu" or t.numel() == 0:
        return False
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    start = t.data_ptr()
    lo = -(-start // _PAGE) * _PAGE
    hi = (start + span * t.element_size()) // _PAGE * _PAGE
    if hi <= lo:
        return True
    if fn(lo, hi - lo, _MADV_POPULATE_WRITE) != 0:
        global _MADVISE
        _MADVISE = False  # refused once (EINVAL: an older kernel): stores from now on
        return False
    return True


_WS_USERS: dict[str, threading.RLock] = {}


def workspace_lock(device: torch.device | str = "cpu") -> threading.RLock:
    """The lock to hold while building into and reading the workspace of ``device``.

    :func:`workspace` hands out views of one buffer per device, so two users at a time
    (two threads selecting at once) would overwrite each other's matrix; ``select`` holds
    this lock from its build to its last read, and a second caller waits for it.
    """
    key = str(torch.device(device))
    with _WS_LOCK:
        return _WS_USERS.setdefault(key, threading.RLock())


def claim_fresh(device: torch.device | str = "cpu") -> bool:
    """True once after the CPU workspace of ``device`` was (re)allocated, False after.

    The caller that is about to fill it should map each block (:func:`populate`, else plain
    stores) just before its GEMM writes there (``build_dense(touch=True)``): a GEMM writing into
    never-touched pages takes its page faults far more slowly (a cold ``torch.empty`` +
    ``mm(out=)`` of 30k x 30k: 3.7-4.3 s against 1.1 s of touching plus 0.8 s of GEMM on
    this project's machines), and touching block by block keeps the block in cache for
    the GEMM instead of writing the whole buffer to memory twice."""
    key = str(torch.device(device))
    with _WS_LOCK:
        fresh = key in _FRESH
        _FRESH.discard(key)
        return fresh


def workspace_bytes(device: torch.device | str | None = None) -> int:
    """Bytes currently held by the workspace (one device, or all when ``None``)."""
    with _WS_LOCK:
        items = _WORKSPACE.items()
        return sum(
            t.numel() * 4 for k, t in items if device is None or k == str(torch.device(device))
        )


def free_workspace(device: torch.device | str | None = None) -> None:
    """Release the cached dense workspace (one device, or all when ``None``)."""
    with _WS_LOCK:
        keys = list(_WORKSPACE) if device is None else [str(torch.device(device))]
        for k in keys:
            _FRESH.discard(k)
            if _WORKSPACE.pop(k, None) is None:
                continue
            if k.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.empty_cache()


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes of memory currently available on ``device`` (best effort)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free) + workspace_bytes(device)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 + workspace_bytes(device)
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30
