"""``CoresetLoader``: a strategy's weighted batches for your own training loop."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from coreselect.methods.base import EpochStrategy, StepStrategy, Strategy
from coreselect.train.context import TrainContext
from coreselect.train.stream import PlanStream, apply_transforms, step_batch
from coreselect.train.trainer import resolve_device, step_budget


class CoresetLoader:
    """Yield ``(x, y, w)`` batches of the subsets ``strategy`` chooses, one epoch per ``iter``.

    Use the weights in the loss: ``(w * loss_fn(out, y, reduction="none")).mean()``.

    Args:
        dataset: ``(x, y)`` tensors ``(N, C, H, W)`` and ``(N,)``, or a ``TensorDataset``.
        strategy: an EpochStrategy (reselects every ``reselect_every`` epochs) or a
            StepStrategy (then call :meth:`after_step` with the per-example losses).
        model: the model being trained (strategies read it through ``ctx.forward``).
        batch_size: b; every batch has exactly ``b`` examples.
        fraction: f; an epoch is ⌈f·N/b⌉ batches.
        augment: transform for the main set's images (extra sets bring their own).
        device, seed: where batches live; seeds shuffles, strategy rng and augmentations.

    Example::

        loader = CoresetLoader((x, y), build_strategy("random"), model, 128, fraction=0.1)
        for epoch in range(10):
            for xb, yb, wb in loader:
                loss = (wb * F.cross_entropy(model(xb), yb, reduction="none")).mean()
                opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(
        self,
        dataset,
        strategy: Strategy,
        model: nn.Module,
        batch_size: int = 128,
        *,
        fraction: float = 0.1,
        augment=None,
        device: str | torch.device = "auto",
        seed: int = 0,
        num_classes: int | None = None,
    ):
        x, y = dataset.tensors if hasattr(dataset, "tensors") else dataset
        if len(x) != len(y):
            raise ValueError(f"dataset has {len(x)} inputs but {len(y)} labels")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if strategy.fixed_fraction is not None:
            fraction = strategy.fixed_fraction
        dev = resolve_device(device)
        n = len(y)
        self.strategy = strategy
        self.batch_size = int(batch_size)
        self.augment = augment
        self.steps_per_epoch = step_budget(strategy.examples_per_epoch(n, fraction), 1, batch_size)[
            1
        ]
        self.ctx = TrainContext(
            model=model,
            x=x.to(dev),
            y=y.to(dev),
            pool=np.arange(n, dtype=np.int64),
            num_classes=int(num_classes or int(y.max()) + 1),
            device=dev,
            rng=np.random.default_rng([seed, 1]),
            fraction=float(fraction),
            batch_size=self.batch_size,
            budget=math.ceil(round(fraction * n, 9)),
            steps_per_epoch=self.steps_per_epoch,
            total_steps=-1,  # unknown: the user's loop decides how long to train
        )
        self._stream = PlanStream(self.batch_size, np.random.default_rng([seed, 2]))
        self._gen = torch.Generator(device=dev).manual_seed(seed)
        self._plan = None
        self._last: np.ndarray | None = None
        self.epoch = 0
        strategy.setup(self.ctx)

    def __len__(self) -> int:
        return self.steps_per_epoch

    @property
    def indices(self) -> np.ndarray | None:
        """Dataset indices of the batch yielded last ``(b,)``, aligned with its ``w``."""
        return self._last

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        ctx, strategy = self.ctx, self.strategy
        ctx.epoch = self.epoch
        if isinstance(strategy, EpochStrategy) and (self._plan is None or strategy.due(ctx.epoch)):
            self._plan = strategy.plan(ctx)
            self._stream.set_plan(self._plan)
        for _ in range(self.steps_per_epoch):
            if isinstance(strategy, StepStrategy):
                idx, w, src = step_batch(strategy, ctx)
            else:
                idx, w, src = self._stream.next()
            self._last = idx
            xb, yb = ctx.inputs(idx)
            xb = apply_transforms(xb, src, self._plan, self.augment, self._gen)
            yield xb, yb, torch.from_numpy(w).to(ctx.device)
            ctx.step += 1
        self.epoch += 1

    def after_step(self, losses: torch.Tensor) -> None:
        """For a StepStrategy: hand it the per-example losses ``(b,)`` of the last batch."""
        if isinstance(self.strategy, StepStrategy) and self._last is not None:
            self.strategy.after_step(self.ctx, self._last, losses.detach())
