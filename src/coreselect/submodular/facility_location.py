"""The facility-location objective ``F(S) = sum_i max_{j in S} s_ij`` on one pool."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from coreselect.devices import resolve_device
from coreselect.submodular.inputs import as_features
from coreselect.submodular.kernels import OnRows, prepare_features
from coreselect.submodular.memory import (
    BlockwiseOracle,
    CostOracle,
    DenseOracle,
    KnnOracle,
)
from coreselect.submodular.optimizers import OPTIMIZERS, GreedyResult

__all__ = ["FacilityLocation", "make_oracle", "default_k_neighbors", "MODES"]

MODES = ("dense", "blockwise", "knn")


def default_k_neighbors(n: int, k: int) -> int:
    """Neighbours kept per point in ``knn`` mode: enough that most points see a pick."""
    return int(min(n, max(32, math.ceil(4 * n / max(k, 1)))))


def make_oracle(
    X: torch.Tensor,
    metric: str = "euclidean",
    mode: str = "dense",
    k_neighbors: int | None = None,
    batch: int = 64,
    segment: int | None = None,
    on_rows: OnRows | None = None,
    reuse_workspace: bool = False,
) -> CostOracle:
    """Build the cost oracle of one pool.

    Args:
        X: ``(n, d)`` features on the target device.
        metric: ``euclidean``, ``rbf`` or ``cosine``.
        mode: ``dense``, ``blockwise`` or ``knn``.
        k_neighbors: ``K`` for ``knn`` (required there).
        batch: rows per gathered/recomputed block for dense and blockwise.
        segment: dense only: segment width of the padded layout (see
            :class:`~coreselect.submodular.memory.DenseOracle`); ``None`` for plain rows.
        on_rows: optional progress callback, called (possibly from worker threads) with the
            number of points whose rows (dense, blockwise's first pass) or neighbour lists
            (knn) were just built; they add up to ``n``.
        reuse_workspace: dense only: build into the per-device reusable workspace (see
            :class:`~coreselect.submodular.memory.DenseOracle`); the default gives the
            oracle memory of its own, so that oracles alive together stay independent.

    Returns:
        a :class:`~coreselect.submodular.memory.CostOracle`. Its costs, ``c0`` and gains
        are those of ``X`` divided by a power of two (exact; see
        :func:`~coreselect.submodular.kernels.unit_scale`): multiply by its
        ``cost_scale`` for ``X``'s units.
    """
    F = prepare_features(X, metric)
    if mode == "dense":
        return DenseOracle(
            F, batch=batch, segment=segment, on_rows=on_rows, reuse_workspace=reuse_workspace
        )
    if mode == "blockwise":
        return BlockwiseOracle(F, batch=batch, on_rows=on_rows)
    if mode == "knn":
        if k_neighbors is None or int(k_neighbors) < 1:
            raise ValueError(f"knn mode needs k_neighbors >= 1, got {k_neighbors}")
        return KnnOracle(F, k_neighbors, on_rows=on_rows)
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


class FacilityLocation:
    """Facility location on one pool, ``F(S) = sum_i max(0, max_{j in S} s_ij)``.

    With costs ``c`` and ``c0`` from :mod:`~coreselect.submodular.kernels`,
    ``F(S) = n * c0 - sum_i min(c0, min_{j in S} c_ij)``.

    Args:
        X: ``(n, d)`` array or tensor of features.
        metric: ``euclidean`` (``max_d - d``), ``rbf`` (``exp(-d/D)``) or ``cosine``
            (``max(cos, 0)``).
        mode: ``dense``, ``blockwise`` or ``knn``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (:func:`~coreselect.devices.resolve_device`).
        k_neighbors: ``K`` for ``knn`` mode.
    """

    def __init__(
        self,
        X: np.ndarray | torch.Tensor,
        metric: str = "euclidean",
        mode: str = "dense",
        device: str | torch.device = "cpu",
        k_neighbors: int | None = None,
    ) -> None:
        Xt = as_features(X)
        self.device = resolve_device(device)
        self.metric = metric
        self.mode = mode
        # float64 input stays float64 until prepare_features scales it (kernels.unit_scale)
        self.oracle = make_oracle(
            Xt.to(self.device),
            metric,
            mode,
            k_neighbors=k_neighbors if k_neighbors is not None else Xt.shape[0],
        )

    @property
    def n(self) -> int:
        """Pool size."""
        return self.oracle.n

    @property
    def c0(self) -> float:
        """Cost of an uncovered point (similarity offset)."""
        return self.oracle.c0 * self.oracle.cost_scale

    def _positions(self, S: Sequence[int], name: str) -> np.ndarray:
        """``S`` as int64 pool positions, each in ``[0, n)`` (a ValueError otherwise)."""
        pos = np.asarray(S)
        if pos.size == 0:
            return np.zeros(0, dtype=np.int64)
        if pos.ndim != 1 or not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D sequence of int positions, got {S!r}")
        if pos.min() < 0 or pos.max() >= self.n:
            raise ValueError(f"{name} holds positions outside [0, {self.n}): {S!r}")
        return pos.astype(np.int64)

    def _cover(self, S: Sequence[int]) -> torch.Tensor:
        """Costs ``(n,)`` float32 to the nearest of ``S``, in the oracle's units."""
        dcur = torch.full((self.n,), self.oracle.c0, dtype=torch.float32, device=self.device)
        for j in self._positions(S, "S"):
            self.oracle.cover(int(j), dcur)
        return dcur

    def evaluate(self, S: Sequence[int]) -> float:
        """``F(S)`` as a float (float64 accumulation). ``S``: pool positions."""
        dcur = self._cover(S)
        F = float(self.n * self.oracle.c0 - dcur.to(torch.float64).sum().item())
        return F * self.oracle.cost_scale

    def marginal_gains(
        self, S: Sequence[int], candidates: Sequence[int] | None = None
    ) -> np.ndarray:
        """Gains ``F(S + j) - F(S)`` for ``candidates`` (default all), shape ``(m,)``."""
        dcur = self._cover(S)
        if candidates is None:
            g = self.oracle.gains_all(dcur)
        else:
            pos = self._positions(candidates, "candidates")
            idx = torch.as_tensor(pos, device=self.device)
            g = self.oracle.gains(idx, dcur)
        return g.cpu().numpy() * self.oracle.cost_scale

    def maximize(self, k: int, optimizer: str = "lazy", **kwargs: object) -> GreedyResult:
        """Run a greedy optimizer (``naive``, ``lazy``, ``stochastic``) for ``k`` picks.

        Returns:
            :class:`~coreselect.submodular.optimizers.GreedyResult` with ``gains``
            ``(k,)`` and ``dcur`` ``(n,)`` float64, both in ``X``'s units.
        """
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {list(OPTIMIZERS)}")
        res = OPTIMIZERS[optimizer](self.oracle, k, **kwargs)
        res.gains = res.gains * self.oracle.cost_scale
        res.dcur = res.dcur.to(torch.float64) * self.oracle.cost_scale
        return res
