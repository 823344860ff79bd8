import json

import numpy as np
import pytest

from coreselect import Coreset
from coreselect.cli import main, parse_options
from coreselect.train import EPOCH_FIELDS, RECORD_FIELDS
from tests.conftest import require_fashion_mnist


def check_schema(record: dict) -> None:
    for key in RECORD_FIELDS:
        assert key in record, key
    assert isinstance(record["config"], dict) and isinstance(record["strategy_stats"], dict)
    for key in ("torch", "device", "threads"):
        assert key in record["env"]
    assert record["epochs"]
    for entry in record["epochs"]:
        for key in EPOCH_FIELDS:
            assert key in entry, key
    walls = [e["wall_s"] for e in record["epochs"]]
    assert walls == sorted(walls) and record["total_wall_s"] >= record["total_select_s"] >= 0
    assert record["peak_mem_mb"] > 0


def test_train_command_writes_record_with_every_field(tmp_path, capsys):
    require_fashion_mnist()
    out = tmp_path / "x"
    code = main(
        [
            "train",
            "--dataset",
            "fashion-mnist",
            "--model",
            "mlp",
            "--method",
            "random",
            "--fraction",
            "0.1",
            "--epochs",
            "2",
            "--limit",
            "5000",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads((out / "record.json").read_text())
    check_schema(record)
    assert record["method"] == "random" and record["fraction"] == 0.1
    assert record["config"]["total_steps"] == 4 * 2 and record["config"]["n_train"] == 5000
    assert record["strategy_stats"]["selections"] == 2
    assert "final test accuracy" in capsys.readouterr().out


def test_train_on_a_saved_coreset(tmp_path):
    path = Coreset(np.arange(0, 400, 2), np.full(200, 2.0)).save(tmp_path / "c.npz")
    code = main(
        [
            "train",
            "--dataset",
            "blobs",
            "--coreset",
            str(path),
            "--epochs",
            "2",
            "--batch-size",
            "50",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["config"]["total_steps"] == 8 and record["epochs"][0]["n_train"] == 200
    assert record["method"] == "coreset:c.npz"


def test_options_and_reselect_every_reach_the_strategy(tmp_path):
    code = main(
        [
            "train",
            "--dataset",
            "blobs",
            "--method",
            "random",
            "--epochs",
            "4",
            "--reselect-every",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["strategy_stats"]["selections"] == 2
    assert record["config"]["strategy"]["reselect_every"] == 2
    assert parse_options(["a=1", "b=0.5", "c=last-layer", "d=[1, 2]"]) == {
        "a": 1,
        "b": 0.5,
        "c": "last-layer",
        "d": [1, 2],
    }


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--dataset", "imagenet"], "valid names: fashion-mnist"),
        (["--model", "vgg"], "valid names: mlp"),
        (["--method", "nope"], "valid names: full"),
        (["--fraction", "0"], "fraction"),
        (["--fraction", "1.5"], "fraction"),
        (["--epochs", "0"], "epochs"),
        (["--opt", "reselect_every"], "KEY=VALUE"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "dataset-fashion-mnist"),
    ],
)
def test_bad_input_gives_a_clear_error(argv, needle, capsys):
    code = main(["train", "--dataset", "blobs", "--quiet", *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_nan_loss_exits_nonzero_and_writes_the_record(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset",
            "blobs",
            "--method",
            "random",
            "--fraction",
            "0.5",
            "--epochs",
            "2",
            "--lr",
            "1e30",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "non-finite loss at epoch 1, step" in err
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"].startswith("non-finite loss")


def test_methods_command_lists_baselines(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("full", "full-short", "random", "random-class"):
        assert name in out
