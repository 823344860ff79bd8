"""CREST's quadratic-region machinery and AdaCore's preconditioned features."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreselect.data import load_dataset
from coreselect.methods import build_strategy
from coreselect.methods.crest import LossWatch, QuadraticModel, balanced_counts
from coreselect.models import build_model
from coreselect.signals import hutchinson_diagonal
from coreselect.train import Trainer
from coreselect.train.context import TrainContext


def quadratic_objective(seed=0, p=8):
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(p, generator=g, dtype=torch.float64) * 3  # diagonal PSD Hessian
    d[0] = 0.0  # a flat direction too
    c = torch.randn(p, generator=g, dtype=torch.float64)
    return d, c, lambda th: 0.5 * (d * (th - c) ** 2).sum() + 1.5


def fitted_model(theta0, f, beta1=0.0):
    theta = theta0.clone().requires_grad_(True)
    loss = f(theta)
    hess, grad = hutchinson_diagonal(loss, [theta], samples=1, return_grad=True)
    model = QuadraticModel(beta1=beta1, beta2=0.999)
    model.update(grad[0], hess[0].detach())
    model.loss0 = float(loss.detach())
    return model


def test_quadratic_model_is_exact_on_a_diagonal_quadratic():
    d, c, f = quadratic_objective()
    theta0 = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    model = fitted_model(theta0, f)
    for s in range(5):
        delta = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        assert model.predict(delta) == pytest.approx(float(f(theta0 + delta)), rel=1e-12)
    assert model.predict(torch.zeros(8, dtype=torch.float64)) == pytest.approx(float(f(theta0)))


def test_check_fires_only_when_the_loss_leaves_the_model():
    d, c, f = quadratic_objective(1)
    theta0 = torch.zeros(8, dtype=torch.float64)
    model = fitted_model(theta0, f)
    zero = torch.zeros(8, dtype=torch.float64)
    assert not model.exceeded(float(f(theta0)), zero, tau=0.1)  # δ = 0: never fires
    delta = 0.3 * torch.ones(8, dtype=torch.float64)
    true = float(f(theta0 + delta))
    assert not model.exceeded(true, delta, tau=0.1)  # on the model
    assert model.exceeded(true * 1.25, delta, tau=0.1)  # the loss moved off the model
    assert not model.exceeded(true * 1.05, delta, tau=0.1)


def test_ema_gradient_is_bias_corrected():
    m = QuadraticModel(beta1=0.9, beta2=0.999)
    g = torch.tensor([2.0, -1.0])
    m.update(g, torch.tensor([1.0, 4.0]))
    assert torch.allclose(m.grad, g) and torch.allclose(m.hess, torch.tensor([1.0, 4.0]))
    m.update(torch.tensor([0.0, 0.0]), torch.tensor([-1.0, 0.0]))
    assert torch.allclose(m.grad, g * 0.9 * 0.1 / (1 - 0.81))
    assert (m.hess >= 0).all()  # unsigned


def test_loss_watch_and_balanced_counts():
    w = LossWatch(6, watch=3)
    w.record(np.array([0, 1, 2, 3]), np.array([0.05, 0.05, 0.5, 0.01]))
    w.record(np.array([0, 1, 2]), np.array([0.02, 0.2, 0.01]))
    w.record(np.array([0, 1, 2, 4]), np.array([0.1, 0.01, 0.01, 0.0]))
    # 0: all ≤ 0.1 (three records) → learned; 1: a 0.2 → kept; 2: a 0.5 → kept;
    # 3, 4: fewer than three records → kept; 5: none → kept
    assert w.learned(np.arange(6), 0.1).tolist() == [True, False, False, False, False, False]
    w.record(np.array([2]), np.array([0.0]))  # 2's window is now 0.01, 0.01, 0.0
    assert w.learned(np.arange(6), 0.1).tolist() == [True, False, True, False, False, False]
    assert balanced_counts(np.array([10, 10, 10]), 7).tolist() == [3, 2, 2]
    assert balanced_counts(np.array([1, 10, 0]), 7).tolist() == [1, 6, 0]
    assert balanced_counts(np.array([1, 2]), 10).tolist() == [1, 2]


def crest_ctx(n_classes=4, seed=0):
    data = load_dataset("blobs")
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    n = len(data.y_train)
    return (
        data,
        model,
        TrainContext(
            model,
            data.x_train,
            data.y_train,
            np.arange(n),
            data.num_classes,
            torch.device("cpu"),
            np.random.default_rng(seed),
            0.1,
            16,
            180,
            12,
            120,
        ),
    )


def test_drop_learned_drops_exactly_the_learned_examples_above_class_floors():
    data, model, ctx = crest_ctx()
    crest = build_strategy("crest", pool_fraction=0.02, drop_learned=True, watch=2)
    crest.setup(ctx)
    labels = ctx.targets
    learned_ids = np.nonzero(labels == 0)[0][:50]  # 50 learned examples of class 0
    crest.watcher.record(learned_ids, np.full(50, 0.05))
    crest.watcher.record(learned_ids, np.full(50, 0.1))
    crest.watcher.record(np.array([1000]), np.array([0.01]))  # one record only: kept
    before = crest.active.size
    crest._drop(ctx)
    assert crest.dropped == 50 and crest.active.size == before - 50
    assert not np.isin(learned_ids, crest.active).any()
    # a class whose unlearned remainder would fall below its floor keeps everything
    small = np.nonzero(labels == 1)[0]
    crest.watcher.record(small, np.zeros(small.size))
    crest.watcher.record(small, np.zeros(small.size))
    crest._drop(ctx)
    assert np.isin(small, crest.active).all()


def test_crest_rejects_bad_settings():
    with pytest.raises(ValueError, match="tau"):
        build_strategy("crest", tau=0.0)
    data, model, ctx = crest_ctx()
    crest = build_strategy("crest", pool_fraction=0.001)
    with pytest.raises(ValueError, match=r"random pool of 2 examples .* mini-batch of 16"):
        crest.setup(ctx)


class SGDNoMomentum:
    """Records each step's displacement against lr × grad."""

    def __init__(self, lr):
        self.lr = lr

    def __call__(self, params):
        return torch.optim.SGD(params, lr=self.lr)


def test_one_optimizer_step_applies_exactly_one_gradient():
    """Regression test for the release's doubled gradient: Δθ = −lr · ∇(weighted batch loss)."""
    data = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    reference = build_model("mlp", data.input_shape, data.num_classes)
    reference.load_state_dict(model.state_dict())
    crest = build_strategy("crest", pool_fraction=0.05)
    seen = {}
    original = crest.after_step

    def spy(ctx, indices, losses):
        if "idx" not in seen:
            seen["idx"] = indices.copy()
            seen["disp"] = [d.clone() for d in ctx.displacement]
        original(ctx, indices, losses)

    crest.after_step = spy
    queue_w = {}
    original_next = crest.next_batch

    def next_spy(ctx):
        idx, w = original_next(ctx)
        queue_w.setdefault("w", w.copy())
        return idx, w

    crest.next_batch = next_spy
    Trainer(
        model,
        data,
        crest,
        1,
        16 / 1800,
        16,
        optimizer=SGDNoMomentum(0.1),
        schedule="constant",
        quiet=True,
        device="cpu",
    ).fit()
    x, y = data.x_train[seen["idx"]], data.y_train[seen["idx"]]
    reference.train()
    w = torch.from_numpy(queue_w["w"])
    loss = (w * F.cross_entropy(reference(x), y, reduction="none")).mean()
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for disp, g in zip(seen["disp"], grads, strict=True):
        assert torch.allclose(disp, -0.1 * g, atol=1e-6)


def test_crest_trains_reselects_and_reports():
    data = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    crest = build_strategy("crest", pool_fraction=0.05, drop_learned=True, drop_interval=1)
    record = Trainer(model, data, crest, 4, 0.3, 16, quiet=True, device="cpu").fit()
    stats = record.strategy_stats
    assert stats["selections"] >= 1 and stats["checks"] >= 1
    assert record.final_test_acc > 0.6
    for key in ("mean_checks_between_selections", "examples_dropped", "final_interval"):
        assert key in stats


def test_crest_check_responds_to_unrecorded_parameter_moves():
    data, model, ctx = crest_ctx()
    crest = build_strategy("crest", pool_fraction=0.05)
    crest.setup(ctx)
    crest._select(ctx)
    params = list(model.parameters())
    ctx.displacement = [torch.zeros_like(p) for p in params]
    crest.after_step(ctx, np.arange(4), torch.zeros(4))
    assert not crest._check(ctx)  # δ = 0 and the model unchanged: the loss is L0
    with torch.no_grad():  # move the model without telling δ: the loss leaves the model
        model.classifier.bias += torch.tensor([5.0, -5.0, 5.0, -5.0])
    assert crest._check(ctx)


# ---------------------------------------------------------------------------- AdaCore
def adacore_ctx(seed=0):
    data = load_dataset("blobs")
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    n = len(data.y_train)
    return (
        data,
        model,
        TrainContext(
            model,
            data.x_train,
            data.y_train,
            np.arange(n),
            data.num_classes,
            torch.device("cpu"),
            np.random.default_rng(seed),
            0.1,
            32,
            180,
            6,
            60,
        ),
    )


def test_adacore_hessian_is_shared_exact_and_hutchinson_agrees():
    data, model, ctx = adacore_ctx()
    exact = build_strategy("adacore")
    logits, embeds = ctx.forward(ctx.pool)
    targets = torch.as_tensor(ctx.targets)
    h_exact = exact.hessian_diagonal(ctx, logits, embeds, targets)
    hutch = build_strategy("adacore", hessian="hutchinson", hutchinson_samples=1000)
    h_hutch = hutch.hessian_diagonal(ctx, logits, embeds, targets)
    assert h_exact.shape == h_hutch.shape == (4 * 129,)
    rel = (h_hutch - h_exact).norm() / h_exact.norm()
    assert rel < 0.15  # Monte Carlo: 1,000 Rademacher vectors (seeded)
    # the EMA across selections is bias-corrected: a constant H stays H
    for _ in range(3):
        h_bar = exact.update_hessian(h_exact)
    assert torch.allclose(h_bar, h_exact, rtol=1e-5)


def test_adacore_features_keep_the_spread_of_the_gradients():
    data, model, ctx = adacore_ctx()
    ada = build_strategy("adacore", features="logit")
    logits, embeds = ctx.forward(ctx.pool)
    targets = torch.as_tensor(ctx.targets)
    h_bar = ada.update_hessian(ada.hessian_diagonal(ctx, logits, embeds, targets))
    u = ada.preconditioned(logits, embeds, targets, 1.0 / (h_bar + ada.eps * h_bar.mean()))
    raw = torch.softmax(logits, 1) - F.one_hot(targets, 4)
    p = torch.softmax(logits, 1)
    per_example = raw / (p * (1 - p))  # the collapsing preconditioner

    def spectrum(feats, c):
        x = feats[targets == c].double()
        s = torch.linalg.svdvals(x - x.mean(0))
        return s / s[0]

    for c in range(4):
        ours, grads, bad = spectrum(u, c), spectrum(raw, c), spectrum(per_example, c)
        rank = int((grads > 1e-4).sum())
        assert rank == 3  # p − y sums to 0: rank C − 1
        assert int((ours > 1e-4).sum()) >= rank  # preconditioning keeps every direction
        assert ours[rank - 1] > 0.5 * grads[rank - 1]  # no direction squashed
        assert bad[1] < 0.5 * ours[1]  # the per-example variant collapses towards rank 1


def test_adacore_plan_weights_and_budget():
    data, model, ctx = adacore_ctx()
    plan = build_strategy("adacore", project_dim=64).plan(ctx)
    assert plan.indices.size == 180 and np.unique(plan.indices).size == 180
    assert plan.weights.mean() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="exact, hutchinson"):
        build_strategy("adacore", hessian="fisher")
