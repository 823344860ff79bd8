"""``RunRecord``: everything a training run measured, written as ``record.json``."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

#: the schema of DESIGN.md §2: every record has these keys
RECORD_FIELDS = (
    "dataset",
    "model",
    "method",
    "fraction",
    "seed",
    "config",
    "epochs",
    "final_test_acc",
    "total_wall_s",
    "total_select_s",
    "peak_mem_mb",
    "strategy_stats",
    "env",
)
EPOCH_FIELDS = (
    "epoch",
    "step",
    "wall_s",
    "select_s",
    "val_acc",
    "test_acc",
    "test_loss",
    "n_train",
)


@dataclass
class RunRecord:
    """One training run. ``epochs`` holds one dict per epoch with cumulative ``wall_s`` and
    ``select_s`` (evaluation excluded); ``status`` is "completed" or why it stopped."""

    dataset: str
    model: str
    method: str
    fraction: float
    seed: int
    config: dict = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)
    final_test_acc: float | None = None
    final_val_acc: float | None = None
    total_wall_s: float = 0.0
    total_select_s: float = 0.0
    total_eval_s: float = 0.0
    peak_mem_mb: float = 0.0
    strategy_stats: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    status: str = "running"

    def to_dict(self) -> dict:
        """A JSON-ready dict with every field."""
        return asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON to ``path`` (a file, or a folder → ``folder/record.json``)."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        return path


def environment(device: torch.device) -> dict:
    """Machine and library facts for a result file: versions, CPU, threads, GPU."""
    env = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        from coreselect import __version__

        env["coreselect"] = __version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's, else ``platform.processor()``, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.tolist()
    return str(value)
