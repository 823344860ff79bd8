"""Seeded, batched tensor augmentations that run on CPU and GPU alike.

A transform maps a batch ``(B, C, H, W)`` to a batch of the same shape, dtype and device.
Randomness comes only from the ``generator`` argument (a ``torch.Generator`` on the batch's
device), so a fixed seed gives the same output.

Weak: :class:`RandomCrop`, :class:`RandomHorizontalFlip`. Strong: :class:`Cutout` and
:class:`RandAugment` (pure torch, no torchvision or kornia; its ops are in
:data:`RANDAUGMENT_OPS`). Every transform keeps each image inside its own value range
(its minimum is the background/fill value), so it works on standardized images.
:func:`build_transform` builds them by name (:data:`TRANSFORMS`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[..., torch.Tensor]


class RandomCrop:
    """Pad each image by ``padding`` pixels (with its own minimum value) and crop back at a
    uniformly random offset."""

    def __init__(self, padding: int = 4):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        b, c, h, w = x.shape
        fill = x.amin(dim=(1, 2, 3), keepdim=True)
        padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x
        off = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=x.device)
        rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    """Flip each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


def _check_batch(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects a batch (B, C, H, W), got {shape}")


class Cutout:
    """Fill one random ``size``×``size`` square per image with that image's minimum value.

    The fill is each image's minimum over all its channels and pixels, the same background
    value :class:`RandomCrop` pads with; every channel of the square is filled.

    Args:
        size: side of the square in pixels, ``>= 0``; ``0`` is a no-op. ``None`` uses half the
            shorter image side (``min(H, W) // 2``, 16 on 32×32 as in DeVries & Taylor 2017).
            A size larger than the shorter side raises ``ValueError`` when called.
        clip: ``False`` (default) places the whole square inside the image (top-left corner
            uniform over the ``(H - size + 1) × (W - size + 1)`` positions), so exactly
            ``size²`` pixels per channel are filled. ``True`` follows the original Cutout: the
            centre (pixel ``size // 2`` of the square) is uniform over all ``H × W`` pixels and
            the square is clipped at the borders, so fewer pixels may be filled.

    Call: ``cutout(x, generator=None)`` with ``x`` of shape ``(B, C, H, W)`` (any dtype, any
    device) returns a new tensor of the same shape, dtype and device; every output value is
    an input value of the same image, so each image's value range is kept.
    """

    def __init__(self, size: int | None = None, *, clip: bool = False):
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral)):
            raise ValueError(f"cutout size must be an int >= 0 or None, got {size!r}")
        if size is not None and size < 0:
            raise ValueError(f"cutout size must be >= 0, got {size}")
        self.size = None if size is None else int(size)
        self.clip = bool(clip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(x, "Cutout")
        b, _, h, w = x.shape
        s = min(h, w) // 2 if self.size is None else self.size
        if s > min(h, w):
            raise ValueError(f"cutout size {s} is larger than the image ({h}×{w})")
        if s == 0 or b == 0:
            return x
        dev = x.device
        if self.clip:
            top = torch.randint(0, h, (b,), generator=generator, device=dev) - s // 2
            left = torch.randint(0, w, (b,), generator=generator, device=dev) - s // 2
        else:
            top = torch.randint(0, h - s + 1, (b,), generator=generator, device=dev)
            left = torch.randint(0, w - s + 1, (b,), generator=generator, device=dev)
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        rows = (ys >= top[:, None]) & (ys < top[:, None] + s)  # (B, H)
        cols = (xs >= left[:, None]) & (xs < left[:, None] + s)  # (B, W)
        mask = (rows[:, :, None] & cols[:, None, :])[:, None]  # (B, 1, H, W)
        fill = x.amin(dim=(1, 2, 3), keepdim=True)
        return torch.where(mask, fill, x)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, clip={self.clip})"


# ---------------------------------------------------------------------------------------------
# RandAugment ops. Each op maps images in [0, 1] of shape (B, C, H, W) and one signed parameter
# per image, ``value`` of shape (B,), in the op's natural unit, to images in [0, 1] of the same
# shape. ``value`` is ignored by identity, equalize and autocontrast.
# ---------------------------------------------------------------------------------------------

MAX_MAGNITUDE = 30.0
_TRANSLATE_FRACTION = 150.0 / 331.0  # torchvision's RandAugment: 150 px on a 331 px image


def _per_image(v: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=img.dtype, device=img.device).reshape(-1, 1, 1, 1)


def _affine_params(name: str, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse map of a geometric op in pixel units about the image centre.

    Returns ``A`` (n, 2, 2) and ``t`` (n, 2) such that the output pixel at offset ``p = (x, y)``
    from the centre (x right, y down) samples the input at ``A p + t``.
    """
    n = value.shape[0]
    one, zero = torch.ones_like(value), torch.zeros_like(value)
    t = torch.zeros(n, 2, dtype=value.dtype, device=value.device)
    if name == "rotate":  # counter-clockwise on screen by ``value`` degrees
        rad = torch.deg2rad(value)
        cos, sin = torch.cos(rad), torch.sin(rad)
        rows = [[cos, -sin], [sin, cos]]
    elif name == "shear_x":  # output (x, y) <- input (x + s·y, y)
        rows = [[one, value], [zero, one]]
    elif name == "shear_y":  # output (x, y) <- input (x, y + s·x)
        rows = [[one, zero], [value, one]]
    elif name == "translate_x":  # content moves right by ``value`` pixels
        rows = [[one, zero], [zero, one]]
        t = torch.stack([-value, zero], dim=1)
    elif name == "translate_y":  # content moves down by ``value`` pixels
        rows = [[one, zero], [zero, one]]
        t = torch.stack([zero, -value], dim=1)
    else:  # pragma: no cover - internal
        raise ValueError(f"not a geometric op: {name!r}")
    a = torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)
    return a, t


def _warp(img: torch.Tensor, a: torch.Tensor, t: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample ``img`` (n, C, H, W) with per-image inverse maps ``a``, ``t`` (pixel units,
    about the centre) in one ``grid_sample``; pixels from outside the image are 0."""
    n, c, h, w = img.shape
    s = torch.tensor([w / 2.0, h / 2.0], dtype=img.dtype, device=img.device)
    theta = torch.empty(n, 2, 3, dtype=img.dtype, device=img.device)
    theta[:, :, :2] = a * s[None, None, :] / s[None, :, None]  # S⁻¹ A S
    theta[:, :, 2] = t / s[None, :]
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(img, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _geometric(name: str) -> Callable[..., torch.Tensor]:
    def op(img: torch.Tensor, value: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        v = torch.as_tensor(value, dtype=img.dtype, device=img.device).reshape(-1)
        a, t = _affine_params(name, v.expand(img.shape[0]))
        return _warp(img, a, t, mode)

    return op


rotate = _geometric("rotate")
rotate.__doc__ = """Rotate each image counter-clockwise (on screen) by ``value`` degrees about its
centre; ``rotate(img, 90)`` equals ``torch.rot90(img, 1, (-2, -1))`` on square images.
``img`` (B, C, H, W) in [0, 1], ``value`` (B,) or scalar; corners from outside are 0;
``mode`` is ``grid_sample``'s ("bilinear" or "nearest")."""
shear_x = _geometric("shear_x")
shear_x.__doc__ = """Shear horizontally about the centre: output (x, y) samples input
(x + value·y, y), pixel offsets from the centre, y down. ``img`` (B, C, H, W) in [0, 1],
``value`` (B,) shear factors (tan of the shear angle); outside pixels are 0."""
shear_y = _geometric("shear_y")
shear_y.__doc__ = """Shear vertically about the centre: output (x, y) samples input
(x, y + value·x). ``img`` (B, C, H, W) in [0, 1], ``value`` (B,) shear factors."""
translate_x = _geometric("translate_x")
translate_x.__doc__ = """Move each image's content right by ``value`` pixels (left if
negative; fractional shifts interpolate). ``img`` (B, C, H, W) in [0, 1]; vacated pixels are 0."""
translate_y = _geometric("translate_y")
translate_y.__doc__ = """Move each image's content down by ``value`` pixels (up if negative).
``img`` (B, C, H, W) in [0, 1]; vacated pixels are 0."""


def identity(img: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``img`` (B, C, H, W) unchanged; ``value`` is ignored."""
    return img


def brightness(img: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Blend with black: ``clamp(value · img, 0, 1)``. ``img`` (B, C, H, W) in [0, 1],
    ``value`` (B,) factors (1 = unchanged, 0 = black)."""
    return (_per_image(value, img) * img).clamp(0.0, 1.0)


def contrast(img: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean: ``clamp(value · img + (1 − value) · mean, 0, 1)``, the mean
    over all channels and pixels of each image (PIL uses the luminance mean of RGB images).
    ``img`` (B, C, H, W) in [0, 1], ``value`` (B,) factors (1 = unchanged, 0 = flat grey)."""
    f = _per_image(value, img)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    return (f * img + (1 - f) * mean).clamp(0.0, 1.0)


def sharpness(img: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Blend with a smoothed copy, as PIL's ImageEnhance.Sharpness: the smoothed copy is the
    3×3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13 applied per channel on interior pixels (border
    pixels are kept); output ``clamp(value · img + (1 − value) · smooth, 0, 1)``. ``value``
    (B,) factors: 1 = unchanged, 0 = smoothed, > 1 sharpened. Images below 3×3 are returned
    unchanged."""
    b, c, h, w = img.shape
    if h < 3 or w < 3:
        return img
    kernel = torch.ones(1, 1, 3, 3, dtype=img.dtype, device=img.device)
    kernel[0, 0, 1, 1] = 5.0
    kernel = kernel / 13.0
    smooth = img.clone()
    inner = F.conv2d(img.reshape(b * c, 1, h, w), kernel).reshape(b, c, h - 2, w - 2)
    smooth[:, :, 1:-1, 1:-1] = inner
    f = _per_image(value, img)
    return (f * img + (1 - f) * smooth).clamp(0.0, 1.0)


def solarize(img: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Invert the pixels above the threshold: ``where(img > value, 1 − img, img)``.
    ``img`` (B, C, H, W) in [0, 1], ``value`` (B,) thresholds in [0, 1] (1 = unchanged)."""
    return torch.where(img > _per_image(value, img), 1.0 - img, img)


def posterize(img: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Keep the top ``value`` bits of each 8-bit level: ``q = floor(255 · img)``, output
    ``(q - q mod 2^(8 − bits)) / 255``. ``img`` (B, C, H, W) in [0, 1], ``value`` (B,) bit
    counts in 0..8; images with 8 or more bits are returned unchanged (not quantized)."""
    bits = _per_image(value, img).round()
    step = torch.exp2(8.0 - bits.clamp(0.0, 8.0))
    q = (img * 255.0).floor().clamp(0.0, 255.0)
    out = torch.div(q, step, rounding_mode="floor") * step / 255.0
    return torch.where(bits >= 8, img, out)


def autocontrast(img: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
    """Stretch each channel of each image linearly to [0, 1] (its min to 0, its max to 1);
    constant channels are unchanged. ``img`` (B, C, H, W) in [0, 1]; ``value`` is ignored.
    With RandAugment's default per-image value range, one-channel images are already
    stretched, so this op leaves them unchanged."""
    lo = img.amin(dim=(2, 3), keepdim=True)
    hi = img.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1.0 / torch.where(flat, 1.0, hi - lo))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((img - lo) * scale).clamp(0.0, 1.0)


def equalize(img: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
    """Histogram-equalize each channel of each image, as PIL's ImageOps.equalize on 8-bit
    levels ``q = floor(255 · img)``: 256-bin histograms for all (image, channel) pairs at once
    (``scatter_add_``), ``step = (pixels − count of the last non-empty bin) // 255``,
    ``lut = shift_right((cumsum + step // 2) // step)``, output ``lut[q] / 255``. Channels with
    ``step == 0`` are returned unchanged: nearly constant ones, and in practice every image
    with fewer than 256 pixels (e.g. 8×8 digits), as in PIL. ``img`` (B, C, H, W) in [0, 1];
    ``value`` is ignored. Output (B, C, H, W) in [0, 1], multiples of 1/255."""
    b, c, h, w = img.shape
    q = (img * 255.0).floor().clamp(0.0, 255.0).long().reshape(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=img.device)
    hist.scatter_add_(1, q, torch.ones_like(q))
    bins = torch.arange(256, device=img.device)
    last = torch.where(hist > 0, bins, -1).amax(dim=1, keepdim=True)
    step = (h * w - hist.gather(1, last.clamp(min=0))) // 255  # (B·C, 1)
    lut = (hist.cumsum(dim=1) + step // 2) // step.clamp(min=1)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    out = (lut.gather(1, q).to(img.dtype) / 255.0).reshape(b, c, h, w)
    return torch.where((step > 0).reshape(b, c, 1, 1), out, img)


RANDAUGMENT_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "identity": identity,
    "rotate": rotate,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
    "solarize": solarize,
    "posterize": posterize,
    "equalize": equalize,
    "autocontrast": autocontrast,
}
"""RandAugment's ops by name: ``op(img, value) -> img`` on images in [0, 1] (B, C, H, W)
with one signed parameter per image ``value`` (B,) in the unit of
:func:`randaugment_value`. Geometric ops also take ``mode=`` ("bilinear" or "nearest")."""

GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_SIGNED_OPS = GEOMETRIC_OPS + ("contrast", "brightness", "sharpness")


def randaugment_value(name: str, magnitude: float, height: int = 32, width: int = 32) -> float:
    """The unsigned strength of op ``name`` at ``magnitude`` on RandAugment's 0–30 scale.

    With ``r = magnitude / 30`` (torchvision's RandAugment ranges):

    - rotate: ``30·r`` degrees; shear_x, shear_y: factor ``0.3·r`` (about 16.7° at r = 1);
    - translate_x: ``(150/331)·r·width`` pixels, translate_y: ``(150/331)·r·height`` pixels;
    - brightness, contrast, sharpness: factor ``1 ± 0.9·r``, i.e. in [0.1, 1.9];
    - solarize: threshold ``1 − r`` on the [0, 1] scale (r = 0 inverts nothing);
    - posterize: ``8 − round(4·r)`` bits (8 at r = 0, 4 at r = 1);
    - identity, equalize, autocontrast: no strength (returns 0.0).

    For the signed ops (geometric ones, brightness, contrast, sharpness) RandAugment picks the
    sign ± with probability ½ per image; for brightness, contrast and sharpness the value is
    the deviation ``0.9·r`` from factor 1. Raises ``ValueError`` for an unknown name or a
    magnitude outside [0, 30].
    """
    _check_magnitude(magnitude)
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown op {name!r}; valid ops: {', '.join(RANDAUGMENT_OPS)}")
    r = float(magnitude) / MAX_MAGNITUDE
    if name == "rotate":
        return 30.0 * r
    if name in ("shear_x", "shear_y"):
        return 0.3 * r
    if name == "translate_x":
        return _TRANSLATE_FRACTION * r * width
    if name == "translate_y":
        return _TRANSLATE_FRACTION * r * height
    if name in ("brightness", "contrast", "sharpness"):
        return 0.9 * r
    if name == "solarize":
        return 1.0 - r
    if name == "posterize":
        return float(8 - int(round(4.0 * r)))
    return 0.0


def _check_magnitude(magnitude: float) -> None:
    if isinstance(magnitude, bool) or not isinstance(magnitude, numbers.Real):
        raise ValueError(f"magnitude must be a number in [0, 30], got {magnitude!r}")
    if not 0.0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"magnitude must be in [0, {MAX_MAGNITUDE:g}], got {magnitude}")


def _signed_values(name: str, magnitude: float, sign: torch.Tensor, h: int, w: int):
    v = randaugment_value(name, magnitude, h, w)
    if name in GEOMETRIC_OPS:
        return sign * v
    if name in ("brightness", "contrast", "sharpness"):
        return 1.0 + sign * v
    return torch.full_like(sign, v)


class RandAugment:
    """RandAugment (Cubuk et al. 2020) in pure torch, batched, for standardized images.

    Each image gets ``num_ops`` ops applied in sequence, each drawn uniformly (with
    replacement) from ``ops``, all at the same ``magnitude``; signed ops get a random sign per
    image. Strengths are listed in :func:`randaugment_value` (e.g. rotate ±30°·m/30).

    Value range: coreselect's images are standardized floats, not [0, 1]. Each image is mapped
    affinely to [0, 1] with ``u = (x − lo) / (hi − lo)``, the ops act on ``u`` and the result
    is mapped back and clamped to ``[lo, hi]``. ``value_range=None`` (default) takes ``lo`` and
    ``hi`` per image as its minimum and maximum over all channels and pixels, so every output
    image stays inside its input image's range; ``value_range=(lo, hi)`` uses fixed bounds for
    all images (inputs outside them are clipped into them; images whose ops are all identity
    are returned untouched). Pixels brought in from outside by geometric ops get ``lo``, the
    background :class:`RandomCrop` and :class:`Cutout` use.

    Vectorized: each of the ``num_ops`` rounds resamples all images with a geometric op in one
    ``affine_grid``/``grid_sample`` call (one inverse affine map per image, about its centre),
    and applies each photometric op once to the images that drew it.

    Args:
        num_ops: ops per image, an int ``>= 0`` (0 returns the input).
        magnitude: strength on RandAugment's 0–30 scale (int or float).
        ops: names from :data:`RANDAUGMENT_OPS` to draw from (default: all 13 of them:
            identity, rotate, shear_x, shear_y, translate_x, translate_y, contrast,
            brightness, sharpness, solarize, posterize, equalize, autocontrast).
        value_range: ``None`` (per image) or ``(lo, hi)`` with ``lo < hi``.
        interpolation: "bilinear" (default) or "nearest", for the geometric ops.

    Call: ``ra(x, generator=None)`` with floating ``x`` (B, C, H, W), any number of channels,
    returns a tensor of the same shape, dtype and device. Randomness only from ``generator``
    (on ``x``'s device) or torch's default generator when ``None``. Raises ``ValueError`` for
    bad arguments, non-4-D or non-floating input.
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 9,
        *,
        ops: Sequence[str] | None = None,
        value_range: tuple[float, float] | None = None,
        interpolation: str = "bilinear",
    ):
        if isinstance(num_ops, bool) or not isinstance(num_ops, numbers.Integral) or num_ops < 0:
            raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
        _check_magnitude(magnitude)
        names = tuple(RANDAUGMENT_OPS) if ops is None else tuple(ops)
        if not names:
            raise ValueError(f"ops must name at least one of: {', '.join(RANDAUGMENT_OPS)}")
        unknown = [n for n in names if n not in RANDAUGMENT_OPS]
        if unknown:
            raise ValueError(
                f"unknown RandAugment op(s) {', '.join(map(repr, unknown))}; "
                f"valid ops: {', '.join(RANDAUGMENT_OPS)}"
            )
        if value_range is not None:
            if len(value_range) != 2:
                raise ValueError(f"value_range must be (lo, hi), got {value_range!r}")
            lo, hi = float(value_range[0]), float(value_range[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"value_range must be finite with lo < hi, got {value_range!r}")
            value_range = (lo, hi)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}"
            )
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.ops = names
        self.value_range = value_range
        self.interpolation = interpolation

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(x, "RandAugment")
        if not x.is_floating_point():
            raise ValueError(f"RandAugment expects floating-point images, got {x.dtype}")
        b, _, h, w = x.shape
        if self.num_ops == 0 or b == 0:
            return x
        dev = x.device
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        if self.value_range is None:
            lo = work.amin(dim=(1, 2, 3), keepdim=True)
            hi = work.amax(dim=(1, 2, 3), keepdim=True)
        else:
            lo = torch.full((1, 1, 1, 1), self.value_range[0], dtype=work.dtype, device=dev)
            hi = torch.full((1, 1, 1, 1), self.value_range[1], dtype=work.dtype, device=dev)
        span = hi - lo
        u = ((work - lo) / torch.where(span > 0, span, torch.ones_like(span))).clamp(0.0, 1.0)
        choice = torch.randint(0, len(self.ops), (self.num_ops, b), generator=generator, device=dev)
        sign = torch.randint(0, 2, (self.num_ops, b), generator=generator, device=dev)
        sign = sign.to(work.dtype) * 2 - 1
        for k in range(self.num_ops):
            u = self._round(u, choice[k], sign[k])
        out = torch.minimum(torch.maximum(u * span + lo, lo), hi).to(x.dtype)
        active = [i for i, n in enumerate(self.ops) if n != "identity"]
        changed = torch.isin(choice, torch.tensor(active, dtype=torch.long, device=dev)).any(dim=0)
        return torch.where(changed[:, None, None, None], out, x)

    def _round(self, u: torch.Tensor, choice: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """Apply one drawn op per image: ``choice`` (B,) indices into ``self.ops``."""
        _, _, h, w = u.shape  # u is this call's own tensor: updated in place, row by row
        geo = [(i, n) for i, n in enumerate(self.ops) if n in GEOMETRIC_OPS]
        if geo:
            ids = torch.tensor([i for i, _ in geo], dtype=torch.long, device=u.device)
            rows = torch.isin(choice, ids).nonzero().squeeze(1)
            if rows.numel():
                c, s = choice[rows], sign[rows]
                a = torch.eye(2, dtype=u.dtype, device=u.device).repeat(rows.numel(), 1, 1)
                t = torch.zeros(rows.numel(), 2, dtype=u.dtype, device=u.device)
                for i, name in geo:
                    v = _signed_values(name, self.magnitude, s, h, w)
                    ai, ti = _affine_params(name, v)
                    hit = c == i
                    a = torch.where(hit[:, None, None], ai, a)
                    t = torch.where(hit[:, None], ti, t)
                u[rows] = _warp(u[rows], a, t, self.interpolation)
        for i, name in enumerate(self.ops):
            if name in GEOMETRIC_OPS or name == "identity":
                continue
            rows = (choice == i).nonzero().squeeze(1)
            if rows.numel():
                v = _signed_values(name, self.magnitude, sign[rows], h, w)
                u[rows] = RANDAUGMENT_OPS[name](u[rows], v)
        return u

    def __repr__(self) -> str:
        ops = "" if self.ops == tuple(RANDAUGMENT_OPS) else f", ops={self.ops}"
        vr = "" if self.value_range is None else f", value_range={self.value_range}"
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}{ops}{vr})"


TRANSFORMS = (
    "none",
    "crop",
    "flip",
    "crop-flip",
    "cutout",
    "crop-flip-cutout",
    "randaugment",
    "strong",
    "crop-flip-randaugment",
)


def default_padding(input_shape) -> int:
    """Crop padding for images of ``input_shape`` (C, H, W): 4 pixels, or 1 up to 8×8."""
    return 1 if min(input_shape[1:]) <= 8 else 4


def build_transform(
    name: str,
    *,
    padding: int | None = None,
    cutout_size: int | None = None,
    num_ops: int = 2,
    magnitude: float = 9,
    value_range: tuple[float, float] | None = None,
) -> Transform | None:
    """Build a named transform (case-insensitive); the names are :data:`TRANSFORMS`:

    - "none": returns None; "crop": :class:`RandomCrop`; "flip": :class:`RandomHorizontalFlip`;
      "crop-flip": crop then flip;
    - "cutout": :class:`Cutout`; "crop-flip-cutout": crop, flip, then cutout;
    - "randaugment" and its alias "strong": :class:`RandAugment`;
      "crop-flip-randaugment": crop, flip, then RandAugment.

    ``padding`` (crop) defaults to 4 for 28×28 and larger images' usual recipe; pass 1 for
    8×8. ``cutout_size`` defaults to half the shorter image side. ``num_ops``, ``magnitude``
    (0–30) and ``value_range`` go to :class:`RandAugment`. Unknown names and out-of-range
    arguments raise ``ValueError``.
    """
    key = name.lower()
    pad = 4 if padding is None else padding
    if key == "none":
        return None
    if key == "crop":
        return RandomCrop(pad)
    if key == "flip":
        return RandomHorizontalFlip()
    if key == "crop-flip":
        return Compose([RandomCrop(pad), RandomHorizontalFlip()])
    if key == "cutout":
        return Cutout(cutout_size)
    if key == "crop-flip-cutout":
        return Compose([RandomCrop(pad), RandomHorizontalFlip(), Cutout(cutout_size)])
    if key in ("randaugment", "strong"):
        return RandAugment(num_ops, magnitude, value_range=value_range)
    if key == "crop-flip-randaugment":
        strong = RandAugment(num_ops, magnitude, value_range=value_range)
        return Compose([RandomCrop(pad), RandomHorizontalFlip(), strong])
    raise ValueError(f"unknown transform {name!r}; valid names: {', '.join(TRANSFORMS)}")
