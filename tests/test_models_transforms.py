import pytest
import torch

from coreselect.models import MODELS, build_model
from coreselect.transforms import RandomCrop, RandomHorizontalFlip, build_transform


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_models_map_images_to_logits_through_embed(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10).eval()
    x = torch.randn(2, *shape)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.allclose(model.classifier(model.embed(x)), logits)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="mlp, cnn, convnet3, resnet18, resnet20"):
        build_model("vgg", (1, 28, 28), 10)


def test_crop_keeps_shape_and_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    gen = torch.Generator().manual_seed(0)
    y = RandomCrop(2)(x, generator=gen)
    assert y.shape == x.shape and y.dtype == x.dtype
    for b in range(2):
        padded = torch.nn.functional.pad(x[b], (2, 2, 2, 2), value=float(x[b].min()))
        windows = [padded[:, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(w, y[b]) for w in windows)


def test_transforms_are_seeded():
    x = torch.randn(16, 1, 28, 28)
    t = build_transform("crop-flip")
    a = t(x, generator=torch.Generator().manual_seed(1))
    b = t(x, generator=torch.Generator().manual_seed(1))
    c = t(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_probability_one_mirrors_every_image():
    x = torch.randn(3, 1, 4, 5)
    assert torch.equal(RandomHorizontalFlip(1.0)(x), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(x), x)


def test_unknown_transform_and_bad_magnitudes():
    with pytest.raises(ValueError, match="crop-flip"):
        build_transform("autoaugment")
    with pytest.raises(ValueError):
        RandomCrop(-1)
    with pytest.raises(ValueError):
        RandomHorizontalFlip(1.5)
