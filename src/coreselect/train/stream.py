"""Fixed-size batches drawn, in shuffled passes, from a TrainPlan."""

from __future__ import annotations

import numpy as np
import torch

from coreselect.methods.base import TrainPlan


class PlanStream:
    """Endless shuffled passes over a plan's examples, cut into batches of exactly ``b``.

    Each item is (dataset index, weight, source) where source 0 is the plan's main set and
    ``s >= 1`` its ``extra[s - 1]``. A batch that reaches the end of a pass is completed from
    the next shuffled pass, so every batch has ``b`` items (fixed shapes) and every example is
    seen once per pass. A new plan restarts the passes.
    """

    def __init__(self, batch_size: int, rng: np.random.Generator):
        self.batch_size = batch_size
        self.rng = rng
        self.plan: TrainPlan | None = None

    def set_plan(self, plan: TrainPlan) -> None:
        """Start drawing from ``plan``."""
        self.plan = plan
        parts = [plan.indices] + [e.indices for e in plan.extra]
        self._idx = np.concatenate(parts)
        self._w = np.concatenate([plan.weights] + [e.weights for e in plan.extra])
        self._src = np.concatenate(
            [np.full(p.size, s, dtype=np.int64) for s, p in enumerate(parts)]
        )
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next batch: indices ``(b,)`` int64, weights ``(b,)`` float32, sources ``(b,)``."""
        if self.plan is None:
            raise RuntimeError("PlanStream.next() before set_plan()")
        take: list[np.ndarray] = []
        need = self.batch_size
        while need > 0:
            if self._pos >= self._order.size:
                self._order = self.rng.permutation(self._idx.size)
                self._pos = 0
            chunk = self._order[self._pos : self._pos + need]
            self._pos += chunk.size
            need -= chunk.size
            take.append(chunk)
        sel = np.concatenate(take)
        return self._idx[sel], self._w[sel], self._src[sel]


def apply_transforms(x, src: np.ndarray, plan: TrainPlan | None, main_transform, generator):
    """Transform a batch ``x`` ``(b, C, H, W)`` row by row according to its sources.

    Rows with ``src == 0`` get ``main_transform`` (may be None); rows with ``src == s`` get
    ``plan.extra[s - 1].transform``. Returns a new tensor of the same shape.
    """
    if plan is None or not plan.extra or not np.any(src):
        return main_transform(x, generator=generator) if main_transform is not None else x
    out = x.clone()
    for s in np.unique(src):
        transform = main_transform if s == 0 else plan.extra[s - 1].transform
        if transform is not None:
            rows = torch.from_numpy(np.nonzero(src == s)[0]).to(x.device)
            out[rows] = transform(x[rows], generator=generator)
    return out


def step_batch(strategy, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A StepStrategy's next batch as ``(indices (b,) int64, weights (b,) float32, sources)``;
    missing weights are 1 and every source is the main set (0)."""
    idx, w = strategy.next_batch(ctx)
    idx = np.asarray(idx, dtype=np.int64)
    w = np.ones(idx.size, np.float32) if w is None else np.asarray(w, np.float32)
    return idx, w, np.zeros(idx.size, dtype=np.int64)
