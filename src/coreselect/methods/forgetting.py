"""``forgetting``: keep the examples forgotten most often during warm-up (Toneva et al., 2019).

A *forgetting event* happens when an example that was classified correctly at its previous
presentation in a mini-batch is misclassified at the next one. A copy of the model is
warmed up on the pool (:mod:`coreselect.methods.warmup`; default 3 epochs — an example is
observed once per epoch, so at least 2 are needed for any event, and a third lets examples
learned late leave the never-learned group) while each example's training-mode correctness is
recorded at every presentation. Examples never classified correctly count as forgotten
infinitely often (Toneva et al.'s convention) and rank first; the most forgotten are kept, ties
broken by seeded random.

With ``reselect_every``, a later selection appends one more observation per pool example —
the run's current model's eval-mode correctness — to the counts, then ranks again.
"""

from __future__ import annotations

import numpy as np
import torch

from coreselect.methods.baseline import (
    BaselineStrategy,
    check_bool,
    class_groups,
    forward_checked,
    rank_scores,
)
from coreselect.methods.registry import register
from coreselect.methods.warmup import DEFAULT_WARMUP_LR

DEFAULT_FORGETTING_WARMUP_EPOCHS = 3


def count_forgetting_events(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forgetting events in a correctness history.

    Args:
        correct: bool ``(T, n)``, ``correct[t, i]`` whether example ``i`` was classified
            correctly at its ``t``-th presentation.

    Returns:
        ``(events (n,) int64, learned (n,) bool)``: the number of ``t >= 1`` with
        ``correct[t-1, i]`` and not ``correct[t, i]``, and whether ``i`` was ever correct.
    """
    c = np.asarray(correct, dtype=bool)
    if c.ndim != 2:
        raise ValueError(f"correctness history must be (T, n), got shape {c.shape}")
    events = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.int64)
    return events, c.any(axis=0)


def forgetting_scores(events: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """Float64 ``(n,)``: the event counts, ``+inf`` for examples never learned."""
    s = np.asarray(events, dtype=np.float64).copy()
    s[~np.asarray(learned, dtype=bool)] = np.inf
    return s


class ForgettingTracker:
    """Running forgetting-event counts over ``n_total`` dataset examples.

    ``update(indices, correct)`` records one presentation of dataset ``indices`` ``(m,)``
    with correctness ``correct`` bool ``(m,)``; the counts equal
    :func:`count_forgetting_events` on the stacked history of each example.
    """

    def __init__(self, n_total: int):
        self.events = np.zeros(n_total, dtype=np.int64)
        self.last = np.zeros(n_total, dtype=bool)
        self.seen = np.zeros(n_total, dtype=np.int64)
        self.learned = np.zeros(n_total, dtype=bool)

    def update(self, indices: np.ndarray, correct: np.ndarray) -> None:
        """Record one presentation of each of ``indices`` (unique) with ``correct``."""
        idx = np.asarray(indices, dtype=np.int64)
        c = np.asarray(correct, dtype=bool)
        forgot = (self.seen[idx] > 0) & self.last[idx] & ~c
        self.events[idx] += forgot
        self.last[idx] = c
        self.seen[idx] += 1
        self.learned[idx] |= c

    def scores(self, indices: np.ndarray) -> np.ndarray:
        """:func:`forgetting_scores` of dataset ``indices`` ``(m,)``."""
        idx = np.asarray(indices, dtype=np.int64)
        return forgetting_scores(self.events[idx], self.learned[idx])


@register(
    "forgetting",
    paper="Toneva et al., ICLR 2019 (forgetting events)",
    summary="keep the examples forgotten most often during warm-up (never learned first)",
)
class Forgetting(BaselineStrategy):
    """Keep the most forgotten pool examples (weights 1).

    Args:
        per_class: split the budget over classes in proportion (default False: global
            ranking, as in the paper).
        warmup_epochs: epochs of warm-up over the pool during which events are counted
            (>= 1; default 3).
        warmup_lr: the warm-up's learning rate.
        reselect_every: None (select once) or epochs between selections; each later one adds
            the current model's correctness as one more observation.
    """

    records_correctness = True
    min_warmup_epochs = 1

    def __init__(
        self,
        *,
        per_class: bool = False,
        warmup_epochs: int = DEFAULT_FORGETTING_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, reselect_every=reselect_every
        )
        self.per_class = check_bool("per_class", per_class)
        self.tracker_: ForgettingTracker | None = None

    def select(self, ctx, pool, k, warmup):
        """Count events (warm-up history, or one current-model observation) and rank."""
        n_total = len(ctx.targets)
        if self.tracker_ is None or self.tracker_.events.size != n_total:
            self.tracker_ = ForgettingTracker(n_total)
        if warmup is not None:
            for row in warmup.correct:
                self.tracker_.update(warmup.pool, row)
        else:
            logits, _ = forward_checked(ctx, pool)
            y = torch.as_tensor(np.asarray(ctx.targets)[pool], device=logits.device)
            self.tracker_.update(pool, (logits.argmax(1) == y).cpu().numpy())
        scores = self.tracker_.scores(pool)
        if self.per_class:
            parts = [
                pos[rank_scores(scores[pos], m, ctx.rng)[0]]
                for _, pos, m in class_groups(ctx, pool, k)
            ]
            positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            positions = rank_scores(scores, k, ctx.rng)[0]
        never = ~np.isfinite(scores)
        kept = scores[positions]
        facts = {
            "never_learned": int(never.sum()),
            "never_learned_kept": int((~np.isfinite(kept)).sum()),
            "unforgettable": int((scores == 0).sum()),
            "mean_events": float(scores[~never].mean()) if (~never).any() else None,
        }
        return positions, None, facts
