"""Per-example gradients of the cross-entropy loss, in closed form.

For logits ``z = W h + b`` and loss ``CE(z, y)``, the gradient with respect to the logits is
``p − onehot(y)`` with ``p = softmax(z)``; with respect to the last layer's weight it is
``(p − onehot(y)) ⊗ h`` and with respect to its bias ``p − onehot(y)``. These are exact and
need one eval-mode forward, no backward.
"""

from __future__ import annotations

import numpy as np
import torch

FEATURES = ("logit", "last-layer", "penultimate")


def logit_gradients(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``softmax(logits) − onehot(targets)``, ``(n, C)``, from logits ``(n, C)`` and ``(n,)``."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be (n, C) and targets (n,); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    g = torch.softmax(logits, dim=1)
    g[torch.arange(len(targets), device=g.device), targets.to(g.device)] -= 1.0
    return g


def last_layer_gradients(
    logits: torch.Tensor,
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: bool = True,
    project_dim: int | None = None,
    seed: int = 0,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example gradients of CE with respect to the last linear layer.

    Args:
        logits: ``(n, C)``; embeddings: ``(n, D)`` the layer's inputs; targets: ``(n,)``.
        bias: append the bias gradient (``p − y``), as if ``h`` had a trailing 1.
        project_dim: if set, return a seeded Gaussian random projection (Johnson–Lindenstrauss,
            scaled by 1/√k) of the flattened gradient to ``k = project_dim`` dimensions,
            computed class by class without forming the ``(n, C·D)`` matrix.
        seed: seeds the projection.
        scale: optional ``(C·(D + bias),)`` multiplier applied coordinate-wise to each gradient
            before any projection (a diagonal preconditioner, as AdaCore uses).

    Returns:
        ``(n, C·(D + bias))`` flattened ``(p − y) ⊗ [h, 1]`` (row-major: class, then feature),
        or ``(n, project_dim)`` when projecting.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] != logits.shape[0]:
        raise ValueError(
            f"embeddings must be (n, D) with n = {logits.shape[0]}, got {tuple(embeddings.shape)}"
        )
    g = logit_gradients(logits, targets)
    h = embeddings.to(g.dtype)
    if bias:
        h = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], dim=1)
    n, c = g.shape
    d = h.shape[1]
    if scale is not None:
        if scale.numel() != c * d:
            raise ValueError(f"scale has {scale.numel()} entries, expected C·(D+bias) = {c * d}")
        scale = scale.to(g.device, g.dtype).reshape(c, d)
    if project_dim is None:
        out = g[:, :, None] * h[:, None, :]
        if scale is not None:
            out = out * scale
        return out.reshape(n, c * d)
    if project_dim < 1:
        raise ValueError(f"project_dim must be >= 1, got {project_dim}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.zeros(n, project_dim, dtype=g.dtype, device=g.device)
    for k in range(c):
        r = torch.randn(d, project_dim, generator=gen, dtype=torch.float32).to(g.device, g.dtype)
        hk = h if scale is None else h * scale[k]
        out += g[:, k : k + 1] * (hk @ r)
    return out / np.sqrt(project_dim)


def compute(ctx, indices, features: str = "logit", *, project_dim: int | None = None, seed=0):
    """Per-example vectors of dataset ``indices`` ``(k,)`` from the model in ``ctx``.

    ``features``: "logit" (``p − y``, ``(k, C)``), "last-layer" (``(p − y) ⊗ [h, 1]``,
    optionally projected to ``project_dim``) or "penultimate" (embeddings ``h``, ``(k, D)``).
    Uses ``ctx.forward`` (eval mode, no grad). Raises ``FloatingPointError`` naming the epoch
    when the model produced NaN or infinite values (a diverged model).
    """
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; valid names: {', '.join(FEATURES)}")
    idx = np.asarray(indices, dtype=np.int64)
    logits, embeds = ctx.forward(idx)
    if not torch.isfinite(logits).all():
        raise FloatingPointError(
            f"non-finite model outputs at epoch {ctx.epoch + 1}: the model diverged, "
            "selection stopped"
        )
    targets = torch.as_tensor(ctx.targets[idx], device=logits.device)
    if features == "logit":
        return logit_gradients(logits, targets)
    if features == "penultimate":
        return embeds
    return last_layer_gradients(logits, embeds, targets, project_dim=project_dim, seed=seed)
