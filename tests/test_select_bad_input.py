"""Bad input to the engine: a ValueError naming the problem."""

from __future__ import annotations

import numpy as np
import pytest

from coreselect import select
from coreselect.submodular.partition import group_budgets, merge_by_gain, resolve_budget

X = np.random.default_rng(0).normal(size=(20, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"budget": 0}, "at least 1"),
        ({"budget": -3}, "at least 1"),
        ({"budget": 21}, "larger than the pool size"),
        ({"budget": 0.0}, r"fraction .* \(0, 1\]"),
        ({"budget": 1.5}, r"fraction .* \(0, 1\]"),
        ({"budget": float("nan")}, r"fraction"),
        ({"budget": "10"}, "int count or a float fraction"),
        ({"budget": True}, "int count or a float fraction"),
        ({"budget": 5, "labels": np.zeros(19)}, "labels must have shape"),
        ({"budget": 5, "labels": np.zeros((20, 1))}, "labels must have shape"),
        ({"budget": 5, "metric": "manhattan"}, "unknown metric"),
        ({"budget": 5, "optimizer": "greedy"}, "unknown optimizer"),
        ({"budget": 5, "mode": "sparse"}, "unknown mode"),
        ({"budget": 5, "group_budget": "random"}, "group_budget"),
        ({"budget": 5, "optimizer": "stochastic", "epsilon": 1.5}, "epsilon"),
        ({"budget": 5, "mode": "dense", "max_memory": 10}, "dense mode needs"),
        ({"budget": 5, "mode": "knn", "max_memory": 10}, "knn mode needs"),
        ({"budget": 5, "max_memory": -1}, "max_memory: memory must be a size"),
        ({"budget": 5, "max_memory": "lots"}, "max_memory: memory must be a size"),
        ({"budget": 5, "max_memory": float("nan")}, "max_memory: memory must be a size"),
        ({"budget": 5, "max_memory": True}, "max_memory: memory must be a size"),
        (
            {"budget": 5, "mode": "dense", "max_memory": "1K"},
            r"needs \d+\.\d KiB .* 20 points, .*=1\.0 KiB",
        ),
        ({"budget": 5, "device": "tpu"}, "unknown device 'tpu'"),
        ({"budget": 5, "batch": 0}, "batch must be at least 1"),
        ({"budget": 5, "mode": "knn", "k_neighbors": 0}, "k_neighbors must be at least 1"),
        ({"budget": 5, "labels": np.r_[np.zeros(10), np.full(10, np.nan)]}, "NaN .*position 10"),
        ({"budget": 5, "labels": np.array(["a", None] * 10, dtype=object)}, "one comparable type"),
    ],
)
def test_bad_arguments(kwargs, match):
    kw = dict(kwargs)
    budget = kw.pop("budget")
    with pytest.raises(ValueError, match=match):
        select(X, budget, **kw)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(bad):
    Y = X.copy()
    Y[7, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf.*row 7"):
        select(Y, 5)


@pytest.mark.parametrize("shape", [(20,), (2, 5, 3), (0, 3), (5, 0)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="X must"):
        select(np.zeros(shape), 1)


def test_non_numeric():
    with pytest.raises(ValueError, match="numeric"):
        select(np.array([["a", "b"], ["c", "d"]]), 1)


def test_budget_rules():
    assert resolve_budget(0.1, 30000) == 3000
    assert resolve_budget(1.0, 7) == 7
    assert resolve_budget(0.01, 10) == 1  # at least one
    assert resolve_budget(np.int64(4), 10) == 4


def test_group_budgets_proportional_sum_and_redistribution():
    assert group_budgets([50, 30, 20], 10) == [5, 3, 2]
    assert sum(group_budgets([7, 11, 13, 1], 9)) == 9
    # a group smaller than its share takes all, the rest is redistributed
    b = group_budgets([2, 100, 100], 60, "equal")
    assert b == [2, 29, 29]
    b = group_budgets([1, 1, 98], 50)
    assert sum(b) == 50 and b[2] <= 98
    b = group_budgets([3, 5, 40], 45, "proportional")
    assert b[0] <= 3 and b[1] <= 5 and sum(b) == 45
    assert group_budgets([3, 4], 7, "equal") == [3, 4]
    for sizes, k in [([5, 5, 5], 4), ([1, 2, 3, 4], 10), ([9], 9), ([6, 1], 2)]:
        for rule in ("proportional", "equal"):
            b = group_budgets(sizes, k, rule)
            assert sum(b) == k and all(0 <= x <= s for x, s in zip(b, sizes))
    with pytest.raises(ValueError, match="larger than the pool"):
        group_budgets([2, 2], 5)


def test_merge_by_gain_is_stable_and_keeps_group_order():
    a = (np.array([1, 2, 3]), np.array([5.0, 3.0, 1.0]))
    b = (np.array([10, 11]), np.array([5.0, 4.0]))
    idx, gains, gof = merge_by_gain([a, b])
    assert idx.tolist() == [1, 10, 11, 2, 3]
    assert gof.tolist() == [0, 1, 1, 0, 0]
    # a non-monotone stream (stochastic greedy) keeps its own order
    c = (np.array([7, 8]), np.array([1.0, 2.0]))
    idx, _, _ = merge_by_gain([c, (np.array([9]), np.array([1.5]))])
    assert idx.tolist() == [9, 7, 8]


def test_facility_location_checks_its_features_as_select_does():
    from coreselect.submodular import FacilityLocation

    Y = X.copy()
    Y[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*row 4"):
        FacilityLocation(Y)
    with pytest.raises(ValueError, match="X must be a 2-D array"):
        FacilityLocation(np.zeros(5))
    assert FacilityLocation(X > 0).evaluate([0, 1]) > 0


def test_greedy_budgets_and_positions_are_checked():
    import torch

    from coreselect.submodular import (
        FacilityLocation,
        lazy_greedy,
        naive_greedy,
        stochastic_greedy,
    )
    from coreselect.submodular.facility_location import make_oracle

    oracle = make_oracle(torch.as_tensor(X, dtype=torch.float32))
    for greedy in (lazy_greedy, naive_greedy, stochastic_greedy):
        for k in (0, 21, -1, 2.0):  # before: 1, 21 or 0 picks, or a ZeroDivisionError
            with pytest.raises(ValueError, match=r"k must be an int in \[1, 20\]"):
                greedy(oracle, k)
    fl = FacilityLocation(X)
    for S in ([20], [-1], [0.5]):  # before: an IndexError, or -1 read as the last point
        with pytest.raises(ValueError, match="S "):
            fl.evaluate(S)
    with pytest.raises(ValueError, match="candidates"):
        fl.marginal_gains([0], candidates=[3, 25])
    assert fl.evaluate([]) == pytest.approx(0.0, abs=1e-9)


def test_engine_objects_refuse_what_they_cannot_use():
    import torch

    from coreselect.devices import resolve_device
    from coreselect.submodular import FacilityLocation, lazy_greedy, stochastic_greedy
    from coreselect.submodular.facility_location import make_oracle

    # one device rule for select, FacilityLocation and the trainer
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "cuda:x", 3.5):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            FacilityLocation(X, device="cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ValueError, match="unknown device"):
        FacilityLocation(X, device="tpu")
    with pytest.raises(ValueError, match="k_neighbors >= 1, got 0"):
        FacilityLocation(X, mode="knn", k_neighbors=0)  # before: accepted, lists of 0
    # a misspelt option is an error, not silently ignored
    oracle = make_oracle(torch.as_tensor(X, dtype=torch.float32))
    with pytest.raises(TypeError, match="espilon"):
        stochastic_greedy(oracle, 3, espilon=0.5)
    with pytest.raises(TypeError, match="max_bach"):
        lazy_greedy(oracle, 3, max_bach=8)
    with pytest.raises(TypeError, match="seed"):
        FacilityLocation(X).maximize(3, optimizer="naive", seed=1)
