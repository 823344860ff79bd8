"""Augmentation coresets: epoch composition, budgets, and the baselines' subsets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreselect.data import load_dataset
from coreselect.methods import build_strategy
from coreselect.models import build_model
from coreselect.train import Trainer
from coreselect.train.context import TrainContext


def ctx_for(fraction=0.1, seed=0):
    data = load_dataset("blobs")
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    n = len(data.y_train)
    ctx = TrainContext(
        model,
        data.x_train,
        data.y_train,
        np.arange(n),
        data.num_classes,
        torch.device("cpu"),
        np.random.default_rng(seed),
        fraction,
        32,
        math.ceil(fraction * n),
        1,
        10,
    )
    return data, model, ctx


@pytest.mark.parametrize("name", ["augment-coreset", "augment-random", "augment-maxloss"])
def test_epoch_holds_all_clean_examples_plus_augmented_subset(name):
    data, model, ctx = ctx_for(0.1)
    strategy = build_strategy(name)
    plan = strategy.plan(ctx)
    n, k = ctx.pool.size, ctx.budget
    assert np.array_equal(np.sort(plan.indices), ctx.pool) and (plan.weights == 1).all()
    assert len(plan.extra) == 1 and plan.extra[0].indices.size == k
    assert np.unique(plan.extra[0].indices).size == k and (plan.extra[0].weights == 1).all()
    assert plan.extra[0].transform is strategy.transform
    assert plan.size == n + k
    assert strategy.examples_per_epoch(n, 0.1) == n + k


def test_subset_mode_trains_on_the_weighted_coreset_and_its_copies():
    data, model, ctx = ctx_for(0.2)
    strategy = build_strategy("augment-coreset", main="subset", weighted=True)
    plan = strategy.plan(ctx)
    k = ctx.budget
    assert plan.indices.size == k and plan.size == 2 * k
    assert np.array_equal(plan.indices, plan.extra[0].indices)
    assert plan.weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(plan.extra[0].weights, plan.weights)
    assert strategy.examples_per_epoch(ctx.pool.size, 0.2) == 2 * k


def test_step_budget_counts_augmented_copies():
    data = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    n = len(data.y_train)
    trainer = Trainer(
        model, data, build_strategy("augment-random"), 2, 0.1, 50, quiet=True, device="cpu"
    )
    assert trainer.steps_per_epoch == math.ceil((n + math.ceil(0.1 * n)) / 50)
    assert trainer.total_steps == math.ceil(2 * (n + math.ceil(0.1 * n)) / 50)
    record = trainer.fit()
    assert record.epochs[-1]["step"] == trainer.total_steps
    full = Trainer(
        model, data, build_strategy("augment-full"), 1, 0.1, 50, quiet=True, device="cpu"
    )
    assert full.fraction == 1.0 and full.steps_per_epoch == math.ceil(2 * n / 50)


def test_max_loss_picks_the_highest_loss_examples():
    data, model, ctx = ctx_for(0.05)
    plan = build_strategy("augment-maxloss").plan(ctx)
    with torch.no_grad():
        losses = F.cross_entropy(model.eval()(data.x_train), data.y_train, reduction="none")
    top = torch.topk(losses, ctx.budget).indices.numpy()
    assert set(plan.extra[0].indices.tolist()) == set(top.tolist())


def test_augmented_copies_are_transformed_in_training():
    data = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    strategy = build_strategy("augment-random")
    calls = []
    original = strategy.transform

    def spy(x, generator=None):
        calls.append(len(x))
        return original(x, generator=generator)

    strategy.transform = spy
    trainer = Trainer(model, data, strategy, 1, 0.1, 50, quiet=True, device="cpu")
    trainer.fit()
    k, n = math.ceil(0.1 * len(data.y_train)), len(data.y_train)
    wrap = trainer.total_steps * 50 - (n + k)  # the last batch completes from the next pass
    assert k <= sum(calls) <= k + wrap  # one pass: each copy once


def test_bad_options():
    with pytest.raises(ValueError, match="full, subset"):
        build_strategy("augment-coreset", main="half")
    with pytest.raises(ValueError, match="valid names"):
        build_strategy("augment-coreset", augment="mixup")
    with pytest.raises(ValueError, match="magnitude"):
        build_strategy("augment-coreset", magnitude=99)


def test_augment_suite_report_against_hand_computed_shares(tmp_path):
    from coreselect.bench.augment import summarize_augment
    from coreselect.bench.suites import get_suite
    from coreselect.bench.train import run_suite, write_report

    suite = get_suite("smoke-augment")
    runs = run_suite(suite, tmp_path, seeds=[0, 1])
    labels = {(r["label"], r["fraction"]) for r in runs}
    assert ("augment-all", 1.0) in labels and ("coreset+noise30", 0.5) in labels
    assert ("coreset", 0.2) in labels and ("none", 1.0) in labels
    assert all(r["label_noise"] == (0.3 if "noise" in r["label"] else 0.0) for r in runs)
    rows = summarize_augment(suite, runs)
    row = next(r for r in rows if r["label"] == "coreset")

    def acc(label, seed, key="final_test_acc"):
        return next(r[key] for r in runs if r["label"] == label and r["seed"] == seed)

    gain = np.mean([acc("coreset", s) - acc("none", s) for s in (0, 1)])
    gain_all = np.mean([acc("augment-all", s) - acc("none", s) for s in (0, 1)])
    if gain_all:
        assert row["gain_share"] == pytest.approx(gain / gain_all)
    extra = np.mean(
        [acc("coreset", s, "total_wall_s") - acc("none", s, "total_wall_s") for s in (0, 1)]
    )
    extra_all = np.mean(
        [acc("augment-all", s, "total_wall_s") - acc("none", s, "total_wall_s") for s in (0, 1)]
    )
    assert row["extra_time_share"] == pytest.approx(extra / extra_all)
    report = write_report(suite, tmp_path).read_text()
    assert "| coreset | 0.2 | 0% |" in report and "Regime" in report
