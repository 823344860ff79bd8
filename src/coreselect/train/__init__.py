"""The training loop: Trainer, CoresetLoader, RunRecord."""

from coreselect.train.loader import CoresetLoader
from coreselect.train.record import EPOCH_FIELDS, RECORD_FIELDS, RunRecord
from coreselect.train.trainer import NonFiniteLossError, Trainer, resolve_device, step_budget

__all__ = [
    "EPOCH_FIELDS",
    "RECORD_FIELDS",
    "CoresetLoader",
    "NonFiniteLossError",
    "RunRecord",
    "Trainer",
    "resolve_device",
    "step_budget",
]
