"""CRAIG: weights, budgets, the schedule of reselection, and convex CRAIG on digits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreselect import linear, select
from coreselect.data import load_dataset
from coreselect.methods import build_strategy
from coreselect.models import build_model
from coreselect.train import Trainer
from coreselect.train.context import TrainContext


def blobs_ctx(pool=None, fraction=0.1, epoch=0, seed=0):
    data = load_dataset("blobs")
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    n = len(data.y_train)
    pool = np.arange(n) if pool is None else pool
    ctx = TrainContext(
        model,
        data.x_train,
        data.y_train,
        pool,
        data.num_classes,
        torch.device("cpu"),
        np.random.default_rng(seed),
        fraction,
        32,
        int(np.ceil(fraction * pool.size)),
        1,
        10,
        epoch=epoch,
    )
    return data, model, ctx


def test_craig_equals_the_engine_on_hand_computed_gradients():
    data, model, ctx = blobs_ctx(pool=np.arange(100, 1100))
    strategy = build_strategy("craig")
    plan = strategy.plan(ctx)
    x, y = data.x_train[ctx.pool], data.y_train[ctx.pool]
    with torch.no_grad():
        g = torch.softmax(model.eval()(x), 1) - F.one_hot(y, data.num_classes)
    expected = select(
        g.numpy(), ctx.budget, labels=y.numpy(), metric="euclidean", optimizer="lazy", device="cpu"
    )
    assert np.array_equal(plan.indices, ctx.pool[expected.indices])
    assert np.allclose(plan.weights, expected.weights)


def test_craig_weights_and_per_class_budgets():
    data, model, ctx = blobs_ctx(pool=np.arange(0, 1800, 2), fraction=0.2)
    strategy = build_strategy("craig")
    plan = strategy.plan(ctx)
    assert plan.indices.size == ctx.budget and np.unique(plan.indices).size == ctx.budget
    assert np.isin(plan.indices, ctx.pool).all()
    assert plan.weights.mean() == pytest.approx(1.0, rel=1e-5) and (plan.weights > 0).all()
    # raw cluster sizes: weights scaled back sum to the pool size
    raw = strategy.last_coreset.weights * (ctx.pool.size / ctx.budget)
    assert raw.sum() == pytest.approx(ctx.pool.size, rel=1e-5)
    labels = ctx.targets[ctx.pool]
    sizes = np.bincount(labels)
    counts = np.bincount(ctx.targets[plan.indices], minlength=sizes.size)
    assert np.all(np.abs(counts - sizes * ctx.budget / ctx.pool.size) < 1.0)
    # each class's weights sum to its pool size (clusters stay inside a class)
    for c in range(sizes.size):
        assert raw[ctx.targets[plan.indices] == c].sum() == pytest.approx(sizes[c], rel=1e-5)


@pytest.mark.parametrize(
    "every,warm,expected",
    [(1, 0, [1, 2, 3, 4, 5, 6]), (2, 0, [1, 3, 5]), (None, 0, [1]), (3, 2, [3, 6])],
)
def test_reselection_happens_at_scheduled_epochs_only(every, warm, expected):
    data = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    strategy = build_strategy("craig", reselect_every=every, warm_start_epochs=warm)
    record = Trainer(model, data, strategy, 6, 0.1, 30, quiet=True, device="cpu").fit()
    assert record.strategy_stats["selection_epochs"] == expected
    assert record.strategy_stats["selections"] == len(expected)
    assert record.total_select_s > 0


def test_craig_bad_options_and_diverged_model():
    with pytest.raises(ValueError, match="logit, last-layer, penultimate"):
        build_strategy("craig", features="hessian")
    with pytest.raises(ValueError, match="euclidean"):
        build_strategy("craig", metric="manhattan")
    data, model, ctx = blobs_ctx()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        build_strategy("craig").plan(ctx)


def test_craig_budget_larger_than_pool_takes_the_pool():
    data, model, ctx = blobs_ctx(pool=np.arange(10), fraction=1.0)
    ctx.budget = 50
    with pytest.warns(UserWarning, match="whole pool"):
        plan = build_strategy("craig").plan(ctx)
    assert np.array_equal(np.sort(plan.indices), np.arange(10))


def test_convex_craig_on_digits_beats_random_and_nears_the_optimum():
    """L2-regularized multinomial logistic regression on digits (overlapping classes): SGD on a
    10 % CRAIG coreset with raw cluster-size weights ends within 5 % of the optimum's
    regularized loss, and below SGD on a uniform-weighted random 10 %."""
    data = load_dataset("digits", val=0)
    X = data.x_train.reshape(len(data.y_train), -1).double().numpy()
    y = data.y_train.numpy()
    n, lam = len(y), 0.1
    w_opt = linear.fit_optimum(X, y, lam)
    best = linear.loss(w_opt, X, y, lam)
    coreset = select(X, 0.1, labels=y, normalize=False, optimizer="lazy", device="cpu")
    assert coreset.weights.sum() == pytest.approx(n)
    idx = coreset.indices
    w_craig = linear.sgd(
        X[idx], y[idx], lam, weights=coreset.weights, n_total=n, epochs=60, lr=0.1, decay=0.1
    )
    craig_loss = linear.loss(w_craig, X, y, lam)
    rand_losses = []
    for seed in range(3):
        r = np.random.default_rng(seed).choice(n, idx.size, replace=False)
        w_rand = linear.sgd(X[r], y[r], lam, epochs=60, lr=0.1, decay=0.1, seed=seed)
        rand_losses.append(linear.loss(w_rand, X, y, lam))
    assert craig_loss <= 1.05 * best
    assert craig_loss < min(rand_losses)
