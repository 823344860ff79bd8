"""Cell order: a permutation of a pool that puts nearby points next to each other.

The dense oracle's cost matrix is stored in this order and cut into column segments of
``segment`` points, so that a segment is (mostly) one small region of feature space. The
per-segment row minima then tell, exactly, which segments of a cost row can matter to a
point whose current cost is ``o``: only those whose minimum is below ``o`` — late in the
greedy a few percent of the row (see :mod:`coreselect.submodular.incremental`). The order
changes speed only: results are mapped back to pool positions, ties still go to the lowest
pool position.
"""

from __future__ import annotations

import torch

from coreselect.submodular.kernels import unit_scale

__all__ = ["SEGMENT", "cell_order", "unpermute"]

#: segment width (columns) of the dense layout used with the cell order
SEGMENT = 128


def cell_order(
    X: torch.Tensor,
    cell_size: int = SEGMENT,
    metric: str = "euclidean",
    iters: int = 4,
    sample: int = 8192,
    seed: int = 0,
) -> torch.Tensor:
    """Permutation grouping nearby points: k-means cells of about ``cell_size`` points.

    Args:
        X: ``(n, d)`` float features (any device).
        cell_size: target points per cell (``n / cell_size`` centroids).
        metric: ``cosine`` clusters the L2-normalised rows; other metrics the rows.
        iters: Lloyd iterations on the sample.
        sample: points used to fit the centroids (all when ``n`` is smaller).
        seed: seed of the sample and the initial centroids.

    Returns:
        ``(n,)`` long tensor ``perm``: position ``a`` of the ordered pool holds point
        ``perm[a]``; points of one cell are contiguous (stable within a cell).
    """
    n = int(X.shape[0])
    dev = X.device
    ncell = max(1, n // max(1, int(cell_size)))
    if ncell == 1:
        return torch.arange(n, device=dev)
    X = unit_scale(X, centre=metric != "cosine")[0]  # as the kernels see the points
    if metric == "cosine":
        X = X / torch.linalg.vector_norm(X, dim=1, keepdim=True).clamp_min(1e-12)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    pick = torch.randperm(n, generator=gen)[: min(n, max(sample, ncell))].to(dev)
    S = X[pick]
    cent = S[:ncell].clone()
    for _ in range(iters):
        lab = _nearest(S, cent)
        sums = torch.zeros_like(cent).index_add_(0, lab, S)
        cnt = torch.bincount(lab, minlength=ncell).unsqueeze(1)
        cent = torch.where(cnt > 0, sums / cnt.clamp_min(1), cent)
    return torch.argsort(_nearest(X, cent), stable=True)


def _nearest(X: torch.Tensor, cent: torch.Tensor, block: int = 16384) -> torch.Tensor:
    csq = (cent * cent).sum(1)
    out = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    for s in range(0, X.shape[0], block):
        T = torch.addmm(csq.unsqueeze(0), X[s : s + block], cent.T, alpha=-2.0)
        out[s : s + block] = T.argmin(1)
    return out


def unpermute(res, perm: torch.Tensor):
    """Map a :class:`~coreselect.submodular.optimizers.GreedyResult` computed on the
    ordered pool ``X[perm]`` back to pool positions (picks, costs and assignments)."""
    dcur = torch.empty_like(res.dcur)
    dcur[perm] = res.dcur
    assign = torch.empty_like(res.assign)
    assign[perm] = perm[res.assign]  # every point has a nearest pick once k >= 1
    res.picks = perm[res.picks]
    res.dcur = dcur
    res.assign = assign
    return res
