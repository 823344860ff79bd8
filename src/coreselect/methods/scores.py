"""Score-based baselines: ``el2n``, ``grand`` (Paul et al., 2021) and ``uncertainty``.

Each scores every pool example with a model warmed up for a few epochs on the pool
(:mod:`coreselect.methods.warmup`; default 1 epoch) and keeps the ⌈f·N⌉ highest scores:

- **EL2N**: ``||softmax(z) − onehot(y)||₂``, the error vector's norm.
- **GraNd**: the per-example gradient norm. We use the *exact* norm of the last linear
  layer's gradient (weight and bias), ``||(p − y) ⊗ [h, 1]|| = ||p − y|| · sqrt(||h||² + 1)``,
  from one eval-mode forward. This approximates the paper's full-parameter gradient norm by
  its last-layer part (the paper's own cheap variant), and uses one warmed-up model rather
  than an expectation over several initializations.
- **uncertainty**: ``score="least-confidence"`` (``1 − max p``), ``"entropy"``
  (``−Σ p log p``), or ``"margin"`` (``1 − (p₁ − p₂)``, the top two probabilities); labels are
  not used. The most uncertain are kept.

Options shared by all three: ``keep="highest"`` (default; ``"lowest"`` keeps the easiest),
``drop_top`` (discard that fraction of highest scores first — likely label noise — then keep
the next ones), ``per_class`` (split the budget over classes in proportion; default off, as in
the papers, which rank globally), ``warmup_epochs``, ``warmup_lr`` and ``reselect_every``.
Ties are broken by seeded random.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from coreselect.methods.baseline import (
    KEEP,
    BaselineStrategy,
    check_bool,
    check_choice,
    class_groups,
    forward_checked,
    rank_scores,
)
from coreselect.methods.registry import register
from coreselect.methods.warmup import DEFAULT_WARMUP_EPOCHS, DEFAULT_WARMUP_LR

UNCERTAINTY_SCORES = ("least-confidence", "entropy", "margin")


def el2n_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """EL2N: ``||softmax(logits) − onehot(targets)||₂`` per row.

    Args: logits ``(n, C)``; targets int ``(n,)``. Returns float64 ``(n,)``.
    """
    p = torch.softmax(logits.double(), dim=1)
    p[torch.arange(len(targets), device=p.device), targets.to(p.device)] -= 1.0
    return torch.linalg.vector_norm(p, dim=1)


def grand_scores(
    logits: torch.Tensor, embeddings: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """GraNd, last-layer version: ``||p − y|| · sqrt(||h||² + 1)`` per row.

    The exact norm of the cross-entropy gradient with respect to the last linear layer's weight
    and bias, ``(p − y) ⊗ [h, 1]``. Args: logits ``(n, C)``, embeddings ``h`` ``(n, D)``,
    targets ``(n,)``. Returns float64 ``(n,)``.
    """
    h2 = embeddings.double().pow(2).sum(dim=1)
    return el2n_scores(logits, targets) * torch.sqrt(h2 + 1.0)


def uncertainty_scores(logits: torch.Tensor, score: str = "least-confidence") -> torch.Tensor:
    """Uncertainty of each prediction; larger is more uncertain.

    Args:
        logits: ``(n, C)``.
        score: "least-confidence" (``1 − max_c p_c``), "entropy" (``−Σ_c p_c log p_c``, nats)
            or "margin" (``1 − (p_(1) − p_(2))``, the two largest probabilities).

    Returns: float64 ``(n,)``.
    """
    check_choice("score", score, UNCERTAINTY_SCORES)
    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    if score == "least-confidence":
        return 1.0 - p.max(dim=1).values
    if score == "entropy":
        return -(p * logp).sum(dim=1)
    if p.shape[1] < 2:
        return torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    top2 = p.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


class ScoreStrategy(BaselineStrategy):
    """Keep the best-scoring pool examples; subclasses define :meth:`scores`.

    Args:
        keep: "highest" (default) or "lowest" scores kept.
        drop_top: fraction in [0, 1) of highest-scoring examples discarded before keeping
            (Paul et al.'s offset against label noise); capped so the budget can be met.
        per_class: split the budget over classes with proportional counts.
        warmup_epochs, warmup_lr, reselect_every: see :class:`BaselineStrategy`.
    """

    def __init__(
        self,
        *,
        keep: str = "highest",
        drop_top: float = 0.0,
        per_class: bool = False,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, reselect_every=reselect_every
        )
        self.keep = check_choice("keep", keep, KEEP)
        try:
            drop = float(drop_top)
        except (TypeError, ValueError):
            drop = -1.0
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"drop_top must be a fraction in [0, 1), got {drop_top!r}")
        self.drop_top = drop
        self.per_class = check_bool("per_class", per_class)

    @abc.abstractmethod
    def scores(self, ctx, pool: np.ndarray, warmup) -> np.ndarray:
        """Float64 scores ``(n,)`` of ``pool`` ``(n,)``, larger = harder / more informative."""

    def select(self, ctx, pool, k, warmup):
        """Rank the pool's scores (globally or per class) and keep ``k``; weights 1."""
        scores = np.asarray(self.scores(ctx, pool, warmup), dtype=np.float64)
        if self.per_class:
            parts, dropped = [], 0
            for _, pos, m in class_groups(ctx, pool, k):
                chosen, d = rank_scores(
                    scores[pos], m, ctx.rng, keep=self.keep, drop_top=self.drop_top
                )
                parts.append(pos[chosen])
                dropped += d
            positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            positions, dropped = rank_scores(
                scores, k, ctx.rng, keep=self.keep, drop_top=self.drop_top
            )
        finite = np.isfinite(scores)
        kept = scores[positions]
        facts: dict[str, Any] = {
            "score_pool_mean": float(scores[finite].mean()) if finite.any() else None,
            "score_kept_mean": (
                float(kept[np.isfinite(kept)].mean()) if np.isfinite(kept).any() else None
            ),
            "dropped_top": int(dropped),
        }
        return positions, None, facts


@register(
    "el2n",
    paper="Paul et al., NeurIPS 2021 (EL2N)",
    summary="keep the largest ||softmax − onehot|| after a short warm-up",
)
class EL2N(ScoreStrategy):
    """EL2N: error-vector norm ``||p − y||₂`` from a warmed-up copy; highest kept by default.

    See :class:`ScoreStrategy` for the options.
    """

    def scores(self, ctx, pool, warmup):
        """``||softmax(z) − onehot(y)||₂`` of each pool example, ``(n,)``."""
        logits, _ = forward_checked(ctx, pool)
        y = torch.as_tensor(np.asarray(ctx.targets)[pool], device=logits.device)
        return el2n_scores(logits, y).cpu().numpy()


@register(
    "grand",
    paper="Paul et al., NeurIPS 2021 (GraNd)",
    summary="keep the largest last-layer gradient norms after a short warm-up",
)
class GraNd(ScoreStrategy):
    """GraNd: exact last-layer gradient norm ``||p − y||·sqrt(||h||² + 1)``; highest kept.

    An approximation of the paper's full-parameter gradient norm by its last-layer part (see
    the module docstring). Options: :class:`ScoreStrategy`.
    """

    def scores(self, ctx, pool, warmup):
        """Last-layer gradient norm of each pool example, ``(n,)``."""
        logits, embeds = forward_checked(ctx, pool)
        y = torch.as_tensor(np.asarray(ctx.targets)[pool], device=logits.device)
        return grand_scores(logits, embeds, y).cpu().numpy()


@register(
    "uncertainty",
    paper="Coleman et al., ICLR 2020 (SVP: least confidence / entropy / margin)",
    summary="keep the most uncertain predictions after a short warm-up",
)
class Uncertainty(ScoreStrategy):
    """Uncertainty sampling: keep the examples the warmed-up model is least sure about.

    Args:
        score: "least-confidence" (default), "entropy" or "margin"
            (see :func:`uncertainty_scores`).
        keep, drop_top, per_class, warmup_epochs, warmup_lr, reselect_every: see
            :class:`ScoreStrategy`.
    """

    def __init__(
        self,
        score: str = "least-confidence",
        *,
        keep: str = "highest",
        drop_top: float = 0.0,
        per_class: bool = False,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            keep=keep,
            drop_top=drop_top,
            per_class=per_class,
            warmup_epochs=warmup_epochs,
            warmup_lr=warmup_lr,
            reselect_every=reselect_every,
        )
        self.score = check_choice("score", score, UNCERTAINTY_SCORES)

    def scores(self, ctx, pool, warmup):
        """The chosen uncertainty of each pool example, ``(n,)``."""
        logits, _ = forward_checked(ctx, pool)
        return uncertainty_scores(logits, self.score).cpu().numpy()
