"""AdaCore: curvature-aware coresets (a reconstruction; no official code exists).

Pooladzandi, Davini & Mirzasoleiman, "Adaptive Second Order Coresets for Data-efficient Machine
Learning", ICML 2022. The paper selects coresets whose weighted *preconditioned* gradients
match the full data's, the preconditioner being a Hessian-diagonal estimate averaged over time.

Choices made here (DESIGN.md §4):
- per-example vectors ``u_i = g_i ⊘ (H̄ + ε·mean(H̄))`` with ``g_i`` the exact last-layer
  gradient ``(p − y) ⊗ [h, 1]`` (or ``p − y`` with ``features="logit"``);
- ``H̄`` is one estimate *shared by the whole pool*: the diagonal of the Hessian of the pool's
  mean loss with respect to those parameters — exact for the last layer by default
  (``p_c(1 − p_c) h_d²`` averaged), or Hutchinson's estimate — exponentially averaged across
  selections (β = 0.9, bias-corrected);
- per-class facility location on ``u`` (Euclidean), cluster-size weights, reselection every R
  epochs — as in CRAIG.
A per-example ``p(1 − p)`` preconditioner is deliberately not used: it maps every wrong-class
coordinate ``p_c / (p_c(1 − p_c)) ≈ 1`` and collapses the features.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from coreselect.methods.base import EpochStrategy, TrainPlan, check_reselect_every
from coreselect.methods.registry import register
from coreselect.signals import (
    hutchinson_diagonal,
    last_layer_gradients,
    last_layer_hessian_diagonal,
    logit_gradients,
)

HESSIANS = ("exact", "hutchinson")
ADACORE_FEATURES = ("last-layer", "logit")


@register(
    "adacore",
    paper="Pooladzandi et al., ICML 2022 (AdaCore; reconstruction)",
    summary="facility location on Hessian-preconditioned last-layer gradients",
)
class AdaCore(EpochStrategy):
    """AdaCore as an EpochStrategy (see the module docstring for the reconstruction's choices).

    Args:
        reselect_every: epochs between selections (None: once).
        features: "last-layer" (``(p − y) ⊗ [h, 1]``) or "logit" (``p − y``).
        hessian: "exact" (closed form for the last layer) or "hutchinson".
        beta: EMA factor of H̄ across selections (0.9).
        eps: damping, relative to mean(H̄) (1e-3).
        project_dim: random projection of the preconditioned vectors (None: exact).
        hutchinson_samples: Rademacher vectors for ``hessian="hutchinson"``.
        metric, optimizer: the engine's similarity and greedy.
    """

    def __init__(
        self,
        reselect_every: int | None = 1,
        features: str = "last-layer",
        hessian: str = "exact",
        beta: float = 0.9,
        eps: float = 1e-3,
        project_dim: int | None = None,
        hutchinson_samples: int = 4,
        metric: str = "euclidean",
        optimizer: str = "lazy",
    ):
        if features not in ADACORE_FEATURES:
            raise ValueError(
                f"unknown features {features!r}; valid names: {', '.join(ADACORE_FEATURES)}"
            )
        if hessian not in HESSIANS:
            raise ValueError(f"unknown hessian {hessian!r}; valid names: {', '.join(HESSIANS)}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.reselect_every = check_reselect_every(reselect_every)
        self.features = features
        self.hessian = hessian
        self.beta = float(beta)
        self.eps = float(eps)
        self.project_dim = project_dim
        self.hutchinson_samples = int(hutchinson_samples)
        self.metric = metric
        self.optimizer = optimizer
        self._ema: torch.Tensor | None = None
        self._t = 0
        self.selections = 0
        self.feature_s = 0.0
        self.greedy_s = 0.0
        self.last_coreset = None

    def plan(self, ctx) -> TrainPlan:
        from coreselect import select

        pool, k = ctx.pool, ctx.budget
        if k >= pool.size:
            warnings.warn(
                f"adacore: budget {k} >= pool size {pool.size}; training on the whole pool",
                stacklevel=2,
            )
            return TrainPlan(pool)
        t0 = time.perf_counter()
        logits, embeds = ctx.forward(pool)
        if not torch.isfinite(logits).all():
            raise FloatingPointError(
                f"adacore: non-finite model outputs at epoch {ctx.epoch + 1}; selection stopped"
            )
        targets = torch.as_tensor(ctx.targets[pool], device=logits.device)
        h_bar = self.update_hessian(self.hessian_diagonal(ctx, logits, embeds, targets))
        scale = 1.0 / (h_bar + self.eps * h_bar.mean())
        feats = self.preconditioned(logits, embeds, targets, scale, seed=ctx.epoch)
        self.feature_s += time.perf_counter() - t0
        t1 = time.perf_counter()
        coreset = select(
            feats.float(),
            k,
            labels=ctx.targets[pool],
            metric=self.metric,
            optimizer=self.optimizer,
            device=ctx.device,
        )
        self.greedy_s += time.perf_counter() - t1
        self.selections += 1
        self.last_coreset = coreset
        return TrainPlan(pool[coreset.indices], coreset.weights)

    def hessian_diagonal(self, ctx, logits, embeds, targets) -> torch.Tensor:
        """This selection's H ``(P,)``: the pool-mean loss's Hessian diagonal w.r.t. the
        parameters the features differentiate (last layer, or logits/bias for "logit")."""
        bias_only = self.features == "logit"
        if self.hessian == "exact":
            if bias_only:
                p = torch.softmax(logits, 1)
                return (p * (1 - p)).mean(0)
            return last_layer_hessian_diagonal(logits, embeds)
        # Hutchinson on the last layer only: the body's output is fixed, so it is cheap
        head = ctx.model.classifier
        weight = head.weight.detach().clone().requires_grad_(not bias_only)
        bias = head.bias.detach().clone().requires_grad_(True)
        params = [bias] if bias_only else [weight, bias]
        loss = F.cross_entropy(F.linear(embeds, weight, bias), targets)
        gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**31)))
        est = hutchinson_diagonal(loss, params, samples=self.hutchinson_samples, generator=gen)
        if bias_only:
            return est[0].detach()
        w, b = (e.detach() for e in est)
        return torch.cat([w, b[:, None]], dim=1).reshape(-1)

    def update_hessian(self, h: torch.Tensor) -> torch.Tensor:
        """Fold ``h`` into the EMA across selections; returns the bias-corrected H̄ (≥ 0)."""
        h = h.abs()
        self._t += 1
        self._ema = (
            h.clone() * (1 - self.beta)
            if self._ema is None
            else (self._ema * self.beta + h * (1 - self.beta))
        )
        return self._ema / (1 - self.beta**self._t)

    def preconditioned(self, logits, embeds, targets, scale, seed=0) -> torch.Tensor:
        """``u_i = g_i ⊙ scale`` for every pool example: ``(n, P)`` or ``(n, project_dim)``."""
        if self.features == "logit":
            feats = logit_gradients(logits, targets) * scale
            if self.project_dim is not None:
                gen = torch.Generator().manual_seed(seed)
                r = torch.randn(feats.shape[1], self.project_dim, generator=gen).to(feats)
                feats = feats @ r / np.sqrt(self.project_dim)
            return feats
        return last_layer_gradients(
            logits, embeds, targets, project_dim=self.project_dim, seed=seed, scale=scale
        )

    def stats(self) -> dict:
        return {
            "selections": self.selections,
            "feature_s": self.feature_s,
            "greedy_s": self.greedy_s,
        }
