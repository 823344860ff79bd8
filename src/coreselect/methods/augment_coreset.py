"""Coresets for data augmentation: augment only the subset that carries the training dynamics.

Liu & Mirzasoleiman, "Data-Efficient Augmentation for Training Neural Networks", NeurIPS 2022.
Every R epochs, on clean (un-augmented) views in eval mode, per-example gradient proxies
(``p − y``, or ``(p − y) ⊗ h`` with ``features="last-layer"``) select a per-class facility-
location coreset S of ⌈f·N⌉ examples (the Jacobian–residual alignment argument of the paper
reduces to matching these). The epoch then trains on the whole data (weight 1, the run's own
weak augmentation) plus strongly augmented copies of S only; ``main="subset"`` trains on the
weighted coreset plus its augmented copies instead. Here f is the *augmented share*, and the
step budget counts every example trained on: N + |S| per epoch (2·|S| with ``main="subset"``).

Baselines with the same budget: ``augment-random`` (a fresh random S), ``augment-maxloss`` (the
|S| highest-loss examples), ``augment-full`` (S = everything, f = 1); "augment nothing" is the
``full`` method.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from coreselect.methods.base import EpochStrategy, ExtraSet, TrainPlan, check_reselect_every
from coreselect.methods.random import proportional_counts
from coreselect.methods.registry import register
from coreselect.signals import compute

SUBSETS = ("coreset", "random", "max-loss", "all")
MAINS = ("full", "subset")


class AugmentSubset(EpochStrategy):
    """Train on the data plus strongly augmented copies of a chosen subset.

    Args:
        subset: which examples get augmented copies: "coreset" (facility location on
            gradient proxies), "random" (class-proportional random), "max-loss" (highest
            current loss) or "all".
        reselect_every: epochs between selections (None: once).
        augment: name of the strong transform in ``coreselect.transforms`` ("strong").
        magnitude: its magnitude (RandAugment scale 0–30; None: the transform's default).
        main: "full" (all data, weight 1, plus the copies) or "subset" (only the weighted
            subset plus its copies).
        weighted: weight the augmented copies by cluster size (off, as in the paper's
            experiments; coreset only).
        features, project_dim, metric, optimizer: the coreset's signals and engine settings.
    """

    subset = "coreset"

    def __init__(
        self,
        reselect_every: int | None = 1,
        augment: str = "strong",
        magnitude: int | None = None,
        main: str = "full",
        weighted: bool = False,
        features: str = "logit",
        project_dim: int | None = None,
        metric: str = "euclidean",
        optimizer: str = "lazy",
    ):
        from coreselect.transforms import build_transform

        if main not in MAINS:
            raise ValueError(f"unknown main {main!r}; valid values: {', '.join(MAINS)}")
        self.reselect_every = check_reselect_every(reselect_every)
        self.augment = augment
        self.magnitude = magnitude
        kwargs = {} if magnitude is None else {"magnitude": magnitude}
        self.transform = build_transform(augment, **kwargs)
        self.main = main
        self.weighted = bool(weighted)
        self.features = features
        self.project_dim = project_dim
        self.metric = metric
        self.optimizer = optimizer
        self.selections = 0
        self.select_s = 0.0

    def examples_per_epoch(self, n: int, fraction: float) -> float:
        k = math.ceil(round(fraction * n, 9))
        return (n + k) if self.main == "full" else 2 * k

    def plan(self, ctx) -> TrainPlan:
        t0 = time.perf_counter()
        pool = ctx.pool
        k = min(ctx.budget, pool.size)
        chosen, weights = self.choose(ctx, pool, k)
        self.selections += 1
        self.select_s += time.perf_counter() - t0
        extra_w = weights if self.weighted else None
        extra = [ExtraSet(chosen, extra_w, self.transform)]
        if self.main == "full":
            return TrainPlan(pool, None, extra=extra)
        return TrainPlan(chosen, weights, extra=extra)

    def choose(self, ctx, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The subset to augment: dataset indices ``(k,)`` and weights ``(k,)`` (mean 1)."""
        if self.subset == "all" or k >= pool.size:
            return pool, np.ones(pool.size, np.float32)
        if self.subset == "random":
            labels = ctx.targets[pool]
            classes, sizes = np.unique(labels, return_counts=True)
            counts = proportional_counts(sizes, k)
            picks = [
                ctx.rng.choice(pool[labels == c], size=int(m), replace=False)
                for c, m in zip(classes, counts)
            ]
            return np.sort(np.concatenate(picks)), np.ones(k, np.float32)
        if self.subset == "max-loss":
            logits, _ = ctx.forward(pool)
            targets = torch.as_tensor(ctx.targets[pool], device=logits.device)
            losses = F.cross_entropy(logits, targets, reduction="none").cpu().numpy()
            order = np.lexsort((pool, -losses))  # highest loss first, ties by index
            return pool[order[:k]], np.ones(k, np.float32)
        from coreselect import select

        feats = compute(ctx, pool, self.features, project_dim=self.project_dim, seed=ctx.epoch)
        coreset = select(
            feats.float(),
            k,
            labels=ctx.targets[pool],
            metric=self.metric,
            optimizer=self.optimizer,
            device=ctx.device,
        )
        return pool[coreset.indices], coreset.weights

    def stats(self) -> dict:
        return {"selections": self.selections, "select_s": self.select_s}


@register(
    "augment-coreset",
    paper="Liu & Mirzasoleiman, NeurIPS 2022 (coresets for augmentation)",
    summary="all data + strongly augmented copies of a facility-location coreset",
)
class AugmentCoreset(AugmentSubset):
    subset = "coreset"


@register(
    "augment-random",
    paper="baseline for augmentation coresets",
    summary="all data + strongly augmented copies of a random subset",
)
class AugmentRandom(AugmentSubset):
    subset = "random"


@register(
    "augment-maxloss",
    paper="baseline for augmentation coresets",
    summary="all data + strongly augmented copies of the highest-loss examples",
)
class AugmentMaxLoss(AugmentSubset):
    subset = "max-loss"


@register(
    "augment-full",
    paper="baseline: strong augmentation of every example",
    summary="all data + strongly augmented copies of all of it",
)
class AugmentFull(AugmentSubset):
    subset = "all"
    fixed_fraction = 1.0
