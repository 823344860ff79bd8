"""``coreselect demo``: every method side by side on a small Fashion-MNIST run, in minutes."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from coreselect.data import fashion_mnist_available, load_dataset
from coreselect.methods import available_methods, build_strategy
from coreselect.models import build_model
from coreselect.plots import plot_curves, record_curve
from coreselect.train import Trainer

BASELINES = ("full", "full-short", "random")
#: options for the demo's small training set (CREST's 1 % pools would be under a batch)
DEMO_OPTIONS = {"crest": {"pool_fraction": 0.02}}


def demo_methods() -> list[str]:
    """The baselines, then every other registered method."""
    others = [m.name for m in available_methods() if m.name not in BASELINES]
    return list(BASELINES) + others


def run_demo(
    out: str = ".",
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    fraction: float = 0.1,
    seed: int = 0,
    model: str = "mlp",
) -> int:
    """Train ``model`` with every method at ``fraction``; print a table and save demo.png.

    Uses Fashion-MNIST (``limit`` = 10,000 training images, 5 epochs) or, when it is not
    installed, scikit-learn's digits (with a note). Returns 0.
    """
    console = Console()
    if fashion_mnist_available(data_dir):
        data = load_dataset("fashion-mnist", data_dir=data_dir, seed=seed, limit=limit or 10_000)
    else:
        console.print(
            "[yellow]note:[/] Fashion-MNIST is not installed (Debian package "
            "'dataset-fashion-mnist'); running the demo on scikit-learn's digits instead."
        )
        data = load_dataset("digits", seed=seed, limit=limit)
    epochs = epochs or 5
    console.print(
        f"coreselect demo: {data.name}, {len(data.y_train)} training images, {model}, "
        f"{epochs} epochs of budget, fraction {fraction}"
    )
    records = {}
    started = time.perf_counter()
    for name in demo_methods():
        strategy = build_strategy(name, **DEMO_OPTIONS.get(name, {}))
        torch.manual_seed(seed)
        net = build_model(model, data.input_shape, data.num_classes)
        f = strategy.fixed_fraction or fraction
        console.print(f"  training {name} (f={f}) …")
        trainer = Trainer(
            net, data, strategy, epochs=epochs, fraction=f, seed=seed, device="cpu", quiet=True
        )
        records[name] = trainer.fit()
    table = Table(title=f"coreselect demo — {data.name}, {model}, {epochs} epochs")
    for col in ("method", "fraction", "test acc", "wall s", "selection s"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, r in records.items():
        table.add_row(
            name,
            f"{r.fraction:g}",
            f"{100 * r.final_test_acc:.2f}%",
            f"{r.total_wall_s:.2f}",
            f"{r.total_select_s:.2f}",
        )
    console.print(table)
    path = plot_curves(
        {f"{n} (f={r.fraction:g})": record_curve(r) for n, r in records.items()},
        Path(out) / "demo.png",
        title=f"{data.name}: test accuracy vs wall time ({model})",
    )
    console.print(f"saved {path} · demo took {time.perf_counter() - started:.0f} s")
    return 0
