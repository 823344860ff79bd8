"""What a method gives the training loop, and what the loop gives a method.

The Trainer (``coreselect.train``) imports these; methods never import the Trainer. A method
is one of two kinds of strategy:

- :class:`EpochStrategy`: ``plan(ctx) -> TrainPlan`` at epoch boundaries, every
  ``reselect_every`` epochs (``None``: once, at the start).
- :class:`StepStrategy`: ``next_batch(ctx) -> (indices, weights)`` before every optimizer
  step and ``after_step(ctx, indices, losses)`` after it.

``ctx`` follows the :class:`Context` protocol below.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch


def _as_indices(indices, what: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"{what} indices must be 1-D, got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what} indices must be integers, got {idx.dtype}")
    return idx.astype(np.int64, copy=False)


def _as_weights(weights, n: int, what: str) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (n,):
        raise ValueError(f"{what} weights have shape {w.shape}, expected ({n},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{what} weights must be finite and >= 0")
    return w


@dataclass
class ExtraSet:
    """Additional examples for an epoch: dataset ``indices`` ``(m,)``, per-example ``weights``
    ``(m,)`` (default 1) and a ``transform`` applied to their images (e.g. strong augmentation).
    """

    indices: np.ndarray
    weights: np.ndarray | None = None
    transform: Callable[..., torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.indices = _as_indices(self.indices, "extra set")
        self.weights = _as_weights(self.weights, self.indices.size, "extra set")


@dataclass
class TrainPlan:
    """What the coming epochs train on.

    ``indices`` ``(k,)`` dataset positions with ``weights`` ``(k,)`` (default 1), trained with
    the Trainer's own augmentation; ``extra`` lists further :class:`ExtraSet` s, each with its
    own transform. The epoch's batches are drawn, shuffled together, from all of them.
    """

    indices: np.ndarray
    weights: np.ndarray | None = None
    extra: list[ExtraSet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.indices = _as_indices(self.indices, "plan")
        self.weights = _as_weights(self.weights, self.indices.size, "plan")
        self.extra = list(self.extra or [])
        if self.size == 0:
            raise ValueError("a TrainPlan must hold at least one example")

    @property
    def size(self) -> int:
        """Examples in one pass over the plan: main set plus every extra set."""
        return int(self.indices.size + sum(e.indices.size for e in self.extra))


class Context(Protocol):
    """What the loop exposes to a strategy (``coreselect.train.TrainContext`` implements it).

    Attributes: ``model`` (the ``nn.Module``), ``pool`` (int64 dataset indices available,
    ``(N,)``), ``targets`` (int64 labels of the whole training set, numpy ``(N_total,)``),
    ``num_classes``, ``device``, ``epoch`` (0-based), ``step`` (optimizer steps done),
    ``rng`` (seeded ``numpy.random.Generator``), ``fraction``, ``batch_size``,
    ``budget`` (examples per epoch, ⌈f·N⌉), ``steps_per_epoch``, ``total_steps``,
    ``displacement`` (list of per-parameter tensors of the last optimizer step, or ``None``).
    """

    model: torch.nn.Module
    pool: np.ndarray
    targets: np.ndarray
    num_classes: int
    device: torch.device
    epoch: int
    step: int
    rng: np.random.Generator
    fraction: float
    batch_size: int
    budget: int
    steps_per_epoch: int
    total_steps: int
    displacement: list[torch.Tensor] | None

    def forward(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode, no-grad, batched forward: logits ``(k, C)`` and embeddings ``(k, D)``."""
        ...

    def inputs(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(k, C, H, W)`` and labels ``(k,)`` of dataset ``indices``, on the device."""
        ...


class Strategy:
    """Common base: a name, options, and ``stats()`` for the run record."""

    name: str = "strategy"
    #: set by a strategy whose fraction is fixed (``full`` trains on all data: 1.0)
    fixed_fraction: float | None = None
    #: set True to get the last step's parameter displacement in ``ctx.displacement``
    needs_displacement: bool = False

    def setup(self, ctx: Context) -> None:
        """Called once before training; the default does nothing."""

    def examples_per_epoch(self, n: int, fraction: float) -> float:
        """Examples an epoch trains on, which sets the step budget: f·N for every method;
        strategies that add augmented copies count those too."""
        return fraction * n

    def stats(self) -> dict[str, Any]:
        """Numbers worth keeping in the run record (selections made, examples dropped…)."""
        return {}


class EpochStrategy(Strategy, abc.ABC):
    """Chooses a weighted subset at epoch boundaries (CRAIG, AdaCore, random…)."""

    kind = "epoch"
    reselect_every: int | None = 1

    @abc.abstractmethod
    def plan(self, ctx: Context) -> TrainPlan:
        """The weighted subset (and any ``extra`` sets) to train on from this epoch on."""

    def due(self, epoch: int) -> bool:
        """True when ``plan`` must run at the start of ``epoch`` (0-based)."""
        every = self.reselect_every
        return epoch == 0 or (every is not None and epoch % every == 0)


class StepStrategy(Strategy, abc.ABC):
    """Chooses every mini-batch (CREST, CoLM)."""

    kind = "step"

    @abc.abstractmethod
    def next_batch(self, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
        """Dataset indices ``(b,)`` and weights ``(b,)`` of the next mini-batch."""

    def after_step(self, ctx: Context, indices: np.ndarray, losses: torch.Tensor) -> None:
        """Per-example ``losses`` ``(b,)`` of the step just taken; default: ignore."""


def check_reselect_every(value) -> int | None:
    """Validate a ``reselect_every`` option: a positive int (epochs) or None (select once)."""
    if value is None:
        return None
    if int(value) != value or int(value) < 1:
        raise ValueError(f"reselect_every must be a positive integer or None, got {value!r}")
    return int(value)
