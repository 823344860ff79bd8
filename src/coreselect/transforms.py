"""Seeded, batched tensor augmentations that run on CPU and GPU alike.

A transform maps a batch ``(B, C, H, W)`` to a batch of the same shape, dtype and device.
Randomness comes only from the ``generator`` argument (a ``torch.Generator`` on the batch's
device), so a fixed seed gives the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Transform = Callable[..., torch.Tensor]


class RandomCrop:
    """Pad each image by ``padding`` pixels (with its own minimum value) and crop back at a
    uniformly random offset."""

    def __init__(self, padding: int = 4):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        b, c, h, w = x.shape
        fill = x.amin(dim=(1, 2, 3), keepdim=True)
        padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x
        off = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=x.device)
        rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    """Flip each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


TRANSFORMS = ("none", "crop", "flip", "crop-flip")


def build_transform(name: str, *, padding: int | None = None) -> Transform | None:
    """Build a named transform: "none" (returns None), "crop", "flip" or "crop-flip".

    ``padding`` defaults to 4 for 28×28 and larger images' usual recipe; pass 1 for 8×8.
    """
    key = name.lower()
    pad = 4 if padding is None else padding
    if key == "none":
        return None
    if key == "crop":
        return RandomCrop(pad)
    if key == "flip":
        return RandomHorizontalFlip()
    if key == "crop-flip":
        return Compose([RandomCrop(pad), RandomHorizontalFlip()])
    raise ValueError(f"unknown transform {name!r}; valid names: {', '.join(TRANSFORMS)}")
