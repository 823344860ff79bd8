"""The ``coreselect select`` subcommand (registered by ``coreselect.cli``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "run_select"]


def _budget(text: str) -> int | float:
    """``"300"`` -> 300 (count); ``"0.1"`` -> 0.1 (fraction)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"budget must be an int count or a fraction in (0, 1], got {text!r}"
        ) from exc


def _memory(text: str) -> int:
    """``"8G"`` -> bytes (:func:`~coreselect.submodular.memory.as_bytes`)."""
    from coreselect.submodular.memory import as_bytes

    try:
        return as_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> int:
    """A positive int (``--k-neighbors``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``select`` to ``subparsers``; returns the new parser (``func`` is set)."""
    p = subparsers.add_parser(
        "select",
        help="select a weighted coreset from a feature matrix (.npy)",
        description="Greedy facility-location selection on FEATURES.npy (n x d); writes a "
        "coreset .npz (indices, weights, gains, objective, meta).",
    )
    p.add_argument(
        "features", type=Path, help="(n, d) float array: a .npy, or an .npz holding one array"
    )
    p.add_argument(
        "--budget", type=_budget, required=True, help="count (int) or fraction in (0, 1]"
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="(n,) labels (.npy or one-array .npz): per-group budgets",
    )
    p.add_argument("--metric", default="euclidean", choices=["euclidean", "rbf", "cosine"])
    p.add_argument("--optimizer", default="lazy", choices=["lazy", "naive", "stochastic"])
    p.add_argument("--epsilon", type=float, default=0.01, help="stochastic greedy epsilon")
    p.add_argument("--mode", default="auto", choices=["auto", "dense", "blockwise", "knn"])
    p.add_argument(
        "--max-memory",
        type=_memory,
        default=None,
        help="memory the dense matrix may use, e.g. 8G (auto mode picks knn above it; "
        "default: half of what is available on the device)",
    )
    p.add_argument(
        "--k-neighbors",
        type=_positive,
        default=None,
        help="neighbours per point in knn mode (default max(32, 4 n / k))",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--group-budget", default="proportional", choices=["proportional", "equal"])
    p.add_argument("--raw-weights", action="store_true", help="cluster sizes, not mean-1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="output coreset .npz")
    p.set_defaults(func=run_select)
    return p


def _load_array(path: str) -> np.ndarray:
    """The array in a ``.npy`` file, or the only array of a ``.npz`` archive."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy's own words speak of pickles for any other format
        raise ValueError(f"{path} is not a .npy file or .npz archive of numbers") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise ValueError(
                    f"{path} is an .npz archive with {len(data.files)} arrays "
                    f"({', '.join(data.files) or 'none'}); give a .npy file or a one-array .npz"
                )
            return data[data.files[0]]
    return data


def run_select(args: argparse.Namespace) -> int:
    """Run ``coreselect select``; prints count, objective, seconds (with the kernel and
    greedy phases) and mode. Returns the exit code."""
    from coreselect.progress import ProgressBar
    from coreselect.submodular.select import select

    try:
        X = _load_array(args.features)
        labels = _load_array(args.labels) if args.labels else None
    except (OSError, ValueError) as exc:
        print(f"coreselect select: cannot read input: {exc}", file=sys.stderr)
        return 2
    stages = {"kernel": "building the kernel", "build": "building the kernel", "greedy": "greedy"}
    bar = ProgressBar(1, "select", disable=args.quiet or not sys.stderr.isatty(), stderr=True)

    def progress(stage: str, done: int, total: int) -> None:
        bar.update(done, stages[stage], total)

    t0 = time.perf_counter()
    try:
        with bar:
            cs = select(
                X,
                args.budget,
                labels=labels,
                metric=args.metric,
                optimizer=args.optimizer,
                normalize=not args.raw_weights,
                device=args.device,
                seed=args.seed,
                epsilon=args.epsilon,
                mode=args.mode,
                max_memory=args.max_memory,
                k_neighbors=args.k_neighbors,
                group_budget=args.group_budget,
                progress=None if bar.disable else progress,
            )
    except ValueError as exc:
        print(f"coreselect select: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    path = cs.save(args.out)
    print(
        f"selected {len(cs)} of {X.shape[0]}  objective {cs.objective:.6g}  "
        f"seconds {seconds:.3f} (kernel {cs.meta['kernel_s']:.3f}, greedy "
        f"{cs.meta['greedy_s']:.3f})  mode {cs.meta['mode']}  -> {path}"
    )
    return 0
