"""Warm-up training for score-based baselines, without the Trainer.

Baselines such as EL2N, GraNd, forgetting or k-center score examples with a model that has
seen the data for a few epochs. :func:`warm_up` trains a *deep copy* of ``ctx.model`` on
``ctx.pool`` with plain SGD and returns it; the run's model and its step budget are untouched
(DESIGN.md §2: warm-up training is selection work — the Trainer counts all of ``plan()`` as
select time). :class:`ModelView` then lets any code written against the ``Context`` protocol
(``coreselect.signals.compute`` included) run its forwards on the warmed-up copy.

Methods never import ``coreselect.train``; this module only uses ``ctx.inputs``,
``ctx.pool``, ``ctx.rng``, ``ctx.batch_size`` and ``ctx.device``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: warm-up epochs over the pool when a baseline is not told otherwise (forgetting uses more)
DEFAULT_WARMUP_EPOCHS = 1
#: constant learning rate of the warm-up's SGD (momentum 0.9, Nesterov, weight decay 5e-4)
DEFAULT_WARMUP_LR = 0.05


@dataclass
class WarmupResult:
    """What :func:`warm_up` returns.

    Attributes:
        model: the trained deep copy of ``ctx.model`` (left in eval mode).
        seconds: wall time of the warm-up (device synchronized).
        pool: int64 ``(n,)`` the dataset indices it trained on (``ctx.pool`` at the time).
        correct: bool ``(epochs, n)``, or ``None`` unless ``record_correct``: whether the
            model's *training-mode* prediction of ``pool[j]`` was right when that example was
            in a mini-batch during epoch ``t`` (before that step's update) — the observation
            Toneva et al. count forgetting events on.
        losses: float ``(epochs,)`` mean training loss of each warm-up epoch.
    """

    model: nn.Module
    seconds: float
    pool: np.ndarray
    correct: np.ndarray | None
    losses: np.ndarray


def check_warmup_options(epochs, lr, *, min_epochs: int = 0) -> tuple[int, float]:
    """Validate ``warmup_epochs`` (int >= ``min_epochs``) and ``warmup_lr`` (> 0, finite).

    Returns them as ``(int, float)``; raises ValueError with the valid range otherwise.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < min_epochs:
        raise ValueError(f"warmup_epochs must be an integer >= {min_epochs}, got {epochs!r}")
    try:
        lr_f = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"warmup_lr must be a positive number, got {lr!r}") from None
    if not np.isfinite(lr_f) or lr_f <= 0:
        raise ValueError(f"warmup_lr must be a positive number, got {lr!r}")
    return int(epochs), lr_f


def _sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(
    ctx,
    epochs: int = DEFAULT_WARMUP_EPOCHS,
    *,
    lr: float = DEFAULT_WARMUP_LR,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int | None = None,
    record_correct: bool = False,
) -> WarmupResult:
    """Train a deep copy of ``ctx.model`` for ``epochs`` passes over ``ctx.pool``.

    Each epoch is one shuffled pass (order from ``ctx.rng``) cut into ``max(1, n // b)``
    mini-batches of nearly equal size (b = ``batch_size`` or ``ctx.batch_size``; no batch of one
    that would break batch norm), each an SGD step (Nesterov momentum, constant ``lr``) on the
    mean cross-entropy — every pool example has weight 1. Inputs come from ``ctx.inputs``.

    Args:
        ctx: a ``Context`` (``model``, ``pool``, ``inputs``, ``rng``, ``batch_size``,
            ``device``, ``epoch``).
        epochs: passes over the pool, >= 0 (0 returns an untrained copy).
        lr, momentum, weight_decay: the SGD settings.
        batch_size: defaults to the run's ``ctx.batch_size``.
        record_correct: also record per-example training-mode correctness (see
            :class:`WarmupResult`).

    Returns:
        :class:`WarmupResult`; ``ctx.model`` itself is never modified.

    Raises:
        FloatingPointError: the warm-up loss became NaN or infinite (naming the run's epoch).
    """
    epochs, lr = check_warmup_options(epochs, lr)
    device = torch.device(getattr(ctx, "device", "cpu"))
    _sync(device)
    start = time.perf_counter()
    model = copy.deepcopy(ctx.model)
    model.train()
    pool = np.asarray(ctx.pool, dtype=np.int64)
    n = pool.size
    b = int(batch_size or ctx.batch_size)
    correct = np.zeros((epochs, n), dtype=bool) if record_correct else None
    losses = np.zeros(epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )
    for epoch in range(epochs):
        order = ctx.rng.permutation(n)
        total = torch.zeros((), device=device)
        for batch in np.array_split(order, max(1, n // max(b, 1))):
            if batch.size == 0:
                continue
            x, y = ctx.inputs(pool[batch])
            out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * batch.size
            if correct is not None:
                correct[epoch, batch] = (out.detach().argmax(1) == y).cpu().numpy()
        losses[epoch] = float(total) / max(n, 1)
        if not np.isfinite(losses[epoch]):
            raise FloatingPointError(
                f"warm-up training diverged (non-finite loss in warm-up epoch {epoch + 1}, "
                f"selecting at epoch {getattr(ctx, 'epoch', 0) + 1}); lower warmup_lr"
            )
    model.eval()
    _sync(device)
    return WarmupResult(model, time.perf_counter() - start, pool, correct, losses)


class ModelView:
    """A context that runs its forwards on another ``model`` and otherwise delegates to ``ctx``.

    ``ModelView(ctx, warmed).forward(indices)`` is ``ctx.forward`` with ``warmed`` in place of
    ``ctx.model``: eval mode, no grad, batches of ``ctx.forward_batch`` (default 1024), and
    returns float32 logits ``(k, C)`` and embeddings ``(k, D)`` (the model's ``embed`` output,
    or the logits for models without an ``embed``/``classifier`` split). Every other attribute
    (``pool``, ``targets``, ``epoch``, ``rng``…) is ``ctx``'s, so ``signals.compute`` works on it.
    """

    def __init__(self, ctx, model: nn.Module):
        self._ctx = ctx
        self.model = model

    def __getattr__(self, name: str):
        if name == "_ctx":  # not set yet (e.g. during copying): no recursion
            raise AttributeError(name)
        return getattr(self._ctx, name)

    @torch.no_grad()
    def forward(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(k, C)`` and embeddings ``(k, D)`` of dataset ``indices`` ``(k,)``."""
        model = self.model
        was_training = model.training
        model.eval()
        idx = np.asarray(indices, dtype=np.int64)
        step = int(getattr(self._ctx, "forward_batch", 1024))
        logits, embeds = [], []
        try:
            for s in range(0, idx.size, step):
                x, _ = self._ctx.inputs(idx[s : s + step])
                if hasattr(model, "embed") and hasattr(model, "classifier"):
                    h = model.embed(x)
                    z = model.classifier(h)
                else:
                    z = h = model(x)
                logits.append(z.float())
                embeds.append(h.float())
        finally:
            model.train(was_training)
        if not logits:
            device = torch.device(getattr(self._ctx, "device", "cpu"))
            return (
                torch.empty(0, self._ctx.num_classes, device=device),
                torch.empty(0, 0, device=device),
            )
        return torch.cat(logits), torch.cat(embeds)
