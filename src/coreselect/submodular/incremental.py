"""Exact greedy that keeps every gain exact by incremental updates (segmented dense oracle).

After a pick, only the points whose cost dropped — ``i`` from ``o_i`` to ``w_i`` — change
any gain: candidate ``j`` loses ``min(max(0, o_i - c_ij), o_i - w_i)``, which is zero unless
``c_ij < o_i``. With the pool in :func:`~coreselect.submodular.cells.cell_order` and the
cost matrix cut into column segments with known row minima, the update of ``i`` reads only
the segments of row ``i`` whose minimum is below ``o_i`` (the matrix is bitwise symmetric,
built so by :func:`~coreselect.submodular.kernels.build_dense`: row ``i`` holds ``c_ij`` for
every candidate ``j`` exactly as row ``j`` does; ``lazy`` runs the batched lazy greedy on an
oracle without :attr:`~coreselect.submodular.memory.CostOracle.symmetric`). On 30,000
Fashion-MNIST points that is about a third of the bytes the batched lazy greedy reads (its
stale bounds are loose in the first hundred picks, so it evaluates ~80 full rows per pick).

A pick lowers the costs through :meth:`~coreselect.submodular.memory.SegmentCosts.cover`,
which reads only the segments of its row whose minimum is below the segment's largest cost.

Gains are kept in float64; each carries rounding of at most ``rel_tol`` times its value at
its last exact evaluation, and every candidate whose band reaches the best one's is
re-evaluated from its row with :func:`~coreselect.submodular.optimizers.naive_greedy`'s
arithmetic before a pick is taken, ties going to the lowest id — so the picks and the
reported gains are naive greedy's. A gain evaluated exactly stays exact until a decrease
touches it (a pick changes a gain only through a nonzero decrease), so candidates in the band
are re-read only when touched: copies of a point, which tie exactly, are read once rather
than once per pick.
"""

from __future__ import annotations

import numpy as np
import torch

from coreselect.submodular.kernels import run_blocks
from coreselect.submodular.memory import DenseOracle
from coreselect.submodular.optimizers import _NEG, GreedyResult, OnPick, _one_thread, _State

__all__ = ["incremental_greedy"]


@_one_thread
def incremental_greedy(
    oracle: DenseOracle,
    k: int,
    *,
    rel_tol: float = 1e-6,
    on_pick: OnPick | None = None,
) -> GreedyResult:
    """Exact greedy by incremental gain updates.

    Args:
        oracle: a :class:`~coreselect.submodular.memory.DenseOracle` built with
            ``segment`` (``n`` points); ``oracle.ids`` (optional) breaks exact ties.
        k: number of picks, ``1 <= k <= n``.
        rel_tol: relative rounding band of maintained gains (see the module docstring).
        on_pick: optional callback, called after every pick with the number of picks.

    Returns:
        :class:`~coreselect.submodular.optimizers.GreedyResult` in pool positions of the
        oracle; ``evaluations`` counts cost rows read (segments as fractions of a row).
    """
    if not oracle.skips_segments:
        # row i must hold c_ij bit for bit as row j does; checked for the CPU GEMM only
        raise ValueError(
            "incremental_greedy needs a dense oracle built with segment=, and runs on CPU "
            "only (use lazy_greedy on CUDA)"
        )
    if not oracle.symmetric:
        raise ValueError("incremental_greedy needs a bitwise symmetric matrix (use lazy_greedy)")
    st = _State(oracle, k, on_pick)
    n = oracle.n
    run = _Run(oracle, st, rel_tol)
    while True:
        gain, p = run.best()
        run.gn[p] = _NEG
        run.grefn[p] = 0.0
        if run.fresh[p]:
            run._stale(run.fresh_ids == p)
        ix, old, new = st.accept(p, gain)
        if len(st.picks) >= k:
            st.evaluations = int(round(run.rows_read))
            return st.result()
        if ix.numel() == 0:
            continue
        if ix.numel() > n // 2:
            # most points changed (the first picks): one streaming pass is cheapest
            run.g.copy_(oracle.gains_all(st.dcur))
            run.g[st.picked] = _NEG
            run.reset_ref()
            run.rows_read += n
            continue
        run.decrease(ix, old, new)


class _Run:
    """State of one incremental greedy run.

    Gains live in a float64 buffer padded to whole segments (``gpad``; ``g`` is its first
    ``n`` entries), so that a segment of the padded cost matrix lines up with a segment of
    the gains. On CPU the per-pick bookkeeping
    (argmax, compares, nonzero, small gathers) runs on numpy views of the same memory:
    these small operations cost several times less in numpy than in torch's CPU kernels,
    and a greedy step is mostly such operations. CPU only (see :func:`incremental_greedy`).
    """

    def __init__(self, oracle: DenseOracle, st: _State, rel_tol: float) -> None:
        n, dev = oracle.n, oracle.device
        self.oracle, self.st, self.rel_tol = oracle, st, rel_tol
        self.nseg, self.seg = oracle.nseg, oracle.segment
        width = self.nseg * self.seg
        ids = oracle.ids if oracle.ids is not None else torch.arange(n)
        self.idsn = ids.numpy()
        self.seen = np.zeros(n, dtype=bool)  # candidates evaluated within one best()
        # gains that equal an exact evaluation at the current costs, bit for bit: no
        # decrease has touched them since (a pick changes a gain only through a nonzero
        # decrease), so ties among them need no new evaluation; few at a time, so the
        # decreases check only those (fresh_ids)
        self.fresh = np.zeros(n, dtype=bool)
        self.fresh_ids = np.zeros(0, dtype=np.int64)
        self.gpad = torch.zeros(width, dtype=torch.float64, device=dev)
        self.g = self.gpad[:n]
        self.g.copy_(oracle.g0)
        self.gn = self.g.numpy()  # numpy view for the per-pick bookkeeping
        self.reset_ref()
        self.rows_read = 0.0
        st.segment_costs()  # a pick reads only the segments of its row that can lower a cost
        self.segs = oracle._segs
        self.smin = oracle._smin

    def reset_ref(self) -> None:
        """All gains were just computed by a streaming pass: they are their own rounding
        scale (and are re-evaluated within it before a pick)."""
        self.fresh[self.fresh_ids] = False
        self.fresh_ids = self.fresh_ids[:0]
        self.grefn = np.maximum(self.gn, 0.0)
        self.gref_max = float(self.grefn.max())  # stays an upper bound

    # ---------------------------------------------------------------- exact gains
    def exact(self, idx: np.ndarray) -> np.ndarray:
        """Exact gains ``(m,)`` float64 of candidates ``idx`` at the current costs, with
        naive greedy's arithmetic (full float32 rows), so that ties resolve the same way."""
        self.rows_read += int(idx.size)
        return self.oracle.gains(torch.from_numpy(idx), self.st.dcur).numpy()

    # ---------------------------------------------------------------- selection
    def _near(self, p: int) -> np.ndarray:
        """Candidates (positions, ``p`` among them) whose rounding band reaches the band of
        ``p``, the argmax of the maintained gains."""
        tol, gn = self.rel_tol, self.gn
        lo = gn[p] - tol * self.grefn[p]
        near = np.flatnonzero(gn >= lo - tol * self.gref_max)
        return near[gn[near] + tol * self.grefn[near] >= lo]

    def _lowest_id(self, cand: np.ndarray) -> tuple[float, int]:
        """Largest gain among ``cand`` and, of those attaining it, the lowest id."""
        vals = self.gn[cand]
        top = vals.max()
        tied = cand[vals == top]
        return float(top), int(tied[self.idsn[tied].argmin()])

    def best(self) -> tuple[float, int]:
        """Next pick ``(exact gain, position)``: the argmax of the maintained gains, after
        every candidate within rounding of it was re-evaluated exactly (ties: lowest id)."""
        gn, st = self.gn, self.st
        if not st.picks:
            # the empty-set gains are exact, as in naive greedy
            return self._lowest_id(np.arange(self.oracle.n))
        p = int(gn.argmax())
        if gn[p] == _NEG:
            raise ValueError("no candidate left")
        near = done = self._near(p)
        seen, fresh = self.seen, self.fresh  # seen: all False between calls
        while True:
            stale = near[~fresh[near]]
            if stale.size:
                exact = self.exact(stale)
                gn[stale] = exact
                self.grefn[stale] = np.maximum(exact, 0.0)
                fresh[stale] = True
                self.fresh_ids = np.concatenate([self.fresh_ids, stale])
            if done.size == 1:
                return float(gn[near[0]]), int(near[0])
            seen[near] = True
            cand = self._near(int(gn.argmax()))
            near = cand[~seen[cand]]
            if near.size == 0:
                seen[done] = False
                return self._lowest_id(cand)
            done = np.concatenate([done, near])

    # ---------------------------------------------------------------- updates
    def _stale(self, touched: np.ndarray) -> None:
        """Drop the fresh candidates ``fresh_ids[touched]`` (a decrease changed them)."""
        if touched.any():
            self.fresh[self.fresh_ids[touched]] = False
            self.fresh_ids = self.fresh_ids[~touched]

    def decrease(self, ix: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> None:
        """Lower the gains by the exact effect of points ``ix`` going from cost ``old`` to
        ``new``: from the segments of their rows whose minimum is below the old cost (in
        cache-sized gathered chunks), or from whole rows when most segments are needed."""
        oracle, nseg, seg, n = self.oracle, self.nseg, self.seg, self.oracle.n
        per = max(1, oracle._scratch[0][0].numel() // seg)  # segments per chunk
        ixn, oldn = ix.numpy(), old.numpy()
        need = self.smin[ixn] < oldn[:, None]  # (m, nseg)
        rrn, bbn = np.divmod(np.flatnonzero(need), nseg)  # np.nonzero of 2-D is slower
        total, pairs = int(rrn.size), need.size
        if 0 < total <= per and total * 2 <= pairs:
            # the common case after the first picks: a few segments, all in numpy
            self.rows_read += total * seg / n
            S = self.segs[ixn[rrn] * nseg + bbn]
            np.subtract(oldn[rrn, None], S, out=S)
            np.maximum(S, 0.0, out=S)
            np.minimum(S, (oldn - new.numpy())[rrn, None], out=S)
            if self.fresh_ids.size:
                F = self.fresh_ids
                hit = (S[:, F % seg] > 0) & (bbn[:, None] == (F // seg)[None, :])
                self._stale(hit.any(axis=0))
            self.gpad.view(nseg, seg).index_add_(
                0, torch.from_numpy(bbn), torch.from_numpy(S.astype(np.float64)), alpha=-1.0
            )
            return
        rr, bb = torch.from_numpy(rrn), torch.from_numpy(bbn)
        drop = old - new
        if total * 2 > pairs:
            dec = _row_decrease(oracle, ix, old, drop)
            self.g -= dec
            self._stale(dec.numpy()[self.fresh_ids] > 0)
            self.rows_read += int(ix.numel())
            return
        if total == 0:
            return
        self.rows_read += total * seg / n
        flat = ix[rr] * nseg + bb
        o, d = old[rr].unsqueeze(1), drop[rr].unsqueeze(1)
        dev = oracle.device
        accs = [torch.zeros(n, dtype=torch.float64, device=dev) for _ in range(oracle.workers)]

        def chunk(s: int, w: int) -> None:
            e = min(s + per, total)
            buf = oracle._scratch[w][0].view(-1)[: per * seg].view(per, seg)
            S = torch.index_select(oracle.segments, 0, flat[s:e], out=buf[: e - s])
            torch.sub(o[s:e], S, out=S).clamp_(min=0.0)
            torch.minimum(S, d[s:e], out=S)
            part = torch.zeros((nseg, seg), dtype=torch.float32, device=oracle.device)
            part.index_add_(0, bb[s:e], S)
            accs[w].add_(part.view(-1)[:n])

        run_blocks(chunk, range(0, total, per), oracle.workers)
        for a in accs:
            self.g -= a
            self._stale(a.numpy()[self.fresh_ids] > 0)


def _row_decrease(
    oracle: DenseOracle, pts: torch.Tensor, old: torch.Tensor, drop: torch.Tensor
) -> torch.Tensor:
    """Decrease ``(n,)`` float64 caused by ``pts`` (cost ``old``, lowered by ``drop``),
    from their full cost rows, split over the oracle's CPU workers."""
    n, b = oracle.n, oracle.chunk
    m = int(pts.numel())
    dev = oracle.device
    acc = [torch.zeros(n, dtype=torch.float64, device=dev) for _ in range(oracle.workers)]

    def chunk(s: int, w: int) -> None:
        e = min(s + b, m)
        R = oracle.rows_into(pts[s:e], oracle._scratch[w][0])
        torch.sub(old[s:e].unsqueeze(1), R, out=R)
        R.clamp_(min=0.0)
        torch.minimum(R, drop[s:e].unsqueeze(1), out=R)
        acc[w].add_(R.sum(dim=0))

    run_blocks(chunk, range(0, m, b), oracle.workers)
    total = acc[0]
    for a in acc[1:]:
        total += a
    return total
