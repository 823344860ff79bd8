"""Closed-form per-example gradients against autograd, in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreselect.models import build_model
from coreselect.signals import compute, last_layer_gradients, logit_gradients
from coreselect.train.context import TrainContext


def autograd_per_example(model, x, y):
    """Gradients of CE w.r.t. logits and the classifier's weight and bias, one example at a time."""
    dz, dw, db = [], [], []
    for i in range(len(y)):
        model.zero_grad()
        h = model.embed(x[i : i + 1])
        z = model.classifier(h)
        z.retain_grad()
        F.cross_entropy(z, y[i : i + 1]).backward()
        dz.append(z.grad[0].clone())
        dw.append(model.classifier.weight.grad.clone())
        db.append(model.classifier.bias.grad.clone())
    return torch.stack(dz), torch.stack(dw), torch.stack(db)


@pytest.fixture()
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 5).double().eval()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    return model, x, y


def test_logit_and_last_layer_gradients_match_autograd(model_and_batch):
    model, x, y = model_and_batch
    dz, dw, db = autograd_per_example(model, x, y)
    with torch.no_grad():
        h = model.embed(x)
        z = model.classifier(h)
    assert torch.allclose(logit_gradients(z.clone(), y), dz, atol=1e-12)
    full = last_layer_gradients(z.clone(), h, y)  # (n, C·(D+1))
    expected = torch.cat([dw, db[:, :, None]], dim=2).reshape(len(y), -1)
    assert full.shape == (7, 5 * (h.shape[1] + 1))
    assert torch.allclose(full, expected, atol=1e-12)
    no_bias = last_layer_gradients(z.clone(), h, y, bias=False)
    assert torch.allclose(no_bias, dw.reshape(len(y), -1), atol=1e-12)


def test_projection_equals_explicit_matrix_and_preserves_distances(model_and_batch):
    model, x, y = model_and_batch
    with torch.no_grad():
        h = model.embed(x)
        z = model.classifier(h)
    full = last_layer_gradients(z.clone(), h, y)
    proj = last_layer_gradients(z.clone(), h, y, project_dim=4096, seed=3)
    again = last_layer_gradients(z.clone(), h, y, project_dim=4096, seed=3)
    assert torch.equal(proj, again)
    d_full = torch.cdist(full, full)
    d_proj = torch.cdist(proj, proj)
    mask = d_full > 0
    ratio = d_proj[mask] / d_full[mask]
    assert ratio.min() > 0.85 and ratio.max() < 1.15  # JL at k = 4096


def test_compute_on_a_context_and_nan_detection():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3)
    x = torch.randn(20, 1, 4, 4)
    y = torch.arange(20) % 3
    ctx = TrainContext(
        model,
        x,
        y,
        np.arange(20),
        3,
        torch.device("cpu"),
        np.random.default_rng(0),
        0.5,
        4,
        10,
        3,
        6,
        epoch=2,
    )
    idx = np.array([3, 1, 4])
    g = compute(ctx, idx)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x[idx]), 1) - F.one_hot(y[idx], 3)
    assert torch.allclose(g, expected, atol=1e-6)
    assert compute(ctx, idx, "penultimate").shape == (3, 128)
    assert compute(ctx, idx, "last-layer").shape == (3, 3 * 129)
    with pytest.raises(ValueError, match="logit, last-layer, penultimate"):
        compute(ctx, idx, "hessian")
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="epoch 3"):
        compute(ctx, idx)


def test_hutchinson_converges_to_a_known_diagonal():
    """f(x) = ½ xᵀAx with a dense symmetric A: E[z ⊙ Az] = diag(A)."""
    from coreselect.signals import hutchinson_diagonal

    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * x @ a @ x
    est = hutchinson_diagonal(loss, [x], samples=20000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(est[0], torch.diagonal(a), rtol=0.05, atol=0.05 * a.abs().max())
    # a diagonal Hessian is recovered exactly by every sample
    d = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    one = hutchinson_diagonal(0.5 * (d * y * y).sum(), [y], samples=1)
    assert torch.allclose(one[0], d)


def test_last_layer_hessian_diagonal_equals_autograd(model_and_batch):
    from coreselect.signals import last_layer_hessian_diagonal

    model, x, y = model_and_batch
    with torch.no_grad():
        h = model.embed(x)
    w0 = model.classifier.weight.detach().clone()
    b0 = model.classifier.bias.detach().clone()
    c, d = w0.shape

    def mean_loss(flat):
        w = flat[: c * d].reshape(c, d)
        b = flat[c * d :]
        return F.cross_entropy(h @ w.T + b, y)

    flat = torch.cat([w0.reshape(-1), b0])
    hess = torch.autograd.functional.hessian(mean_loss, flat)
    diag = torch.diagonal(hess)
    expected = torch.cat([diag[: c * d].reshape(c, d), diag[c * d :, None]], dim=1).reshape(-1)
    ours = last_layer_hessian_diagonal(h @ w0.T + b0, h)
    assert torch.allclose(ours, expected, atol=1e-12)
