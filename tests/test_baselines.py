"""The standard baselines: el2n, grand, uncertainty, forgetting, kcenter, herding, gradmatch."""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from coreselect.methods import build_strategy
from coreselect.methods.baseline import rank_scores
from coreselect.methods.forgetting import (
    ForgettingTracker,
    count_forgetting_events,
    forgetting_scores,
)
from coreselect.methods.gradmatch import omp_nonneg
from coreselect.methods.herding import herding_select
from coreselect.methods.kcenter import kcenter_greedy
from coreselect.methods.scores import el2n_scores, grand_scores, uncertainty_scores
from coreselect.methods.warmup import ModelView, warm_up
from coreselect.models import build_model
from coreselect.train.context import TrainContext

BASELINES = ["el2n", "grand", "uncertainty", "forgetting", "kcenter", "herding", "gradmatch"]
PER_CLASS = {
    "kcenter": {},
    "herding": {},
    "gradmatch": {},
    "el2n": {"per_class": True},
    "forgetting": {"per_class": True},
}
POOL = np.arange(50, 400)


def make_model(data, seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", data.input_shape, data.num_classes)


def make_ctx(data, model, pool=POOL, budget=37, seed=0, epoch=0, batch_size=64):
    return TrainContext(
        model=model,
        x=data.x_train,
        y=data.y_train,
        pool=np.asarray(pool, dtype=np.int64),
        num_classes=data.num_classes,
        device=torch.device("cpu"),
        rng=np.random.default_rng(seed),
        fraction=budget / len(data.y_train),
        batch_size=batch_size,
        budget=budget,
        steps_per_epoch=1,
        total_steps=1,
        epoch=epoch,
    )


def select(data, name, budget=37, pool=POOL, seed=0, model_seed=0, **options):
    strategy = build_strategy(name, **options)
    ctx = make_ctx(data, make_model(data, model_seed), pool=pool, budget=budget, seed=seed)
    return strategy.plan(ctx), strategy, ctx


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def outputs(model, x):
    """Logits and embeddings in float64 numpy (the brute-force side)."""
    model.eval()
    with torch.no_grad():
        h = model.embed(x)
        return model.classifier(h).double().numpy(), h.double().numpy()


# ---------------------------------------------------------------------------- common contract
@pytest.mark.parametrize("name", BASELINES)
def test_unique_indices_within_the_pool_exact_count_and_weights(blobs, name):
    plan, strategy, _ = select(blobs, name)
    idx = plan.indices
    assert idx.size == 37 and np.unique(idx).size == 37
    assert np.isin(idx, POOL).all()
    if name == "gradmatch":
        assert np.all(plan.weights > 0) and plan.weights.mean() == pytest.approx(1.0, rel=1e-5)
    else:
        assert np.array_equal(plan.weights, np.ones(37, np.float32))
    stats = strategy.stats()
    assert stats["selections"] == 1 and stats["last"]["selected"] == 37
    assert stats["warmup_s"] > 0 and stats["last"]["model"] == "warm-up copy"


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic_with_a_seed(blobs, name):
    a, _, _ = select(blobs, name, seed=3)
    b, _, _ = select(blobs, name, seed=3)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.weights, b.weights)


@pytest.mark.parametrize("name", sorted(PER_CLASS))
def test_per_class_budgets_are_proportional_within_one(blobs, name):
    plan, _, _ = select(blobs, name, budget=53, **PER_CLASS[name])
    y = blobs.y_train.numpy()
    counts = np.bincount(y[plan.indices], minlength=blobs.num_classes)
    share = np.bincount(y[POOL], minlength=blobs.num_classes) * 53 / POOL.size
    assert counts.sum() == 53 and np.all(np.abs(counts - share) < 1.0)


@pytest.mark.parametrize("name", BASELINES)
def test_budget_larger_than_the_pool_takes_the_pool_and_warns(blobs, name):
    pool = np.arange(100, 130)
    with pytest.warns(UserWarning, match="exceeds the pool of 30 examples"):
        plan, _, _ = select(blobs, name, budget=45, pool=pool)
    assert np.array_equal(np.sort(plan.indices), pool)


@pytest.mark.parametrize("name", ["kcenter", "herding", "gradmatch", "el2n"])
def test_a_class_absent_from_the_pool_is_skipped_with_a_warning(blobs, name):
    y = blobs.y_train.numpy()
    pool = POOL[y[POOL] != 2]
    options = {"per_class": True} if name == "el2n" else {}
    with pytest.warns(UserWarning, match="class\\(es\\) 2 have no example in the pool"):
        plan, _, _ = select(blobs, name, budget=30, pool=pool, **options)
    assert plan.indices.size == 30 and np.isin(plan.indices, pool).all()
    assert not np.any(y[plan.indices] == 2)


@pytest.mark.parametrize("name", BASELINES)
def test_nan_features_stop_selection_naming_the_epoch(blobs, name):
    model = make_model(blobs)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    ctx = make_ctx(blobs, model, epoch=2)
    options = {} if name == "forgetting" else {"warmup_epochs": 0}
    with pytest.raises(FloatingPointError, match="epoch 3"):
        build_strategy(name, **options).plan(ctx)


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("uncertainty", {"score": "variance"}, "least-confidence, entropy, margin"),
        ("el2n", {"keep": "middle"}, "highest, lowest"),
        ("grand", {"drop_top": 1.0}, "drop_top"),
        ("el2n", {"per_class": "yes"}, "per_class"),
        ("gradmatch", {"features": "penultimate"}, "logit, last-layer"),
        ("gradmatch", {"project_dim": 8}, "last-layer"),
        ("gradmatch", {"tol": -1.0}, "tol"),
        ("kcenter", {"warmup_epochs": -1}, "warmup_epochs"),
        ("herding", {"warmup_lr": 0}, "warmup_lr"),
        ("forgetting", {"warmup_epochs": 0}, "warmup_epochs must be an integer >= 1"),
        ("kcenter", {"reselect_every": 0}, "reselect_every"),
        ("herding", {"per_class": False}, "valid options"),
    ],
)
def test_bad_options_raise_clear_value_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_strategy(name, **options)


def test_warm_up_trains_a_copy_and_reselection_rescores_the_current_model(blobs):
    model = make_model(blobs)
    before = [p.detach().clone() for p in model.parameters()]
    strategy = build_strategy("el2n", reselect_every=2)
    assert [strategy.due(e) for e in range(5)] == [True, False, True, False, True]
    assert [build_strategy("el2n").due(e) for e in range(3)] == [True, False, False]
    ctx = make_ctx(blobs, model)
    strategy.plan(ctx)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # untouched
    first = strategy.stats()
    ctx.epoch = 2
    plan = strategy.plan(ctx)
    stats = strategy.stats()
    assert stats["selections"] == 2 and stats["warmup_s"] == first["warmup_s"]  # no new warm-up
    assert stats["last"]["model"] == "current" and stats["last"]["epoch"] == 3
    # the second selection is the brute-force top-37 EL2N of the (unchanged) current model
    z, _ = outputs(model, blobs.x_train[POOL])
    g = softmax(z)
    g[np.arange(POOL.size), blobs.y_train.numpy()[POOL]] -= 1
    top = POOL[np.argsort(-np.linalg.norm(g, axis=1))[:37]]
    assert set(plan.indices) == set(top)


def test_warm_up_correctness_history_is_aligned_with_the_pool(blobs):
    model = make_model(blobs)
    ctx = make_ctx(blobs, model, batch_size=16)
    result = warm_up(ctx, 2, lr=1e-12, record_correct=True)  # a step that changes nothing
    z, _ = outputs(model, blobs.x_train[POOL])  # mlp: train mode == eval mode
    expected = z.argmax(1) == blobs.y_train.numpy()[POOL]
    assert result.correct.shape == (2, POOL.size)
    assert np.array_equal(result.correct[0], expected) and np.array_equal(
        result.correct[1], expected
    )
    assert np.array_equal(result.pool, POOL) and result.seconds > 0
    view = ModelView(ctx, result.model)
    assert view.targets is ctx.targets and view.epoch == ctx.epoch


# ---------------------------------------------------------------------------- el2n, grand
def test_el2n_keeps_the_largest_error_norms_of_the_warmed_up_model(blobs):
    plan, _, _ = select(blobs, "el2n", seed=5)
    # the same warm-up (same seeded batch order), then brute force in numpy
    twin = make_ctx(blobs, make_model(blobs), seed=5)
    warm = warm_up(twin, 1)
    z, _ = outputs(warm.model, blobs.x_train[POOL])
    g = softmax(z)
    g[np.arange(POOL.size), blobs.y_train.numpy()[POOL]] -= 1.0
    score = np.linalg.norm(g, axis=1)
    top = POOL[np.argsort(-score)[:37]]
    assert set(plan.indices) == set(top)
    assert np.sort(score)[-37] > np.sort(score)[-38]  # the brute-force cut is not a tie


def test_el2n_keep_lowest_and_drop_top(blobs):
    model = make_model(blobs)
    z, _ = outputs(model, blobs.x_train[POOL])
    g = softmax(z)
    g[np.arange(POOL.size), blobs.y_train.numpy()[POOL]] -= 1.0
    order = POOL[np.argsort(-np.linalg.norm(g, axis=1))]
    opts = {"warmup_epochs": 0}
    low, _, _ = select(blobs, "el2n", keep="lowest", **opts)
    assert set(low.indices) == set(order[-37:])
    dropped, strategy, _ = select(blobs, "el2n", drop_top=0.1, **opts)
    assert set(dropped.indices) == set(order[35:72])  # ⌈0.1·350⌉ = 35 dropped, next 37 kept
    assert strategy.stats()["last"]["dropped_top"] == 35


def test_grand_is_the_exact_last_layer_gradient_norm(blobs):
    model = make_model(blobs)
    plan, _, _ = select(blobs, "grand", warmup_epochs=0)
    z, h = outputs(model, blobs.x_train[POOL])
    g = softmax(z)
    g[np.arange(POOL.size), blobs.y_train.numpy()[POOL]] -= 1.0
    score = np.linalg.norm(g, axis=1) * np.sqrt((h**2).sum(1) + 1.0)
    assert set(plan.indices) == set(POOL[np.argsort(-score)[:37]])
    zt, ht, yt = torch.tensor(z), torch.tensor(h), blobs.y_train[POOL]
    assert grand_scores(zt, ht, yt).numpy() == pytest.approx(score, rel=1e-10)
    assert el2n_scores(zt, yt).numpy() == pytest.approx(np.linalg.norm(g, axis=1), rel=1e-10)
    # against autograd: the norm of the gradient of CE w.r.t. classifier weight and bias
    m64 = make_model(blobs).double().eval()
    for i in (0, 7, 123):
        m64.zero_grad()
        x = blobs.x_train[POOL[i] : POOL[i] + 1].double()
        torch.nn.functional.cross_entropy(m64(x), blobs.y_train[POOL[i] : POOL[i] + 1]).backward()
        grad = torch.cat([m64.classifier.weight.grad.flatten(), m64.classifier.bias.grad])
        assert float(grad.norm()) == pytest.approx(score[i], rel=1e-5)


# ---------------------------------------------------------------------------- uncertainty
def test_uncertainty_scores_match_hand_formulas():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    logits = torch.tensor(np.log(p))
    lc = uncertainty_scores(logits, "least-confidence").numpy()
    ent = uncertainty_scores(logits, "entropy").numpy()
    margin = uncertainty_scores(logits, "margin").numpy()
    assert lc == pytest.approx([0.3, 0.6, 2 / 3])
    assert ent == pytest.approx([-(r * np.log(r)).sum() for r in p])
    assert ent[2] == pytest.approx(np.log(3))
    assert margin == pytest.approx([1 - 0.5, 1 - 0.05, 1.0])


@pytest.mark.parametrize("score", ["least-confidence", "entropy", "margin"])
def test_uncertainty_keeps_the_most_uncertain(blobs, score):
    model = make_model(blobs)
    plan, _, _ = select(blobs, "uncertainty", score=score, warmup_epochs=0)
    p = softmax(outputs(model, blobs.x_train[POOL])[0])
    top2 = np.sort(p, axis=1)[:, ::-1][:, :2]
    s = {
        "least-confidence": 1 - p.max(1),
        "entropy": -(p * np.log(p)).sum(1),
        "margin": 1 - (top2[:, 0] - top2[:, 1]),
    }[score]
    assert set(plan.indices) == set(POOL[np.argsort(-s)[:37]])


def test_rank_scores_breaks_ties_by_seeded_random():
    scores = np.array([1.0, 5.0, 5.0, 5.0, 5.0, 0.0, np.inf])
    picks = {tuple(np.sort(rank_scores(scores, 3, np.random.default_rng(s))[0])) for s in range(30)}
    assert all(6 in p and 0 not in p and 5 not in p for p in picks)  # inf first, then the 5s
    assert len(picks) > 1  # which two of the tied 5s depends on the seed
    a = rank_scores(scores, 3, np.random.default_rng(4))[0]
    assert np.array_equal(a, rank_scores(scores, 3, np.random.default_rng(4))[0])


# ---------------------------------------------------------------------------- forgetting
HISTORY = np.array(
    [
        # ex0 ex1 ex2 ex3 ex4 ex5
        [1, 1, 0, 0, 1, 0],
        [1, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 1],
    ],
    dtype=bool,
)


def test_forgetting_events_are_counted_from_a_hand_made_history():
    events, learned = count_forgetting_events(HISTORY)
    assert events.tolist() == [0, 2, 0, 1, 1, 0]
    assert learned.tolist() == [True, True, False, True, True, True]
    assert forgetting_scores(events, learned).tolist() == [0, 2, np.inf, 1, 1, 0]
    # the running tracker, fed one presentation at a time, over dataset ids 10..15
    tracker = ForgettingTracker(20)
    ids = np.arange(10, 16)
    for row in HISTORY:
        tracker.update(ids, row)
    assert tracker.events[ids].tolist() == events.tolist()
    assert tracker.scores(ids).tolist() == [0, 2, np.inf, 1, 1, 0]
    assert tracker.events[:10].sum() == 0


def test_forgetting_keeps_never_learned_then_most_forgotten(blobs):
    plan, strategy, _ = select(blobs, "forgetting", budget=60, seed=2)
    twin = make_ctx(blobs, make_model(blobs), seed=2)
    warm = warm_up(twin, 3, record_correct=True)
    events, learned = count_forgetting_events(warm.correct)
    scores = forgetting_scores(events, learned)
    kept = scores[np.searchsorted(POOL, plan.indices)]
    cut = kept.min()
    assert set(POOL[scores > cut]) <= set(plan.indices)  # everything strictly above the cut
    assert (~learned).sum() == strategy.stats()["last"]["never_learned"]
    # the same ties are broken the same way by the same seed
    again, _, _ = select(blobs, "forgetting", budget=60, seed=2)
    assert np.array_equal(plan.indices, again.indices)


def test_forgetting_reselection_adds_one_observation_of_the_current_model(blobs):
    model = make_model(blobs)
    strategy = build_strategy("forgetting", reselect_every=1)
    ctx = make_ctx(blobs, model)
    strategy.plan(ctx)
    events_before = strategy.tracker_.events[POOL].copy()
    last = strategy.tracker_.last[POOL].copy()
    ctx.epoch = 1
    strategy.plan(ctx)
    z, _ = outputs(model, blobs.x_train[POOL])
    now = z.argmax(1) == blobs.y_train.numpy()[POOL]
    assert np.array_equal(strategy.tracker_.events[POOL], events_before + (last & ~now))
    assert np.all(strategy.tracker_.seen[POOL] == 4)


# ---------------------------------------------------------------------------- kcenter
def brute_farthest_first(x, k, first):
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    picks = [first]
    for _ in range(1, k):
        dmin = d[:, picks].min(1)
        dmin[picks] = -1
        picks.append(int(np.argmax(dmin)))
    return picks, d[:, picks].min(1).max()


@pytest.mark.parametrize("seed", range(6))
def test_kcenter_equals_brute_force_and_is_within_twice_the_optimal_radius(seed):
    rng = np.random.default_rng(seed)
    n, k = 10, 3
    x = rng.normal(size=(n, 2)) * rng.uniform(0.5, 3, size=(n, 1))
    first = int(rng.integers(n))
    picks, radius = kcenter_greedy(torch.tensor(x, dtype=torch.float64), k, first)
    expected, expected_radius = brute_farthest_first(x, k, first)
    assert picks.tolist() == expected and radius == pytest.approx(expected_radius)
    blocked, _ = kcenter_greedy(torch.tensor(x, dtype=torch.float64), k, first, block_rows=3)
    assert blocked.tolist() == expected
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    optimal = min(d[:, list(s)].min(1).max() for s in itertools.combinations(range(n), k))
    assert radius <= 2 * optimal + 1e-12


def test_kcenter_never_repeats_a_point_on_duplicates():
    x = torch.zeros(6, 3)
    x[0] = 1.0
    picks, radius = kcenter_greedy(x, 4, 0)
    assert np.unique(picks).size == 4 and radius == 0.0


def test_kcenter_strategy_runs_farthest_first_per_class(blobs):
    model = make_model(blobs)
    plan, strategy, _ = select(blobs, "kcenter", seed=7, warmup_epochs=0)
    _, h = outputs(model, blobs.x_train[POOL])
    y = blobs.y_train.numpy()[POOL]
    rng = np.random.default_rng(7)
    from coreselect.methods.random import proportional_counts

    classes = np.arange(blobs.num_classes)
    counts = proportional_counts(np.bincount(y, minlength=4), 37)
    expected = []
    for c, m in zip(classes, counts):
        pos = np.flatnonzero(y == c)
        picks, _ = brute_farthest_first(h[pos], int(m), int(rng.integers(pos.size)))
        expected.extend(POOL[pos[picks]])
    assert plan.indices.tolist() == expected
    assert strategy.stats()["last"]["radius"] > 0


# ---------------------------------------------------------------------------- herding
def brute_herding(x, k):
    mu = x.mean(0)
    picks = []
    for t in range(k):
        best, best_d = None, np.inf
        for i in range(len(x)):
            if i in picks:
                continue
            d = np.linalg.norm(mu - (x[picks].sum(0) + x[i]) / (t + 1))
            if d < best_d:
                best, best_d = i, d
        picks.append(best)
    return picks


@pytest.mark.parametrize("seed", range(4))
def test_herding_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(14, 3)) + rng.normal(size=3)
    picks, gap = herding_select(torch.tensor(x, dtype=torch.float32), 9, block_rows=4)
    expected = brute_herding(x.astype(np.float32).astype(np.float64), 9)
    assert picks.tolist() == expected
    assert gap == pytest.approx(np.linalg.norm(x.mean(0) - x[expected].mean(0)), rel=1e-4)
    # herding's mean tracks the true mean better than the first 9 rows'
    assert gap < np.linalg.norm(x.mean(0) - x[:9].mean(0))


# ---------------------------------------------------------------------------- gradmatch
def test_omp_recovers_a_gradient_sum_made_of_few_points():
    rng = np.random.default_rng(0)
    anchors = 3.0 * rng.normal(size=(3, 8))
    noise = 0.1 * rng.normal(size=(5, 8))
    g = np.vstack([noise, anchors[:1], -noise, anchors[1:]])  # noise cancels in the sum
    b = g.sum(0)
    assert np.allclose(b, anchors.sum(0))
    res = omp_nonneg(g, b, 6)
    assert sorted(res.indices.tolist()) == [5, 11, 12]  # the anchors' rows
    assert res.residual < 1e-8 and res.stop == "residual"
    assert np.all(res.weights > 0) and res.weights == pytest.approx([1, 1, 1], abs=1e-8)


@pytest.mark.parametrize("seed", [2, 5, 6, 8])
def test_omp_weights_solve_the_non_negative_least_squares_problem(seed):
    # a target outside the rows' cone: unconstrained least squares would go negative
    rng = np.random.default_rng(seed)
    g, b = rng.normal(size=(12, 6)), rng.normal(size=6)
    res = omp_nonneg(g, b, 6)
    a = g[res.indices].T
    r = b - a @ res.weights
    assert np.unique(res.indices).size == res.indices.size
    assert np.all(res.weights >= 0) and res.residual == pytest.approx(
        np.linalg.norm(r) / np.linalg.norm(b)
    )
    assert np.linalg.lstsq(a, b, rcond=None)[0].min() < 0 or res.stop != "budget"
    corr = a.T @ r  # KKT: zero on the support, <= 0 off it
    assert np.all(np.abs(corr[res.weights > 0]) < 1e-8) and np.all(corr[res.weights == 0] < 1e-8)


def test_omp_stops_when_no_row_correlates_positively():
    g = np.array([[1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
    res = omp_nonneg(g, np.array([1.0, 1.0]), 3)
    assert res.indices.tolist() == [0] and res.stop == "no positive correlation"
    assert res.residual == pytest.approx(1 / math.sqrt(2))


def test_gradmatch_fills_with_random_picks_and_records_how_many(blobs):
    plan, strategy, _ = select(blobs, "gradmatch", budget=60, ridge=0.0)
    last = strategy.stats()["last"]
    # p − y spans at most C = 4 dimensions: OMP stops after a few picks per class
    assert last["random_fills"] > 0 and last["omp_picks"] + last["random_fills"] == 60
    assert strategy.stats()["random_fills_total"] == last["random_fills"]
    assert last["max_residual"] <= 1e-3
    assert np.all(plan.weights > 0) and plan.weights.mean() == pytest.approx(1.0, rel=1e-5)
    # OMP's picks carry their matching weights, far above the fills' one example each
    assert plan.weights.max() > 3 * np.median(plan.weights)


@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_gradmatch_selection_and_weights_replicate_per_class_omp(blobs, ridge):
    from coreselect.methods.random import proportional_counts

    model = make_model(blobs)
    plan, strategy, _ = select(blobs, "gradmatch", budget=48, seed=4, warmup_epochs=0, ridge=ridge)
    z, _ = outputs(model, blobs.x_train[POOL])
    y = blobs.y_train.numpy()[POOL]
    g = softmax(z)
    g[np.arange(POOL.size), y] -= 1.0
    rng = np.random.default_rng(4)
    counts = proportional_counts(np.bincount(y, minlength=4), 48)
    idx, raw = [], []
    for c, m in enumerate(counts):
        pos = np.flatnonzero(y == c)
        gc = g[pos]
        res = omp_nonneg(gc, gc.sum(0), int(m), ridge=ridge * (gc * gc).sum(1).mean())
        keep = res.indices[res.weights > 0]
        fill = np.sort(
            rng.choice(np.setdiff1d(np.arange(pos.size), keep), int(m) - keep.size, replace=False)
        )
        idx.extend(POOL[pos[np.concatenate([keep, fill])]])
        raw.extend(np.concatenate([res.weights[res.weights > 0], np.ones(fill.size)]))
    raw = np.asarray(raw)
    assert plan.indices.tolist() == idx
    assert plan.weights == pytest.approx(raw / raw.mean(), rel=1e-4)
    last = strategy.stats()["last"]
    assert last["random_fills"] == 48 - last["omp_picks"]
    if ridge:  # the ridge spreads the weights over more picks: fewer random fills
        assert last["random_fills"] < 24


def reference_omp(g, b, k, tol, ridge):
    """Textbook non-negative OMP: full scipy NNLS refit (ridge as extra rows) after every pick."""
    from scipy.optimize import nnls

    picks, w, r = [], np.zeros(0), b.copy()
    for _ in range(k):
        if np.linalg.norm(r) <= tol * np.linalg.norm(b):
            break
        corr = g @ r
        corr[picks] = -np.inf
        j = int(np.argmax(corr))
        if corr[j] <= 1e-10 * np.linalg.norm(b) * np.linalg.norm(g, axis=1).max():
            break
        picks.append(j)
        a = g[picks].T
        aug = np.vstack([a, np.sqrt(ridge) * np.eye(len(picks))])
        w = nnls(aug, np.concatenate([b, np.zeros(len(picks))]))[0]
        r = b - a @ w
    return picks, w


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_omp_fast_refits_equal_a_full_nnls_refit_at_every_step(seed, ridge):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(30, 6)) + (0.5 if seed % 2 else 0.0)
    b = g.sum(0) if seed % 4 < 2 else rng.normal(size=6)
    res = omp_nonneg(g, b, 12, ridge=ridge)
    picks, w = reference_omp(g, b, 12, 1e-3, ridge)
    assert res.indices.tolist() == picks
    assert res.weights == pytest.approx(w, abs=1e-8)


def test_gradmatch_last_layer_features_with_projection(blobs):
    plan, strategy, _ = select(
        blobs, "gradmatch", budget=40, features="last-layer", project_dim=16, warmup_epochs=0
    )
    assert plan.indices.size == 40 and np.all(plan.weights > 0)
    last = strategy.stats()["last"]
    assert last["omp_picks"] + last["random_fills"] == 40


def test_no_method_module_imports_the_trainer():
    import ast
    import pathlib

    import coreselect.methods as methods

    root = pathlib.Path(methods.__file__).parent
    for mod in ("scores", "forgetting", "kcenter", "herding", "gradmatch", "warmup", "baseline"):
        tree = ast.parse((root / f"{mod}.py").read_text())
        names = [
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in (n.names if isinstance(n, ast.Import) else [n])
        ]
        assert not any(str(m).startswith("coreselect.train") for m in names), mod


def test_whole_pool_warning_is_not_raised_when_the_budget_fits(blobs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select(blobs, "kcenter", budget=20)
