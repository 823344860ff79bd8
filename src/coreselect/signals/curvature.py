"""Curvature signals: Hutchinson's Hessian-diagonal estimate and the exact last-layer diagonal.

``hutchinson_diagonal`` works on any differentiable scalar (a network's loss, a test
function); ``last_layer_hessian_diagonal`` is the closed form for cross-entropy with respect to
the final linear layer, averaged over a pool.
"""

from __future__ import annotations

import torch


def rademacher_like(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A tensor of ±1 with the shape, dtype and device of ``t``."""
    bits = torch.randint(0, 2, t.shape, generator=generator, device=t.device)
    return (2 * bits - 1).to(t.dtype)


def hutchinson_diagonal(
    loss: torch.Tensor,
    params: list[torch.Tensor],
    *,
    samples: int = 1,
    generator: torch.Generator | None = None,
    return_grad: bool = False,
    chunk: int = 16,
):
    """Hutchinson's estimate ``mean_z z ⊙ (H z)`` of the Hessian diagonal of ``loss``.

    Args:
        loss: a scalar built from ``params`` with autograd.
        params: the tensors to differentiate against (each with ``requires_grad``).
        samples: Rademacher vectors ``z`` averaged (more: lower variance).
        generator: seeds the ``z``.
        return_grad: also return the gradient of ``loss``.
        chunk: Hessian-vector products computed together (vectorized over ``z``).

    Returns:
        A list of tensors shaped like ``params`` (and the gradient list when ``return_grad``).
        Its expectation is exactly ``diag(H)``; for a diagonal ``H`` every sample is exact.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    grads = torch.autograd.grad(loss, params, create_graph=True)
    estimate = [torch.zeros_like(p) for p in params]
    done = 0
    while done < samples:
        m = min(chunk, samples - done)
        zs = [torch.stack([rademacher_like(p, generator) for _ in range(m)]) for p in params]
        last = done + m >= samples
        hz = (
            torch.autograd.grad(
                grads, params, grad_outputs=zs, retain_graph=not last, is_grads_batched=m > 1
            )
            if m > 1
            else torch.autograd.grad(
                grads, params, grad_outputs=[z[0] for z in zs], retain_graph=not last
            )
        )
        for e, z, h in zip(estimate, zs, hz, strict=True):
            h = h if m > 1 else h[None]
            e.add_((z * h).sum(0), alpha=1.0 / samples)
        done += m
    if return_grad:
        return estimate, [g.detach() for g in grads]
    return estimate


def last_layer_hessian_diagonal(
    logits: torch.Tensor, embeddings: torch.Tensor, *, bias: bool = True
) -> torch.Tensor:
    """Exact diagonal of the Hessian of the mean cross-entropy w.r.t. the last linear layer.

    For ``z = W h + b``: ``∂²CE/∂W_cd² = p_c (1 − p_c) h_d²`` and ``∂²CE/∂b_c² = p_c (1 − p_c)``.

    Args:
        logits: ``(n, C)``; embeddings: ``(n, D)`` the layer's inputs.
        bias: append the bias entries, as if ``h`` had a trailing 1.

    Returns:
        ``(C·(D + bias),)`` flattened like ``signals.last_layer_gradients`` (class, then
        feature), averaged over the ``n`` examples.
    """
    p = torch.softmax(logits, dim=1)
    curv = p * (1.0 - p)  # (n, C)
    h2 = embeddings.to(curv.dtype) ** 2
    if bias:
        h2 = torch.cat([h2, torch.ones(len(h2), 1, dtype=h2.dtype, device=h2.device)], dim=1)
    return (curv.T @ h2 / len(p)).reshape(-1)
