import numpy as np
import torch

from coreselect.methods import EpochStrategy, StepStrategy, TrainPlan
from coreselect.train import CoresetLoader


class IndexWeighted(EpochStrategy):
    """Every third example, weighted by 1 + its index; reselected every epoch."""

    name = "index-weighted"
    reselect_every = 1

    def __init__(self):
        self.plans = 0

    def plan(self, ctx):
        self.plans += 1
        idx = ctx.pool[ctx.epoch % 3 :: 3]
        return TrainPlan(idx, 1.0 + idx.astype(np.float32))


def test_loader_weights_and_rows_align_with_indices():
    n = 90
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    y = torch.arange(n) % 4
    strategy = IndexWeighted()
    loader = CoresetLoader((x, y), strategy, torch.nn.Identity(), 7, fraction=1 / 3, device="cpu")
    assert len(loader) == 5  # ceil(30 / 7)
    for epoch in range(2):
        seen = []
        for xb, yb, wb in loader:
            idx = loader.indices
            assert xb.shape == (7, 1, 2, 2) and wb.shape == (7,)
            assert torch.equal(xb[:, 0, 0, 0], torch.from_numpy(idx).float())
            assert torch.equal(yb, y[idx])
            assert torch.equal(wb, torch.from_numpy(1.0 + idx.astype(np.float32)))
            assert np.all(idx % 3 == epoch % 3)
            seen.append(idx)
        assert np.unique(np.concatenate(seen)).size == 30  # one full pass plus a wrap
    assert strategy.plans == 2


class Echo(StepStrategy):
    name = "echo"

    def __init__(self):
        self.reported = []

    def next_batch(self, ctx):
        return np.array([ctx.step, ctx.step + 1]), np.array([0.5, 2.0])

    def after_step(self, ctx, indices, losses):
        self.reported.append((indices.tolist(), losses.tolist()))


def test_loader_with_a_step_strategy_passes_losses_back():
    x, y = torch.randn(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    strategy = Echo()
    loader = CoresetLoader((x, y), strategy, torch.nn.Identity(), 2, fraction=0.4, device="cpu")
    for _, _, wb in loader:
        assert wb.tolist() == [0.5, 2.0]
        loader.after_step(torch.tensor([1.0, 2.0]))
    assert strategy.reported == [([0, 1], [1.0, 2.0]), ([1, 2], [1.0, 2.0])]
