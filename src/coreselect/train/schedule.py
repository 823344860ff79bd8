"""Learning-rate schedules that span exactly the run's step budget.

``lr_factor(name, t, total)`` gives the multiplier of the peak learning rate used at optimizer
step ``t`` (0-based) of ``total``: the first step uses ``t = 0`` and the last ``t = total - 1``,
where every schedule reaches its final value.
"""

from __future__ import annotations

import math

SCHEDULES = ("onecycle", "cosine", "constant")


def lr_factor(
    name: str,
    t: int,
    total: int,
    *,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Multiplier of the peak LR at step ``t`` of ``total``.

    - ``onecycle``: cosine rise from peak/``div_factor`` to the peak over the first
      ``pct_start`` of the steps, then cosine decay to peak/(``div_factor``·``final_div_factor``)
      at the last step (the same curve as ``torch.optim.lr_scheduler.OneCycleLR``).
    - ``cosine``: cosine decay from 1 to 0 at the last step.
    - ``constant``: 1.
    """
    if total < 1 or not 0 <= t < total:
        raise ValueError(f"step {t} outside a schedule of {total} steps")
    if name == "constant":
        return 1.0
    last = total - 1
    if name == "cosine":
        return 1.0 if last == 0 else 0.5 * (1.0 + math.cos(math.pi * t / last))
    if name == "onecycle":
        start, low = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
        if last == 0:
            return 1.0
        peak_at = max(pct_start * total - 1.0, 1e-9)
        if t <= peak_at:
            return _cos_anneal(start, 1.0, t / peak_at)
        return _cos_anneal(1.0, low, (t - peak_at) / (last - peak_at))
    raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")


def _cos_anneal(begin: float, end: float, pct: float) -> float:
    return end + (begin - end) / 2.0 * (math.cos(math.pi * min(max(pct, 0.0), 1.0)) + 1.0)
