"""Full-data baselines: ``full`` (f = 1) and ``full-short`` (all data, f-sized step budget)."""

from __future__ import annotations

from coreselect.methods.base import EpochStrategy, TrainPlan
from coreselect.methods.registry import register


@register("full", paper="baseline: all training data", summary="every example, f = 1")
class Full(EpochStrategy):
    """Train on the whole pool with the full step budget (the run's fraction is forced to 1)."""

    fixed_fraction = 1.0
    reselect_every = None

    def plan(self, ctx) -> TrainPlan:
        return TrainPlan(ctx.pool)


@register(
    "full-short",
    paper="baseline: all data, shortened schedule",
    summary="all examples in shuffled passes; step budget and LR schedule of fraction f",
)
class FullShort(EpochStrategy):
    """All examples in shuffled passes that continue across epochs; the step budget (and the LR
    schedule spanning it) is that of fraction f — the baseline most papers skip."""

    reselect_every = None

    def plan(self, ctx) -> TrainPlan:
        return TrainPlan(ctx.pool)
