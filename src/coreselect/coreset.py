"""The `Coreset` value: a weighted subset of a pool, as every selector returns it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Coreset:
    """A weighted subset of a pool of ``n`` examples.

    Attributes:
        indices: ``(k,)`` int64 positions into the pool, unique; ordered by gain
            (classes merged by gain when selection was per class).
        weights: ``(k,)`` float32, all > 0; by default cluster sizes scaled to mean 1.
        gains: ``(k,)`` float64 marginal gains in the same order, or ``None``.
        objective: the objective value of the whole set, or ``None``.
        meta: free-form, JSON-serialisable facts: method, budget, timings, seeds.
    """

    indices: np.ndarray
    weights: np.ndarray
    gains: np.ndarray | None = None
    objective: float | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        if idx.ndim != 1:
            raise ValueError(f"Coreset indices must be 1-D, got shape {idx.shape}")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"Coreset indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        w = np.asarray(self.weights, dtype=np.float32)
        if w.shape != idx.shape:
            raise ValueError(f"weights shape {w.shape} does not match indices shape {idx.shape}")
        if idx.size and (idx.min() < 0):
            raise ValueError("Coreset indices must be non-negative")
        if np.unique(idx).size != idx.size:
            raise ValueError("Coreset indices must be unique")
        if w.size and not (np.all(np.isfinite(w)) and np.all(w > 0)):
            raise ValueError("Coreset weights must be finite and > 0")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "weights", w)
        if self.gains is not None:
            g = np.asarray(self.gains, dtype=np.float64)
            if g.shape != idx.shape:
                raise ValueError(f"gains shape {g.shape} does not match indices shape {idx.shape}")
            object.__setattr__(self, "gains", g)

    def __len__(self) -> int:
        return int(self.indices.size)

    def save(self, path: str | Path) -> Path:
        """Write the coreset to ``path`` (``.npz``); returns the path written."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"indices": self.indices, "weights": self.weights}
        if self.gains is not None:
            arrays["gains"] = self.gains
        arrays["objective"] = np.array(np.nan if self.objective is None else self.objective)
        arrays["meta"] = np.array(json.dumps(self.meta, default=_jsonable))
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Coreset:
        """Read a coreset written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no coreset file at {path}")
        try:
            z = np.load(path, allow_pickle=False)
        except ValueError as exc:  # numpy's own words speak of pickles for any other format
            raise ValueError(f"{path} is not a coreset file (not an .npz archive)") from exc
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a coreset file (a single array, not an .npz archive)")
        with z:
            if "indices" not in z or "weights" not in z:
                raise ValueError(f"{path} is not a coreset file (needs 'indices' and 'weights')")
            objective = float(z["objective"]) if "objective" in z else float("nan")
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
            return cls(
                indices=z["indices"],
                weights=z["weights"],
                gains=z["gains"] if "gains" in z else None,
                objective=None if np.isnan(objective) else objective,
                meta=meta,
            )


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
