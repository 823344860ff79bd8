"""The exact greedy on the symmetric cost matrix stored once, with compiled loops (a study).

Not engine code: numba is only in the ``bench`` extra. :func:`packed_select` runs the whole
selection that studies 1 and 2 (``fused_rows.py``, ``packed_layout.py``) only estimated, so
that ``packed_greedy.py`` can time it end to end against ``select``:

1. **build** (torch): the Euclidean costs of the pool (in the engine's cell order) into a
   grid of ``T x T`` tiles of which only the tiles ``(I, J)``, ``I <= J`` are written (the
   others are never touched, so never backed: half the memory, first touch and GEMM), with
   every tile's row and column minima, the row sums (the first pick's gains) and ``c0``;
2. **early picks** (compiled): picks ``1 .. m0`` from exact gains of every candidate, one
   read of the stored tiles per pick (:func:`full_pass`): a pick then changes most costs,
   so a pass beats re-evaluating stale bounds (a lazy greedy on the tiles evaluated
   ~30,000 rows for picks 2-3 alone, each a strided read: slower);
3. **extraction** (compiled): only entries ``c_ij < dcur_i`` can ever add to a gain again
   (costs only fall), a few percent after a few picks; :func:`collect` gathers them per
   point ``i`` (CSR), reading only the tile rows and columns whose minimum is below
   ``dcur_i``;
4. **late picks** (compiled, :func:`late_picks`): gains kept exact by incremental updates
   from the changed points' lists (entries that fell out of reach are dropped as they are
   read); a pick reads only the tile rows/columns of its row that can lower a cost.

With ``epsilon``, the stochastic greedy instead: each pick is the best of
``ceil(n / k * log(1 / epsilon))`` candidates drawn at random; the first ``m0`` picks compute
the drawn candidates' gains from their tile rows (:func:`row_gain`), the later ones read the
gains the lists keep exact (:func:`stochastic_picks`).

Gains are float64 sums of float32 costs and of exact float64 differences of two float32
values, so they are the float32 cost matrix's exact gains up to float64 rounding (the full
passes add 128 float32 terms before a float64 accumulation); ties go to the lowest pool id.
The engine's greedy reproduces naive greedy's float32 row sums instead, so the two can part
at a near-tie (gains equal to ~1e-6): the study reports where, and the float64 cost of both.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np
import torch

from coreselect.submodular.cells import SEGMENT, cell_order
from coreselect.submodular.kernels import prepare_features

T = SEGMENT  # tile side: the engine's segment width
#: reassociation (vectorized sums) without assuming finite values: padding costs are +inf
_FAST = {"reassoc", "nsz", "contract"}


# ------------------------------------------------------------------------------ build
def build_tiles(L: torch.Tensor, R: torch.Tensor, n: int, chunk: int = 16):
    """Upper tiles of the cost matrix from the Gram factors ``L``, ``R`` ``(nt * T, d')``
    (rows past ``n`` zero).

    Returns:
        ``(flat, rmin, cmin, rowsum, c0)``: ``flat`` the ``nt * nt * T * T`` float32 grid
        (tile ``(I, J)`` at ``(I * nt + J) * T * T``, only ``I <= J`` written; padding
        costs ``+inf``), ``rmin[I, J, a]`` / ``cmin[I, J, b]`` the row / column minima of
        tile ``(I, J)`` ``(nt, nt, T)``, ``rowsum`` ``(nt * T,)`` float64 cost row sums,
        ``c0`` the largest cost.
    """
    npad, d2 = L.shape
    nt = npad // T
    buf = torch.empty(nt * nt * T * T)
    tiles = buf.view(nt * nt, T, T)
    # only the entries of the tiles I <= J are written or read: the rest is never backed
    rmin = torch.empty((nt, nt, T))
    cmin = torch.empty((nt, nt, T))
    rowsum = torch.zeros(npad, dtype=torch.float64)
    c0 = 0.0
    valid = n - (nt - 1) * T  # real points in the last tile
    for I in range(nt):
        A = L[I * T : (I + 1) * T].unsqueeze(0)
        for j0 in range(I, nt, chunk):
            j1 = min(j0 + chunk, nt)
            tl = tiles[I * nt + j0 : I * nt + j1]  # tiles (I, j0..j1-1), contiguous
            tl.zero_()  # first touch with plain stores, as the engine's build does
            torch.matmul(A, R[j0 * T : j1 * T].view(j1 - j0, T, d2).transpose(1, 2), out=tl)
            tl.clamp_(min=0.0).sqrt_()
            if j0 == I:
                tl[0].diagonal().zero_()
            pad_cols, pad_rows = j1 == nt, I == nt - 1
            if pad_cols:
                tl[-1, :, valid:] = 0.0
            if pad_rows:
                tl[:, valid:, :] = 0.0
            rowsum[I * T : (I + 1) * T] += tl.sum(dim=2).sum(dim=0).double()
            cols = tl.sum(dim=1)
            if j0 == I:
                cols[0] = 0.0  # the diagonal tile holds both halves: counted by its rows
            rowsum[j0 * T : j1 * T] += cols.reshape(-1).double()
            c0 = max(c0, float(tl.max()))
            if pad_cols:
                tl[-1, :, valid:] = float("inf")
            if pad_rows:
                tl[:, valid:, :] = float("inf")
            torch.amin(tl, dim=2, out=rmin[I, j0:j1])
            torch.amin(tl, dim=1, out=cmin[I, j0:j1])
    return buf.numpy(), rmin.numpy(), cmin.numpy(), rowsum.numpy(), c0


# ------------------------------------------------------------------------------ loops
@numba.njit(cache=True)
def argmax_lowest_id(g, picked, ids, n):
    """Largest ``g[j]`` over unpicked ``j < n`` and, among equal ones, the lowest id."""
    best, p = -np.inf, -1
    for j in range(n):
        if not picked[j]:
            v = g[j]
            if v > best or (v == best and ids[j] < ids[p]):
                best, p = v, j
    return best, p


@numba.njit(cache=True)
def tile_max(dcur, nt):
    """``(nt,)`` largest current cost of every tile's points."""
    dmax = np.empty(nt, np.float32)
    for J in range(nt):
        dmax[J] = dcur[J * T : (J + 1) * T].max()
    return dmax


@numba.njit(cache=True)
def cover(flat, rmin, cmin, nt, p, dcur, dmax, assign, hit, old, new):
    """``dcur <- min(dcur, c_p.)`` from the tile rows/columns of row ``p`` whose minimum is
    below their tile's largest cost; fills ``hit``/``old``/``new`` and returns their count."""
    I, r = p // T, p % T
    h = 0
    for J in range(nt):
        if J >= I:  # row r of tile (I, J)
            if not rmin[I, J, r] < dmax[J]:
                continue
            base, step = (I * nt + J) * T * T + r * T, 1
        else:  # column r of tile (J, I)
            if not cmin[J, I, r] < dmax[J]:
                continue
            base, step = (J * nt + I) * T * T + r, T
        changed = False
        for q in range(T):
            c = flat[base + q * step]
            i = J * T + q
            if c < dcur[i]:
                hit[h], old[h], new[h] = i, dcur[i], c
                h += 1
                dcur[i] = c
                assign[i] = p
                changed = True
        if changed:
            dmax[J] = dcur[J * T : (J + 1) * T].max()
    return h


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def full_pass(flat, nt, dcur, g, parts):
    """``g[j] = sum_i max(0, dcur_i - c_ij)`` for every candidate, one read of the stored
    tiles (each tile serves its rows' and its columns' candidates); float32 sums of ``T``
    terms added in float64. ``parts`` ``(w, nt * T)`` float64 scratch: worker ``w`` takes
    the stripes ``w, w + W, ...`` and adds into its own row."""
    W = parts.shape[0]
    for w in numba.prange(W):
        acc = parts[w]
        acc[:] = 0.0
        colacc = np.empty(T, np.float32)
        for I in range(w, nt, W):
            dI = dcur[I * T : (I + 1) * T]
            for J in range(I, nt):
                base = (I * nt + J) * T * T
                dJ = dcur[J * T : (J + 1) * T]
                colacc[:] = 0.0
                for a in range(T):
                    di = dI[a]
                    row = flat[base + a * T : base + (a + 1) * T]
                    racc = np.float32(0.0)
                    for b in range(T):
                        c = row[b]
                        colacc[b] += max(di - c, np.float32(0.0))
                        racc += max(dJ[b] - c, np.float32(0.0))
                    if J > I:
                        acc[I * T + a] += racc
                for b in range(T):
                    acc[J * T + b] += colacc[b]
    g[:] = parts[0]
    for w in range(1, W):
        g += parts[w]


@numba.njit(parallel=True, cache=True)
def collect(flat, dcur, rmin, cmin, nt, start, cand, cost, write, count):
    """Entries ``c_ij < dcur_i`` of every point ``i``, point by point (CSR).

    Counts (``write=False``: ``count[i]``) or fills ``cand``/``cost`` from ``start[i]``.
    Stripe ``P`` gathers its own points' entries, tile by tile: column ``a`` of the tiles
    ``(I, P)``, ``I < P``, and row ``a`` of the tiles ``(P, J)``, ``J >= P``, for each of
    its points ``a`` whose minimum there is below its cost. Stripes run in parallel and
    write only their own points' lists. (A branch-free variant that sweeps the tiles
    ``(I, P)`` row by row was slower: 1.5-1.8 s against 1.3 s for 46 M entries.)
    """
    for P in numba.prange(nt):
        k = np.empty(T, np.int64)
        for a in range(T):
            k[a] = start[P * T + a] if write else 0
        for I in range(nt):
            lower = I < P
            base0 = (I * nt + P) * T * T if lower else (P * nt + I) * T * T
            for a in range(T):
                di = dcur[P * T + a]
                live = cmin[I, P, a] < di if lower else rmin[P, I, a] < di
                if not live:
                    continue
                base, step = (base0 + a, T) if lower else (base0 + a * T, 1)
                ka = k[a]
                for q in range(T):
                    c = flat[base + q * step]
                    if c < di:
                        if write:
                            cand[ka] = I * T + q
                            cost[ka] = c
                        ka += 1
                k[a] = ka
        if not write:
            for a in range(T):
                count[P * T + a] = k[a]


@numba.njit(cache=True)
def gains_from_lists(beg, end, cand, cost, dcur, g):
    """``g[j] = sum over listed (i, j) of dcur_i - c_ij`` (every listed entry is below
    ``dcur_i``), float64 of exact float32 differences."""
    g[:] = 0.0
    for i in range(beg.shape[0]):
        di = np.float64(dcur[i])
        for e in range(beg[i], end[i]):
            g[cand[e]] += di - np.float64(cost[e])


@numba.njit(cache=True)
def apply_pick(flat, rmin, cmin, nt, p, g, dcur, dmax, assign, beg, end, cand, cost, buf):
    """Cover ``p`` and lower the gains of the listed candidates by the exact effect of every
    changed point: a point ``i`` whose cost fell from ``o`` to ``w`` lowers candidate ``j``
    by ``min(max(0, o - c_ij), o - w)`` (float64); entries with ``c_ij >= w`` can never
    count again and are dropped from ``i``'s list. Returns the entries read."""
    hit, old, new = buf
    h = cover(flat, rmin, cmin, nt, p, dcur, dmax, assign, hit, old, new)
    read = 0
    for t in range(h):
        i = hit[t]
        o, w = np.float64(old[t]), np.float64(new[t])
        drop = o - w
        kept = beg[i]
        for e in range(beg[i], end[i]):
            c = np.float64(cost[e])
            if c < o:
                g[cand[e]] -= min(o - c, drop)
            if c < w:
                cand[kept], cost[kept] = cand[e], cost[e]
                kept += 1
        read += end[i] - beg[i]
        end[i] = kept
    return read


@numba.njit(cache=True)
def late_picks(flat, rmin, cmin, nt, n, k, g, dcur, assign, picked, ids, lists, picks, gains, done):
    """Picks ``done .. k-1`` of the exact greedy (argmax of the exact incremental gains, ties
    to the lowest id); returns the list entries read."""
    beg, end, cand, cost = lists
    npad = nt * T
    dmax = tile_max(dcur, nt)
    buf = (np.empty(npad, np.int64), np.empty(npad, np.float32), np.empty(npad, np.float32))
    read = 0
    while done < k:
        best, p = argmax_lowest_id(g, picked, ids, n)
        picked[p] = True
        picks[done], gains[done] = p, best
        done += 1
        read += apply_pick(
            flat, rmin, cmin, nt, p, g, dcur, dmax, assign, beg, end, cand, cost, buf
        )
    return read


@numba.njit(cache=True)
def row_gain(flat, rmin, cmin, nt, j, dcur, dmax):
    """Gain ``sum_i max(0, dcur_i - c_ij)`` of candidate ``j`` from the tile rows/columns of
    its row that can add to it (float32 per tile, float64 total)."""
    I, r = j // T, j % T
    total = 0.0
    for J in range(nt):
        if J >= I:
            if not rmin[I, J, r] < dmax[J]:
                continue
            base, step = (I * nt + J) * T * T + r * T, 1
        else:
            if not cmin[J, I, r] < dmax[J]:
                continue
            base, step = (J * nt + I) * T * T + r, T
        part = np.float32(0.0)
        for q in range(T):
            part += max(dcur[J * T + q] - flat[base + q * step], np.float32(0.0))
        total += part
    return total


@numba.njit(cache=True)
def draw(pool, where, m, s):
    """Move ``min(s, m)`` distinct random members of ``pool[:m]`` to its front (partial
    Fisher-Yates, numba's seeded generator); returns their number."""
    s = min(s, m)
    for t in range(s):
        r = t + np.random.randint(m - t)
        a, b = pool[t], pool[r]
        pool[t], pool[r] = b, a
        where[b], where[a] = t, r
    return s


@numba.njit(cache=True)
def drop_from_pool(pool, where, m, p):
    """Remove ``p`` from ``pool[:m]`` (swap with the last member); returns the new size."""
    i, last = where[p], pool[m - 1]
    pool[i], where[last] = last, i
    return m - 1


@numba.njit(cache=True)
def stochastic_picks(
    flat,
    rmin,
    cmin,
    nt,
    n,
    k,
    s,
    seed,
    g,
    exact,
    dcur,
    assign,
    ids,
    lists,
    picks,
    gains,
    done,
    pool,
    m,
):
    """Picks ``done .. k-1`` of the stochastic greedy: each is the best of ``s`` unpicked
    candidates drawn at random (ties to the lowest id). Before the lists exist
    (``exact=False``) a drawn candidate's gain is computed from its tile row
    (:func:`row_gain`); after, ``g`` holds every gain exactly. Returns the pool's size."""
    beg, end, cand, cost = lists
    npad = nt * T
    dmax = tile_max(dcur, nt)
    buf = (np.empty(npad, np.int64), np.empty(npad, np.float32), np.empty(npad, np.float32))
    np.random.seed(seed)
    where = np.empty(npad, np.int64)
    for t in range(m):
        where[pool[t]] = t
    while done < k:
        c = draw(pool, where, m, s)
        best, p = -np.inf, -1
        for t in range(c):
            j = pool[t]
            v = g[j] if exact or done == 0 else row_gain(flat, rmin, cmin, nt, j, dcur, dmax)
            if v > best or (v == best and ids[j] < ids[p]):
                best, p = v, j
        m = drop_from_pool(pool, where, m, p)
        picks[done], gains[done] = p, best
        done += 1
        if done == 1:
            assign[:] = p
        if exact:
            apply_pick(flat, rmin, cmin, nt, p, g, dcur, dmax, assign, beg, end, cand, cost, buf)
        else:
            cover(flat, rmin, cmin, nt, p, dcur, dmax, assign, buf[0], buf[1], buf[2])
    return m


# ------------------------------------------------------------------------------ pipeline
def packed_select(
    X: np.ndarray, k: int, m0: int = 5, epsilon: float | None = None, seed: int = 0
) -> dict:
    """Facility-location greedy (Euclidean costs) of ``k`` points of ``X`` ``(n, d)``: exact,
    or the stochastic greedy with ``epsilon`` (each pick the best of
    ``ceil(n / k * log(1 / epsilon))`` random candidates, seeded by ``seed``).

    The first ``m0`` picks run on the tiles (exact: a full pass a pick; stochastic: the
    drawn candidates' tile rows), the rest on the gathered lists.

    Returns:
        dict with ``picks`` ``(k,)`` (original row ids, pick order), ``gains`` ``(k,)``,
        ``dcur`` ``(n,)`` (original order), per-phase seconds (``prep``, ``build``,
        ``early``, ``extract``, ``late``), ``entries`` (listed after pick ``m0``) and
        ``entries_read`` (by the exact late picks).
    """
    out, t = {}, time.perf_counter()
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    perm = cell_order(Xt, SEGMENT, metric="euclidean")
    F = prepare_features(Xt[perm], "euclidean")
    n = F.n
    nt = -(-n // T)
    npad = nt * T
    L0, R0 = F.factors()
    L = torch.zeros(npad, L0.shape[1])
    R = torch.zeros(npad, R0.shape[1])
    L[:n], R[:n] = L0, R0
    ids = np.full(npad, np.iinfo(np.int64).max)
    ids[:n] = perm.numpy()
    out["prep"] = time.perf_counter() - t

    t = time.perf_counter()
    flat, rmin, cmin, rowsum, c0 = build_tiles(L, R, n)
    out["build"] = time.perf_counter() - t

    t = time.perf_counter()
    dcur = np.zeros(npad, np.float32)  # padding: cost 0, never covered, adds nothing
    dcur[:n] = c0
    assign = np.full(npad, -1, np.int64)
    picks = np.empty(k, np.int64)
    gains = np.empty(k, np.float64)
    g = n * np.float64(c0) - rowsum  # the first pick's gains: sum_i (c0 - c_ij)
    m0 = min(m0, k)
    none_i, none_f = np.empty(0, np.int64), np.empty(0, np.float32)
    if epsilon is not None:
        s = math.ceil(n / k * math.log(1.0 / epsilon))
        pool = np.arange(n, dtype=np.int64)
        no_lists = (none_i, none_i, none_i.astype(np.int32), none_f)
        args = (flat, rmin, cmin, nt, n, m0, s, seed, g, False, dcur, assign, ids, no_lists)
        m = stochastic_picks(*args, picks, gains, 0, pool, n)
    else:
        picked = np.zeros(npad, np.bool_)
        picked[n:] = True
        dmax = tile_max(dcur, nt)
        buf = (np.empty(npad, np.int64), np.empty(npad, np.float32), np.empty(npad, np.float32))
        parts = np.empty((numba.get_num_threads(), npad))
        for step in range(m0):
            if step:
                full_pass(flat, nt, dcur, g, parts)
            best, p = argmax_lowest_id(g, picked, ids, n)
            picked[p] = True
            picks[step], gains[step] = p, best
            if step == 0:
                assign[:] = p
            cover(flat, rmin, cmin, nt, p, dcur, dmax, assign, *buf)
    out["early"] = time.perf_counter() - t

    t = time.perf_counter()
    count = np.zeros(npad, np.int64)
    collect(flat, dcur, rmin, cmin, nt, count, none_i.astype(np.int32), none_f, False, count)
    beg = np.zeros(npad, np.int64)
    np.cumsum(count[:-1], out=beg[1:])
    total = int(count.sum())
    cand, cost = np.empty(total, np.int32), np.empty(total, np.float32)
    collect(flat, dcur, rmin, cmin, nt, beg, cand, cost, True, count)
    end = beg + count
    gains_from_lists(beg, end, cand, cost, dcur, g)
    out["extract"] = time.perf_counter() - t
    out["entries"] = total

    t = time.perf_counter()
    lists = (beg, end, cand, cost)
    if epsilon is not None:
        args = (flat, rmin, cmin, nt, n, k, s, seed + 1, g, True, dcur, assign, ids, lists)
        stochastic_picks(*args, picks, gains, m0, pool, m)
        out["entries_read"] = None
    else:
        args = (flat, rmin, cmin, nt, n, k, g, dcur, assign, picked, ids, lists, picks, gains)
        out["entries_read"] = int(late_picks(*args, m0))
    out["late"] = time.perf_counter() - t
    out["picks"] = ids[picks]
    out["gains"] = gains
    d = np.empty(n, np.float32)
    d[perm.numpy()] = dcur[:n]
    out["dcur"] = d
    return out
