"""Cost oracles for the three memory modes: ``dense``, ``blockwise`` and ``knn``.

Each oracle answers the two questions a greedy optimizer asks about the facility-location
objective in cost form (see :mod:`coreselect.submodular.kernels`):

* ``gains(idx, dcur)`` — exact marginal gains ``sum_i max(0, dcur_i - c_ij)`` of the
  candidates ``idx`` given the current per-point costs ``dcur``;
* ``cover(p, dcur)`` — add ``p`` to the set: ``dcur_i <- min(dcur_i, c_ip)``.

``dense`` stores the ``n x n`` float32 cost matrix (in the reusable workspace), so a
candidate's column is a contiguous row (the matrix is symmetric). ``blockwise`` recomputes
cost rows from the features on demand (``O(n * block)`` memory). ``knn`` keeps, for every
point ``i``, only its ``K`` nearest candidates (a sparse kernel built with blocked torch
matrix products and a running per-row threshold, never forming ``n^2``); a candidate's
gain then sums over the points that list it.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch

from coreselect.submodular.cells import SEGMENT
from coreselect.submodular.kernels import (
    TILE_MIN_ROWS,
    OnRows,
    PreparedFeatures,
    build_dense,
    claim_fresh,
    cost_tile,
    cpu_workers,
    run_blocks,
    workspace,
)

__all__ = [
    "CostOracle",
    "DenseOracle",
    "SegmentCosts",
    "BlockwiseOracle",
    "KnnOracle",
    "dense_bytes",
    "knn_bytes",
    "segment_count",
    "as_bytes",
    "format_bytes",
]

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def as_bytes(size: int | float | str) -> int:
    """A memory size in bytes: a number of bytes (>= 0), or text such as ``"8G"``,
    ``"512MiB"``, ``"1.5k"`` (binary units K, M, G, T; an optional trailing ``B``/``iB``;
    plain digits are bytes). Raises a ValueError naming the value otherwise."""
    if isinstance(size, str):
        t = size.strip().upper().removesuffix("IB").removesuffix("B")
        unit = t[-1] if t and t[-1] in "KMGT" else ""
        try:
            value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
        except ValueError:
            value = -1.0
    elif isinstance(size, (int, float, np.integer, np.floating)) and not isinstance(size, bool):
        value = float(size)
    else:
        value = -1.0
    if not 0 <= value < math.inf:
        raise ValueError(f"memory must be a size such as 8G, 512M or 1000000 (bytes), got {size!r}")
    return int(value)


def format_bytes(n: int | float) -> str:
    """``n`` bytes as text a person reads: ``"512 B"``, ``"3.4 KiB"``, ``"1.2 GiB"``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def segment_count(n: int, segment: int = SEGMENT) -> int:
    """Segments per row (an odd int) of the segmented dense layout of ``n`` points: the
    fewest odd number of ``segment`` columns that holds ``n``. A row stride of an even number
    of 128-float segments is a multiple of 1 KiB (of 4 KiB for a multiple of 8): the rows'
    lines then crowd into few cache sets, and the dense build's transposed copy, which reads
    one line from each of 512 rows at a time, took 1.34 s instead of 0.87 s (236 segments
    against 235, 1 thread, by hand)."""
    return -(-n // segment) | 1


def dense_bytes(n: int, segment: int = SEGMENT) -> int:
    """Bytes the dense mode needs for a pool of ``n`` points (matrix padded to whole
    segments, segment minima, row scratch)."""
    nseg = segment_count(n, segment)
    return 4 * n * nseg * segment + 4 * n * nseg + 64 * 4 * n + 64 * n


#: peak bytes per list entry while the knn mode builds its lists (the lists by point, 12 B,
#: and by candidate, 12 B, with scipy's int32 indices between them: 29 B measured at
#: n = 300,000, K = 400); 12 B stay for the greedy
KNN_BYTES_PER_ENTRY = 32


def knn_bytes(n: int, k_neighbors: int) -> int:
    """Peak bytes the knn mode needs for a pool of ``n`` points with ``k_neighbors`` each
    (lists, the exact build's tile of at most 256 rows and 64 MiB, per-point state)."""
    tile = min(256 * 4 * n, 64 << 20)
    return KNN_BYTES_PER_ENTRY * n * min(k_neighbors, n) + tile + 64 * n


class CostOracle(abc.ABC):
    """Common state of all oracles.

    Attributes:
        n: pool size.
        c0: cost of an uncovered point (``s_ij = c0 - c_ij``).
        g0: ``(n,)`` float64 gains of every candidate for the empty set.
        device: torch device of all tensors.
        mode: ``"dense"``, ``"blockwise"`` or ``"knn"``.
        cost_scale: factor from the oracle's costs, ``c0`` and gains to the caller's units
            (:attr:`~coreselect.submodular.kernels.PreparedFeatures.cost_scale`).
    """

    n: int
    c0: float
    cost_scale: float = 1.0
    g0: torch.Tensor
    device: torch.device
    mode: str
    #: True when ``entries(rows, cols)`` reads stored costs (the dense matrix): the batched
    #: acceptance of :func:`~coreselect.submodular.optimizers.lazy_greedy` updates its
    #: block's gains from them. A recomputed tile of another shape may round differently
    #: from the rows the gains are computed from, so ``blockwise`` has none.
    has_rows: bool = False
    #: True for a segmented dense matrix on CPU: :meth:`DenseOracle.gains_skipping` and
    #: :class:`SegmentCosts` are available.
    skips_segments: bool = False
    #: True when row ``i`` holds ``c_ij`` bit for bit as row ``j`` holds ``c_ji`` (a dense
    #: matrix: :func:`~coreselect.submodular.kernels.build_dense` copies its lower triangle
    #: from the upper); with ``skips_segments``, ``lazy`` runs the incremental greedy.
    symmetric: bool = False

    @abc.abstractmethod
    def gains(self, idx: torch.Tensor, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains of candidates ``idx`` (``(m,)`` long) -> ``(m,)`` float64."""

    def gains_all(self, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains of every candidate -> ``(n,)`` float64."""
        return self.gains(torch.arange(self.n, device=self.device), dcur)

    @abc.abstractmethod
    def column(self, p: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Points covered by ``p`` and their costs: ``(idx or None for all, costs)``."""

    def cover(
        self, p: int, dcur: torch.Tensor, assign: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add ``p``: lower ``dcur`` in place where ``p`` is strictly closer.

        Args:
            p: the picked candidate.
            dcur: ``(n,)`` float32 current costs, updated in place.
            assign: optional ``(n,)`` long tensor of current nearest picks, updated in place
                (strictly closer only, so ties stay with the earlier pick).

        Returns:
            ``(ix, old, new)``: the changed points, their previous and new costs.
        """
        where, costs = self.column(p)
        if where is None:
            if costs.device.type == "cpu":  # numpy's compare + nonzero: several times cheaper
                ix = torch.from_numpy(np.flatnonzero(costs.numpy() < dcur.numpy()))
            else:
                ix = (costs < dcur).nonzero().squeeze(1)
            old = dcur[ix]
            new = costs[ix]
        else:
            cur = dcur[where]
            mask = costs < cur
            ix = where[mask]
            old = cur[mask]
            new = costs[mask]
        dcur[ix] = new
        if assign is not None:
            assign[ix] = p
        return ix, old, new


class _RowOracle(CostOracle):
    """Shared gain code for oracles that can produce dense cost rows."""

    def __init__(self, n: int, device: torch.device, batch: int = 64, min_rows: int = 1) -> None:
        self.n = n
        self.device = device
        self.batch = batch
        # rows per arithmetic chunk: ~1 MiB on CPU so the temporaries stay in cache
        if device.type == "cpu":
            self.chunk = max(min_rows, min(batch, (1 << 20) // max(4 * n, 1)))
        else:
            self.chunk = max(min_rows, batch)
        # worker threads for multi-chunk evaluations (each with its own scratch)
        self.workers = cpu_workers(device)
        self._scratch = [
            (
                torch.empty((self.chunk, n), dtype=torch.float32, device=device),
                torch.empty(self.chunk, dtype=torch.float32, device=device),
            )
            for _ in range(self.workers)
        ]
        self._rows, self._out = self._scratch[0]

    @abc.abstractmethod
    def rows_into(self, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write cost rows ``idx`` into ``out[:len(idx)]`` and return that view."""

    def _gains_of_rows(
        self, R: torch.Tensor, dcur: torch.Tensor, out: torch.Tensor, w: int = 0
    ) -> None:
        """Gains of a block of rows ``R`` into ``out`` (``R`` may be worker ``w``'s scratch,
        which is then overwritten)."""
        m = R.shape[0]
        rows, acc = self._scratch[w]
        tmp = rows[:m] if R.data_ptr() != rows.data_ptr() else R
        torch.sub(dcur, R, out=tmp)
        tmp.clamp_(min=0.0)
        out.copy_(torch.sum(tmp, dim=1, out=acc[:m]))

    def gains(self, idx: torch.Tensor, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains ``(m,)`` float64 of candidates ``idx`` ``(m,)``; a single candidate
        is read through :meth:`row` (a view for the dense matrix: no gather, no worker
        dispatch), with the same arithmetic."""
        m = int(idx.numel())
        out = torch.empty(m, dtype=torch.float64, device=self.device)
        if m == 1:
            self._gains_of_rows(self.row(int(idx.item())).unsqueeze(0), dcur, out)
            return out
        b = self.chunk

        def chunk(s: int, w: int) -> None:
            e = min(s + b, m)
            R = self.rows_into(idx[s:e], self._scratch[w][0])
            self._gains_of_rows(R, dcur, out[s:e], w)

        run_blocks(chunk, range(0, m, b), self.workers)
        return out

    def row(self, p: int) -> torch.Tensor:
        """Cost row ``p`` as an ``(n,)`` tensor (may be a view or a scratch buffer)."""
        return self.column(p)[1]


class DenseOracle(_RowOracle):
    """Dense ``n x n`` float32 cost matrix held in the reusable workspace.

    With ``segment``, every row is padded to ``nseg * segment`` columns and cut into
    segments of ``segment`` columns whose row minima are kept (``segment_min``, ``(n,
    nseg)``): :func:`~coreselect.submodular.incremental.incremental_greedy` then reads only
    the segments that can change a gain. Useful when the pool is in
    :func:`~coreselect.submodular.cells.cell_order`.

    Args:
        F: prepared features (``n`` points).
        batch: rows evaluated per gathered block.
        segment: optional segment width (columns).
        reuse_workspace: build into the per-device reusable workspace (``select``, which
            holds :func:`~coreselect.submodular.kernels.workspace_lock` meanwhile) rather
            than memory of its own: no first touch on a repeated call, but the next oracle
            built so overwrites this one's matrix.
    """

    mode = "dense"
    has_rows = True
    symmetric = True  # build_dense copies the lower triangle from the upper

    def __init__(
        self,
        F: PreparedFeatures,
        batch: int = 64,
        segment: int | None = None,
        on_rows: OnRows | None = None,
        reuse_workspace: bool = False,
    ) -> None:
        n = F.n
        super().__init__(n, F.X.device, batch)
        self.cost_scale = F.cost_scale
        #: pool positions -> caller's ids, used to break exact ties (None: identity)
        self.ids: torch.Tensor | None = None
        if segment:
            self.segment = int(segment)
            self.nseg = segment_count(n, self.segment)
            width = self.nseg * self.segment
            buf, touch = self._buffer(n * width, reuse_workspace)
            full = buf.view(n, width)
            self.segments = full.view(n * self.nseg, self.segment)
            self.segment_min = torch.empty((n, self.nseg), dtype=torch.float32, device=self.device)
            self.C = full[:, :n]
            rowsum, c0 = build_dense(
                F, full, segment_min=self.segment_min, touch=touch, on_rows=on_rows
            )
            self.skips_segments = self.device.type == "cpu"
            if self.skips_segments:  # numpy views for the per-pick bookkeeping
                self._segs = self.segments.numpy()  # (n * nseg, segment)
                self._smin = self.segment_min.numpy()
        else:
            self.segment_min = None
            buf, touch = self._buffer(n * n, reuse_workspace)
            self.C = buf.view(n, n)
            rowsum, c0 = build_dense(F, self.C, touch=touch, on_rows=on_rows)
        self.c0 = c0
        # first-step gains sum_i (c0 - c_ij), in float64 from the float32 row sums
        self.g0 = n * c0 - rowsum

    def _buffer(self, numel: int, reuse_workspace: bool) -> tuple[torch.Tensor, bool]:
        """The matrix's memory and whether the build should map its pages first: the
        per-device workspace (reused across calls; the caller holds
        :func:`~coreselect.submodular.kernels.workspace_lock` until it drops this oracle),
        or a buffer of this oracle's own (fresh memory, mapped block by block on CPU)."""
        if reuse_workspace:
            return workspace(numel, self.device), claim_fresh(self.device)
        buf = torch.empty(numel, dtype=torch.float32, device=self.device)
        return buf, self.device.type == "cpu"

    def rows_into(self, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Gather cost rows ``idx`` ``(m,)`` into ``out[:m]`` (``(m, n)``) and return it."""
        m = int(idx.numel())
        return torch.index_select(self.C, 0, idx, out=out[:m])

    def segment_costs(self, dcur: torch.Tensor) -> SegmentCosts:
        """Current costs laid out by segment, for :meth:`gains_skipping` and
        :meth:`SegmentCosts.cover` (segmented CPU layout only).

        Args:
            dcur: ``(n,)`` float32 current costs (copied).

        Returns:
            a :class:`SegmentCosts` whose ``dcur`` is the costs' new home: keep using it
            (and its ``cover``) so that the segment maxima stay current.
        """
        return SegmentCosts(self, dcur)

    def gains_skipping(self, idx: torch.Tensor, costs: SegmentCosts) -> torch.Tensor:
        """Gains ``(m,)`` float64 of candidates ``idx`` ``(m,)``, reading only the segments
        of their rows that can add to them: segment ``J`` of row ``j`` adds nothing when
        ``segment_min[j, J] >= max`` of the current costs over ``J`` (``costs`` from
        :meth:`segment_costs`). Equal to :meth:`gains` up to float32 summation order
        (segment by segment), so for optimizers that need no exact tie-breaking."""
        pad, dmax = costs.pad, costs.dmax
        cand = idx.numpy()
        rows, segs = np.divmod(np.flatnonzero(self._smin[cand] < dmax), self.nseg)
        flat = torch.from_numpy(cand[rows] * self.nseg + segs)
        S = torch.index_select(self.segments, 0, flat)  # (t, segment)
        torch.sub(torch.from_numpy(pad[segs]), S, out=S).clamp_(min=0.0)
        part = S.sum(dim=1).numpy().astype(np.float64)
        out = np.bincount(rows, weights=part, minlength=cand.size)
        return torch.from_numpy(out.astype(np.float64, copy=False))  # int when rows is empty

    def gains_all(self, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains ``(n,)`` float64 of every candidate, streaming the matrix."""
        n, b = self.n, self.chunk
        out = torch.empty(n, dtype=torch.float64, device=self.device)

        def chunk(s: int, w: int) -> None:
            e = min(s + b, n)
            self._gains_of_rows(self.C[s:e], dcur, out[s:e], w)

        run_blocks(chunk, range(0, n, b), self.workers)
        return out

    def column(self, p: int) -> tuple[None, torch.Tensor]:
        """All points, with their costs to ``p``: ``(None, C[p])`` (a view)."""
        return None, self.C[p]

    def entries(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Costs ``C[rows][:, cols]`` as a ``(len(rows), len(cols))`` tensor."""
        return self.C[rows.unsqueeze(1), cols.unsqueeze(0)]


class SegmentCosts:
    """Current costs of a segmented CPU dense pool laid out by segment, with the maximum
    cost of every segment kept current through :meth:`cover`.

    A segment ``J`` of cost row ``p`` can matter to the points of ``J`` (cover them, or add
    to ``p``'s gain) only when ``segment_min[p, J] < dmax[J]``; :meth:`cover` and
    :meth:`DenseOracle.gains_skipping` read only those segments.

    Attributes:
        pad: ``(nseg, segment)`` float32 costs, ``-inf`` past ``n``.
        dmax: ``(nseg,)`` float32 maxima of ``pad``'s rows.
        dcur: ``(n,)`` float32 torch view of ``pad`` (the current costs).
    """

    def __init__(self, oracle: DenseOracle, dcur: torch.Tensor) -> None:
        n, nseg, seg = oracle.n, oracle.nseg, oracle.segment
        self.oracle = oracle
        self.pad = np.full((nseg, seg), -np.inf, dtype=np.float32)
        flat = self.pad.reshape(-1)
        flat[:n] = dcur.numpy()
        self.dmax = self.pad.max(axis=1)
        self.dcur = torch.from_numpy(flat[:n])

    def cover(
        self, p: int, assign: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add ``p`` (as :meth:`CostOracle.cover`, strictly closer only), reading only the
        segments of row ``p`` whose minimum is below the segment's largest cost.

        Returns:
            ``(ix, old, new)`` as :meth:`CostOracle.cover`: changed points, previous and new
            costs.
        """
        o, seg = self.oracle, self.oracle.segment
        segs = np.flatnonzero(o._smin[p] < self.dmax)
        S = o._segs[p * o.nseg : (p + 1) * o.nseg][segs]  # (t, segment)
        cur = self.pad[segs]
        hit = np.flatnonzero(S < cur)  # flat positions in (t, segment)
        ix = segs[hit // seg] * seg + hit % seg
        old = cur.reshape(-1)[hit]
        new = S.reshape(-1)[hit]
        np.minimum(cur, S, out=cur)
        self.pad[segs] = cur
        self.dmax[segs] = cur.max(axis=1)
        if assign is not None:
            assign.numpy()[ix] = p
        return torch.from_numpy(ix), torch.from_numpy(old), torch.from_numpy(new)


class BlockwiseOracle(_RowOracle):
    """Recomputes cost rows from the features on demand; ``O(n * batch)`` memory.

    Every row is computed inside a tile of the same shape (``chunk`` rows, at least
    :data:`~coreselect.submodular.kernels.TILE_MIN_ROWS`, padded when fewer are asked
    for), so a row's costs do not depend on which rows were computed with it. A BLAS takes
    other code paths for other shapes (on this project's MKL a 1- or 2-row product rounds
    differently from a taller one): rows of varying height made exact copies tie in one
    evaluation and not in the next, and ``lazy`` broke ties differently from ``naive``.

    Args:
        F: prepared features (``n`` points).
        batch: rows per recomputed tile, at most (and ~1 MiB of costs on CPU); never
            fewer than ``TILE_MIN_ROWS`` (or ``n``).
    """

    mode = "blockwise"

    def __init__(self, F: PreparedFeatures, batch: int = 64, on_rows: OnRows | None = None) -> None:
        n = F.n
        super().__init__(n, F.X.device, batch, min_rows=min(TILE_MIN_ROWS, n))
        self.F = F
        self.cost_scale = F.cost_scale
        rowsum = torch.empty(n, dtype=torch.float32, device=self.device)
        rowmax = torch.empty(n, dtype=torch.float32, device=self.device)

        def sums(s: int, w: int) -> None:
            # row sums and maxima as the dense build takes them (float32 cascade sums)
            e = min(s + self.chunk, n)
            R = self.rows_into(torch.arange(s, e, device=self.device), self._scratch[w][0])
            torch.sum(R, dim=1, out=rowsum[s:e])
            torch.amax(R, dim=1, out=rowmax[s:e])
            if on_rows is not None:
                on_rows(e - s)

        run_blocks(sums, range(0, n, self.chunk), self.workers)
        self.c0 = float(rowmax.max().item()) if F.metric == "euclidean" else 1.0
        self.g0 = n * self.c0 - rowsum.to(torch.float64)
        self._col = torch.empty((self.chunk, n), dtype=torch.float32, device=self.device)

    def rows_into(self, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Recompute cost rows ``idx`` ``(m,)``, ``m <= chunk``, into ``out[:m]`` (``out``
        has ``chunk`` rows: the tile is padded to that height)."""
        m = int(idx.numel())
        if m < self.chunk:
            idx = torch.cat([idx, idx[-1:].expand(self.chunk - m)])
        T = cost_tile(self.F.subset(idx), self.F, out=out[: self.chunk])
        T[torch.arange(self.chunk, device=self.device), idx] = 0.0
        return T[:m]

    def column(self, p: int) -> tuple[None, torch.Tensor]:
        """All points, with their recomputed costs to ``p``."""
        idx = torch.tensor([p], device=self.device)
        return None, self.rows_into(idx, self._col)[0]


class KnnOracle(CostOracle):
    """Sparse kernel: every point keeps its ``K`` nearest candidates (itself included).

    Up to 16,384 points the lists are exact: row blocks against all columns with one matrix
    product and ``topk`` each (memory ``O(n * K + block * n)``), and ``c0`` (euclidean) is
    the exact maximum distance from the same tiles. Larger pools use an inverted file
    (k-means cells, each searched against its nearest cells; approximate, see
    :func:`_knn_ivf`).

    Args:
        F: prepared features (``n`` points).
        k_neighbors: ``K``; clipped to ``n``.
        row_block: rows per tile; col_block: columns per tile.
    """

    mode = "knn"

    def __init__(
        self,
        F: PreparedFeatures,
        k_neighbors: int,
        row_block: int = 256,
        col_block: int = 8192,
        on_rows: OnRows | None = None,
    ) -> None:
        n = F.n
        self.n = n
        self.F = F  # kept for the exact nearest-pick assignment after the greedy
        self.device = F.X.device
        self.cost_scale = F.cost_scale
        K = max(1, min(int(k_neighbors), n))
        self.k_neighbors = K
        info: dict = {}
        nbr_cost, nbr_idx, c0 = _knn_build(F, K, row_block, col_block, info, on_rows)
        #: cells the inverted file searched per cell (None: exact lists)
        self.cells_searched = info.get("cells_searched")
        self.c0 = c0
        # for candidate j, the points i that list j
        self.pt, self.val, self.ptr = by_candidate(nbr_idx, nbr_cost)
        self._ptr_host = self.ptr.tolist() if self.device.type == "cpu" else None
        g0 = torch.zeros(n, dtype=torch.float64, device=self.device)
        # summed in increasing i for every j, as the lists' order; in row chunks, so that
        # the float64 temporaries stay small next to the lists (KNN_BYTES_PER_ENTRY)
        rows = max(1, (1 << 22) // K)
        for s in range(0, n, rows):
            part = (c0 - nbr_cost[s : s + rows].reshape(-1)).to(torch.float64)
            g0.index_add_(0, nbr_idx[s : s + rows].reshape(-1), part)
        self.g0 = g0

    def _positions(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pos, lengths)``: the positions in ``pt``/``val`` of the lists of ``idx``
        ``(m,)``, concatenated, and the lists' lengths ``(m,)``.

        The ``t``-th entry of the concatenation, in list ``s``, is at ``t + b_s`` with
        ``b_s = end_s - csum_s`` (``csum``: cumulative lengths): ``pos`` is the running sum
        of steps of 1 plus the jumps ``b_s - b_{s-1}`` where list ``s`` starts. An empty
        list starts where the next one does, and its two jumps add up to the right one."""
        start = torch.index_select(self.ptr, 0, idx)
        end = torch.index_select(self.ptr[1:], 0, idx)
        lengths = end - start
        csum = torch.cumsum(lengths, 0)
        b = end - csum
        jumps = torch.diff(b, prepend=b.new_ones(1))  # the first one is b_0 - 1
        step = torch.ones(int(csum[-1]) + 1, dtype=torch.long, device=self.device)
        step.index_add_(0, csum - lengths, jumps)
        return torch.cumsum(step[:-1], 0), lengths

    def gains(self, idx: torch.Tensor, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains ``(m,)`` float64 of candidates ``idx`` over their neighbour lists
        (each summed in float64 in list order)."""
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.float64, device=self.device)
        pos, lengths = self._positions(idx)
        contrib = torch.index_select(dcur, 0, torch.index_select(self.pt, 0, pos))
        contrib.sub_(torch.index_select(self.val, 0, pos)).clamp_(min=0.0)
        return torch.segment_reduce(contrib.to(torch.float64), "sum", lengths=lengths)

    def gains_all(self, dcur: torch.Tensor) -> torch.Tensor:
        """Exact gains ``(n,)`` float64 of every candidate over its list."""
        contrib = torch.index_select(dcur, 0, self.pt).sub_(self.val).clamp_(min=0.0)
        lengths = self.ptr[1:] - self.ptr[:-1]
        return torch.segment_reduce(contrib.to(torch.float64), "sum", lengths=lengths)

    def column(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Points whose lists hold ``p``, and their costs to ``p``."""
        if self._ptr_host is not None:
            s, e = self._ptr_host[p], self._ptr_host[p + 1]
        else:
            s, e = (int(v) for v in self.ptr[p : p + 2].tolist())
        return self.pt[s:e], self.val[s:e]


def by_candidate(
    nbr_idx: torch.Tensor, nbr_cost: torch.Tensor, *, use_scipy: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Transpose neighbour lists from "by point" to "by candidate".

    Args:
        nbr_idx: ``(n, K)`` long, the candidates point ``i`` lists.
        nbr_cost: ``(n, K)`` float32, their costs.
        use_scipy: transpose with scipy's compressed-sparse conversion, an O(n K) counting
            sort, or with torch's stable ``argsort``. Both give the same arrays. Default:
            scipy for CPU tensors of 2^22 entries or more (at n = 300,000, K = 400 it took
            4.8 s against 23 s; below, importing ``scipy.sparse``, 0.24 s, costs more than it
            saves), ``argsort`` otherwise (on CUDA, a fast radix sort).

    Returns:
        ``(pt, val, ptr)``: for candidate ``j``, ``pt[ptr[j]:ptr[j + 1]]`` long are the
        points listing it, in increasing order, and ``val`` float32 their costs (both
        ``(n K,)``); ``ptr`` ``(n + 1,)`` long.
    """
    n, K = nbr_idx.shape
    dev = nbr_idx.device
    if use_scipy is None:
        use_scipy = dev.type == "cpu" and n * K >= 1 << 22
    if use_scipy:
        import scipy.sparse

        # int32 when it fits, as scipy would store them: converted by torch, in parallel
        small = n * K < 2**31
        itype, ntype = (torch.int32, np.int32) if small else (torch.long, np.int64)
        flat_idx = nbr_idx.reshape(-1).to(device="cpu", dtype=itype).numpy()
        flat_cost = nbr_cost.reshape(-1).cpu().numpy()
        lists = scipy.sparse.csr_matrix(
            (flat_cost, flat_idx, np.arange(0, n * K + 1, K, dtype=ntype)), shape=(n, n)
        ).tocsc()  # keeps the row order within each column: a stable transpose

        def back(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(a).to(device=dev, dtype=dtype)

        return (
            back(lists.indices, torch.long),
            back(lists.data, torch.float32),
            back(lists.indptr, torch.long),
        )
    cols = nbr_idx.reshape(-1)
    order = torch.argsort(cols, stable=True)
    pt = torch.div(order, K, rounding_mode="floor")  # flat position // K: the listing point
    val = nbr_cost.reshape(-1)[order]
    ptr = torch.zeros(n + 1, dtype=torch.long, device=dev)
    ptr[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
    return pt, val, ptr


def _knn_build(
    F: PreparedFeatures,
    K: int,
    row_block: int,
    col_block: int,
    info: dict | None = None,
    on_rows: OnRows | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """K nearest candidates of every point, never forming ``n^2``.

    Up to ``EXACT_KNN_MAX`` points: exact, one ``(row_block, n)`` tile at a time with
    ``topk`` (``col_block`` is unused there). Beyond: an inverted-file search (coarse
    k-means cells, each cell searched against its ``nprobe`` nearest cells), which is
    approximate like any large-scale kNN; it records the cells it searched per cell in
    ``info`` (``cells_searched``, of ``cells``) when given. ``on_rows`` is called with the
    number of points whose lists are done, as they are (progress).

    Returns ``(costs (n, K) float32, indices (n, K) long, c0)``.
    """
    if F.n > EXACT_KNN_MAX:
        return _knn_ivf(F, K, info=info, on_rows=on_rows)
    n = F.n
    dev = F.X.device
    nbr_cost = torch.empty((n, K), dtype=torch.float32, device=dev)
    nbr_idx = torch.empty((n, K), dtype=torch.long, device=dev)
    cmax = torch.tensor(-math.inf, device=dev)
    rb = max(1, min(row_block, (64 << 20) // max(4 * n, 1)))
    tile = torch.empty((rb, n), dtype=torch.float32, device=dev)
    for rs in range(0, n, rb):
        re = min(rs + rb, n)
        T = tile[: re - rs]
        key = _rank_key(F, F.X[rs:re], F, T)
        if F.metric == "euclidean":
            cmax = torch.maximum(cmax, (key.amax(dim=1) + F.sq[rs:re]).max())
        d = torch.arange(rs, re, device=dev)
        key[d - rs, d] = -math.inf  # a point is its own nearest candidate
        vals, idx = torch.topk(key, K, dim=1, largest=False)
        nbr_idx[rs:re] = idx
        nbr_cost[rs:re] = _key_to_cost(F, vals, F.sq[rs:re])
        if on_rows is not None:
            on_rows(re - rs)
    c0 = float(cmax.clamp_min(0).sqrt().item()) if F.metric == "euclidean" else 1.0
    return nbr_cost, nbr_idx, c0


#: largest pool for which the knn mode's neighbour lists are exact (brute force). Above it
#: the inverted file lists 0.95 of them (chosen per build) several times faster: 30,000
#: Fashion-MNIST points, K = 40: 0.50 s against 2.56 s (recall 0.966), K = 400: 0.93 s
#: against 4.26 s (0.957); at 10,000 points 0.11 against 0.31 s. ``select(mode="knn")`` at
#: 30,000 points, k = 3,000: 1.5 s against 3.0 s end to end, k-medoids cost 1.0070 of dense
#: greedy's against 1.0053 with exact lists
EXACT_KNN_MAX = 16384


def _rank_key(F: PreparedFeatures, A: torch.Tensor, B: PreparedFeatures, out: torch.Tensor):
    """Per-row ranking key, monotone in the cost: ``|b|^2 - 2 a.b`` or ``-cos``."""
    if F.metric == "cosine":
        torch.mm(A, B.X.T, out=out)
        return out.neg_()
    return torch.addmm(B.sq.unsqueeze(0), A, B.X.T, beta=1.0, alpha=-2.0, out=out)


def _key_to_cost(F: PreparedFeatures, vals: torch.Tensor, sq_rows: torch.Tensor) -> torch.Tensor:
    """Costs from ranking keys ``(m, K)`` (same arithmetic as the dense tiles); the
    ``-inf`` self entries become 0."""
    self_mask = torch.isneginf(vals)
    if F.metric == "cosine":
        cost = (1.0 + vals).clamp_(0.0, 1.0)
    else:
        cost = (vals + sq_rows.unsqueeze(1)).clamp_(min=0.0).sqrt_()
        if F.metric == "rbf":
            cost = cost.mul_(F.rbf_factor).expm1_().neg_()
    cost[self_mask] = 0.0
    return cost


#: share of the exact K nearest neighbours the inverted file aims to list (estimated on a
#: sample; see :func:`_ivf_nprobe`)
IVF_RECALL = 0.95


def _knn_ivf(
    F: PreparedFeatures,
    K: int,
    nprobe: int | None = None,
    iters: int = 6,
    seed: int = 0,
    recall: float = IVF_RECALL,
    sample: int = 256,
    info: dict | None = None,
    on_rows: OnRows | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Approximate kNN by an inverted file: k-means cells, search the nearest cells.

    Each point's list comes from its own cell and the ``nprobe - 1`` nearest non-empty
    cells (more while they hold fewer than ``K`` points). By default ``nprobe`` is the
    smallest that lists a share ``recall`` of the exact neighbours of ``sample`` seeded
    points (:func:`_ivf_nprobe`): a fixed 8 listed 0.9955 of them on the bench's blobs
    (n = 300,000, K = 400) but 0.84 on 60,000 Fashion-MNIST points.

    ``c0`` (euclidean) is the largest distance found by a few farthest-point sweeps, raised
    to the largest kept neighbour cost if needed (a lower bound of the exact maximum,
    which would cost a full ``n^2`` pass at this size).
    """
    n = F.n
    dev = F.X.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    nlist = max(1, int(math.sqrt(n)))
    X, sq = F.X, F.sq
    fit = torch.randperm(n, generator=gen, device=dev)[: min(n, 64 * nlist)]  # k-means rows
    cent = X[fit[:nlist]].clone()
    for _ in range(iters):
        lab = _nearest_centroid(X[fit], cent)
        sums = torch.zeros_like(cent).index_add_(0, lab, X[fit])
        cnt = torch.bincount(lab, minlength=nlist).unsqueeze(1)
        cent = torch.where(cnt > 0, sums / cnt.clamp_min(1), cent)
    lab = _nearest_centroid(X, cent)
    order = torch.argsort(lab, stable=True)
    counts = torch.bincount(lab, minlength=nlist)
    ptr = torch.zeros(nlist + 1, dtype=torch.long, device=dev)
    ptr[1:] = torch.cumsum(counts, 0)
    ptr_h = ptr.tolist()
    csq = (cent * cent).sum(1)
    cc = torch.addmm(csq.unsqueeze(0), cent, cent.T, alpha=-2.0) + csq.unsqueeze(1)
    probe = torch.argsort(cc, dim=1)
    probe_order = probe.tolist()
    counts_h = counts.tolist()
    if nprobe is None:
        nprobe = _ivf_nprobe(F, K, lab, probe, counts, gen, recall, sample)
    if info is not None:  # what the build chose, for the caller's record
        info.update(cells=nlist, cells_searched=int(nprobe))
    nbr_cost = torch.empty((n, K), dtype=torch.float32, device=dev)
    nbr_idx = torch.empty((n, K), dtype=torch.long, device=dev)
    for c in range(nlist):
        if counts_h[c] == 0:
            continue
        q = order[ptr_h[c] : ptr_h[c + 1]]
        cells, have = [c], counts_h[c]
        for c2 in probe_order[c]:
            if counts_h[c2] and c2 != c:
                cells.append(c2)
                have += counts_h[c2]
            if len(cells) >= nprobe and have >= K:
                break
        cand = torch.cat([order[ptr_h[c2] : ptr_h[c2 + 1]] for c2 in cells])
        B = PreparedFeatures(X[cand], sq[cand], F.metric, F.dim, F.scale)
        m = q.numel()
        key = _rank_key(F, X[q], B, torch.empty((m, cand.numel()), device=dev))
        key[:, :m].diagonal().fill_(-math.inf)  # cand starts with the cell itself
        # unsorted: a list's order is lost in by_candidate anyway (~25 % faster at K = 400)
        vals, pos = torch.topk(key, K, dim=1, largest=False, sorted=False)
        nbr_idx[q] = cand[pos]
        nbr_cost[q] = _key_to_cost(F, vals, sq[q])
        if on_rows is not None:
            on_rows(m)
    if F.metric != "euclidean":
        return nbr_cost, nbr_idx, 1.0
    far = int(torch.argmax(sq).item())
    best = 0.0
    for _ in range(4):
        dist = torch.linalg.vector_norm(X - X[far], dim=1)
        j = int(torch.argmax(dist).item())
        best = max(best, float(dist[j].item()))
        far = j
    c0 = max(best, float(nbr_cost.max().item()))
    return nbr_cost, nbr_idx, c0


def _ivf_nprobe(
    F: PreparedFeatures,
    K: int,
    lab: torch.Tensor,
    probe: torch.Tensor,
    counts: torch.Tensor,
    gen: torch.Generator,
    recall: float,
    sample: int,
) -> int:
    """Cells to search per cell so that the lists hold a share ``recall`` of the exact
    ``K`` nearest neighbours of ``sample`` seeded points (found by brute force, in
    64 MiB tiles).

    Args:
        F: prepared features (``n`` points); ``lab`` ``(n,)`` their cells; ``probe``
            ``(nlist, nlist)`` every cell's cells by centroid distance; ``counts``
            ``(nlist,)`` cell sizes; ``gen`` the build's generator.

    Returns:
        The smallest ``nprobe`` (own cell first, then non-empty cells in probe order)
        whose cells hold the share ``recall`` of the sample's exact neighbours; the lists
        can only hold more (a point's search goes on while it has fewer than ``K``).
    """
    n, dev = F.n, F.X.device
    q = torch.randperm(n, generator=gen, device=dev)[: min(n, sample)]
    m = q.numel()
    nbr = torch.empty((m, K), dtype=torch.long, device=dev)
    rows = max(1, (64 << 20) // (4 * n))
    for s in range(0, m, rows):
        qq = q[s : s + rows]
        key = _rank_key(F, F.X[qq], F, torch.empty((qq.numel(), n), device=dev))
        key[torch.arange(qq.numel(), device=dev), qq] = -math.inf  # itself, as in the lists
        nbr[s : s + rows] = torch.topk(key, K, dim=1, largest=False, sorted=False).indices
    lab_h, probe_h, counts_h = lab.cpu().numpy(), probe.cpu().numpy(), counts.cpu().numpy()
    nlist = probe_h.shape[0]
    qcell = lab_h[q.cpu().numpy()]
    nbr_cell = lab_h[nbr.cpu().numpy()]  # (m, K)
    ranks = np.empty((m, K), dtype=np.int64)
    for c in np.unique(qcell):
        seq = probe_h[c]
        seq = seq[(counts_h[seq] > 0) & (seq != c)]
        rank = np.full(nlist, nlist, dtype=np.int64)  # empty cells hold no neighbour
        rank[c] = 0
        rank[seq] = np.arange(1, seq.size + 1)
        at = qcell == c
        ranks[at] = rank[nbr_cell[at]]
    need = max(1, math.ceil(recall * m * K))  # the need-th smallest rank must be searched
    return int(min(nlist, np.partition(ranks.ravel(), need - 1)[need - 1] + 1))


def _nearest_centroid(X: torch.Tensor, cent: torch.Tensor, block: int = 65536) -> torch.Tensor:
    csq = (cent * cent).sum(1)
    out = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    for s in range(0, X.shape[0], block):
        T = torch.addmm(csq.unsqueeze(0), X[s : s + block], cent.T, alpha=-2.0)
        out[s : s + block] = torch.argmin(T, dim=1)
    return out
