"""Greedy maximizers of facility location over a cost oracle.

All three work on the same state — ``dcur`` (each point's current cost, float32), a float64
vector of gain upper bounds, and the picks so far — and break ties by the lowest index:

* :func:`naive_greedy` — every step computes every remaining gain (vectorized).
* :func:`lazy_greedy` — exact lazy greedy (Minoux): stale gains are upper bounds
  (submodularity). Each round evaluates the top-``B`` bounds at once as one gathered block
  of cost rows; the best exact gain is accepted when it beats every bound left outside the
  block. After a pick on a stored (dense) matrix, the rest of the block is updated
  incrementally from the points whose cost changed, and further picks from the block are
  accepted while provably safe. ``B`` adapts (grows when a round fails to certify).
  Returns exactly the naive greedy's picks.
* :func:`stochastic_greedy` — lazier-than-lazy greedy (Mirzasoleiman et al., 2015): each
  step draws ``ceil((n / k) * log(1 / epsilon))`` candidates (seeded) and takes the best of
  them; inside the sample, candidates are evaluated in order of their stale bounds and the
  evaluation stops as soon as the best exact gain beats every remaining bound, which returns
  the sample's true argmax with far fewer evaluations. On a segmented CPU dense oracle a
  candidate is evaluated from the segments of its row that can add to its gain only
  (``DenseOracle.gains_skipping``), and a pick reads only the segments of its row that can
  lower a cost (``SegmentCosts.cover``, which keeps the segment maxima current).

Each returns :class:`GreedyResult` with picks, gains, the final ``dcur`` and the nearest
pick of every point (``assign``; exact for dense/blockwise oracles, ties to the earliest
pick).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from coreselect.submodular.kernels import single_thread
from coreselect.submodular.memory import CostOracle, SegmentCosts

__all__ = ["GreedyResult", "naive_greedy", "lazy_greedy", "stochastic_greedy", "OPTIMIZERS"]

_NEG = -math.inf


@dataclass
class GreedyResult:
    """Outcome of a greedy run on one pool.

    ``gains`` and ``dcur`` are in the oracle's units: multiply by ``oracle.cost_scale``
    for the caller's (:func:`~coreselect.select` and
    :class:`~coreselect.submodular.FacilityLocation` return them converted).

    Attributes:
        picks: ``(k,)`` int64 tensor, pool positions in pick order.
        gains: ``(k,)`` float64 tensor of marginal gains at pick time.
        dcur: ``(n,)`` float32 tensor: every point's cost to its nearest pick (as seen by
            the oracle; for ``knn`` only listed neighbours count).
        assign: ``(n,)`` int64 tensor: nearest pick of every point as seen by the oracle.
        evaluations: number of exact gain evaluations performed.
    """

    picks: torch.Tensor
    gains: torch.Tensor
    dcur: torch.Tensor
    assign: torch.Tensor
    evaluations: int


#: called after every pick with the number of picks so far (progress reporting)
OnPick = Callable[[int], None]


class _State:
    """One greedy run's picks, gains and costs, for a budget of ``k`` picks (checked)."""

    def __init__(self, oracle: CostOracle, k: int, on_pick: OnPick | None = None) -> None:
        n = oracle.n
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise ValueError(f"k must be an int in [1, {n}] (the pool size), got {k!r}")
        dev = oracle.device
        self.oracle = oracle
        self.dcur = torch.full((n,), float(oracle.c0), dtype=torch.float32, device=dev)
        self.assign = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.picked = torch.zeros(n, dtype=torch.bool, device=dev)
        self.picks: list[int] = []
        self.gains: list[float] = []
        self.evaluations = 0
        self.batched = 0  # picks accepted from an already evaluated block
        self.on_pick = on_pick
        #: ``(p, assign) -> (ix, old, new)`` lowering ``dcur``: the oracle's by default
        self.cover = lambda p, assign: oracle.cover(p, self.dcur, assign)

    def accept(self, p: int, gain: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.picks:
            self.assign.fill_(p)
        self.picks.append(p)
        self.gains.append(gain)
        self.picked[p] = True
        changed = self.cover(p, self.assign)
        if self.on_pick is not None:
            self.on_pick(len(self.picks))
        return changed

    def segment_costs(self) -> SegmentCosts:
        """Move ``dcur`` into :class:`~coreselect.submodular.memory.SegmentCosts` (an
        oracle with ``skips_segments``) and cover through it, so a pick reads only the
        segments of its row that can lower a cost; returns the ``SegmentCosts``."""
        costs = self.oracle.segment_costs(self.dcur)
        self.dcur = costs.dcur
        self.cover = costs.cover
        return costs

    def result(self) -> GreedyResult:
        dev = self.oracle.device
        return GreedyResult(
            picks=torch.tensor(self.picks, dtype=torch.long, device=dev),
            gains=torch.tensor(self.gains, dtype=torch.float64, device=dev),
            dcur=self.dcur,
            assign=self.assign,
            evaluations=self.evaluations,
        )


def _one_thread(fn):
    """Run a greedy loop with one intra-op thread on CPU.

    The loop's operations are small, memory-bound row passes; on a shared 2-core machine
    an OpenMP fork/join per operation costs more than it gains (measured 1.3-2x slower,
    and erratic when the other core is busy). Multi-chunk evaluations are instead split
    over Python worker threads by the oracle (see ``kernels.run_blocks``).
    """

    @functools.wraps(fn)
    def wrapper(oracle, *args, **kwargs):
        ctx = contextlib.nullcontext()
        if oracle.device.type == "cpu" and torch.get_num_threads() > 1:
            ctx = single_thread()
        with ctx:
            return fn(oracle, *args, **kwargs)

    return wrapper


def _best(
    g: torch.Tensor, cand: torch.Tensor, n: int, ids: torch.Tensor | None = None
) -> tuple[float, int]:
    """Max of ``g`` and the candidate attaining it with the lowest index (or lowest
    ``ids[candidate]`` when the pool positions map to other ids)."""
    gmax = g.max()
    if ids is not None:
        key = torch.where(g == gmax, ids[cand], torch.iinfo(torch.long).max)
        return float(gmax.item()), int(cand[key.argmin()].item())
    c = torch.where(g == gmax, cand, n).min()
    return float(gmax.item()), int(c.item())


@_one_thread
def naive_greedy(oracle: CostOracle, k: int, *, on_pick: OnPick | None = None) -> GreedyResult:
    """Naive greedy: recompute all gains every step.

    Args:
        oracle: cost oracle of one pool (``n`` points).
        k: number of picks, ``1 <= k <= n``.
        on_pick: optional callback, called after every pick with the number of picks.

    Returns:
        :class:`GreedyResult`.
    """
    st = _State(oracle, k, on_pick)
    n = oracle.n
    ar = torch.arange(n, device=oracle.device)
    g = oracle.g0.clone()
    ids = getattr(oracle, "ids", None)
    for step in range(k):
        if step > 0:
            g = oracle.gains_all(st.dcur)
            st.evaluations += n - step
        g[st.picked] = _NEG
        gain, p = _best(g, ar, n, ids)
        st.accept(p, gain)
    return st.result()


#: the batched lazy greedy's first number of stale bounds evaluated per round, and its cap
LAZY_BATCH, LAZY_MAX_BATCH = 16, 4096


@_one_thread
def lazy_greedy(
    oracle: CostOracle,
    k: int,
    *,
    batch: int = LAZY_BATCH,
    max_batch: int = LAZY_MAX_BATCH,
    on_pick: OnPick | None = None,
) -> GreedyResult:
    """Exact lazy greedy with batched re-evaluation of stale bounds.

    A CPU dense oracle built with ``segment`` runs
    :func:`~coreselect.submodular.incremental.incremental_greedy` instead, a CUDA dense one
    :func:`~coreselect.submodular.resident.resident_lazy_greedy` (same picks).

    Args:
        oracle: cost oracle of one pool (``n`` points).
        k: number of picks, ``1 <= k <= n``.
        batch: initial number of stale bounds evaluated per round.
        max_batch: cap on the adaptive batch size.
        on_pick: optional callback, called after every pick with the number of picks.

    Returns:
        :class:`GreedyResult` identical (picks and order) to :func:`naive_greedy` up to
        float rounding of exactly tied gains.
    """
    if oracle.skips_segments and oracle.symmetric:
        from coreselect.submodular.incremental import incremental_greedy

        return incremental_greedy.__wrapped__(oracle, k, on_pick=on_pick)
    if oracle.device.type == "cuda":
        from coreselect.submodular.resident import fits_resident, resident_lazy_greedy

        if fits_resident(oracle, k):
            return resident_lazy_greedy(oracle, k, on_pick=on_pick)
    return _batched_lazy_greedy(oracle, k, batch=batch, max_batch=max_batch, on_pick=on_pick)


def _batched_lazy_greedy(
    oracle: CostOracle, k: int, *, batch: int, max_batch: int, on_pick: OnPick | None
) -> GreedyResult:
    """The loop of :func:`lazy_greedy` on any oracle (its arguments, host-driven rounds)."""
    st = _State(oracle, k, on_pick)
    n = oracle.n
    dev = oracle.device
    ub = oracle.g0.clone()  # exact for the empty set
    B = max(1, int(batch))
    B0 = B
    ar = torch.arange(n, device=dev)
    rows_ok = getattr(oracle, "has_rows", False)
    # the first pick is the argmax of the exact empty-set gains
    gain, p = _best(ub, ar, n)
    ub[p] = _NEG
    st.accept(p, gain)
    top = _TopBounds(ub)
    while len(st.picks) < k:
        remaining = n - len(st.picks)
        if B >= remaining or B > n // 2:
            # evaluate everything that is left in one streaming pass
            g = oracle.gains_all(st.dcur)
            st.evaluations += remaining
            g[st.picked] = _NEG
            ub = g
            top = _TopBounds(ub)
            gain, p = _best(g, ar, n)
            ub[p] = _NEG
            st.accept(p, gain)
            B = max(B0, B // 4)
            continue
        cand, m_out = top.block(B)
        g = oracle.gains(cand, st.dcur)
        st.evaluations += B
        ub[cand] = g
        gain, p = _best(g, cand, n)
        if gain < m_out or gain == _NEG:
            B = min(max_batch, B * 4)
            continue
        if gain == m_out:
            p = _resolve_tie(oracle, st, ub, gain, p, ar)
        ub[p] = _NEG
        ix, old, new = st.accept(p, gain)
        # batched acceptance from the evaluated block
        if rows_ok and len(st.picks) < k and B > 1:
            _accept_more(oracle, st, ub, cand, g, ix, old, new, p, m_out, k)
        B = max(B0, B // 2)
    return st.result()


class _TopBounds:
    """The ``B`` largest bounds of ``ub`` ``(n,)`` and the largest bound outside them,
    without a full ``topk`` over ``n`` every round.

    Equal bounds are taken lowest position first (so the tie rule finds few lower
    positions left outside the block to re-read). Keeps ``floor``, the ``size + 1``-th
    largest bound when the pool was taken, and the *pool*: the positions (in position
    order) of the bounds above it. The lazy greedy only ever lowers a bound in place (an
    exact gain replaces it, a pick sets ``-inf``), so every bound outside the pool stays
    ``<= floor``: while the pool's ``B + 1``-th largest is still ``> floor``, the pool
    answers for all ``n``. Otherwise the pool is taken again, larger when too few bounds
    lie above the floor (a large group of equal bounds; at worst all ``n``). On CPU the
    selections are numpy's ``argpartition`` (no sort; torch's ``topk`` of a few thousand
    out of 300,000 float64 took 2-6 ms). On 300,000 points with kNN lists (cProfile),
    ``topk`` over all bounds every round took ~7 s of a 36 s greedy, the pool 2.5 s. (A
    first version kept the bounds equal to the floor in the pool and answered with a
    ``B + 1``-th largest equal to it: on 20,000 binary points the tie rule then re-read the
    lower positions left outside the block, 8.7 million evaluations instead of 68,387.)
    """

    def __init__(self, ub: torch.Tensor, size: int = 2048, min_n: int = 100_000) -> None:
        self.ub = ub
        self.cpu = ub.device.type == "cpu"
        self.size = size
        #: below this ``n`` a plain ``topk`` over all bounds is cheaper than the pool's
        #: bookkeeping (kNN, 30,000 points: greedy 1.0-2.0 s with ``topk``, 1.7-2.6 s with
        #: the pool; 300,000 points: 35.4-37.6 s with ``topk``, 29.8-30.7 s with the pool)
        self.min_n = min_n
        self.pool: torch.Tensor | None = None
        self.floor = math.inf

    def _largest_value(self, values: torch.Tensor, m: int) -> float:
        """The ``m``-th largest of ``values`` (``1 <= m <= len``)."""
        if self.cpu:  # numpy's selection, on the same memory
            v = values.numpy()
            return float(v[np.argpartition(v, v.size - m)[v.size - m]])
        return float(torch.topk(values, m).values[-1].item())

    def _take(self, m: int) -> None:
        n = self.ub.numel()
        self.size = max(self.size, 4 * m)
        while self.size < n:
            floor = self._largest_value(self.ub, self.size + 1)
            pool = (self.ub > floor).nonzero().squeeze(1)
            if pool.numel() >= m:
                self.pool, self.floor = pool, floor
                return
            self.size *= 4
        # too many equal bounds for a pool: all positions, nothing outside
        self.pool, self.floor = torch.arange(n, device=self.ub.device), _NEG

    def block(self, B: int) -> tuple[torch.Tensor, float]:
        """``(cand, m_out)``: the positions ``(B,)`` of the ``B`` largest bounds (equal
        ones lowest position first; below ``min_n``, in ``topk``'s order) and the largest
        bound outside them."""
        if self.ub.numel() < self.min_n:
            vals, cand = torch.topk(self.ub, B + 1)
            return cand[:B], float(vals[B].item())
        if self.pool is not None and B + 1 <= self.pool.numel():
            values = self.ub[self.pool]
            m_out = self._largest_value(values, B + 1)
            if m_out > self.floor:
                return self.pool[self._top(values, m_out, B)], m_out
        self._take(B + 1)
        values = self.ub[self.pool]
        m_out = self._largest_value(values, B + 1)
        return self.pool[self._top(values, m_out, B)], m_out

    @staticmethod
    def _top(values: torch.Tensor, m_out: float, B: int) -> torch.Tensor:
        """Positions in ``values`` of its ``B`` largest, given its ``B + 1``-th largest
        ``m_out``: all above it, then the lowest positions equal to it."""
        above = (values > m_out).nonzero().squeeze(1)
        tied = (values == m_out).nonzero().squeeze(1)[: B - above.numel()]
        return torch.cat([above, tied])


def _resolve_tie(
    oracle: CostOracle, st: _State, ub: torch.Tensor, gain: float, p: int, ar: torch.Tensor
) -> int:
    """Best gain equals the best outside bound: lower indices with that bound may tie."""
    lower = ((ub >= gain) & (ar < p)).nonzero().squeeze(1)
    if lower.numel() == 0:
        return p
    g2 = oracle.gains(lower, st.dcur)
    st.evaluations += int(lower.numel())
    ub[lower] = g2
    ties = lower[g2 >= gain]
    return int(ties.min().item()) if ties.numel() else p


def _accept_more(
    oracle: CostOracle,
    st: _State,
    ub: torch.Tensor,
    cand: torch.Tensor,
    g: torch.Tensor,
    ix: torch.Tensor,
    old: torch.Tensor,
    new: torch.Tensor,
    p: int,
    m_out: float,
    k: int,
) -> None:
    """Keep accepting from the evaluated block while the next pick is provably right.

    The block's gains are updated incrementally from the changed points only (the block's
    costs to those points, a small gather); a candidate is accepted when its recomputed exact gain
    beats every other block member and every outside bound by a margin larger than float
    rounding (otherwise the caller starts a fresh round, so results equal naive greedy's).
    """
    if cand.numel() > 256:
        return
    alive = cand != p
    gi = g.clone()
    gi[~alive] = _NEG
    while len(st.picks) < k:
        if ix.numel() > 64:
            return  # a large change: a fresh round is cheaper than the gather
        if ix.numel():
            sub = oracle.entries(cand, ix)  # (B, |ix|)
            delta = torch.minimum((old - sub).clamp_(min=0.0), old - new).sum(dim=1)
            gi -= delta.to(torch.float64)
        top2 = torch.topk(gi, min(2, gi.numel()))
        best = float(top2.values[0].item())
        if best == _NEG:
            return
        second = float(top2.values[1].item()) if gi.numel() > 1 else _NEG
        # the estimates differ from exact gains by the rounding of two float32 sums of n
        # terms (up to ~log2(n) * 2**-24 relative: ~1e-6 at n = 100,000); 1e-5 leaves a
        # margin (on 20,000 Fashion-MNIST points: 1,102 batched picks instead of 1,143)
        tol = 1e-5 * abs(best) + 1e-12
        if not (best - tol > m_out and best - tol > second):
            return
        pos = int(top2.indices[0].item())
        q = int(cand[pos].item())
        exact = float(oracle.gains(cand[pos : pos + 1], st.dcur)[0].item())
        if not (exact - tol > m_out and exact - tol > second):
            return
        st.evaluations += 1
        ub[q] = _NEG
        gi[pos] = _NEG
        ix, old, new = st.accept(q, exact)
        st.batched += 1


@_one_thread
def stochastic_greedy(
    oracle: CostOracle,
    k: int,
    *,
    epsilon: float = 0.01,
    seed: int = 0,
    chunk: int = 8,
    on_pick: OnPick | None = None,
) -> GreedyResult:
    """Stochastic ("lazier than lazy") greedy.

    Args:
        oracle: cost oracle of one pool (``n`` points).
        k: number of picks, ``1 <= k <= n``.
        epsilon: sample size ``ceil((n / k) * log(1 / epsilon))`` per step, ``0 < eps < 1``.
        seed: seed of the torch generator that draws the samples.
        chunk: candidates evaluated together inside a sample.
        on_pick: optional callback, called after every pick with the number of picks.

    Returns:
        :class:`GreedyResult` (picks in order; gains not necessarily non-increasing).
    """
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    st = _State(oracle, k, on_pick)
    n = oracle.n
    dev = oracle.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    s = max(1, min(n, math.ceil(n / k * math.log(1.0 / epsilon))))
    # the per-step bookkeeping is on a few dozen candidates: numpy on the host (torch's
    # per-operation overhead dominated it)
    ub = oracle.g0.to(torch.float64).cpu().numpy().copy()
    picked = np.zeros(n, dtype=bool)
    # a segmented CPU dense oracle reads only the segments of a row that can add to a gain
    skipping = oracle.skips_segments
    if skipping:
        # costs laid out by segment, their maxima kept current by the segment-reading cover
        costs = st.segment_costs()
    # exact ties go to the lowest id (pool positions, or the caller's ids of an ordered pool)
    ids = getattr(oracle, "ids", None)
    key = np.arange(n) if ids is None else ids.cpu().numpy()

    def lowest(cand: np.ndarray) -> int:
        return int(cand[np.argmin(key[cand])])

    while len(st.picks) < k:
        if s >= n - len(st.picks):
            sample = np.flatnonzero(~picked)
        else:
            draw = torch.randint(0, n, (s,), generator=gen, device=dev).cpu().numpy()
            sample = np.unique(draw[~picked[draw]])
            if sample.size == 0:
                continue
        order = np.argsort(-ub[sample], kind="stable")
        sample = sample[order]
        bounds = ub[sample]
        if not st.picks:
            # empty set: the bounds are the exact gains
            best_g = float(bounds[0])
            best_p = lowest(sample[bounds == bounds[0]])
        else:
            best_g, best_p = _NEG, -1
            for s0 in range(0, sample.size, chunk):
                if s0 > 0 and best_g > bounds[s0]:
                    break
                part = sample[s0 : s0 + chunk]
                part_t = torch.from_numpy(part).to(dev)
                if skipping:
                    g = oracle.gains_skipping(part_t, costs).numpy()
                else:
                    g = oracle.gains(part_t, st.dcur).cpu().numpy()
                st.evaluations += int(part.size)
                ub[part] = g
                gain = float(g.max())
                p = lowest(part[g == gain])
                if gain > best_g or (gain == best_g and key[p] < key[best_p]):
                    best_g, best_p = gain, p
        ub[best_p] = _NEG
        picked[best_p] = True
        st.accept(best_p, best_g)
    return st.result()


OPTIMIZERS = {"naive": naive_greedy, "lazy": lazy_greedy, "stochastic": stochastic_greedy}
