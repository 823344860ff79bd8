"""Benchmark suites: what runs, with which recipe (DESIGN.md §5)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MethodSpec:
    """One method row of a suite.

    ``label`` names the row; ``method`` and ``options`` build the strategy; ``tune`` maps an
    option to candidate values chosen on validation (seed-0 runs, best final validation
    accuracy); ``fractions`` sets the row's fractions (None: the suite's); ``label_noise``
    trains it on labels with that share flipped (seeded; evaluation labels stay clean).
    """

    label: str
    method: str
    options: dict = field(default_factory=dict)
    tune: dict | None = None
    fractions: tuple[float, ...] | None = None
    label_noise: float = 0.0


@dataclass(frozen=True)
class Suite:
    """A side-by-side benchmark: one model and recipe, several methods, paired seeds."""

    name: str
    dataset: str
    model: str
    epochs: int
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    methods: tuple[MethodSpec, ...]
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    schedule: str = "onecycle"
    weight_decay: float = 5e-4
    augment: str = "none"
    amp: str | None = None
    device: str = "auto"
    eval_test_subset: int | None = 2000
    eval_val_subset: int | None = None
    limit: int | None = None
    cudnn_benchmark: bool = False
    report: str = "train"  # "train": vs random/full-short/full; "augment": vs augmentation anchors
    description: str = ""


BASELINES = (
    MethodSpec("full", "full"),
    MethodSpec("full-short", "full-short"),
    MethodSpec("random", "random"),
)

FMNIST_CPU = Suite(
    name="fmnist-cpu",
    dataset="fashion-mnist",
    model="cnn",
    epochs=10,
    fractions=(0.1, 0.3),
    seeds=(0, 1, 2),
    methods=BASELINES
    + (
        MethodSpec("craig", "craig", tune={"reselect_every": [2, 5]}),
        # CREST's checks and Hessian fits cost ~25× a training step on CPU: 10 % only here
        MethodSpec("crest", "crest", fractions=(0.1,)),
        MethodSpec("adacore", "adacore", {"project_dim": 256}, tune={"reselect_every": [2, 5]}),
        MethodSpec("el2n", "el2n"),
        MethodSpec("grand", "grand"),
        MethodSpec("forgetting", "forgetting"),
        MethodSpec("uncertainty", "uncertainty"),
        MethodSpec("kcenter", "kcenter"),
        MethodSpec("herding", "herding"),
        MethodSpec("gradmatch", "gradmatch"),
    ),
    batch_size=128,
    lr=0.05,
    device="cpu",
    eval_test_subset=2000,
    eval_val_subset=1000,
    description="small CNN on Fashion-MNIST (55k train, 5k validation), CPU, 10 epochs of budget",
)

FMNIST_GPU = Suite(
    name="fmnist-gpu",
    dataset="fashion-mnist",
    model="resnet18",
    epochs=15,
    fractions=(0.1, 0.3),
    seeds=(0, 1, 2),
    methods=BASELINES
    + (
        MethodSpec("craig-r1", "craig", {"reselect_every": 1}),
        MethodSpec("craig-r5", "craig", {"reselect_every": 5}),
        MethodSpec("crest", "crest"),
        MethodSpec("adacore-r5", "adacore", {"reselect_every": 5, "project_dim": 1024}),
    ),
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    augment="crop-flip",
    amp="bf16",
    device="cuda",
    eval_test_subset=2000,
    cudnn_benchmark=True,
    description="ResNet-18 (CIFAR stem) on Fashion-MNIST, one GPU, bf16, crop+flip, 15 epochs",
)


def _augment_rows(reselect: int) -> tuple[MethodSpec, ...]:
    sub = {"reselect_every": reselect}
    noisy = 0.3
    return (
        MethodSpec("none", "full"),
        MethodSpec("augment-all", "augment-full"),
        MethodSpec("coreset", "augment-coreset", sub),
        MethodSpec("random", "augment-random", sub),
        MethodSpec("max-loss", "augment-maxloss", sub),
        MethodSpec("none+noise30", "full", label_noise=noisy),
        MethodSpec("augment-all+noise30", "augment-full", label_noise=noisy),
        MethodSpec("coreset+noise30", "augment-coreset", sub, fractions=(0.5,), label_noise=noisy),
        MethodSpec("random+noise30", "augment-random", sub, fractions=(0.5,), label_noise=noisy),
    )


FMNIST_AUGMENT = Suite(
    name="fmnist-augment",
    dataset="fashion-mnist",
    model="cnn",
    epochs=30,
    fractions=(0.1, 0.3),
    seeds=(0, 1, 2),
    methods=_augment_rows(reselect=5),
    batch_size=128,
    lr=0.05,
    augment="none",
    device="cpu",
    limit=5_000,
    eval_test_subset=2000,
    eval_val_subset=1000,
    report="augment",
    description="augment a subset only: small CNN, 5k Fashion-MNIST images, 30 epochs, RandAugment",
)

FMNIST_AUGMENT_GPU = Suite(
    name="fmnist-augment-gpu",
    dataset="fashion-mnist",
    model="resnet18",
    epochs=15,
    fractions=(0.1, 0.3),
    seeds=(0, 1, 2),
    methods=_augment_rows(reselect=5),
    batch_size=256,
    lr=0.1,
    augment="crop-flip",
    amp="bf16",
    device="cuda",
    limit=10_000,
    eval_test_subset=2000,
    eval_val_subset=1000,
    cudnn_benchmark=True,
    report="augment",
    description="augment only a subset: ResNet-18, 10k Fashion-MNIST images, GPU",
)

SMOKE = Suite(
    name="smoke",
    dataset="blobs",
    model="mlp",
    epochs=3,
    fractions=(0.2,),
    seeds=(0, 1, 2),
    methods=BASELINES
    + (MethodSpec("random-class", "random-class", tune={"reselect_every": [1, 2]}),),
    batch_size=32,
    lr=0.05,
    device="cpu",
    eval_test_subset=200,
    description="seconds-long check of the harness on synthetic blobs",
)

SMOKE_AUGMENT = Suite(
    name="smoke-augment",
    dataset="blobs",
    model="mlp",
    epochs=2,
    fractions=(0.2,),
    seeds=(0, 1),
    methods=_augment_rows(reselect=1),
    batch_size=32,
    lr=0.05,
    device="cpu",
    eval_test_subset=200,
    report="augment",
    description="seconds-long check of the augmentation harness on synthetic blobs",
)

SUITES = {
    s.name: s
    for s in (FMNIST_CPU, FMNIST_GPU, FMNIST_AUGMENT, FMNIST_AUGMENT_GPU, SMOKE, SMOKE_AUGMENT)
}


def get_suite(name: str) -> Suite:
    """The suite called ``name``; ValueError listing the valid names otherwise."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid names: {', '.join(SUITES)}")
    return SUITES[name]
