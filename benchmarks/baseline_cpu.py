"""Full-data Fashion-MNIST with the small `cnn` on this machine: seconds per epoch, accuracy.

Run: `.venv/bin/python benchmarks/baseline_cpu.py [--epochs 5] [--seed 0]`; writes
`benchmarks/results/baseline-cpu.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

from coreselect.data import load_dataset
from coreselect.methods import build_strategy
from coreselect.models import build_model
from coreselect.train import Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results/baseline-cpu.json"))
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", seed=args.seed)
    torch.manual_seed(args.seed)
    model = build_model("cnn", data.input_shape, data.num_classes)
    record = Trainer(
        model,
        data,
        build_strategy("full"),
        args.epochs,
        1.0,
        128,
        device="cpu",
        seed=args.seed,
        quiet=True,
    ).fit()
    walls = [e["wall_s"] for e in record.epochs]
    per_epoch = [b - a for a, b in zip([0.0] + walls[:-1], walls)]
    result = {
        "command": "python benchmarks/baseline_cpu.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "dataset": "fashion-mnist (55,000 train / 5,000 validation / 10,000 test)",
        "model": "cnn",
        "recipe": record.config,
        "seed": args.seed,
        "seconds_per_epoch": per_epoch,
        "mean_seconds_per_epoch": sum(per_epoch) / len(per_epoch),
        "total_train_s": record.total_wall_s,
        "eval_s": record.total_eval_s,
        "val_acc_per_epoch": [e["val_acc"] for e in record.epochs],
        "test_acc_per_epoch": [e["test_acc"] for e in record.epochs],
        "final_test_acc": record.final_test_acc,
        "peak_mem_mb": record.peak_mem_mb,
        "machine": record.env,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("mean_seconds_per_epoch", "final_test_acc")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
