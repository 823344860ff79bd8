"""Validation of the engine's inputs: a clear ``ValueError`` instead of a failure deep
inside."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_features"]


def as_features(X: object) -> torch.Tensor:
    """Check and convert a feature matrix.

    Args:
        X: ``(n, d)`` numeric array or tensor, ``n, d >= 1``, finite, real.

    Returns:
        ``(n, d)`` tensor (detached; floating point, float32 for integer or bool input).

    Raises:
        ValueError: naming the problem (not 2-D, empty, non-numeric, complex, NaN or inf
            with the first bad row).
    """
    if torch.is_tensor(X):
        T = X.detach()
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:  # ragged input
            raise ValueError(f"X must be a 2-D numeric array (n, d): {exc}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise ValueError(f"X must be a 2-D numeric array (n, d), got dtype {arr.dtype}")
        T = torch.from_numpy(np.ascontiguousarray(arr))
    if T.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n, d), got shape {tuple(T.shape)}")
    if T.shape[0] < 1 or T.shape[1] < 1:
        raise ValueError(f"X must have at least one row and one column, got shape {tuple(T.shape)}")
    if T.is_complex():
        raise ValueError("X must be real-valued, got a complex array")
    if not T.is_floating_point():
        T = T.to(torch.float32)
    finite = torch.isfinite(T).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"X contains NaN or inf values (first at row {bad})")
    return T
