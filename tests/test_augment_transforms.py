"""Cutout, RandAugment and its ops: shape, dtype, value range, seeding, semantics, bad input."""

import math

import pytest
import torch

from coreselect.transforms import (
    GEOMETRIC_OPS,
    RANDAUGMENT_OPS,
    TRANSFORMS,
    Compose,
    Cutout,
    RandAugment,
    build_transform,
    randaugment_value,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(1, 28, 28), (3, 32, 32)]
AUGMENTS = [n for n in TRANSFORMS if n != "none"]
SIGNED = GEOMETRIC_OPS + ("brightness", "contrast", "sharpness")


def standardized(shape, batch=8, seed=0, device="cpu", dtype=torch.float32):
    """Images with structure (smoothed noise), standardized per channel over the batch."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(batch, *shape, generator=g)
    raw = torch.nn.functional.avg_pool2d(raw, 3, stride=1, padding=1) + 0.3 * raw
    mean = raw.mean(dim=(0, 2, 3), keepdim=True)
    std = raw.std(dim=(0, 2, 3), keepdim=True)
    return ((raw - mean) / std).to(device=device, dtype=dtype)


def gen(seed, device):
    return torch.Generator(device=device).manual_seed(seed)


def assert_keeps_shape_dtype_range(x, y):
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert (y.amin(dim=(1, 2, 3)) >= x.amin(dim=(1, 2, 3))).all()
    assert (y.amax(dim=(1, 2, 3)) <= x.amax(dim=(1, 2, 3))).all()


def to_unit(x):
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo), lo, hi


# ----------------------------------------------------------------- shape, dtype, range, seeds


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", AUGMENTS)
def test_named_augmentation_keeps_shape_dtype_range_and_is_seeded(name, shape, device):
    x = standardized(shape, device=device)
    t = build_transform(name)
    a = t(x, generator=gen(1, device))
    assert_keeps_shape_dtype_range(x, a)
    assert torch.equal(a, t(x, generator=gen(1, device)))
    assert not torch.equal(a, t(x, generator=gen(2, device)))
    assert not torch.equal(a, x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(RANDAUGMENT_OPS))
def test_each_op_keeps_shape_dtype_range(op, shape, device):
    x = standardized(shape, device=device)
    for magnitude in (9, 30):
        t = RandAugment(num_ops=2, magnitude=magnitude, ops=(op,))
        y = t(x, generator=gen(0, device))
        assert_keeps_shape_dtype_range(x, y)
        assert torch.equal(y, t(x, generator=gen(0, device)))
    # fixed value range: output inside it
    y = RandAugment(2, 30, ops=(op,), value_range=(-3.0, 3.0))(x.clamp(-3, 3), gen(0, device))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -3.0 and y.max() <= 3.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", ["randaugment", "crop-flip-cutout"])
def test_other_float_dtypes_are_kept(name, dtype):
    x = standardized((3, 16, 16), dtype=dtype)
    assert_keeps_shape_dtype_range(x, build_transform(name)(x, generator=gen(0, "cpu")))


def test_small_digits_images_and_empty_or_zero_op_batches():
    x = standardized((1, 8, 8), batch=16)
    for name in AUGMENTS:
        assert_keeps_shape_dtype_range(x, build_transform(name, padding=1)(x, gen(0, "cpu")))
    assert torch.equal(RandAugment(num_ops=0)(x), x)
    empty = x[:0]
    assert RandAugment()(empty).shape == empty.shape and Cutout(2)(empty).shape == empty.shape


# ----------------------------------------------------------------- RandAugment: batched path


@pytest.mark.parametrize("device", DEVICES)
def test_identity_returns_input_exactly(device):
    x = standardized((3, 32, 32), device=device)
    assert torch.equal(RandAugment(3, 30, ops=("identity",))(x, gen(0, device)), x)
    u, _, _ = to_unit(x)
    assert torch.equal(RANDAUGMENT_OPS["identity"](u, torch.zeros(8)), u)


def candidates(u, name, magnitude):
    """Every output the op can give on [0, 1] images u at this magnitude: (k, B, C, H, W)."""
    _, _, h, w = u.shape
    v = randaugment_value(name, magnitude, h, w)
    if name in GEOMETRIC_OPS:
        values = (v, -v)
    elif name in SIGNED:
        values = (1 + v, 1 - v)
    else:
        values = (v,)
    b = u.shape[0]
    return [RANDAUGMENT_OPS[name](u, torch.full((b,), val, device=u.device)) for val in values]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", list(RANDAUGMENT_OPS))
def test_batched_op_equals_the_op_function_in_the_unit_range(op, device):
    x = standardized((3, 12, 12), batch=16, device=device)
    magnitude = 17
    y = RandAugment(1, magnitude, ops=(op,))(x, gen(3, device))
    u, lo, hi = to_unit(x)
    outs = torch.stack([c * (hi - lo) + lo for c in candidates(u, op, magnitude)])
    err = (outs - y).abs().amax(dim=(2, 3, 4))  # (k, B)
    assert (err.amin(dim=0) < 1e-5).all()
    if op in SIGNED:  # both signs occur in 16 draws
        assert (err.argmin(dim=0) == 0).any() and (err.argmin(dim=0) == 1).any()


def test_mixed_ops_per_image_match_one_op_and_are_drawn_uniformly():
    x = standardized((3, 20, 20), batch=390, seed=4)  # >= 256 pixels, or equalize is a no-op
    magnitude = 15
    y = RandAugment(1, magnitude)(x, gen(5, "cpu"))
    u, lo, hi = to_unit(x)
    first_match = torch.full((x.shape[0],), -1)
    for i, op in enumerate(RANDAUGMENT_OPS):
        for c in candidates(u, op, magnitude):
            hit = ((c * (hi - lo) + lo - y).abs().amax(dim=(1, 2, 3)) < 1e-5) & (first_match < 0)
            first_match[hit] = i
    assert (first_match >= 0).all()
    counts = torch.bincount(first_match, minlength=len(RANDAUGMENT_OPS))
    assert (counts - 30).abs().max() < 22, counts  # 390 / 13 = 30 each, sd ≈ 5.4


def test_magnitude_zero_leaves_images_nearly_unchanged():
    x = standardized((3, 16, 16))
    ops = (
        "identity",
        "rotate",
        "shear_x",
        "shear_y",
        "translate_x",
        "translate_y",
        "contrast",
        "brightness",
        "sharpness",
        "solarize",
        "posterize",
    )
    y = RandAugment(3, 0, ops=ops)(x, gen(0, "cpu"))
    assert torch.allclose(y, x, atol=1e-5)


def test_magnitude_mapping():
    expected_at_30 = {
        "rotate": 30.0,
        "shear_x": 0.3,
        "shear_y": 0.3,
        "translate_x": 150 / 331 * 32,
        "translate_y": 150 / 331 * 28,
        "brightness": 0.9,
        "contrast": 0.9,
        "sharpness": 0.9,
        "solarize": 0.0,
        "posterize": 4.0,
        "identity": 0.0,
        "equalize": 0.0,
        "autocontrast": 0.0,
    }
    assert set(expected_at_30) == set(RANDAUGMENT_OPS)
    for name, v in expected_at_30.items():
        assert randaugment_value(name, 30, height=28, width=32) == pytest.approx(v)
    assert randaugment_value("rotate", 9) == pytest.approx(9.0)
    assert randaugment_value("solarize", 9) == pytest.approx(0.7)
    assert randaugment_value("posterize", 9) == 7.0
    assert randaugment_value("posterize", 0) == 8.0 and randaugment_value("solarize", 0) == 1.0


def test_solarize_through_the_class_on_a_standardized_image():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)  # u = 0, .25, .5, 1
    y = RandAugment(1, 15, ops=("solarize",))(x)  # threshold 0.5: only u = 1 inverts
    assert torch.allclose(y, torch.tensor([-1.0, 0.0, 1.0, -1.0]).reshape(1, 1, 2, 2))


# ----------------------------------------------------------------- each op does what it says


@pytest.mark.parametrize("device", DEVICES)
def test_rotate_90_equals_rot90(device):
    u, _, _ = to_unit(standardized((3, 10, 10), batch=4, device=device))
    out = RANDAUGMENT_OPS["rotate"](u, torch.tensor([90.0, -90.0, 180.0, 90.0], device=device))
    ref = torch.stack(
        [
            torch.rot90(u[0], 1, (-2, -1)),
            torch.rot90(u[1], -1, (-2, -1)),
            torch.rot90(u[2], 2, (-2, -1)),
            torch.rot90(u[3], 1, (-2, -1)),
        ]
    )
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-3)


def test_shear_and_translate_directions():
    u = torch.rand(2, 1, 5, 6)
    sx = RANDAUGMENT_OPS["shear_x"](u, torch.tensor([1.0, 1.0]))  # input (x + y, y)
    assert torch.allclose(sx[:, :, 2], u[:, :, 2], atol=1e-6)  # centre row kept
    assert torch.allclose(sx[:, :, 3, :-1], u[:, :, 3, 1:], atol=1e-6)
    assert torch.allclose(sx[:, :, 1, 1:], u[:, :, 1, :-1], atol=1e-6)
    tx = RANDAUGMENT_OPS["translate_x"](u, torch.tensor([2.0, -1.0]))
    assert torch.allclose(tx[0, :, :, 2:], u[0, :, :, :-2], atol=1e-6)
    assert tx[0, :, :, :2].abs().max() < 1e-6
    assert torch.allclose(tx[1, :, :, :-1], u[1, :, :, 1:], atol=1e-6)
    ty = RANDAUGMENT_OPS["translate_y"](u, torch.tensor([1.0, 1.0]))
    assert torch.allclose(ty[:, :, 1:], u[:, :, :-1], atol=1e-6) and ty[:, :, 0].abs().max() < 1e-6
    v = torch.rand(2, 1, 6, 5)
    sy = RANDAUGMENT_OPS["shear_y"](v, torch.tensor([1.0, 1.0]))  # input (x, y + x)
    assert torch.allclose(sy[:, :, :, 2], v[:, :, :, 2], atol=1e-6)
    assert torch.allclose(sy[:, :, :-1, 3], v[:, :, 1:, 3], atol=1e-6)


def tiny():
    return torch.tensor([[0.2, 0.6], [0.8, 0.4]]).reshape(1, 1, 2, 2)


def test_brightness_contrast_solarize_posterize_by_hand():
    img = tiny()
    b = RANDAUGMENT_OPS["brightness"](img, torch.tensor([1.5]))
    assert torch.allclose(b.flatten(), torch.tensor([0.3, 0.9, 1.0, 0.6]))
    c = RANDAUGMENT_OPS["contrast"](img, torch.tensor([0.5]))  # mean 0.5
    assert torch.allclose(c.flatten(), torch.tensor([0.35, 0.55, 0.65, 0.45]))
    c = RANDAUGMENT_OPS["contrast"](img, torch.tensor([3.0]))
    assert torch.allclose(c.flatten(), torch.tensor([0.0, 0.8, 1.0, 0.2]))
    s = RANDAUGMENT_OPS["solarize"](img, torch.tensor([0.5]))
    assert torch.allclose(s.flatten(), torch.tensor([0.2, 0.4, 0.2, 0.4]))
    assert torch.equal(RANDAUGMENT_OPS["solarize"](img, torch.tensor([1.0])), img)
    p = RANDAUGMENT_OPS["posterize"](
        torch.tensor([0.5, 0.6, 0.3]).reshape(3, 1, 1, 1), torch.tensor([4.0, 1.0, 8.0])
    )
    assert torch.allclose(p.flatten(), torch.tensor([112 / 255, 128 / 255, 0.3]))


def test_sharpness_by_hand():
    img = torch.rand(2, 1, 3, 3)
    out = RANDAUGMENT_OPS["sharpness"](img, torch.tensor([0.0, 2.0]))
    smooth = (img.sum(dim=(2, 3)) + 4 * img[:, :, 1, 1]) / 13
    border = torch.ones(3, 3, dtype=torch.bool)
    border[1, 1] = False
    assert torch.allclose(out[:, :, border], img[:, :, border])
    expect = torch.stack([smooth[0], (2 * img[1, :, 1, 1] - smooth[1]).clamp(0, 1)])
    assert torch.allclose(out[:, :, 1, 1], expect)


def test_autocontrast_stretches_each_channel():
    img = torch.stack([torch.linspace(0.2, 0.6, 16), torch.full((16,), 0.3)]).reshape(1, 2, 4, 4)
    out = RANDAUGMENT_OPS["autocontrast"](img)
    assert torch.allclose(out[0, 0].flatten(), torch.linspace(0, 1, 16), atol=1e-6)
    assert torch.equal(out[0, 1], img[0, 1])  # constant channel kept


def test_equalize_flattens_the_histogram_of_a_skewed_ramp():
    ramp = torch.linspace(0, 1, 1024).pow(3).reshape(1, 1, 32, 32)
    assert torch.histc(ramp, 4, 0, 1)[0] > 600  # most values near 0 before
    out = RANDAUGMENT_OPS["equalize"](torch.cat([ramp, ramp.flip(-1)]))
    for i in range(2):
        counts = torch.histc(out[i], 4, 0, 1)
        assert ((counts - 256).abs() <= 256 * 0.1).all(), counts
    assert torch.equal(out[1], out[0].flip(-1))
    flat = torch.full((1, 3, 4, 4), 0.4)
    assert torch.equal(RANDAUGMENT_OPS["equalize"](flat), flat)


# ----------------------------------------------------------------- Cutout


def cutout_region(h, w, top, left, s):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[max(top, 0) : max(top + s, 0), max(left, 0) : max(left + s, 0)] = True
    return m


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 10, 14)])
def test_cutout_fills_exactly_one_square_of_the_given_size(shape, device):
    x = standardized(shape, batch=6, device=device)
    s = 4
    y = Cutout(s)(x, generator=gen(0, device)).cpu()
    x = x.cpu()
    _, h, w = shape
    for b in range(x.shape[0]):
        fill = x[b].min()
        matches = 0
        for top in range(h - s + 1):
            for left in range(w - s + 1):
                expect = torch.where(cutout_region(h, w, top, left, s), fill, x[b])
                matches += torch.equal(expect, y[b])
        assert matches == 1


def test_cutout_clip_mode_centres_anywhere_and_clips_at_borders():
    x = standardized((2, 8, 8), batch=32)
    s = 6
    y = Cutout(s, clip=True)(x, generator=gen(0, "cpu"))
    sizes = []
    for b in range(x.shape[0]):
        found = []
        for cy in range(8):
            for cx in range(8):
                region = cutout_region(8, 8, cy - s // 2, cx - s // 2, s)
                if torch.equal(torch.where(region, x[b].min(), x[b]), y[b]):
                    found.append(int(region.sum()))
        assert len(found) == 1
        sizes.append(found[0])
    assert max(sizes) <= s * s and min(sizes) < s * s


def test_cutout_default_size_and_whole_image():
    x = standardized((1, 28, 28), batch=2)
    y = Cutout()(x, generator=gen(0, "cpu"))
    filled = (y == x.amin(dim=(1, 2, 3), keepdim=True)).sum(dim=(1, 2, 3))
    assert (filled >= 14 * 14).all() and (filled <= 14 * 14 + 1).all()
    z = Cutout(28)(x)
    assert torch.equal(z, x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x))
    assert torch.equal(Cutout(0)(x), x)


# ----------------------------------------------------------------- build_transform, bad input


def test_build_transform_names():
    assert build_transform("none") is None
    assert isinstance(build_transform("cutout"), Cutout)
    for name in ("randaugment", "strong", "RandAugment"):
        t = build_transform(name, num_ops=3, magnitude=12, padding=1)
        assert isinstance(t, RandAugment) and t.num_ops == 3 and t.magnitude == 12
    for name in ("crop-flip-cutout", "crop-flip-randaugment"):
        assert isinstance(build_transform(name, padding=1), Compose)
    assert build_transform("cutout", cutout_size=5).size == 5


def test_bad_input_errors():
    with pytest.raises(ValueError, match="randaugment.*strong") as err:
        build_transform("autoaugment")
    assert all(n in str(err.value) for n in TRANSFORMS)
    for bad in (-1, 30.5, 31, math.nan, "9", True):
        with pytest.raises(ValueError, match="magnitude"):
            RandAugment(magnitude=bad)
    with pytest.raises(ValueError, match="magnitude"):
        build_transform("strong", magnitude=40)
    with pytest.raises(ValueError, match="magnitude"):
        randaugment_value("rotate", -0.5)
    for bad in (-1, 1.5, None):
        with pytest.raises(ValueError, match="num_ops"):
            RandAugment(num_ops=bad)
    with pytest.raises(ValueError, match="valid ops: identity, rotate"):
        RandAugment(ops=("rotate", "blur"))
    with pytest.raises(ValueError, match="valid ops"):
        randaugment_value("blur", 9)
    with pytest.raises(ValueError):
        RandAugment(ops=())
    with pytest.raises(ValueError, match="value_range"):
        RandAugment(value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="interpolation"):
        RandAugment(interpolation="bicubic")
    with pytest.raises(ValueError, match="floating"):
        RandAugment()(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        RandAugment()(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="cutout size"):
        Cutout(-1)
    with pytest.raises(ValueError, match="cutout size"):
        build_transform("cutout", cutout_size=-2)
    with pytest.raises(ValueError, match="larger than the image"):
        Cutout(29)(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="larger than the image"):
        Cutout(9)(torch.zeros(1, 1, 8, 32))
