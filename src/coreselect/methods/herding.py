"""``herding``: Welling's herding on penultimate embeddings, per class.

For each class with mean embedding μ, picks greedily the example that brings the mean of the
picks closest to μ: at step t (t picks so far, sum s), choose
``argmin_i ||μ − (s + x_i)/(t + 1)||`` over examples not yet picked — the exemplar selection
of iCaRL (Rebuffi et al., 2017). Since ``(t + 1)²`` does not depend on i, this is the example
nearest to ``r = (t + 1)μ − s``, found with one blocked distance pass per pick (torch, on the
context's device, float64 so the running sums do not lose precision). Budgets are split over
classes in proportion. Embeddings come from a copy of the model warmed up on the pool
(default 1 epoch). Weights 1.
"""

from __future__ import annotations

import numpy as np
import torch

from coreselect.methods.baseline import BaselineStrategy, check_finite, class_groups
from coreselect.methods.kcenter import sq_distances_to
from coreselect.methods.registry import register
from coreselect.methods.warmup import DEFAULT_WARMUP_EPOCHS, DEFAULT_WARMUP_LR
from coreselect.signals import compute


def herding_select(
    x: torch.Tensor, k: int, *, block_rows: int | None = None
) -> tuple[np.ndarray, float]:
    """Herding: ``k`` rows of ``x`` ``(n, d)`` whose running mean tracks the mean of ``x``.

    Each step picks the unpicked row minimizing ``||μ − (s + x_i)/(t + 1)||`` (lowest index on
    ties). Returns ``(indices (k,) int64 in pick order, ||μ − mean of the picks||)``.
    """
    n = x.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    xd = x.double()
    mu = xd.mean(dim=0)
    s = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks = torch.empty(k, dtype=torch.long, device=x.device)
    inf = torch.tensor(float("inf"), dtype=xd.dtype, device=x.device)
    for t in range(k):
        d = sq_distances_to(xd, (t + 1) * mu - s, block_rows)
        j = torch.argmin(torch.where(taken, inf, d))
        picks[t] = j
        taken[j] = True
        s += xd[j]
    gap = float(torch.linalg.vector_norm(mu - s / max(k, 1))) if k else float("nan")
    return picks.cpu().numpy().astype(np.int64), gap


@register(
    "herding",
    paper="Welling, ICML 2009 (herding); Rebuffi et al., CVPR 2017 (iCaRL exemplars)",
    summary="per class, picks whose running mean embedding tracks the class mean",
)
class Herding(BaselineStrategy):
    """Herding per class on penultimate embeddings, proportional budgets (weights 1).

    Args: warmup_epochs, warmup_lr, reselect_every — see :class:`BaselineStrategy`.
    ``stats()["last"]["mean_gap"]`` is the largest ``||class mean − mean of its picks||``.
    """

    def __init__(
        self,
        *,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, reselect_every=reselect_every
        )

    def select(self, ctx, pool, k, warmup):
        """Embed the pool and herd within each class."""
        emb = compute(ctx, pool, "penultimate")
        check_finite(emb, ctx, "embeddings")
        parts, gap = [], 0.0
        for _, pos, m in class_groups(ctx, pool, k):
            if m == 0:
                continue
            picks, g = herding_select(emb[torch.as_tensor(pos, device=emb.device)], m)
            parts.append(pos[picks])
            gap = max(gap, g)
        positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return positions, None, {"mean_gap": gap}
