"""Which torch device a call runs on: one resolution rule for the engine and the trainer."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device named by ``device``.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), or anything ``torch.device``
            takes: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``.

    Returns:
        the ``torch.device``. Raises a ValueError for a name torch does not know, or for a
        CUDA device this machine does not have.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r} requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return dev
