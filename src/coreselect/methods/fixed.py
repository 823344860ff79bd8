"""Train on a fixed, saved coreset (``coreselect train --coreset FILE.npz``)."""

from __future__ import annotations

from coreselect.coreset import Coreset
from coreselect.methods.base import EpochStrategy, TrainPlan


class FixedCoreset(EpochStrategy):
    """Train on ``coreset`` (indices into the training pool, with its weights) throughout.

    The run's fraction is |S|/N, so an epoch is one pass over the coreset.
    """

    name = "coreset"
    reselect_every = None

    def __init__(self, coreset: Coreset, pool_size: int):
        if len(coreset) == 0:
            raise ValueError("the coreset is empty")
        if int(coreset.indices.max()) >= pool_size:
            raise ValueError(
                f"coreset index {int(coreset.indices.max())} is outside the training pool "
                f"of {pool_size} examples"
            )
        self.coreset = coreset
        self.fixed_fraction = len(coreset) / pool_size

    def plan(self, ctx) -> TrainPlan:
        return TrainPlan(self.coreset.indices, self.coreset.weights)

    def stats(self):
        return {"coreset_size": len(self.coreset)}
