"""The loop's side of the strategy protocol: :class:`TrainContext`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class TrainContext:
    """What a strategy sees of the loop (see ``coreselect.methods.base.Context``).

    ``x`` ``(N_total, C, H, W)`` and ``y`` ``(N_total,)`` are the training tensors on
    ``device``; ``pool`` the dataset indices strategies may choose from.
    """

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    pool: np.ndarray
    num_classes: int
    device: torch.device
    rng: np.random.Generator
    fraction: float
    batch_size: int
    budget: int
    steps_per_epoch: int
    total_steps: int
    epoch: int = 0
    step: int = 0
    displacement: list[torch.Tensor] | None = None
    forward_batch: int | None = None  # default: 256 on CPU (cache-friendly), 2048 on GPU
    autocast_dtype: torch.dtype | None = None
    targets: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.targets = self.y.detach().cpu().numpy()
        if self.forward_batch is None:
            self.forward_batch = eval_batch_size(self.device)

    def inputs(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(k, C, H, W)`` and labels ``(k,)`` of dataset ``indices``, on the device."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.x.device)
        return self.x[idx], self.y[idx]

    @torch.no_grad()
    def forward(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode, no-grad forward of dataset ``indices`` ``(k,)`` in batches.

        Returns float32 logits ``(k, num_classes)`` and embeddings ``(k, D)`` on the device;
        the model's train/eval mode is restored afterwards.
        """
        model = self.model
        was_training = model.training
        model.eval()
        idx = np.asarray(indices, dtype=np.int64)
        logits, embeds = [], []
        try:
            for start in range(0, idx.size, self.forward_batch):
                xb, _ = self.inputs(idx[start : start + self.forward_batch])
                with _autocast(self.device, self.autocast_dtype):
                    h = model.embed(xb) if hasattr(model, "embed") else model(xb)
                    z = model.classifier(h) if hasattr(model, "embed") else h
                logits.append(z.float())
                embeds.append(h.float())
        finally:
            model.train(was_training)
        if not logits:
            return (
                torch.empty(0, self.num_classes, device=self.device),
                torch.empty(0, 0, device=self.device),
            )
        return torch.cat(logits), torch.cat(embeds)


def eval_batch_size(device: torch.device) -> int:
    """Batch size for no-grad forwards: small on CPU (faster per image there), large on GPU."""
    return 2048 if torch.device(device).type == "cuda" else 256


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)
