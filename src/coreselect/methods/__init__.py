"""Coreset methods and baselines; importing this package registers every method by name."""

# registration order is the listing order of `coreselect methods`: baselines first
from coreselect.methods import full, random  # noqa: F401

# isort: split
from coreselect.methods import adacore, augment_coreset, craig, crest  # noqa: F401

# isort: split
from coreselect.methods import forgetting, gradmatch, herding, kcenter, scores  # noqa: F401
from coreselect.methods.base import (
    EpochStrategy,
    ExtraSet,
    StepStrategy,
    Strategy,
    TrainPlan,
)
from coreselect.methods.registry import (
    available_methods,
    build_strategy,
    get_method,
    register,
)

__all__ = [
    "EpochStrategy",
    "ExtraSet",
    "StepStrategy",
    "Strategy",
    "TrainPlan",
    "available_methods",
    "build_strategy",
    "get_method",
    "register",
]
