"""What the standard baselines share: budget, per-class splits, warm-up, ranking, stats.

Every baseline (``el2n``, ``grand``, ``uncertainty``, ``forgetting``, ``kcenter``, ``herding``,
``gradmatch``) is a :class:`BaselineStrategy`: at its first selection it warms up a copy of
the model (:mod:`coreselect.methods.warmup`) and scores the pool with that copy; at later
selections (``reselect_every`` epochs) it rescores with the run's current model, without a new
warm-up. Subclasses implement :meth:`BaselineStrategy.select`.

Rules common to all of them:

- they choose from ``ctx.pool`` only and return exactly ``min(ctx.budget, |pool|)`` unique
  dataset indices; a budget larger than the pool takes the whole pool, with a warning;
- per-class methods split the budget with :func:`~coreselect.methods.random.proportional_counts`
  over the classes present in the pool; a class absent from the pool is skipped with a
  warning;
- weights are 1 (gradmatch: its OMP weights, mean 1);
- features with NaN raise ``FloatingPointError`` naming the epoch.
"""

from __future__ import annotations

import abc
import time
import warnings
from typing import Any

import numpy as np
import torch

from coreselect.methods.base import EpochStrategy, TrainPlan, check_reselect_every
from coreselect.methods.random import proportional_counts
from coreselect.methods.warmup import (
    DEFAULT_WARMUP_EPOCHS,
    DEFAULT_WARMUP_LR,
    ModelView,
    WarmupResult,
    check_warmup_options,
    warm_up,
)

KEEP = ("highest", "lowest")


def check_choice(name: str, value, valid: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``valid``; else ValueError listing the valid values."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(valid)}")
    return value


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is a bool; else ValueError."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def budget_and_pool(ctx) -> tuple[np.ndarray, int]:
    """``(pool, k)``: ``ctx.pool`` as int64 ``(n,)`` and ``k = min(ctx.budget, n)``.

    Warns when the budget exceeds the pool (the whole pool is then taken).
    """
    pool = np.asarray(ctx.pool, dtype=np.int64)
    budget = int(ctx.budget)
    if budget < 1:
        raise ValueError(f"the selection budget must be >= 1, got {budget}")
    if pool.size == 0:
        raise ValueError("the pool is empty: nothing to select from")
    if budget > pool.size:
        warnings.warn(
            f"budget {budget} exceeds the pool of {pool.size} examples; taking the whole pool",
            stacklevel=3,
        )
    return pool, min(budget, pool.size)


def class_groups(ctx, pool: np.ndarray, k: int) -> list[tuple[int, np.ndarray, int]]:
    """Split ``pool`` ``(n,)`` by label and ``k`` over the classes in proportion.

    Returns ``[(class, positions, count)]`` for every class of ``range(ctx.num_classes)``
    present in the pool, ``positions`` int64 positions into ``pool`` of its members and
    ``count`` its share of ``k`` (within one of ``k·size/n``; counts sum to ``k``). Classes
    with no example in the pool are skipped with a warning.
    """
    labels = np.asarray(ctx.targets)[pool]
    groups, sizes = [], []
    missing = []
    for c in range(int(ctx.num_classes)):
        pos = np.flatnonzero(labels == c)
        if pos.size == 0:
            missing.append(c)
            continue
        groups.append((c, pos))
        sizes.append(pos.size)
    if missing:
        warnings.warn(
            f"class(es) {', '.join(map(str, missing))} have no example in the pool; skipped",
            stacklevel=3,
        )
    counts = proportional_counts(np.asarray(sizes, dtype=np.int64), k)
    return [(c, pos, int(m)) for (c, pos), m in zip(groups, counts, strict=True)]


def check_finite(values: torch.Tensor | np.ndarray, ctx, what: str) -> None:
    """Raise ``FloatingPointError`` naming the epoch when ``values`` hold NaN or infinity."""
    ok = (
        bool(torch.isfinite(values).all())
        if isinstance(values, torch.Tensor)
        else bool(np.isfinite(values).all())
    )
    if not ok:
        raise FloatingPointError(
            f"non-finite {what} at epoch {int(getattr(ctx, 'epoch', 0)) + 1}: the model "
            "diverged, selection stopped"
        )


def forward_checked(ctx, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``ctx.forward(indices)`` — logits ``(k, C)``, embeddings ``(k, D)`` — checked finite."""
    logits, embeds = ctx.forward(np.asarray(indices, dtype=np.int64))
    check_finite(logits, ctx, "model outputs")
    check_finite(embeds, ctx, "embeddings")
    return logits, embeds


def rank_scores(
    scores: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    keep: str = "highest",
    drop_top: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Positions of the ``k`` examples to keep by ``scores`` ``(n,)``.

    ``keep="highest"`` keeps the largest scores, ``"lowest"`` the smallest. ``drop_top`` first
    discards the ⌈drop_top·n⌉ highest-scoring examples (likely mislabeled; capped so that ``k``
    remain). Ties are broken by a random key drawn from ``rng``, so the result is seeded.
    ``+inf`` is a valid score (ranks above every finite one); NaN is not.

    Returns ``(positions (k,) int64 ordered best first, number dropped)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    if np.isnan(scores).any():
        raise FloatingPointError("NaN scores")
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} examples")
    tie = rng.random(n)
    desc = np.lexsort((tie, -scores))  # highest first, ties in random order
    drop = min(int(np.ceil(drop_top * n - 1e-9)), n - k) if drop_top > 0 else 0
    rest = desc[drop:]
    chosen = rest[:k] if keep == "highest" else rest[::-1][:k]
    return chosen.astype(np.int64), drop


class BaselineStrategy(EpochStrategy):
    """Base of the standard baselines: budget, warm-up, reselection and ``stats()``.

    Args:
        warmup_epochs: passes of SGD over the pool on a copy of the model before the first
            selection (0: score with the run's model as it is).
        warmup_lr: the warm-up's constant learning rate.
        reselect_every: None (select once, at epoch 0) or every so many epochs; later
            selections rescore with the run's current model (no new warm-up).

    Subclasses implement :meth:`select`; ``stats()`` reports selections, warm-up and scoring
    seconds and the last selection's facts (``meta_``).
    """

    #: set True when :meth:`select` needs the warm-up's correctness history
    records_correctness: bool = False
    min_warmup_epochs: int = 0

    def __init__(
        self,
        *,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        self.warmup_epochs, self.warmup_lr = check_warmup_options(
            warmup_epochs, warmup_lr, min_epochs=self.min_warmup_epochs
        )
        self.reselect_every = check_reselect_every(reselect_every)
        self.selections_ = 0
        self.warmup_s_ = 0.0
        self.score_s_ = 0.0
        self.meta_: dict[str, Any] = {}

    # ----------------------------------------------------------------- subclass API
    @abc.abstractmethod
    def select(
        self, ctx, pool: np.ndarray, k: int, warmup: WarmupResult | None
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """Choose ``k`` of ``pool`` ``(n,)`` using the forwards of ``ctx``.

        ``ctx`` is the run's context, or a :class:`ModelView` on the warmed-up copy at the first
        selection; ``warmup`` is that warm-up's result (else None). Returns ``(positions (k,)
        into pool, weights (k,) or None for all ones, facts for meta)``.
        """

    # ----------------------------------------------------------------- strategy API
    def plan(self, ctx) -> TrainPlan:
        """Warm up (first selection only), score the pool, and return the kept examples."""
        pool, k = budget_and_pool(ctx)
        meta: dict[str, Any] = {
            "method": self.name,
            "epoch": int(ctx.epoch) + 1,
            "pool": int(pool.size),
            "budget": int(ctx.budget),
            "selected": int(k),
        }
        if k == pool.size:
            positions, weights, facts = np.arange(k), None, {"whole_pool": True}
            meta["model"] = "none"
        else:
            warm = None
            view = ctx
            if self.selections_ == 0 and self.warmup_epochs > 0:
                warm = warm_up(
                    ctx,
                    self.warmup_epochs,
                    lr=self.warmup_lr,
                    record_correct=self.records_correctness,
                )
                self.warmup_s_ += warm.seconds
                meta["warmup_s"] = round(warm.seconds, 4)
                meta["warmup_loss"] = float(warm.losses[-1])
                view = ModelView(ctx, warm.model)
            meta["model"] = "warm-up copy" if warm is not None else "current"
            start = time.perf_counter()
            positions, weights, facts = self.select(view, pool, k, warm)
            _sync(ctx)
            elapsed = time.perf_counter() - start
            self.score_s_ += elapsed
            meta["score_s"] = round(elapsed, 4)
        positions = np.asarray(positions, dtype=np.int64)
        indices = pool[positions]
        _check_selection(indices, pool, k, self.name)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float32)
        meta.update(facts)
        self.meta_ = meta
        self.selections_ += 1
        return TrainPlan(indices, weights)

    def stats(self) -> dict[str, Any]:
        """Selections made, total warm-up and scoring seconds, and the last selection's facts."""
        return {
            "selections": self.selections_,
            "warmup_epochs": self.warmup_epochs,
            "warmup_s": round(self.warmup_s_, 4),
            "score_s": round(self.score_s_, 4),
            "last": dict(self.meta_),
        }


def _sync(ctx) -> None:
    device = torch.device(getattr(ctx, "device", "cpu"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_selection(indices: np.ndarray, pool: np.ndarray, k: int, name: str) -> None:
    if indices.size != k or np.unique(indices).size != k or not np.isin(indices, pool).all():
        raise RuntimeError(  # a bug in the method, never the user's input
            f"{name} returned {indices.size} indices ({np.unique(indices).size} unique) for a "
            f"budget of {k}, or indices outside the pool"
        )
