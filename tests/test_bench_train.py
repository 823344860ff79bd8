"""The training-benchmark harness on the seconds-long smoke suite."""

import json

import numpy as np
import pytest

from coreselect.bench.stats import paired_ci, time_to_target
from coreselect.bench.suites import get_suite
from coreselect.bench.train import run_suite, summarize, write_report
from coreselect.cli import main


def test_paired_ci_against_hand_computation():
    a, b = [0.9, 0.8, 0.85], [0.8, 0.75, 0.8]
    m, lo, hi = paired_ci(a, b)
    d = np.array([0.1, 0.05, 0.05])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert m == pytest.approx(d.mean()) and lo == pytest.approx(d.mean() - half)
    assert hi == pytest.approx(d.mean() + half)
    assert time_to_target([(1.0, 0.5), (2.0, 0.7), (3.0, 0.9)], 0.7) == 2.0
    assert time_to_target([(1.0, 0.5)], 0.7) is None


def test_smoke_suite_appends_runs_skips_finished_and_reports(tmp_path):
    suite = get_suite("smoke")
    runs = run_suite(suite, tmp_path, seeds=[0, 1])
    ids = [r["run_id"] for r in runs]
    assert len(ids) == len(set(ids))
    # seed 0 ran both tuning candidates, seed 1 only the chosen one
    tuned = [r for r in runs if r["label"] == "random-class"]
    assert sorted(r["seed"] for r in tuned) == [0, 0, 1]
    chosen = summarize(suite, runs)["chosen"]["random-class|0.2"]
    assert [r["candidate"] for r in tuned if r["seed"] == 1] == [chosen]
    stored = json.loads((tmp_path / "results.json").read_text())
    assert len(stored["runs"]) == len(runs)
    # a rerun skips what is done; a new seed only adds its runs
    again = run_suite(suite, tmp_path, seeds=[0, 1])
    assert [r["run_id"] for r in again] == ids
    more = run_suite(suite, tmp_path, seeds=[0, 1, 2])
    assert len(more) == len(runs) + 4  # full, full-short, random, random-class (chosen)
    report = write_report(suite, tmp_path).read_text()
    for needle in ("## f = 0.2", "| random |", "| full-short |", "speedup", "Chosen on validation"):
        assert needle in report
    assert (tmp_path / "curves.png").stat().st_size > 1000
    summary = summarize(suite, more)
    row = summary["fractions"][0.2]["random"]
    assert row["n"] == 3 and row["vs_random"][0] == 0.0  # random against itself


def test_bench_train_cli_and_unknown_suite(tmp_path, capsys):
    assert main(["bench", "train", "--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "valid names: fmnist-cpu" in capsys.readouterr().err
    code = main(
        [
            "bench",
            "train",
            "--suite",
            "smoke",
            "--out",
            str(tmp_path),
            "--seeds",
            "0",
            "--methods",
            "full-short,random",
        ]
    )
    assert code == 0 and (tmp_path / "report.md").exists()
