"""Small reference models, no torchvision: mlp, cnn, convnet3, resnet18, resnet20.

Every model maps images ``(B, C, H, W)`` to logits ``(B, num_classes)`` and exposes
``embed(x) -> (B, D)``, the penultimate representation, with ``classifier`` the final
``nn.Linear`` so that ``model(x) == model.classifier(model.embed(x))``. Signals (last-layer
gradients, embeddings) rely on that split.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

MODELS = ("mlp", "cnn", "convnet3", "resnet18", "resnet20")


class _Classifier(nn.Module, abc.ABC):
    """Base: ``forward = classifier(embed(x))``."""

    classifier: nn.Linear

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, D)`` of inputs ``x`` ``(B, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class MLP(_Classifier):
    """Two hidden ReLU layers on flattened pixels."""

    def __init__(self, input_shape, num_classes: int, hidden: tuple[int, int] = (256, 128)):
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden[1], num_classes)

    def embed(self, x):
        return self.body(x)


class SmallCNN(_Classifier):
    """Two conv blocks (16 and 32 channels: conv-BN-ReLU-maxpool), a 128-unit hidden layer.

    About 10 s per 55k-image epoch on 2 CPU cores (width 32 takes ~2.5× longer).
    """

    def __init__(self, input_shape, num_classes: int, width: int = 16):
        super().__init__()
        c, h, w = input_shape
        pools = [min(h, w) >= 2, min(h, w) >= 4]
        layers: list[nn.Module] = []
        in_ch = c
        for out_ch, pool in zip((width, 2 * width), pools):
            layers += [
                nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            in_ch = out_ch
        side = min(4, min(h, w) // 4 or 1)
        layers += [nn.AdaptiveAvgPool2d(side), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Linear(in_ch * side * side, 128), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x):
        return self.hidden(self.features(x))


class ConvNet3(_Classifier):
    """The 3-block ConvNet of dataset distillation: (conv 128, instance norm, ReLU, avgpool) ×3.

    Pooling stops once the feature map is 1×1, so 8×8 digits work too.
    """

    def __init__(self, input_shape, num_classes: int, width: int = 128, depth: int = 3):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        in_ch = c
        for _ in range(depth):
            layers += [
                nn.Conv2d(in_ch, width, 3, padding=1),
                nn.GroupNorm(width, width, affine=True),  # instance norm, as in the DD papers
                nn.ReLU(inplace=True),
            ]
            if min(h, w) >= 2:
                layers.append(nn.AvgPool2d(2))
                h, w = h // 2, w // 2
            in_ch = width
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * h * w, num_classes)

    def embed(self, x):
        return self.features(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs with BN and a projection shortcut when shapes change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(_Classifier):
    """CIFAR-style ResNet: 3×3 stem without max-pool, stages of basic blocks, global avg-pool.

    Strides that would shrink the map below 1×1 are set to 1, so any image size ≥ 1 works.
    """

    def __init__(self, input_shape, num_classes: int, widths, blocks):
        super().__init__()
        c, h, _ = input_shape
        self.stem = nn.Sequential(
            nn.Conv2d(c, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_ch, side = widths[0], h
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 2 if i > 0 and side >= 2 else 1
            side = (side + 1) // 2 if stride == 2 else side
            for j in range(count):
                stages.append(BasicBlock(in_ch, width, stride if j == 0 else 1))
                in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(in_ch, num_classes)

    def embed(self, x):
        return self.pool(self.stages(self.stem(x)))


def build_model(name: str, input_shape, num_classes: int) -> nn.Module:
    """Build model ``name`` for images of ``input_shape`` = (C, H, W) and ``num_classes``."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    key = name.lower()
    if key == "mlp":
        return MLP(input_shape, num_classes)
    if key == "cnn":
        return SmallCNN(input_shape, num_classes)
    if key == "convnet3":
        return ConvNet3(input_shape, num_classes)
    if key == "resnet18":
        return ResNet(input_shape, num_classes, (64, 128, 256, 512), (2, 2, 2, 2))
    if key == "resnet20":
        return ResNet(input_shape, num_classes, (16, 32, 64), (3, 3, 3))
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
