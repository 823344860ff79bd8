"""The ``coreselect`` command: methods | select | train | bench | demo."""

from __future__ import annotations

import argparse
import ast
import sys
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"coreselect: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coreselect", description="Data-efficient training with coresets."
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("methods", help="list the methods (name, kind, paper)")
    p.set_defaults(func=cmd_methods)

    _register_select(sub)

    p = sub.add_parser("train", help="train a model on the subsets a method chooses")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    bench = sub.add_parser("bench", help="benchmark suites").add_subparsers(dest="suite")
    _register_bench(bench)

    p = sub.add_parser("demo", help="a 3-minute side-by-side run on Fashion-MNIST")
    p.add_argument("--out", default=".", help="folder for demo.png (default: .)")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST's IDX files")
    p.add_argument("--limit", type=int, default=None, help="training examples (default 10000)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of budget (default 5)")
    p.add_argument("--fraction", type=float, default=0.1, help="subset fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def _register_select(sub) -> None:
    try:
        from coreselect.submodular.cli import register
    except ImportError:  # the engine is not built yet
        return
    register(sub)


def _register_bench(bench) -> None:
    try:
        from coreselect.bench.engine import register as register_engine
    except ImportError:
        register_engine = None
    if register_engine is not None:
        register_engine(bench)
    try:
        from coreselect.bench.train import register as register_train
    except ImportError:
        register_train = None
    if register_train is not None:
        register_train(bench)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``coreselect train``."""
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | digits | blobs")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST's IDX files")
    p.add_argument("--model", default="mlp", help="mlp | cnn | convnet3 | resnet18 | resnet20")
    p.add_argument("--method", default="random", help="a name from `coreselect methods`")
    p.add_argument("--fraction", type=float, default=0.1, help="f in (0, 1] (default 0.1)")
    p.add_argument("--epochs", type=int, default=10, help="E: epochs of budget (default 10)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--optimizer", default="sgd", help="sgd | adam | adamw")
    p.add_argument("--schedule", default="onecycle", help="onecycle | cosine | constant")
    p.add_argument(
        "--augment", default="none", help="none | crop | flip | crop-flip | cutout | strong | …"
    )
    p.add_argument("--reselect-every", type=int, default=None, help="epochs between selections")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default=None, choices=["bf16"], help="bfloat16 autocast")
    p.add_argument("--limit", type=int, default=None, help="keep the first N training examples")
    p.add_argument("--val", type=int, default=None, help="validation examples held out")
    p.add_argument("--eval-test-subset", type=int, default=None, help="per-epoch test subset")
    p.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE", help="a strategy option"
    )
    p.add_argument("--coreset", default=None, help="train on a saved coreset (.npz)")
    p.add_argument("--out", default=None, help="folder for record.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_options(pairs: list[str]) -> dict:
    """``["k=v", …]`` → ``{k: v}`` with ``v`` read as a Python literal when it is one."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--opt expects KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    return options


def cmd_methods(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from coreselect.methods import available_methods

    table = Table(title="coreselect methods")
    for col in ("name", "kind", "paper", "what it does"):
        table.add_column(col)
    for info in available_methods():
        table.add_row(info.name, info.kind, info.paper, info.summary)
    Console().print(table)
    return 0


def run_training(args, *, quiet: bool | None = None):
    """Build data, model and strategy from parsed ``train`` arguments and fit; returns the record.

    Raises ``NonFiniteLossError`` (with the partial record) when the loss diverges.
    """
    import torch

    from coreselect.coreset import Coreset
    from coreselect.data import load_dataset
    from coreselect.methods import build_strategy
    from coreselect.methods.fixed import FixedCoreset
    from coreselect.models import MODELS, build_model
    from coreselect.train import Trainer
    from coreselect.transforms import build_transform, default_padding

    if not 0.0 < args.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.model.lower() not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; valid names: {', '.join(MODELS)}")
    options = parse_options(args.opt)
    if args.reselect_every is not None:
        options["reselect_every"] = args.reselect_every
    data = load_dataset(
        args.dataset, val=args.val, seed=args.seed, data_dir=args.data_dir, limit=args.limit
    )
    fraction = args.fraction
    if args.coreset:
        strategy = FixedCoreset(Coreset.load(args.coreset), len(data.y_train))
        method = f"coreset:{Path(args.coreset).name}"
        fraction = strategy.fixed_fraction
    else:
        strategy = build_strategy(args.method, **options)
        method = args.method
        if strategy.fixed_fraction is not None:
            fraction = strategy.fixed_fraction
    torch.manual_seed(args.seed)
    model = build_model(args.model, data.input_shape, data.num_classes)
    trainer = Trainer(
        model,
        data,
        strategy,
        epochs=args.epochs,
        fraction=fraction,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        schedule=args.schedule,
        augment=build_transform(args.augment, padding=default_padding(data.input_shape)),
        device=args.device,
        seed=args.seed,
        amp=args.amp,
        eval_test_subset=args.eval_test_subset,
        quiet=args.quiet if quiet is None else quiet,
        names={
            "dataset": data.name,
            "model": args.model,
            "method": method,
            "config": {"command": "coreselect " + " ".join(sys.argv[1:]), "options": options},
        },
    )
    return trainer.fit()


def cmd_train(args) -> int:
    from coreselect.train import NonFiniteLossError

    try:
        record = run_training(args)
    except NonFiniteLossError as err:
        if args.out:
            path = err.record.save(args.out)
            print(f"record so far written to {path}", file=sys.stderr)
        print(f"coreselect: {err}", file=sys.stderr)
        return 1
    _print_summary(record)
    if args.out:
        print(f"record written to {record.save(args.out)}")
    return 0


def _print_summary(record) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{record.method} on {record.dataset} ({record.model}), f={record.fraction}"
    )
    for col in ("epoch", "step", "wall s", "select s", "val acc", "test acc"):
        table.add_column(col, justify="right")
    for e in record.epochs:
        table.add_row(
            str(e["epoch"]),
            str(e["step"]),
            f"{e['wall_s']:.2f}",
            f"{e['select_s']:.2f}",
            _pct(e["val_acc"]),
            _pct(e["test_acc"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"final test accuracy {_pct(record.final_test_acc)} · wall {record.total_wall_s:.2f} s "
        f"(selection {record.total_select_s:.2f} s) · peak memory {record.peak_mem_mb:.0f} MB"
    )


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def cmd_demo(args) -> int:
    from coreselect.demo import run_demo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return run_demo(
            out=args.out,
            data_dir=args.data_dir,
            limit=args.limit,
            epochs=args.epochs,
            fraction=args.fraction,
            seed=args.seed,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
