"""``kcenter``: greedy k-center (farthest-first traversal) on penultimate embeddings.

Sener & Savarese (2018) pick the point farthest from the centers chosen so far, k times; the
result covers every point within twice the optimal k-center radius (Gonzalez, 1985). Here it
runs in torch on the context's device (CPU or GPU), keeping one ``(n,)`` vector of distances
to the nearest center and updating it block by block of rows after each pick — never an
``n × n`` matrix. The first center is a seeded random pool point. Default: per class, with the
budget split over classes in proportion; ``per_class=False`` runs once on the whole pool.
Embeddings come from a copy of the model warmed up on the pool (default 1 epoch).
"""

from __future__ import annotations

import numpy as np
import torch

from coreselect.methods.baseline import BaselineStrategy, check_bool, check_finite, class_groups
from coreselect.methods.registry import register
from coreselect.methods.warmup import DEFAULT_WARMUP_EPOCHS, DEFAULT_WARMUP_LR
from coreselect.signals import compute

#: rows × dims per block of a distance update (bounds the temporary memory to ~64 MB float32)
BLOCK_ELEMENTS = 1 << 24


def sq_distances_to(
    x: torch.Tensor, c: torch.Tensor, block_rows: int | None = None
) -> torch.Tensor:
    """Squared Euclidean distances ``||x_i − c||²`` ``(n,)`` from rows of ``x`` ``(n, d)``.

    Computed as explicit differences (no ``||x||² − 2x·c`` cancellation), ``block_rows`` rows at
    a time (default: about ``BLOCK_ELEMENTS / d``).
    """
    n, d = x.shape
    rows = block_rows or max(1, BLOCK_ELEMENTS // max(d, 1))
    if n <= rows:
        return (x - c).pow_(2).sum(dim=1)
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    for s in range(0, n, rows):
        out[s : s + rows] = (x[s : s + rows] - c).pow_(2).sum(dim=1)
    return out


def kcenter_greedy(
    x: torch.Tensor, k: int, first: int = 0, *, block_rows: int | None = None
) -> tuple[np.ndarray, float]:
    """Farthest-first traversal: ``k`` centers among the rows of ``x`` ``(n, d)``.

    Starts at row ``first``; each next center is the row farthest (Euclidean) from its nearest
    chosen center, the lowest index on ties; already chosen rows are never picked again (so
    duplicates are fine). Returns ``(indices (k,) int64 in pick order, covering radius)`` —
    the radius is ``max_i min_j ||x_i − x_{c_j}||`` over all rows.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if not 0 <= first < n:
        raise ValueError(f"first must be in [0, {n}), got {first}")
    picks = torch.empty(k, dtype=torch.long, device=x.device)
    picks[0] = first
    dmin = sq_distances_to(x, x[first], block_rows)
    dmin[first] = -1.0  # chosen: never the argmax again
    for t in range(1, k):
        j = torch.argmax(dmin)
        picks[t] = j
        dmin = torch.minimum(dmin, sq_distances_to(x, x[j], block_rows))
        dmin[j] = -1.0
    radius = float(dmin.clamp_min(0).max().sqrt())
    return picks.cpu().numpy().astype(np.int64), radius


@register(
    "kcenter",
    paper="Sener & Savarese, ICLR 2018 (core-set, greedy k-center)",
    summary="farthest-first traversal on penultimate embeddings, per class",
)
class KCenter(BaselineStrategy):
    """Greedy k-center on penultimate embeddings (weights 1).

    Args:
        per_class: run per class with proportional budgets (default True) or on the whole pool.
        warmup_epochs, warmup_lr, reselect_every: see :class:`BaselineStrategy`.

    ``stats()["last"]["radius"]`` is the largest covering radius over the classes.
    """

    def __init__(
        self,
        *,
        per_class: bool = True,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, reselect_every=reselect_every
        )
        self.per_class = check_bool("per_class", per_class)

    def select(self, ctx, pool, k, warmup):
        """Embed the pool and run :func:`kcenter_greedy` per class (or once)."""
        emb = compute(ctx, pool, "penultimate")
        check_finite(emb, ctx, "embeddings")
        groups = class_groups(ctx, pool, k) if self.per_class else [(-1, np.arange(pool.size), k)]
        parts, radius = [], 0.0
        for _, pos, m in groups:
            if m == 0:
                continue
            first = int(ctx.rng.integers(pos.size))
            sub = emb[torch.as_tensor(pos, device=emb.device)]
            picks, r = kcenter_greedy(sub, m, first)
            parts.append(pos[picks])
            radius = max(radius, r)
        positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return positions, None, {"radius": radius}
