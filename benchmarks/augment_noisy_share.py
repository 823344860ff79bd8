"""Share of flipped labels inside each augmented subset under 30 % label noise.

The fmnist-augment recipe (5,000 Fashion-MNIST images, ``cnn``, batch 128, SGD lr 0.05) with
an augmented share of 50 %, 15 epochs (selections at epochs 0, 5 and 10), seed 0, for the
coreset, random and max-loss subsets. Writes
``benchmarks/results/fmnist-augment/noisy-share.json``.

    python benchmarks/augment_noisy_share.py
"""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from coreselect.data import load_dataset
from coreselect.methods import build_strategy
from coreselect.models import build_model
from coreselect.train import Trainer

OUT = Path(__file__).parent / "results" / "fmnist-augment" / "noisy-share.json"


def main() -> int:
    seed, fraction, epochs = 0, 0.5, 15
    data = load_dataset("fashion-mnist", limit=5000, label_noise=0.3, seed=seed)
    noisy = data.noisy.numpy()
    result = {"overall_noisy_share": float(noisy.mean()), "subsets": {}}
    for method in ("augment-coreset", "augment-random", "augment-maxloss"):
        strategy = build_strategy(method, reselect_every=5)
        shares, plan = [], strategy.plan

        def recording_plan(ctx, plan=plan, shares=shares):
            p = plan(ctx)
            shares.append(float(noisy[np.asarray(p.extra[0].indices)].mean()))
            return p

        strategy.plan = recording_plan
        torch.manual_seed(seed)
        model = build_model("cnn", data.input_shape, data.num_classes)
        rec = Trainer(
            model,
            data,
            strategy,
            epochs=epochs,
            fraction=fraction,
            batch_size=128,
            lr=0.05,
            seed=seed,
            quiet=True,
            device="cpu",
        ).fit()
        result["subsets"][method] = {
            "noisy_share_per_selection": shares,
            "final_test_acc": rec.final_test_acc,
        }
        print(method, [round(s, 3) for s in shares], f"test {rec.final_test_acc:.4f}")
    result["how"] = {
        "command": "python benchmarks/augment_noisy_share.py",
        "seed": seed,
        "fraction": fraction,
        "epochs": epochs,
        "limit": 5000,
        "label_noise": 0.3,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "gpu": None,
        },
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    OUT.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
