"""Exact lazy greedy held on the device: steps that never wait for the host.

On a GPU, the batched lazy greedy of :mod:`~coreselect.submodular.optimizers` waits for the
device several times per pick (every ``.item()``, every boolean mask) and launches its
kernels one at a time from Python. At n = 100,000 and k = 10,000 that per-pick overhead,
not the arithmetic (a pick reads ~64 rows: 26 MB), sets the time. Here the whole greedy
state lives on the device, and one *step* is a fixed sequence of kernels of fixed shapes:

1. the ``B`` largest bounds (``topk``) and ``m_out``, the largest bound outside them;
2. ``q``, the lowest position whose bound is at least ``m_out`` (so that an exact tie is
   always settled by reading the lowest position it could go to);
3. the exact gains of those ``B + 1`` candidates, one gathered block of rows with the
   oracle's own arithmetic, written over their bounds;
4. ``gmax``, the best of those gains, and ``p``, the lowest evaluated position attaining it;
5. ``p`` is *certified* when ``gmax >= m_out`` and no position below ``p`` has a bound
   ``>= gmax``: every other candidate then gains less, or as much from a higher position —
   naive greedy's pick (ties to the lowest position);
6. when certified (and picks are left), the pick is recorded and the costs lowered by
   masked writes. A step that does not certify has only tightened bounds: the next one reads
   other candidates (a bound read exactly stays put until a pick, so steps cannot cycle).

No step reads a value back. On CUDA, :data:`GRAPH_STEPS` steps are captured once as a CUDA
graph and replayed, the host reading the pick count once per replay (for progress and to
stop); elsewhere (CPU, or where the capture fails) the same steps run eagerly.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from coreselect.submodular.memory import DenseOracle
from coreselect.submodular.optimizers import GreedyResult, OnPick

__all__ = ["resident_lazy_greedy", "fits_resident", "GRAPH_STEPS"]

#: steps per captured CUDA graph (one host read of the pick count per replay); 0 runs the
#: steps eagerly on CUDA too
GRAPH_STEPS = 32


def _block_size(oracle: DenseOracle, k: int) -> int:
    """``B``: stale bounds read per step, so that the ``B + 1`` rows of a step fit one of the
    oracle's tiles, and fewer than the ``n - k`` candidates left after the last pick (every
    step's block then holds unpicked candidates only); 0 when no block fits."""
    return max(0, min(int(oracle.chunk), 64, oracle.n - int(k)) - 1)


def fits_resident(oracle: object, k: int) -> bool:
    """Whether :func:`resident_lazy_greedy` can run ``k`` picks on ``oracle``: a dense
    oracle in the given order (no ``ids``), with at least two candidates left after the
    last pick."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        return False
    if not isinstance(oracle, DenseOracle) or oracle.segment_min is not None:
        return False
    if getattr(oracle, "ids", None) is not None:
        return False
    return _block_size(oracle, k) >= 1


class _Resident:
    """The device state of one run and its step (every write in place, shapes fixed)."""

    def __init__(self, oracle: DenseOracle, k: int) -> None:
        n, dev = oracle.n, oracle.device
        self.oracle, self.k, self.n = oracle, k, n
        self.B = _block_size(oracle, k)
        self.ub = oracle.g0.to(device=dev, dtype=torch.float64).clone()  # exact at start
        self.dcur = torch.full((n,), float(oracle.c0), dtype=torch.float32, device=dev)
        self.assign = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.picks = torch.full((k + 1,), -1, dtype=torch.long, device=dev)  # slot k: void
        self.gains = torch.zeros(k + 1, dtype=torch.float64, device=dev)
        self.count = torch.zeros((), dtype=torch.long, device=dev)
        self.evals = torch.zeros((), dtype=torch.long, device=dev)
        self.ar = torch.arange(n, device=dev)
        self.row = torch.empty((oracle.chunk, n), dtype=torch.float32, device=dev)

    def first(self) -> None:
        """The first pick: the lowest position of the largest empty-set gain, read from the
        bounds (exact at start, as naive greedy reads them)."""
        gmax = self.ub.max()
        p = torch.where(self.ub == gmax, self.ar, self.n).min()
        self.picks[0] = p
        self.gains[0] = gmax
        self.ub[p] = -math.inf
        self.oracle.rows_into(p.view(1), self.row)
        torch.minimum(self.dcur, self.row[0], out=self.dcur)
        self.assign.fill_(0).add_(p)
        self.count.fill_(1)

    def step(self) -> None:
        """One step (see the module docstring); no host synchronisation."""
        n, B, ub = self.n, self.B, self.ub
        vals, top = torch.topk(ub, B + 1)
        m_out = vals[B]
        q = torch.where(ub >= m_out, self.ar, n).min()
        cand = torch.cat([top[:B], q.view(1)])
        g = self.oracle.gains(cand, self.dcur)
        ub.index_put_((cand,), g)  # q may repeat a block member: the same exact gain
        gmax = g.max()
        p = torch.where(g == gmax, cand, n).min()
        lowest = torch.where(ub >= gmax, self.ar, n).min()
        live = self.count < self.k
        ok = (gmax >= m_out) & (lowest == p) & live
        slot = torch.where(ok, self.count, self.k).view(1)
        self.picks.index_put_((slot,), p.view(1))
        self.gains.index_put_((slot,), gmax.view(1))
        ub.index_put_((p.view(1),), torch.where(ok, -math.inf, gmax).view(1))
        row = self.oracle.rows_into(p.view(1), self.row)[0]
        closer = (row < self.dcur) & ok
        torch.where(closer, p, self.assign, out=self.assign)
        torch.where(closer, row, self.dcur, out=self.dcur)
        self.count.add_(ok.long())
        self.evals.add_(live.long() * (B + 1))

    def result(self) -> GreedyResult:
        k = self.k
        return GreedyResult(
            picks=self.picks[:k].clone(),
            gains=self.gains[:k].clone(),
            dcur=self.dcur,
            assign=self.assign,
            evaluations=int(self.evals.item()),
        )


def _capture(state: _Resident, steps: int) -> torch.cuda.CUDAGraph | None:
    """``steps`` steps of ``state`` as one CUDA graph (after one real warm-up step on a side
    stream, as capture requires), or ``None`` with a warning when capture fails."""
    dev = state.oracle.device
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        state.step()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(steps):
                state.step()
    except RuntimeError as err:  # the eager steps give the same picks, only slower
        warnings.warn(
            f"CUDA graph capture of the greedy failed, running eagerly: {err}", stacklevel=2
        )
        torch.cuda.synchronize(dev)
        return None
    return graph


def resident_lazy_greedy(
    oracle: DenseOracle, k: int, *, on_pick: OnPick | None = None
) -> GreedyResult:
    """Exact lazy greedy whose steps run on the device without host round trips.

    Args:
        oracle: dense oracle of one pool (``n`` points) in the given order; see
            :func:`fits_resident`.
        k: number of picks, ``1 <= k <= n - 2``.
        on_pick: optional callback with the number of picks so far, called after every
            batch of steps that added picks (so not necessarily for every count).

    Returns:
        :class:`~coreselect.submodular.optimizers.GreedyResult` with naive greedy's picks
        (ties to the lowest position) and gains; ``evaluations`` counts the rows read,
        ``B + 1`` per step.
    """
    if not fits_resident(oracle, k):
        raise ValueError(f"resident greedy cannot take k={k!r} on this oracle")
    state = _Resident(oracle, int(k))
    state.first()
    graph = None
    steps = max(1, GRAPH_STEPS)
    if oracle.device.type == "cuda" and GRAPH_STEPS > 0:
        graph = _capture(state, steps)
    done, idle = 1, 0
    if on_pick is not None:
        on_pick(1)
    while done < k:
        if graph is not None:
            graph.replay()
        else:
            for _ in range(steps):
                state.step()
        count = int(state.count.item())  # the one read back per batch of steps
        if count > done and on_pick is not None:
            on_pick(count)
        # a step without a pick tightens a bound for good: n of them in a row is a bug
        idle = 0 if count > done else idle + steps
        if idle > oracle.n + steps:
            raise RuntimeError(f"resident greedy made no pick in {idle} steps")
        done = count
    return state.result()
