"""Accuracy-versus-time plots of run records (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(curves: dict[str, list[tuple[float, float]]], path, title: str = "") -> Path:
    """Plot one line per label: ``curves[label] = [(wall_s, test_acc), …]``; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.get_cmap("tab20").colors
    markers = "os^Dv<>pXh"
    for i, (label, points) in enumerate(curves.items()):
        pts = [(t, a) for t, a in points if a is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(
            xs,
            [100 * y for y in ys],
            color=colors[i % len(colors)],
            marker=markers[i % len(markers)],
            markersize=3,
            linewidth=1.2,
            label=label,
        )
    ax.set_xlabel("wall time, selection included (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(curves) > 10 else 1)
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
