"""Per-example vectors computed from a model, shared by every selection method.

Pure functions on tensors (``logit_gradients``, ``last_layer_gradients``) and one entry point
on a training context (``compute``).
"""

from coreselect.signals.curvature import hutchinson_diagonal, last_layer_hessian_diagonal
from coreselect.signals.gradients import (
    FEATURES,
    compute,
    last_layer_gradients,
    logit_gradients,
)

__all__ = [
    "FEATURES",
    "compute",
    "hutchinson_diagonal",
    "last_layer_gradients",
    "last_layer_hessian_diagonal",
    "logit_gradients",
]
