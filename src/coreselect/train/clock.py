"""Wall-clock accounting by phase, synchronizing the device before every clock read."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Splits elapsed time into named phases.

    Time between marks goes to the phase named at the mark; everything outside an explicit
    ``with timer.phase(name)`` block counts as ``default`` ("train"). On CUDA the device is
    synchronized before each clock read, so queued kernels land in the phase that issued them.
    """

    def __init__(self, device: torch.device, default: str = "train"):
        self.device = torch.device(device)
        self.default = default
        self.totals: dict[str, float] = {}
        self._last: float | None = None

    def now(self) -> float:
        """Seconds on a monotonic clock, after the device finished its queued work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        """Begin counting (previous totals are kept)."""
        self._last = self.now()

    def mark(self, phase: str | None = None) -> None:
        """Charge the time since the last mark to ``phase`` (default phase when None)."""
        t = self.now()
        if self._last is not None:
            key = phase or self.default
            self.totals[key] = self.totals.get(key, 0.0) + (t - self._last)
        self._last = t

    @contextmanager
    def phase(self, name: str):
        """Charge the block's time to ``name`` (what ran before it goes to the default)."""
        self.mark()
        try:
            yield
        finally:
            self.mark(name)

    def total(self, phase: str) -> float:
        """Seconds charged to ``phase`` so far."""
        return self.totals.get(phase, 0.0)
