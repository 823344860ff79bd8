"""The training loop: step budget, schedule, weighted loss, extra sets, timing, errors."""

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from coreselect.data import Splits
from coreselect.methods import EpochStrategy, ExtraSet, StepStrategy, TrainPlan, build_strategy
from coreselect.models import build_model
from coreselect.train import NonFiniteLossError, Trainer, step_budget
from coreselect.train.schedule import lr_factor


def tiny_splits(n=60, d=4, classes=3, seed=0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 1, d, generator=g)
    y = torch.arange(n) % classes
    return Splits("tiny", x, y, x[:10], y[:10], x[:20], y[:20], tuple("abc"[:classes]))


class Linear(nn.Module):
    """A linear classifier with the embed/classifier split."""

    def __init__(self, d=4, classes=3):
        super().__init__()
        self.classifier = nn.Linear(d, classes)

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


class Recorder:
    """An optimizer factory that records lr, gradients and steps; plain SGD underneath."""

    def __init__(self):
        self.lrs, self.grads = [], []

    def __call__(self, params):
        rec = self

        class Opt(torch.optim.SGD):
            def step(self, closure=None):
                rec.lrs.append(self.param_groups[0]["lr"])
                rec.grads.append([p.grad.detach().clone() for p in self.param_groups[0]["params"]])
                return super().step(closure)

        return Opt(params, lr=0.1)


class FixedBatches(StepStrategy):
    """Always the same batch and weights."""

    name = "fixed"

    def __init__(self, idx, w):
        self.idx, self.w = np.asarray(idx), np.asarray(w, np.float32)
        self.seen = []

    def next_batch(self, ctx):
        return self.idx, self.w

    def after_step(self, ctx, indices, losses):
        self.seen.append((indices.copy(), losses.clone()))


@pytest.mark.parametrize(
    "n,f,e,b", [(5000, 0.1, 2, 128), (1000, 0.3, 3, 64), (997, 1.0, 1, 100), (60, 0.05, 7, 8)]
)
def test_step_budget_formula(n, f, e, b):
    total, per_epoch = step_budget(f * n, e, b)
    assert total == math.ceil(round(f * e * n, 9) / b)
    assert per_epoch == math.ceil(round(f * n, 9) / b)


@pytest.mark.parametrize(
    "method,fraction,epochs,batch",
    [("random", 0.3, 3, 8), ("full-short", 0.2, 4, 7), ("full", 1.0, 2, 16)],
)
def test_exact_step_count_and_schedule_ends_at_last_step(method, fraction, epochs, batch):
    data = tiny_splits()
    rec = Recorder()
    trainer = Trainer(
        Linear(),
        data,
        build_strategy(method),
        epochs,
        fraction,
        batch,
        optimizer=rec,
        lr=0.1,
        quiet=True,
        device="cpu",
    )
    record = trainer.fit()
    expected = math.ceil(round(fraction * epochs * 60, 9) / batch)
    assert len(rec.lrs) == expected == record.epochs[-1]["step"]
    per_epoch = math.ceil(round(fraction * 60, 9) / batch)
    assert [e["step"] for e in record.epochs][:-1] == [
        per_epoch * (i + 1) for i in range(len(record.epochs) - 1)
    ]
    assert rec.lrs == pytest.approx(
        [0.1 * lr_factor("onecycle", t, expected) for t in range(expected)]
    )
    assert rec.lrs[-1] == pytest.approx(0.1 / 25 / 1e4)  # the final value, reached at the last step
    assert max(rec.lrs) == pytest.approx(0.1, rel=0.05)


def test_onecycle_matches_torch():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    total = 37
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=total, cycle_momentum=False
    )
    ours = []
    for t in range(total):
        ours.append(lr_factor("onecycle", t, total))
        assert opt.param_groups[0]["lr"] == pytest.approx(ours[-1], rel=1e-6, abs=1e-9)
        opt.step()
        if t < total - 1:
            sched.step()


def test_weighted_loss_equals_hand_computation():
    data = tiny_splits()
    idx = np.array([0, 4, 7, 9, 13])
    w = np.array([2.0, 0.5, 1.0, 3.0, 0.25], np.float32)
    strategy = FixedBatches(idx, w)
    torch.manual_seed(0)
    model = Linear()
    W0 = model.classifier.weight.detach().double().clone()
    b0 = model.classifier.bias.detach().double().clone()
    rec = Recorder()
    Trainer(model, data, strategy, 1, 5 / 60, 5, optimizer=rec, quiet=True, device="cpu").fit()
    x = data.x_train[idx].reshape(5, -1).double()
    y = torch.nn.functional.one_hot(data.y_train[idx], 3).double()
    z = x @ W0.T + b0
    p = torch.exp(z - z.logsumexp(1, keepdim=True))
    coef = torch.from_numpy(w).double()[:, None] * (p - y) / 5  # d mean(w·CE) / dz
    assert torch.allclose(rec.grads[0][0].double(), coef.T @ x, atol=1e-6)
    assert torch.allclose(rec.grads[0][1].double(), coef.sum(0), atol=1e-6)
    # after_step received the per-example (unweighted) losses of that batch
    ce = -(y * (z - z.logsumexp(1, keepdim=True))).sum(1)
    seen_idx, seen_loss = strategy.seen[0]
    assert np.array_equal(seen_idx, idx)
    assert torch.allclose(seen_loss.double(), ce, atol=1e-6)


class PlanWithExtra(EpochStrategy):
    name = "plan-with-extra"
    reselect_every = None

    def plan(self, ctx):
        marker = lambda x, generator=None: torch.full_like(x, 7.0)  # noqa: E731
        return TrainPlan(
            np.arange(4),
            np.ones(4),
            extra=[ExtraSet(np.array([4, 5]), np.array([0.5, 0.5]), marker)],
        )


def test_extra_set_is_trained_with_its_transform_and_weights():
    data = tiny_splits()
    torch.manual_seed(0)
    model = Linear()
    W0 = model.classifier.weight.detach().double().clone()
    b0 = model.classifier.bias.detach().double().clone()
    seen = []
    model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].clone()) if m.training else None
    )
    rec = Recorder()
    # batch = the whole plan (4 main + 2 extra), one step
    Trainer(
        model, data, PlanWithExtra(), 1, 6 / 60, 6, optimizer=rec, quiet=True, device="cpu"
    ).fit()
    batch = seen[0].reshape(6, -1)
    marked = (batch == 7.0).all(1)
    assert int(marked.sum()) == 2  # the two extra examples, transformed
    main = data.x_train[:4].reshape(4, -1)
    assert all(any(torch.equal(r, m) for m in main) for r in batch[~marked])
    # gradient: main rows weight 1, extra rows weight 0.5 with the transformed inputs
    x = torch.cat([main, torch.full((2, 4), 7.0)]).double()
    y = torch.nn.functional.one_hot(torch.cat([data.y_train[:4], data.y_train[4:6]]), 3).double()
    w = torch.tensor([1, 1, 1, 1, 0.5, 0.5], dtype=torch.float64)[:, None]
    z = x @ W0.T + b0
    p = torch.softmax(z, 1)
    coef = w * (p - y) / 6
    assert torch.allclose(rec.grads[0][0].double(), coef.T @ x, atol=1e-6)


class SlowPlan(EpochStrategy):
    name = "slow"
    reselect_every = 1

    def plan(self, ctx):
        time.sleep(0.3)
        return TrainPlan(ctx.pool[:10])


def test_select_time_counts_slow_selection_and_wall_excludes_evaluation(monkeypatch):
    data = tiny_splits()
    trainer = Trainer(Linear(), data, SlowPlan(), 2, 10 / 60, 5, quiet=True, device="cpu")
    original = Trainer._accuracy

    def slow_accuracy(self, *args, **kwargs):
        time.sleep(0.25)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_accuracy", slow_accuracy)
    record = trainer.fit()
    assert record.total_select_s >= 0.6  # two selections of 0.3 s
    assert record.epochs[0]["select_s"] >= 0.3 and record.epochs[1]["select_s"] >= 0.6
    assert record.total_eval_s >= 4 * 0.25  # val + test per epoch
    assert record.total_wall_s < record.total_select_s + 0.5  # evaluation is not in wall time
    assert record.total_wall_s >= record.total_select_s


def test_random_redraws_each_epoch_inside_the_pool():
    from coreselect.train.context import TrainContext

    data = tiny_splits(n=200)
    strategy = build_strategy("random")
    pool = np.arange(50, 200)
    ctx = TrainContext(
        Linear(),
        data.x_train,
        data.y_train,
        pool,
        3,
        torch.device("cpu"),
        np.random.default_rng(0),
        0.1,
        5,
        20,
        4,
        40,
    )
    plans = []
    for epoch in range(3):
        ctx.epoch = epoch
        assert strategy.due(epoch)
        plans.append(strategy.plan(ctx).indices)
    for p in plans:
        assert p.size == 20 and np.unique(p).size == 20 and np.isin(p, pool).all()
    assert not np.array_equal(plans[0], plans[1]) and not np.array_equal(plans[1], plans[2])


def test_random_class_keeps_proportions_within_one():
    from coreselect.train.context import TrainContext

    g = torch.Generator().manual_seed(0)
    n = 997
    y = torch.tensor(np.random.default_rng(0).choice(5, size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05]))
    x = torch.randn(n, 1, 1, 2, generator=g)
    for f in (0.05, 0.1, 0.37):
        k = math.ceil(f * n)
        ctx = TrainContext(
            Linear(2, 5),
            x,
            y,
            np.arange(n),
            5,
            torch.device("cpu"),
            np.random.default_rng(1),
            f,
            10,
            k,
            1,
            1,
        )
        idx = build_strategy("random-class").plan(ctx).indices
        assert idx.size == k and np.unique(idx).size == k
        counts = np.bincount(y.numpy()[idx], minlength=5)
        share = np.bincount(y.numpy(), minlength=5) * k / n
        assert np.all(np.abs(counts - share) < 1.0)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_record():
    data = tiny_splits()

    class Explodes(Linear):
        calls = 0

        def forward(self, x):
            out = super().forward(x)
            if self.training:
                Explodes.calls += 1
                if Explodes.calls >= 7:  # the 7th training step
                    out = out * float("nan")
            return out

    trainer = Trainer(
        Explodes(), data, build_strategy("full"), 3, 1.0, 20, quiet=True, device="cpu"
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 7") as info:
        trainer.fit()
    record = info.value.record
    assert len(record.epochs) == 3 and record.epochs[1]["val_acc"] is not None
    assert "non-finite" in record.status


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"schedule": "step"}, "onecycle"),
        ({"optimizer": "lbfgs"}, "sgd"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, match):
    args = {"epochs": 1, "fraction": 0.5, "batch_size": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        Trainer(Linear(), tiny_splits(), build_strategy("random"), quiet=True, **args)


def test_unknown_method_and_option_list_valid_names():
    with pytest.raises(ValueError, match="full, full-short, random"):
        build_strategy("craigg")
    with pytest.raises(ValueError, match="valid options: reselect_every"):
        build_strategy("random", budget=3)


def test_cpu_runs_are_deterministic(blobs):
    def run():
        torch.manual_seed(0)
        model = build_model("mlp", blobs.input_shape, blobs.num_classes)
        return Trainer(
            model, blobs, build_strategy("random"), 2, 0.2, 32, quiet=True, device="cpu"
        ).fit()

    a, b = run(), run()
    assert a.final_test_acc == b.final_test_acc
    assert [e["train_loss"] for e in a.epochs] == [e["train_loss"] for e in b.epochs]


def test_mlp_two_epochs_on_5000_fashion_mnist_beats_75_percent(fmnist_5k):
    torch.manual_seed(0)
    model = build_model("mlp", fmnist_5k.input_shape, 10)
    record = Trainer(
        model, fmnist_5k, build_strategy("full"), 2, 1.0, 128, quiet=True, device="cpu"
    ).fit()
    assert record.final_test_acc > 0.75


def test_evaluation_subsets_per_epoch_and_whole_sets_at_the_end():
    data = tiny_splits()
    torch.manual_seed(0)
    model = Linear()
    trainer = Trainer(
        model,
        data,
        build_strategy("full"),
        2,
        1.0,
        10,
        quiet=True,
        device="cpu",
        eval_test_subset=5,
        eval_val_subset=4,
    )
    record = trainer.fit()
    with torch.no_grad():
        pred_test = model(data.x_test).argmax(1)
        pred_val = model(data.x_val).argmax(1)
    assert record.final_test_acc == pytest.approx((pred_test == data.y_test).float().mean().item())
    assert record.final_val_acc == pytest.approx((pred_val == data.y_val).float().mean().item())
    assert all(e["test_acc"] * 5 == pytest.approx(round(e["test_acc"] * 5)) for e in record.epochs)
    assert all(e["val_acc"] * 4 == pytest.approx(round(e["val_acc"] * 4)) for e in record.epochs)
