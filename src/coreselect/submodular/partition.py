"""Per-group budgets and the merge of per-group picks.

A group smaller than its share takes all its members and the rest of the budget is
redistributed over the other groups (water-filling); shares are rounded with the largest
remainder method (ties to the lower group position), so they sum exactly to the budget.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["group_budgets", "merge_by_gain", "resolve_budget"]

GROUP_RULES = ("proportional", "equal")


def resolve_budget(budget: int | float, n: int) -> int:
    """Turn an int count or a float fraction in (0, 1] into a count in ``[1, n]``.

    Raises:
        ValueError: naming the problem (0, negative, larger than ``n``, bad fraction, type).
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"budget must be an int count or a float fraction in (0, 1], got {budget!r}"
        )
    if isinstance(budget, (int, np.integer)):
        k = int(budget)
        if k <= 0:
            raise ValueError(f"budget must be at least 1, got {k}")
        if k > n:
            raise ValueError(f"budget {k} is larger than the pool size n={n}")
        return k
    f = float(budget)
    if not math.isfinite(f) or not 0.0 < f <= 1.0:
        raise ValueError(f"a float budget is a fraction and must be in (0, 1], got {f}")
    return max(1, min(n, int(math.floor(f * n + 0.5))))


def group_budgets(sizes: Sequence[int], budget: int, rule: str = "proportional") -> list[int]:
    """Split ``budget`` over groups of the given ``sizes``.

    Args:
        sizes: members per group (all >= 1).
        budget: total count, ``0 <= budget <= sum(sizes)``.
        rule: ``"proportional"`` (shares proportional to group size) or ``"equal"``.

    Returns:
        list of per-group counts, each ``<= size``, summing exactly to ``budget``.
    """
    if rule not in GROUP_RULES:
        raise ValueError(f"group_budget must be one of {GROUP_RULES}, got {rule!r}")
    G = len(sizes)
    total = int(budget)
    if total > sum(sizes):
        raise ValueError(f"budget {total} is larger than the pool size {sum(sizes)}")
    w = [float(s) if rule == "proportional" else 1.0 for s in sizes]
    alloc = [0] * G
    active = [g for g in range(G) if sizes[g] > 0]
    left = total
    shares: dict[int, float] = {}
    while active and left > 0:
        W = sum(w[g] for g in active)
        shares = {g: left * w[g] / W for g in active}
        full = [g for g in active if shares[g] >= sizes[g]]
        if not full:
            break
        for g in full:
            alloc[g] = sizes[g]
            left -= sizes[g]
        active = [g for g in active if g not in full]
        shares = {}
    if left > 0 and shares:
        floors = {g: int(math.floor(shares[g])) for g in active}
        for g in active:
            alloc[g] = floors[g]
        rem = left - sum(floors.values())
        order = sorted(active, key=lambda g: (-(shares[g] - floors[g]), g))
        for g in order[:rem]:
            alloc[g] += 1
    assert sum(alloc) == total, (alloc, total)
    return alloc


def merge_by_gain(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-group pick sequences by gain, descending, keeping each group's order.

    Args:
        groups: per group, ``(indices (k_g,), gains (k_g,))`` in pick order.

    Returns:
        ``(indices, gains, group_of)`` merged; ties go to the earlier group (stable).
    """
    streams = [
        [(-float(gv), g, t, int(iv)) for t, (iv, gv) in enumerate(zip(idx, gains))]
        for g, (idx, gains) in enumerate(groups)
    ]
    merged = list(heapq.merge(*streams, key=lambda r: (r[0], r[1], r[2])))
    idx = np.array([r[3] for r in merged], dtype=np.int64)
    gains = np.array([-r[0] for r in merged], dtype=np.float64)
    gof = np.array([r[1] for r in merged], dtype=np.int64)
    return idx, gains, gof
