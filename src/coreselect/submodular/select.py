"""``coreselect.select``: the engine on arrays, numpy in and numpy out."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from coreselect.coreset import Coreset
from coreselect.devices import resolve_device
from coreselect.submodular import grouped as _grouped
from coreselect.submodular.cells import SEGMENT, cell_order, unpermute
from coreselect.submodular.facility_location import MODES, default_k_neighbors, make_oracle
from coreselect.submodular.inputs import as_features
from coreselect.submodular.kernels import METRICS, available_memory, workspace_lock
from coreselect.submodular.memory import (
    KNN_BYTES_PER_ENTRY,
    as_bytes,
    dense_bytes,
    format_bytes,
    knn_bytes,
)
from coreselect.submodular.optimizers import OPTIMIZERS, GreedyResult
from coreselect.submodular.partition import (
    GROUP_RULES,
    group_budgets,
    merge_by_gain,
    resolve_budget,
)
from coreselect.submodular.weights import (
    assignment_from_picks,
    cluster_sizes,
    nearest_assignment,
    normalize_weights,
)

__all__ = ["select", "resolve_device", "choose_mode"]


def choose_mode(n: int, device: torch.device, max_memory: int | str | None = None) -> str:
    """``dense`` when the ``n x n`` float32 matrix fits ``max_memory`` (bytes or a size such
    as ``"8G"``; default: half the memory available on ``device``), else ``knn``."""
    limit = as_bytes(max_memory) if max_memory is not None else available_memory(device) // 2
    return "dense" if dense_bytes(n) <= limit else "knn"


def _neighbours(ng: int, kg: int, k_neighbors: int | None) -> int:
    """Neighbours per point of a knn pool of ``ng`` points and budget ``kg``."""
    K = k_neighbors if k_neighbors is not None else default_k_neighbors(ng, kg)
    return min(int(K), ng)


def _check_knn_memory(
    pools: list[tuple[int, int]], k_neighbors: int | None, limit: int, limit_name: str
) -> None:
    """Raise a ValueError when the knn lists of the largest pool (``(size, budget)`` pairs,
    run one at a time) would not fit ``limit`` bytes (``limit_name`` says where it came
    from), rather than letting the process run out of memory."""
    sizes = [(ng, _neighbours(ng, kg, k_neighbors)) for ng, kg in pools]
    need, n, K = max((knn_bytes(ng, K), ng, K) for ng, K in sizes)
    if need <= limit:
        return
    fit = (limit - knn_bytes(n, 0)) // (KNN_BYTES_PER_ENTRY * n)
    hint = f"k_neighbors={fit} would fit" if fit >= 1 else "no k_neighbors fits"
    raise ValueError(
        f"knn mode needs about {format_bytes(need)} for a pool of {n} points with "
        f"k_neighbors={K}, more than the memory limit of {format_bytes(limit)} "
        f"({limit_name}); "
        f"{hint}. Pass a smaller k_neighbors, a larger max_memory, a smaller pool "
        "(labels split it), or mode='blockwise' (O(n) memory, but it recomputes rows: "
        "very slow at this size)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_at_a_time_per_device(fn):
    """Hold the device's workspace lock around ``select``: the dense modes build in the one
    reusable workspace per device, so calls from several threads take turns instead of
    overwriting each other's matrix."""

    @functools.wraps(fn)
    def wrapper(X, budget, *, device: str | torch.device = "auto", **kwargs):
        with workspace_lock(resolve_device(device)):
            return fn(X, budget, device=device, **kwargs)

    return wrapper


@_one_at_a_time_per_device
def select(
    X: np.ndarray | torch.Tensor,
    budget: int | float,
    *,
    labels: np.ndarray | None = None,
    metric: str = "euclidean",
    optimizer: str = "lazy",
    normalize: bool = True,
    device: str | torch.device = "auto",
    seed: int = 0,
    epsilon: float = 0.01,
    mode: str = "auto",
    max_memory: int | str | None = None,
    group_budget: str = "proportional",
    k_neighbors: int | None = None,
    batch: int = 16,
    progress: Callable[[str, int, int], None] | None = None,
) -> Coreset:
    """Select a weighted coreset by greedy facility-location maximization.

    Args:
        X: ``(n, d)`` features or gradients (numpy array or torch tensor, finite).
        budget: int count in ``[1, n]``, or float fraction in ``(0, 1]`` of ``n``
            (rounded to the nearest count, at least 1).
        labels: optional ``(n,)`` group labels; selection runs per group with budgets split
            by ``group_budget`` and the picks are merged by gain. In dense mode the
            ``lazy`` and ``stochastic`` optimizers run all groups together
            (:mod:`~coreselect.submodular.grouped`) when the padded ``(G, m, m)`` matrices
            fit ``max_memory``; the result is each group's, as one group at a time (the
            exact greedy; the same samples for ``stochastic``), except where two gains tie
            within float32 rounding (the two paths sum in different orders: on
            Fashion-MNIST, 30,000 points in 10 classes, k = 3,000, one ``lazy`` pick of
            3,000 differed, at a relative gain gap of 8e-8).
        metric: ``euclidean`` (``s = max_d - d``), ``rbf`` (``exp(-d/D)``), ``cosine``
            (``max(cos, 0)``).
        optimizer: ``lazy`` (exact), ``naive`` (exact, slow), ``stochastic``.
        normalize: weights scaled to mean 1 over the coreset (default); ``False`` returns
            raw cluster sizes, which sum to ``n`` (with labels: to the size of the groups
            that received at least one pick — a budget smaller than the number of groups
            leaves some groups unrepresented).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
        seed: seed of the stochastic optimizer's sampling.
        epsilon: stochastic greedy's ``epsilon`` (sample ``(n/k) log(1/epsilon)``).
        mode: ``auto``, ``dense``, ``blockwise`` or ``knn`` (memory mode, per pool).
        max_memory: bytes the dense matrix may use, or a size such as ``"8G"``
            (``auto`` mode; default half of the available memory on the device); also
            the limit of the grouped matrices and of the knn lists (about ``32 n K``
            bytes while they are built): ``auto`` mode, or ``knn`` with ``max_memory``
            given, raises a ValueError naming a ``k_neighbors`` that fits rather than
            run out of memory.
        group_budget: ``proportional`` (sums exactly to the budget) or ``equal``.
        k_neighbors: neighbours per point in ``knn`` mode (default ``max(32, 4 n / k)``).
        batch: initial lazy-evaluation batch.
        progress: optional callback ``progress(stage, done, total)``: ``stage`` is
            ``"kernel"`` when a pool's kernel is about to be built and ``"greedy"`` after
            picks (every pick, or every round of the grouped greedy), with ``done`` the
            picks so far over all groups and ``total`` the budget ``k``; and ``"build"``
            while one pool's kernel is built (one-pool paths), with ``done`` of its
            ``total`` points' rows or neighbour lists built (called from worker threads).

    Returns:
        :class:`~coreselect.coreset.Coreset` with ``indices`` ``(k,)`` int64 ordered by
        gain (groups merged), ``weights`` ``(k,)`` float32, ``gains`` ``(k,)`` float64,
        ``objective`` (sum over groups of ``F``) and ``meta`` (timings, mode, budgets,
        ``grouped`` and its ``rounds``, knn's ``k_neighbors`` per pool and, where a pool
        took the inverted file (above 16,384 points), ``knn_cells_searched``...).

    Raises:
        ValueError: non-2-D ``X``, NaN/inf in ``X``, budget 0 or larger than ``n`` or a
            fraction outside ``(0, 1]``, labels of the wrong length, with NaN or of mixed
            types, ``batch`` or ``k_neighbors`` below 1, a negative ``max_memory``,
            unknown options, a dense or knn pool that would not fit the memory limit.
    """
    t_start = time.perf_counter()
    Xt = as_features(X)
    n, d = int(Xt.shape[0]), int(Xt.shape[1])
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if mode != "auto" and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose auto or one of {', '.join(MODES)}")
    if group_budget not in GROUP_RULES:
        raise ValueError(f"group_budget must be one of {', '.join(GROUP_RULES)}")
    if optimizer == "stochastic" and not 0.0 < float(epsilon) < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    if int(batch) < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if k_neighbors is not None and int(k_neighbors) < 1:
        raise ValueError(f"k_neighbors must be at least 1, got {k_neighbors}")
    if max_memory is not None:
        try:
            max_memory = as_bytes(max_memory)
        except ValueError as exc:
            raise ValueError(f"max_memory: {exc}") from exc
    k = resolve_budget(budget, n)

    if labels is None:
        inverse = np.zeros(n, dtype=np.int64)
        classes = np.zeros(1, dtype=np.int64)
    else:
        lab = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n:
            raise ValueError(f"labels must have shape ({n},) to match X, got {lab.shape}")
        if lab.dtype.kind in "fc" and np.isnan(lab).any():
            bad = int(np.flatnonzero(np.isnan(lab))[0])
            raise ValueError(f"labels contain NaN (first at position {bad})")
        try:
            classes, inverse = np.unique(lab, return_inverse=True)
        except TypeError as exc:  # e.g. an object array mixing str, int or None
            raise ValueError(f"labels must be of one comparable type: {exc}") from exc
    members = [np.flatnonzero(inverse == g) for g in range(len(classes))]
    budgets = group_budgets([m.size for m in members], k, group_budget)

    dev = resolve_device(device)
    pool_max = max(m.size for m, b in zip(members, budgets) if b > 0)
    limit = max_memory if max_memory is not None else available_memory(dev) // 2
    used_mode = mode if mode != "auto" else choose_mode(pool_max, dev, limit)
    if mode == "dense" and max_memory is not None and dense_bytes(pool_max) > max_memory:
        raise ValueError(
            f"dense mode needs {format_bytes(dense_bytes(pool_max))} for a pool of "
            f"{pool_max} points, more than max_memory={format_bytes(max_memory)}"
        )
    live = [g for g, b in enumerate(budgets) if b > 0]
    if used_mode == "knn" and (mode == "auto" or max_memory is not None):
        _check_knn_memory(
            [(members[g].size, budgets[g]) for g in live],
            k_neighbors,
            limit,
            "max_memory" if max_memory is not None else "half the memory available",
        )
    Xd = Xt.to(dev)
    grouped = (
        _grouped.ENABLED
        and labels is not None
        and used_mode == "dense"
        and optimizer in ("lazy", "stochastic")
        and len(live) >= 2
        and _grouped.grouped_dense_bytes([members[g].size for g in live]) <= limit
    )

    streams: list[tuple[np.ndarray, np.ndarray]] = []
    raws: list[np.ndarray] = []
    objective = 0.0
    kernel_s = greedy_s = weights_s = 0.0
    evaluations = 0
    neighbors_used: list[int] = []
    cells_searched: list[int | None] = []  # knn: the inverted file's, None for exact lists
    # labelled dense lazy / stochastic selections run all groups together (same results)
    done: dict[int, tuple[GreedyResult, float]] = {}
    rounds = None
    before = 0  # picks of the groups already selected (progress)

    def report(stage: str, picks: int = 0) -> None:
        if progress is not None:
            progress(stage, before + picks, k)

    on_pick = (lambda picks: report("greedy", picks)) if progress is not None else None

    def rows(total: int):
        """Progress of one pool's build: ``("build", rows done, total)``, from any thread."""
        if progress is None:
            return None
        lock, done = threading.Lock(), [0]

        def on_rows(m: int) -> None:
            with lock:
                done[0] += m
                progress("build", done[0], total)

        return on_rows

    if grouped:
        _sync(dev)
        t0 = time.perf_counter()
        report("kernel")
        data = _grouped.build_grouped_dense(Xd, [members[g] for g in live], metric)
        _sync(dev)
        t1 = time.perf_counter()
        gstats: dict = {}
        live_budgets = [budgets[g] for g in live]
        if optimizer == "lazy":
            res_all = _grouped.grouped_lazy_greedy(
                data, live_budgets, batch=batch, stats=gstats, on_pick=on_pick
            )
        else:  # the seeds and draw orders of the one-group-at-a-time path
            orders = [
                cell_order(Xd[torch.as_tensor(members[g], device=dev)], SEGMENT, metric=metric)
                if dev.type == "cpu"
                else None
                for g in live
            ]
            res_all = _grouped.grouped_stochastic_greedy(
                data,
                live_budgets,
                epsilon=float(epsilon),
                seeds=[int(seed) + g for g in live],
                orders=orders,
                stats=gstats,
                on_pick=on_pick,
            )
        _sync(dev)
        kernel_s, greedy_s = t1 - t0, time.perf_counter() - t1
        done = dict(zip(live, zip(res_all, data.c0, data.cost_scale)))
        rounds = gstats["rounds"]
        del data
    for g, (mem, kg) in enumerate(zip(members, budgets)):
        if kg == 0:
            streams.append((np.zeros(0, np.int64), np.zeros(0)))
            raws.append(np.zeros(0))
            continue
        ng = mem.size
        _sync(dev)
        t0 = time.perf_counter()
        if g in done:
            res, c0, scale = done[g]
            t1 = t2 = t0
        else:
            report("kernel")
            Xg = Xd if ng == n else Xd[torch.as_tensor(mem, device=dev)]
            K = None
            if used_mode == "knn":
                K = _neighbours(ng, kg, k_neighbors)
                neighbors_used.append(K)
            perm = None
            if used_mode == "dense" and dev.type == "cpu":
                # cell order + segmented matrix: gains read only the segments that can
                # matter; lazy runs the exact incremental greedy (CPU only: its per-pick
                # bookkeeping runs on numpy views). naive runs on
                # the same layout: the same float32 costs and row sums, so lazy returns
                # its picks exactly (on the given order they round differently)
                perm = cell_order(Xg, SEGMENT, metric=metric)
                oracle = make_oracle(
                    Xg[perm],
                    metric,
                    used_mode,
                    segment=SEGMENT,
                    on_rows=rows(ng),
                    reuse_workspace=True,
                )
                oracle.ids = perm
            else:
                oracle = make_oracle(
                    Xg,
                    metric,
                    used_mode,
                    k_neighbors=K,
                    on_rows=rows(ng),
                    reuse_workspace=True,
                )
            c0, scale = oracle.c0, oracle.cost_scale
            _sync(dev)
            t1 = time.perf_counter()
            kwargs = {"batch": batch} if optimizer == "lazy" else {}
            if optimizer == "stochastic":
                kwargs = {"epsilon": float(epsilon), "seed": int(seed) + g}
            res = OPTIMIZERS[optimizer](oracle, kg, on_pick=on_pick, **kwargs)
            before += kg
            if perm is not None:
                res = unpermute(res, perm)
            prepared = oracle.F if used_mode == "knn" else None  # for the knn weights
            if used_mode == "knn":
                cells_searched.append(oracle.cells_searched)
            del oracle
            _sync(dev)
            t2 = time.perf_counter()
        evaluations += res.evaluations
        if used_mode == "knn":
            pos, cost = nearest_assignment(prepared, res.picks)
        else:
            pos = assignment_from_picks(res.assign, res.picks, ng)
            cost = res.dcur
        raw = cluster_sizes(pos, kg)
        # costs and gains are in the pool's scaled units (kernels.unit_scale): * scale
        objective += scale * float(ng * c0 - cost.to(torch.float64).sum().item())
        _sync(dev)
        t3 = time.perf_counter()
        kernel_s += t1 - t0
        greedy_s += t2 - t1
        weights_s += t3 - t2
        streams.append((mem[res.picks.cpu().numpy()], scale * res.gains.cpu().numpy()))
        raws.append(raw.cpu().numpy())

    idx, gains, gof = merge_by_gain(streams)
    # weights in merged order: position of each pick inside its group's stream
    raw_all = np.concatenate(raws) if raws else np.zeros(0)
    offsets = np.cumsum([0] + [len(s[0]) for s in streams])[:-1]
    counters = np.zeros(len(streams), dtype=np.int64)
    order = np.empty(len(idx), dtype=np.int64)
    for t, g in enumerate(gof):
        order[t] = offsets[g] + counters[g]
        counters[g] += 1
    raw_merged = torch.from_numpy(raw_all[order])
    weights = normalize_weights(raw_merged) if normalize else raw_merged
    total_s = time.perf_counter() - t_start
    meta = {
        "method": "facility_location",
        "budget": int(k),
        "n": n,
        "d": d,
        "metric": metric,
        "optimizer": optimizer,
        "epsilon": float(epsilon) if optimizer == "stochastic" else None,
        "mode": used_mode,
        "device": str(dev),
        "seed": int(seed),
        "normalize": bool(normalize),
        "group_budget": group_budget if labels is not None else None,
        "groups": [str(c) for c in classes.tolist()] if labels is not None else None,
        "group_budgets": budgets if labels is not None else None,
        "k_neighbors": neighbors_used or None,
        "knn_cells_searched": cells_searched if any(cells_searched) else None,
        "grouped": bool(grouped),
        "rounds": rounds,
        "evaluations": int(evaluations),
        "kernel_s": kernel_s,
        "greedy_s": greedy_s,
        "weights_s": weights_s,
        "total_s": total_s,
        "threads": torch.get_num_threads(),
    }
    return Coreset(
        indices=idx,
        weights=weights.numpy().astype(np.float32),
        gains=gains,
        objective=objective,
        meta=meta,
    )
