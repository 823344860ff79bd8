"""``gradmatch``: per-class gradient matching by non-negative orthogonal matching pursuit.

GradMatch (Killamsetty et al., 2021) picks, for every class, a weighted subset whose weighted
gradient sum matches the class's full gradient sum. With per-example gradients ``g_i``
(``features="logit"``: ``p − y``, the default; ``"last-layer"``: ``(p − y) ⊗ [h, 1]``,
optionally randomly projected to ``project_dim``) and target ``b = Σ_{i∈class} g_i``,
orthogonal matching pursuit repeats: pick the unpicked example most positively correlated with
the residual (``argmax g_i·r``, unnormalized, as the paper's code), then refit all weights by
the paper's regularized non-negative least squares ``min_{w>=0} ||Σ_S w_j g_j − b||² +
λ||w||²`` (float64; an O(t²) Cholesky update when no weight hits zero, scipy's NNLS
otherwise), until ``k`` picks, the residual falls below ``tol·||b||``, or no example correlates
positively with it. ``λ = ridge · mean_i ||g_i||²`` over the class, so ``ridge`` (default 0.5,
the λ of the authors' CORDS configs, which apply it unscaled) does not depend on the
gradients' scale; ``ridge=0`` is plain NNLS. (CORDS's configs also use last-layer gradients and
never stop OMP on the residual, ``eps=1e-100``.)

OMP can stop early — with ``p − y`` features and ``ridge=0`` the gradients of a class span at
most C dimensions, so a handful of picks already matches ``b``. The remaining slots are filled
with seeded random picks from the class, each with weight 1 in the OMP weights' units (one
example), as the authors' CORDS code does; picks whose NNLS weight is 0 are replaced the same
way. How many were filled is recorded (``stats()["last"]["random_fills"]`` and the running
total ``stats()["random_fills_total"]``). The weights of the whole coreset are then scaled to
mean 1 (and kept > 0). The ridge matters: without it the few OMP picks carry weights up to
~40× the mean and the fills ~0.02×, which made short CPU runs collapse to chance; with it OMP
spreads the weights (~0.03–3×) and rarely stops early. Gradients come from a copy of the model
warmed up on the pool (default 1 epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import nnls
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from coreselect.methods.baseline import BaselineStrategy, check_choice, check_finite, class_groups
from coreselect.methods.registry import register
from coreselect.methods.warmup import DEFAULT_WARMUP_EPOCHS, DEFAULT_WARMUP_LR
from coreselect.signals import compute

GRADMATCH_FEATURES = ("logit", "last-layer")
#: a weight after normalization never goes below this (weights must be > 0)
MIN_WEIGHT = 1e-6


@dataclass
class OMPResult:
    """What :func:`omp_nonneg` returns.

    Attributes:
        indices: int64 ``(t,)`` picked rows in pick order (``t <= k``).
        weights: float64 ``(t,)`` their NNLS weights, ``>= 0`` (some may be 0).
        residual: ``||Σ w_j g_j − b|| / ||b||`` at the end (0 when ``b = 0``).
        stop: why it stopped: "budget", "residual", "no positive correlation" or "zero target".
        nnls_calls: refits that needed the NNLS solver (the rest took the least-squares fast
            path, see :func:`_fit_weights`).
    """

    indices: np.ndarray
    weights: np.ndarray
    residual: float
    stop: str
    nnls_calls: int = 0


def _nnls(a: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    """``argmin_{w>=0} ||a w − b||² + ridge·||w||²`` by scipy's active-set NNLS."""
    if ridge > 0:
        t = a.shape[1]
        a = np.vstack([a, np.sqrt(ridge) * np.eye(t)])
        b = np.concatenate([b, np.zeros(t)])
    return nnls(a, b, maxiter=50 * a.shape[1] + 100)[0]


def _fit_weights(
    a: np.ndarray,
    b: np.ndarray,
    gram: np.ndarray,
    atb: np.ndarray,
    ridge: float,
    passive: np.ndarray,
    chol: np.ndarray | None,
) -> tuple[np.ndarray, bool]:
    """Non-negative (ridge) least squares on the support ``a`` ``(d, t)``.

    Fast path (one warm-started active-set step): solve the normal equations
    ``(gram + ridge·I) w = atb`` restricted to ``passive`` (bool ``(t,)``: the previous
    solution's positive weights plus the new pick), zero elsewhere — with the incrementally
    kept Cholesky factor ``chol`` (lower, of ``gram + ridge·I``) when the whole support is
    passive. When that ``w`` is non-negative and satisfies the KKT conditions (gradient zero on
    the passive set, ``>= 0`` off it) it *is* the NNLS optimum, the problem being convex.
    Otherwise scipy's NNLS. Returns ``(w (t,), used_nnls)``.
    """
    t = gram.shape[0]
    p = np.flatnonzero(passive)
    w = np.zeros(t)
    try:
        if chol is not None and p.size == t:
            y = scipy.linalg.solve_triangular(chol, atb, lower=True, check_finite=False)
            w = scipy.linalg.solve_triangular(chol.T, y, lower=False, check_finite=False)
        else:
            w[p] = scipy.linalg.solve(
                gram[np.ix_(p, p)] + ridge * np.eye(p.size),
                atb[p],
                assume_a="pos",
                check_finite=False,
            )
    except (np.linalg.LinAlgError, ValueError):
        return _nnls(a, b, ridge), True
    if np.all(np.isfinite(w)) and np.all(w >= 0):
        grad = a.T @ (a @ w - b) + ridge * w
        eps = 1e-9 * max(float(np.linalg.norm(atb)), 1e-300)
        off = np.ones(t, dtype=bool)
        off[p] = False
        if np.all(np.abs(grad[p]) <= eps) and np.all(grad[off] >= -eps):
            return w, False
    return _nnls(a, b, ridge), True


def omp_nonneg(
    g: np.ndarray, target: np.ndarray, k: int, *, tol: float = 1e-3, ridge: float = 0.0
) -> OMPResult:
    """Non-negative orthogonal matching pursuit of ``target`` ``(d,)`` by rows of ``g`` ``(n, d)``.

    Picks up to ``k`` rows greedily by correlation ``g_i·r`` with the residual ``r``, refitting
    non-negative (ridge-regularized when ``ridge > 0``) least-squares weights after each pick;
    stops at ``k`` picks, when ``||r|| <= tol·||target||``, or when no unpicked row has a
    positive correlation. Computation in float64, with BLAS limited to one thread (its many
    small solves are slower multi-threaded, badly so on a shared CPU). The support's Gram
    matrix and its Cholesky factor grow by one row per pick, so a refit costs O(t²) when no
    weight hits zero. See :class:`OMPResult`.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _omp_nonneg(g, target, k, tol=tol, ridge=ridge)


def _omp_nonneg(g, target, k: int, *, tol: float, ridge: float) -> OMPResult:
    g = np.asarray(g, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if g.ndim != 2 or b.shape != (g.shape[1],):
        raise ValueError(f"g must be (n, d) and target (d,); got {g.shape} and {b.shape}")
    n, d = g.shape
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return OMPResult(np.zeros(0, dtype=np.int64), np.zeros(0), 0.0, "zero target")
    # a correlation this small is round-off, not a direction to follow
    floor = 1e-10 * bnorm * float(np.linalg.norm(g, axis=1).max(initial=0.0))
    picks = np.zeros(k, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    a = np.zeros((d, k))  # the support's rows, as columns
    gram = np.zeros((k, k))
    chol = np.zeros((k, k))  # lower Cholesky factor of gram + ridge·I while it stays definite
    chol_ok = True
    atb = np.zeros(k)
    w = np.zeros(0)
    nnls_calls = 0
    r = b.copy()
    stop = "budget"
    t = 0
    while t < k:
        if np.linalg.norm(r) <= tol * bnorm:
            stop = "residual"
            break
        corr = g @ r
        corr[taken] = -np.inf
        j = int(np.argmax(corr))
        if not corr[j] > floor:
            stop = "no positive correlation"
            break
        gj = g[j]
        cross = a[:, :t].T @ gj
        diag = float(gj @ gj)
        a[:, t] = gj
        gram[t, :t] = gram[:t, t] = cross
        gram[t, t] = diag
        atb[t] = gj @ b
        if chol_ok:
            lrow = scipy.linalg.solve_triangular(
                chol[:t, :t], cross, lower=True, check_finite=False
            )
            c = diag + ridge - float(lrow @ lrow)
            if c > 1e-12 * (diag + ridge):
                chol[t, :t] = lrow
                chol[t, t] = np.sqrt(c)
            else:
                chol_ok = False
        picks[t] = j
        taken[j] = True
        t += 1
        w, used = _fit_weights(
            a[:, :t],
            b,
            gram[:t, :t],
            atb[:t],
            ridge,
            np.append(w > 0, True),
            chol[:t, :t] if chol_ok else None,
        )
        nnls_calls += used
        r = b - a[:, :t] @ w
    if stop == "budget" and k and np.linalg.norm(r) <= tol * bnorm:
        stop = "residual"
    return OMPResult(picks[:t], w, float(np.linalg.norm(r) / bnorm), stop, nnls_calls)


@register(
    "gradmatch",
    paper="Killamsetty et al., ICML 2021 (GradMatch)",
    summary="per-class OMP matching the class gradient sum; random fill when OMP stops",
)
class GradMatch(BaselineStrategy):
    """GradMatch per class: non-negative OMP on per-example gradients, weighted coreset.

    Args:
        features: "logit" (``p − y``, default) or "last-layer" (``(p − y) ⊗ [h, 1]``).
        project_dim: with "last-layer", a seeded random projection to this many dimensions
            (None: the full ``C·(D + 1)``; NNLS cost grows with it).
        tol: stop a class's OMP when its residual is below ``tol`` times its target's norm.
        ridge: the weights' ridge penalty relative to the class's mean squared gradient norm
            (λ = ridge · mean ||g_i||²; default 0.5; 0: plain NNLS).
        warmup_epochs, warmup_lr, reselect_every: see :class:`BaselineStrategy`.
    """

    def __init__(
        self,
        *,
        features: str = "logit",
        project_dim: int | None = None,
        tol: float = 1e-3,
        ridge: float = 0.5,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        warmup_lr: float = DEFAULT_WARMUP_LR,
        reselect_every: int | None = None,
    ):
        super().__init__(
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, reselect_every=reselect_every
        )
        self.features = check_choice("features", features, GRADMATCH_FEATURES)
        if project_dim is not None and (
            isinstance(project_dim, bool) or int(project_dim) != project_dim or project_dim < 1
        ):
            raise ValueError(f"project_dim must be a positive integer or None, got {project_dim!r}")
        if project_dim is not None and features != "last-layer":
            raise ValueError("project_dim applies only to features='last-layer'")
        self.project_dim = None if project_dim is None else int(project_dim)
        for name, value in (("tol", tol), ("ridge", ridge)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (np.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.tol = float(tol)
        self.ridge = float(ridge)
        self.random_fills_total_ = 0

    def select(self, ctx, pool, k, warmup):
        """Per class: gradients, OMP, random fill; weights scaled to mean 1."""
        parts, weights = [], []
        fills = omp_picks = zero_dropped = nnls_calls = 0
        residuals, stops = [], {}
        for _, pos, m in class_groups(ctx, pool, k):
            if m == 0:
                continue
            feats = compute(ctx, pool[pos], self.features, project_dim=self.project_dim)
            check_finite(feats, ctx, "gradients")
            g = feats.double().cpu().numpy()
            lam = self.ridge * float((g * g).sum(axis=1).mean())  # relative to a typical g_i
            res = omp_nonneg(g, g.sum(axis=0), m, tol=self.tol, ridge=lam)
            keep = res.weights > 0
            chosen, w = res.indices[keep], res.weights[keep]
            zero_dropped += int((~keep).sum())
            need = m - chosen.size
            if need:
                rest = np.setdiff1d(np.arange(pos.size), chosen)
                extra = np.sort(ctx.rng.choice(rest, size=need, replace=False))
                chosen = np.concatenate([chosen, extra])
                w = np.concatenate([w, np.ones(need)])
            parts.append(pos[chosen])
            weights.append(w)
            fills += need
            omp_picks += int(keep.sum())
            nnls_calls += res.nnls_calls
            residuals.append(res.residual)
            stops[res.stop] = stops.get(res.stop, 0) + 1
        positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        w = np.concatenate(weights) if weights else np.zeros(0)
        w = np.maximum(w / w.mean(), MIN_WEIGHT) if w.size else w
        self.random_fills_total_ += fills
        facts = {
            "random_fills": int(fills),
            "omp_picks": int(omp_picks),
            "zero_weight_replaced": int(zero_dropped),
            "nnls_calls": int(nnls_calls),
            "max_residual": float(max(residuals)) if residuals else None,
            "stops": stops,
            "weight_max": float(w.max()) if w.size else None,
        }
        return positions, w, facts

    def stats(self):
        """Base stats plus ``random_fills_total`` over every selection."""
        return super().stats() | {"random_fills_total": self.random_fills_total_}
