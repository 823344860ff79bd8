"""Random baselines: ``random`` (uniform) and ``random-class`` (class-proportional)."""

from __future__ import annotations

import numpy as np

from coreselect.methods.base import EpochStrategy, TrainPlan, check_reselect_every
from coreselect.methods.registry import register


def proportional_counts(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` over groups of ``sizes`` ``(G,)`` in proportion, by largest remainder.

    Returns int64 ``(G,)`` counts with ``counts.sum() == budget``, ``counts <= sizes`` and each
    count within one of ``budget * size / sizes.sum()``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= budget <= total:
        raise ValueError(f"budget {budget} outside [0, {total}]")
    if total == 0:
        return np.zeros_like(sizes)
    exact = sizes * (budget / total)
    counts = np.floor(exact).astype(np.int64)
    short = budget - int(counts.sum())
    order = np.lexsort((np.arange(sizes.size), -(exact - counts)))  # largest remainder first
    counts[order[:short]] += 1
    return counts


@register("random", paper="baseline: uniform random subset", summary="fresh uniform draw")
class RandomSubset(EpochStrategy):
    """A fresh uniform draw of ⌈f·N⌉ pool examples at every reselection (weights 1)."""

    def __init__(self, reselect_every: int | None = 1):
        self.reselect_every = check_reselect_every(reselect_every)
        self.draws = 0

    def plan(self, ctx) -> TrainPlan:
        k = min(ctx.budget, ctx.pool.size)
        self.draws += 1
        return TrainPlan(np.sort(ctx.rng.choice(ctx.pool, size=k, replace=False)))

    def stats(self):
        return {"selections": self.draws}


@register(
    "random-class",
    paper="baseline: class-proportional random subset",
    summary="fresh draw keeping class proportions",
)
class RandomPerClass(EpochStrategy):
    """A fresh draw of ⌈f·N⌉ pool examples, each class within one example of its share."""

    def __init__(self, reselect_every: int | None = 1):
        self.reselect_every = check_reselect_every(reselect_every)
        self.draws = 0

    def plan(self, ctx) -> TrainPlan:
        pool = ctx.pool
        labels = ctx.targets[pool]
        classes, sizes = np.unique(labels, return_counts=True)
        counts = proportional_counts(sizes, min(ctx.budget, pool.size))
        picks = [
            ctx.rng.choice(pool[labels == c], size=int(m), replace=False)
            for c, m in zip(classes, counts)
        ]
        self.draws += 1
        return TrainPlan(np.sort(np.concatenate(picks)))

    def stats(self):
        return {"selections": self.draws}
