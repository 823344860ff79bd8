"""The submodular engine: pure math on arrays (torch and numpy only).

Facility location in cost form with ``euclidean``, ``rbf`` and ``cosine`` similarities,
``naive`` / ``lazy`` / ``stochastic`` greedy optimizers, exact cluster-size weights,
per-group budgets and three memory modes (``dense``, ``blockwise``, ``knn``). The public
entry point is :func:`select` (also ``coreselect.select``).
"""

from coreselect.submodular.facility_location import FacilityLocation, make_oracle
from coreselect.submodular.kernels import METRICS, cost_tile, free_workspace, prepare_features
from coreselect.submodular.optimizers import (
    OPTIMIZERS,
    GreedyResult,
    lazy_greedy,
    naive_greedy,
    stochastic_greedy,
)
from coreselect.submodular.partition import group_budgets, merge_by_gain
from coreselect.submodular.select import select

__all__ = [
    "FacilityLocation",
    "GreedyResult",
    "METRICS",
    "OPTIMIZERS",
    "cost_tile",
    "free_workspace",
    "group_budgets",
    "lazy_greedy",
    "make_oracle",
    "merge_by_gain",
    "naive_greedy",
    "prepare_features",
    "select",
    "stochastic_greedy",
]
