"""Accuracy-versus-time plots of run records (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(curves: dict[str, list[tuple[float, float]]], path, title: str = "") -> Path:
    """Plot one line per label: ``curves[label] = [(wall_s, test_acc), …]``; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, points in curves.items():
        pts = [(t, a) for t, a in points if a is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, [100 * y for y in ys], marker="o", markersize=3, label=label)
    ax.set_xlabel("wall time, selection included (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def record_curve(record) -> list[tuple[float, float]]:
    """``[(wall_s, test_acc), …]`` per epoch of a RunRecord (or its dict), starting at (0, None)."""
    epochs = record["epochs"] if isinstance(record, dict) else record.epochs
    return [(e["wall_s"], e["test_acc"]) for e in epochs]
