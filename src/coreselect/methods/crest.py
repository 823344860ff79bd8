"""CREST: mini-batch coresets from random pools, kept while a quadratic model of the loss holds.

Yang, Kang & Mirzasoleiman, "Towards Sustainable Learning: Coresets for Data-efficient Deep
Learning", ICML 2023. At each selection CREST draws P class-balanced random pools (a fraction
r of the data each), picks a mini-batch coreset from each by per-class facility location on
``p − y``, and trains on their union with cluster-size weights. It fits a quadratic model of the
loss on the union of the pools — L0, an EMA gradient ḡ and an RMS-EMA Hutchinson Hessian
diagonal h̄ — and every T steps compares the true loss on the same union with the model at the
accumulated parameter displacement δ: when ``|L_true − (L0 + δᵀḡ + ½ δᵀ(h̄ ⊙ δ))| > τ·L_true``
it reselects. T adapts as ⌈n0 / n_t⌉ (ratio of the first to the current curvature norm), and the
next selection draws P = min(5·T, steps per epoch) pools. Optionally, examples whose last
``watch`` recorded losses are all ≤ ``drop_thresh`` are dropped every ``drop_interval`` epochs.

Not reproduced from the release (DESIGN.md §4): it applies the gradient twice (backward twice
without zeroing), drops momentum, and runs a full-data forward at every check. Here δ is the
real displacement of each optimizer step (momentum included) and checks see only the union.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from coreselect.methods.base import StepStrategy
from coreselect.methods.registry import register
from coreselect.signals import hutchinson_diagonal, logit_gradients


class QuadraticModel:
    """``L(δ) ≈ L0 + δᵀḡ + ½ δᵀ(h̄ ⊙ δ)`` from streamed gradients and Hessian-diagonal samples.

    ``ḡ`` is the bias-corrected EMA of the gradients (``beta1``); ``h̄`` the bias-corrected
    root-mean-square EMA of the Hutchinson samples (``beta2``), so it is unsigned. The EMA
    state persists across fits, as in AdaHessian. Vectors are flat tensors ``(p,)``.
    """

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999):
        if not 0.0 <= beta1 < 1.0 or not 0.0 <= beta2 < 1.0:
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1}, {beta2}")
        self.beta1, self.beta2 = beta1, beta2
        self._m = self._v = None
        self._t = 0
        self.loss0 = 0.0
        self.grad: torch.Tensor | None = None
        self.hess: torch.Tensor | None = None

    def update(self, grad: torch.Tensor, hess_sample: torch.Tensor) -> None:
        """Feed one gradient ``(p,)`` and one Hutchinson sample ``z ⊙ Hz`` ``(p,)``."""
        if self._m is None:
            self._m = torch.zeros_like(grad)
            self._v = torch.zeros_like(grad)
        self._t += 1
        self._m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        self._v.mul_(self.beta2).addcmul_(hess_sample, hess_sample, value=1 - self.beta2)
        self.grad = self._m / (1 - self.beta1**self._t)
        self.hess = (self._v / (1 - self.beta2**self._t)).sqrt()

    def predict(self, delta: torch.Tensor) -> float:
        """The model's loss at displacement ``delta`` ``(p,)`` from the fit point."""
        if self.grad is None:
            raise RuntimeError("QuadraticModel.predict() before update()")
        return float(self.loss0 + delta @ self.grad + 0.5 * delta @ (self.hess * delta))

    def exceeded(self, true_loss: float, delta: torch.Tensor, tau: float) -> bool:
        """True when ``|true_loss − predict(delta)| > tau · true_loss``."""
        return abs(true_loss - self.predict(delta)) > tau * true_loss


class LossWatch:
    """The last ``watch`` recorded losses of every example; decides which are learned."""

    def __init__(self, n: int, watch: int):
        if watch < 1:
            raise ValueError(f"watch must be >= 1, got {watch}")
        self.watch = watch
        self.history = np.full((watch, n), np.nan, dtype=np.float32)
        self.count = np.zeros(n, dtype=np.int64)

    def record(self, indices: np.ndarray, losses: np.ndarray) -> None:
        """Append ``losses`` ``(k,)`` of dataset ``indices`` ``(k,)`` (unique)."""
        self.history[self.count[indices] % self.watch, indices] = losses
        self.count[indices] += 1

    def learned(self, indices: np.ndarray, thresh: float) -> np.ndarray:
        """Mask over ``indices``: ≥ ``watch`` records, the last ``watch`` all ≤ ``thresh``."""
        full = self.count[indices] >= self.watch
        low = np.all(self.history[:, indices] <= thresh, axis=0)
        return full & low


def balanced_counts(available: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` as evenly as possible over groups with ``available`` ``(G,)`` members.

    Groups that cannot fill their share give it to the others (water-filling); returns int64
    counts ``≤ available`` summing to ``min(total, available.sum())``.
    """
    available = np.asarray(available, dtype=np.int64)
    counts = np.zeros_like(available)
    left = min(int(total), int(available.sum()))
    open_ = available > 0
    while left > 0 and open_.any():
        idx = np.nonzero(open_)[0]
        share = np.full(idx.size, left // idx.size)
        share[: left % idx.size] += 1
        room = available[idx] - counts[idx]
        take = np.minimum(share, room)
        counts[idx] += take
        left -= int(take.sum())
        open_ = counts < available
    return counts


@register(
    "crest",
    paper="Yang, Kang & Mirzasoleiman, ICML 2023 (CREST)",
    summary="mini-batch coresets of random pools; reselect when a quadratic loss model fails",
)
class Crest(StepStrategy):
    """CREST as a StepStrategy (see the module docstring).

    Args:
        pool_fraction: r, each random pool's share of the training set (default 0.01).
        initial_pools: P at the first selection (5).
        pools_per_interval: P = min(pools_per_interval · T, steps per epoch) afterwards (5).
        tau: reselect when the model's relative error exceeds τ (0.1).
        beta1, beta2: EMA factors of the gradient and of the squared Hessian samples.
        hess_eps: floor of the curvature norm in T = ⌈n0 / max(n_t, ε)⌉ (1e-4).
        interval_mul: multiplies T (1).
        hutchinson_samples: Rademacher vectors per batch in the Hessian estimate (1).
        drop_learned: drop examples whose last ``watch`` losses are all ≤ ``drop_thresh``.
        drop_interval: epochs between drops (2); watch: losses considered (3);
        drop_thresh: loss threshold (0.1).
        metric, optimizer: the engine's facility-location similarity and greedy.
    """

    needs_displacement = True

    def __init__(
        self,
        pool_fraction: float = 0.01,
        initial_pools: int = 5,
        pools_per_interval: int = 5,
        tau: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.999,
        hess_eps: float = 1e-4,
        interval_mul: float = 1.0,
        hutchinson_samples: int = 1,
        drop_learned: bool = False,
        drop_interval: int = 2,
        watch: int = 3,
        drop_thresh: float = 0.1,
        metric: str = "euclidean",
        optimizer: str = "lazy",
    ):
        if not 0.0 < pool_fraction <= 1.0:
            raise ValueError(f"pool_fraction must be in (0, 1], got {pool_fraction}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if initial_pools < 1 or pools_per_interval < 1:
            raise ValueError("initial_pools and pools_per_interval must be >= 1")
        if hess_eps <= 0 or interval_mul <= 0:
            raise ValueError("hess_eps and interval_mul must be > 0")
        if drop_interval < 1:
            raise ValueError(f"drop_interval must be >= 1, got {drop_interval}")
        self.pool_fraction = float(pool_fraction)
        self.initial_pools = int(initial_pools)
        self.pools_per_interval = int(pools_per_interval)
        self.tau = float(tau)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.hess_eps = float(hess_eps)
        self.interval_mul = float(interval_mul)
        self.hutchinson_samples = int(hutchinson_samples)
        self.drop_learned = bool(drop_learned)
        self.drop_interval = int(drop_interval)
        self.watch = int(watch)
        self.drop_thresh = float(drop_thresh)
        self.metric = metric
        self.optimizer = optimizer
        self.quadratic = QuadraticModel(beta1, beta2)  # validates the betas

    # ---------------------------------------------------------------- protocol
    def setup(self, ctx) -> None:
        n = ctx.pool.size
        self.pool_size = max(1, math.ceil(self.pool_fraction * n))
        if self.pool_size < ctx.batch_size:
            raise ValueError(
                f"crest: a random pool of {self.pool_size} examples (pool_fraction "
                f"{self.pool_fraction} of {n}) is smaller than a mini-batch of {ctx.batch_size}; "
                "raise pool_fraction or lower the batch size"
            )
        self.active = np.sort(ctx.pool)
        self.watcher = LossWatch(int(ctx.targets.size), self.watch) if self.drop_learned else None
        self.interval = 1
        self.pools = self.initial_pools
        self.norm0: float | None = None
        self.union = np.empty(0, dtype=np.int64)
        self.delta: torch.Tensor | None = None
        self.since_selection = 0
        self.need_selection = True
        self._queue = np.empty(0, dtype=np.int64)
        self._queue_w = np.empty(0, dtype=np.float32)
        self._pos = 0
        self._last_drop_epoch = 0
        self.selections = 0
        self.checks = 0
        self.skipped_checks = 0
        self.dropped = 0
        self.checks_between: list[int] = []
        self._checks_since = 0
        self.times = {"pools_s": 0.0, "greedy_s": 0.0, "quadratic_s": 0.0, "check_s": 0.0}

    def next_batch(self, ctx):
        if self.drop_learned and ctx.epoch > self._last_drop_epoch:
            self._last_drop_epoch = ctx.epoch
            if ctx.epoch % self.drop_interval == 0:
                self._drop(ctx)
        if self.need_selection:
            self._select(ctx)
        elif self.since_selection > 0 and self.since_selection % self.interval == 0:
            if self._check(ctx):
                self._select(ctx)
        b = ctx.batch_size
        if self._pos + b > self._queue.size:
            order = ctx.rng.permutation(self._queue.size)
            self._queue, self._queue_w = self._queue[order], self._queue_w[order]
            self._pos = 0
        sl = slice(self._pos, self._pos + b)
        self._pos += b
        return self._queue[sl], self._queue_w[sl]

    def after_step(self, ctx, indices, losses) -> None:
        step = torch.cat([d.reshape(-1) for d in ctx.displacement])
        self.delta = step.clone() if self.delta is None else self.delta.add_(step)
        self.since_selection += 1

    def stats(self) -> dict:
        between = self.checks_between or [self._checks_since]
        return {
            "selections": self.selections,
            "checks": self.checks,
            "skipped_checks": self.skipped_checks,
            "mean_checks_between_selections": float(np.mean(between)),
            "examples_dropped": self.dropped,
            "final_interval": self.interval,
            "final_pools": self.pools,
            **self.times,
        }

    # ---------------------------------------------------------------- selection
    def _draw_pool(self, ctx) -> np.ndarray:
        labels = ctx.targets[self.active]
        classes = np.unique(labels)
        groups = [self.active[labels == c] for c in classes]
        counts = balanced_counts(np.array([g.size for g in groups]), self.pool_size)
        picks = [ctx.rng.choice(g, size=int(m), replace=False) for g, m in zip(groups, counts)]
        return np.concatenate(picks)

    def _select(self, ctx) -> None:
        from coreselect import select

        t0 = time.perf_counter()
        pools = [self._draw_pool(ctx) for _ in range(self.pools)]
        union = np.concatenate(pools)
        logits, _ = ctx.forward(union)
        targets = torch.as_tensor(ctx.targets[union], device=logits.device)
        if not torch.isfinite(logits).all():
            raise FloatingPointError(
                f"crest: non-finite model outputs at epoch {ctx.epoch + 1}, step {ctx.step}"
            )
        grads = logit_gradients(logits, targets)
        if self.watcher is not None:
            losses = F.cross_entropy(logits, targets, reduction="none").cpu().numpy()
            uniq, first = np.unique(union, return_index=True)
            self.watcher.record(uniq, losses[first])
        self.times["pools_s"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        chosen, weights, start = [], [], 0
        for pool in pools:
            g = grads[start : start + pool.size]
            start += pool.size
            cs = select(
                g,
                min(ctx.batch_size, pool.size),
                labels=ctx.targets[pool],
                metric=self.metric,
                optimizer=self.optimizer,
                device=ctx.device,
            )
            chosen.append(pool[cs.indices])
            weights.append(cs.weights)
        self._queue = np.concatenate(chosen)
        self._queue_w = np.concatenate(weights).astype(np.float32)
        order = ctx.rng.permutation(self._queue.size)
        self._queue, self._queue_w, self._pos = self._queue[order], self._queue_w[order], 0
        self.times["greedy_s"] += time.perf_counter() - t1
        self.union = np.unique(union)
        self._fit_quadratic(ctx)
        self.selections += 1
        if self.selections > 1:
            self.checks_between.append(self._checks_since)
        self._checks_since = 0
        self.need_selection = False
        self.since_selection = 0

    def _fit_quadratic(self, ctx) -> None:
        """L0, ḡ, h̄ on the union of the pools, eval mode; then adapt T and P."""
        t0 = time.perf_counter()
        model = ctx.model
        params = [p for p in model.parameters()]
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**31)))
        try:
            for s in range(0, self.union.size, ctx.batch_size):
                x, y = ctx.inputs(self.union[s : s + ctx.batch_size])
                loss = F.cross_entropy(model(x).float(), y)
                hess, grad = hutchinson_diagonal(
                    loss, params, samples=self.hutchinson_samples, generator=gen, return_grad=True
                )
                self.quadratic.update(_flat(grad), _flat(hess).detach())
                total += float(loss.detach()) * len(y)
                count += len(y)
        finally:
            model.train(was_training)
        self.quadratic.loss0 = total / max(count, 1)
        self.delta = None
        norm = float(self.quadratic.hess.norm())
        if not math.isfinite(norm):
            warnings.warn(
                "crest: non-finite Hessian estimate; keeping the check interval", stacklevel=2
            )
        elif self.norm0 is None:
            self.norm0 = max(norm, self.hess_eps)
        else:
            ratio = self.norm0 / max(norm, self.hess_eps) * self.interval_mul
            self.interval = int(min(max(1, math.ceil(ratio)), ctx.steps_per_epoch))
            self.pools = int(min(self.pools_per_interval * self.interval, ctx.steps_per_epoch))
            self.pools = max(self.pools, 1)
        self.times["quadratic_s"] += time.perf_counter() - t0

    def _check(self, ctx) -> bool:
        """Compare the true loss on the union with the quadratic model; True → reselect."""
        t0 = time.perf_counter()
        self.checks += 1
        self._checks_since += 1
        try:
            if self.delta is None:
                return False
            if not (
                torch.isfinite(self.quadratic.grad).all()
                and torch.isfinite(self.quadratic.hess).all()
            ):
                self.skipped_checks += 1
                warnings.warn("crest: non-finite quadratic model; check skipped", stacklevel=2)
                return False
            logits, _ = ctx.forward(self.union)
            targets = torch.as_tensor(ctx.targets[self.union], device=logits.device)
            true_loss = float(F.cross_entropy(logits, targets))
            return self.quadratic.exceeded(true_loss, self.delta, self.tau)
        finally:
            self.times["check_s"] += time.perf_counter() - t0

    def _drop(self, ctx) -> None:
        """Drop learned examples from the active set, keeping every class above its floor."""
        labels = ctx.targets[self.active]
        learned = self.watcher.learned(self.active, self.drop_thresh)
        classes = np.unique(labels)
        floor = math.ceil(self.pool_size / max(classes.size, 1))
        keep = np.ones(self.active.size, dtype=bool)
        for c in classes:
            in_c = labels == c
            if int((in_c & ~learned).sum()) >= floor:
                keep[in_c & learned] = False
        self.dropped += int((~keep).sum())
        self.active = self.active[keep]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])
