"""Convex CRAIG's playground: L2-regularized multinomial logistic regression on arrays.

``loss(W, X, y, lam)`` is ``(1/N) Σ_i CE(x_i W, y_i) + (lam/2)·||W||²`` with ``W`` of shape
``(d + 1, C)`` (the last row is the bias, not penalized). ``fit_optimum`` finds its minimizer
(L-BFGS, float64); ``sgd`` runs weighted incremental gradient descent on a subset — with CRAIG's
raw cluster sizes as weights it approximates the full objective.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp


def _augment(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((len(X), 1), dtype=X.dtype)])


def loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float, weights=None) -> float:
    """Regularized mean cross-entropy of ``W`` ``(d+1, C)`` on ``X`` ``(n, d)``, ``y`` ``(n,)``.

    With ``weights`` ``(n,)`` the data term is ``(1/Σw) Σ_i w_i CE_i``.
    """
    Z = _augment(X) @ W
    ce = logsumexp(Z, axis=1) - Z[np.arange(len(y)), y]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(w @ ce / w.sum() + 0.5 * lam * np.sum(W[:-1] ** 2))


def _loss_and_grad(flat, Xa, Y, lam, shape):
    W = flat.reshape(shape)
    Z = Xa @ W
    lse = logsumexp(Z, axis=1, keepdims=True)
    P = np.exp(Z - lse)
    n = len(Xa)
    value = float(np.sum(lse[:, 0] - np.sum(Z * Y, axis=1)) / n + 0.5 * lam * np.sum(W[:-1] ** 2))
    G = Xa.T @ (P - Y) / n
    G[:-1] += lam * W[:-1]
    return value, G.ravel()


def fit_optimum(X: np.ndarray, y: np.ndarray, lam: float, num_classes: int | None = None):
    """The minimizer ``W*`` ``(d+1, C)`` of :func:`loss` on all of ``X``, ``y`` (float64 L-BFGS)."""
    C = int(num_classes or y.max() + 1)
    Xa = _augment(np.asarray(X, dtype=np.float64))
    Y = np.eye(C)[y]
    shape = (Xa.shape[1], C)
    res = minimize(
        _loss_and_grad,
        np.zeros(shape).ravel(),
        args=(Xa, Y, lam, shape),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-14},
    )
    return res.x.reshape(shape)


def sgd(
    X: np.ndarray,
    y: np.ndarray,
    lam: float,
    *,
    weights: np.ndarray | None = None,
    n_total: int | None = None,
    epochs: int = 50,
    lr: float = 0.5,
    decay: float = 1.0,
    seed: int = 0,
    num_classes: int | None = None,
) -> np.ndarray:
    """Weighted incremental gradient descent on ``X`` ``(k, d)``, ``y`` ``(k,)``.

    Each epoch visits every example once in a seeded random order; the update for example j
    uses ``weights[j] · ∇CE_j / n_total + lam·W`` (``weights`` default 1, ``n_total`` default
    ``k`` — pass the full data size with CRAIG's raw cluster sizes, whose sum is ``n_total``),
    scaled by the stepsize ``lr / (1 + decay · epoch)``. Returns ``W`` ``(d+1, C)``.
    """
    C = int(num_classes or y.max() + 1)
    Xa = _augment(np.asarray(X, dtype=np.float64))
    k = len(Xa)
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    scale = w * k / (n_total if n_total is not None else k)  # per-visit multiplier of ∇CE_j
    rng = np.random.default_rng(seed)
    W = np.zeros((Xa.shape[1], C))
    for epoch in range(epochs):
        step = lr / (1.0 + decay * epoch)
        for j in rng.permutation(k):
            z = Xa[j] @ W
            p = np.exp(z - logsumexp(z))
            p[y[j]] -= 1.0
            grad = scale[j] * np.outer(Xa[j], p)
            grad[:-1] += lam * W[:-1]
            W -= step * grad
    return W
