"""Coreset weights: cluster sizes under an exact nearest-pick assignment.

Every pool point is assigned to its nearest selected element (ties go to the earliest
pick). A selected point always belongs to its own cluster — this matters only for exact
duplicates, where the earlier pick would otherwise win the tie and leave the later one's
cluster empty — so no cluster is empty and the raw sizes sum to the pool size exactly.
(If a cluster were ever empty it would count 1, and the raw weights would then exceed the
pool size by the number of empty clusters.)
"""

from __future__ import annotations

import torch

from coreselect.submodular.kernels import PreparedFeatures, cost_tile

__all__ = ["nearest_assignment", "assignment_from_picks", "cluster_sizes", "normalize_weights"]


def nearest_assignment(
    F: PreparedFeatures, picks: torch.Tensor, block_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact nearest pick of every point, computed in row tiles (never ``n^2``).

    Args:
        F: prepared features of the pool (``n`` points).
        picks: ``(k,)`` long tensor of pool positions, in pick order.
        block_rows: rows per tile (default: about 16 MiB of float32 per tile).

    Returns:
        ``(pos, cost)``: ``(n,)`` long position *within* ``picks`` of each point's nearest
        pick (ties to the earliest pick; picks map to themselves), and ``(n,)`` float32
        cost to it.
    """
    n, k = F.n, int(picks.numel())
    dev = F.X.device
    bs = block_rows or max(1, min(n, (4 << 20) // max(k, 1)))
    P = F.subset(picks)
    pos = torch.empty(n, dtype=torch.long, device=dev)
    cost = torch.empty(n, dtype=torch.float32, device=dev)
    tile = torch.empty((bs, k), dtype=torch.float32, device=dev)
    for s in range(0, n, bs):
        e = min(s + bs, n)
        T = cost_tile(F.subset(torch.arange(s, e, device=dev)), P, out=tile[: e - s])
        vals, arg = torch.min(T, dim=1)
        pos[s:e] = arg
        cost[s:e] = vals
    ar = torch.arange(k, device=dev)
    pos[picks] = ar
    cost[picks] = 0.0
    return pos, cost


def assignment_from_picks(assign: torch.Tensor, picks: torch.Tensor, n: int) -> torch.Tensor:
    """Convert pool-position assignments (greedy's ``assign``) to positions within picks.

    Args:
        assign: ``(n,)`` long pool position of each point's nearest pick.
        picks: ``(k,)`` long pool positions in pick order.
        n: pool size.

    Returns:
        ``(n,)`` long positions within ``picks``; picks map to themselves.
    """
    k = int(picks.numel())
    where = torch.full((n,), -1, dtype=torch.long, device=picks.device)
    ar = torch.arange(k, device=picks.device)
    where[picks] = ar
    pos = where[assign]
    pos[picks] = ar
    return pos


def cluster_sizes(pos: torch.Tensor, k: int) -> torch.Tensor:
    """Cluster sizes ``(k,)`` float64 from positions ``(n,)``; an empty cluster counts 1."""
    sizes = torch.bincount(pos, minlength=k).to(torch.float64)
    return sizes.clamp_(min=1.0)


def normalize_weights(raw: torch.Tensor) -> torch.Tensor:
    """Scale raw sizes ``(k,)`` to mean 1 over the whole coreset."""
    if raw.numel() == 0:
        return raw
    return raw * (raw.numel() / raw.sum())
