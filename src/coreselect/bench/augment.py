"""Report of an augmentation suite: accuracy gained and time spent against augmenting all.

Rows are compared with two anchors of the same label noise: ``full`` (no strong augmentation)
and ``augment-full`` (every example augmented). For each subset method: accuracy, the share of
full augmentation's accuracy gain it keeps, the share of full augmentation's extra wall time
it costs, and its paired difference to the random subset of the same fraction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from coreselect.bench.goals import notes_section
from coreselect.bench.stats import mean_std, paired_ci


def _by_seed(runs, label, fraction=None):
    out = {}
    for r in runs:
        if r["label"] == label and (fraction is None or r["fraction"] == fraction):
            if r.get("status", "completed") == "completed":
                out[r["seed"]] = r
    return out


def summarize_augment(suite, runs: list[dict]) -> list[dict]:
    """One dict per (label, fraction) row with its statistics against the anchors."""
    rows = []
    for spec in suite.methods:
        noise = spec.label_noise
        same_noise = [r for r in runs if r.get("label_noise", 0.0) == noise]
        none = _by_seed(same_noise, _anchor(suite, "full", noise))
        allaug = _by_seed(same_noise, _anchor(suite, "augment-full", noise))
        for fraction in sorted({r["fraction"] for r in same_noise if r["label"] == spec.label}):
            mine = _by_seed(same_noise, spec.label, fraction)
            if not mine:
                continue
            row = {
                "label": spec.label,
                "method": spec.method,
                "fraction": fraction,
                "label_noise": noise,
                "n": len(mine),
                "acc": mean_std(r["final_test_acc"] for r in mine.values()),
                "val": mean_std(_val(r) for r in mine.values()),
                "wall": mean_std(r["total_wall_s"] for r in mine.values()),
                "select": mean_std(r["total_select_s"] for r in mine.values()),
            }
            seeds = sorted(set(mine) & set(none))
            row["vs_none"] = paired_ci(
                [mine[s]["final_test_acc"] for s in seeds],
                [none[s]["final_test_acc"] for s in seeds],
            )
            both = sorted(set(mine) & set(none) & set(allaug))
            if both:
                gain_all = np.mean(
                    [allaug[s]["final_test_acc"] - none[s]["final_test_acc"] for s in both]
                )
                gain = np.mean(
                    [mine[s]["final_test_acc"] - none[s]["final_test_acc"] for s in both]
                )
                extra_all = np.mean(
                    [allaug[s]["total_wall_s"] - none[s]["total_wall_s"] for s in both]
                )
                extra = np.mean([mine[s]["total_wall_s"] - none[s]["total_wall_s"] for s in both])
                row["gain_share"] = float(gain / gain_all) if gain_all else math.nan
                row["extra_time_share"] = float(extra / extra_all) if extra_all else math.nan
            rand_label = _anchor(suite, "augment-random", noise)
            rand = _by_seed(same_noise, rand_label, fraction) if rand_label else {}
            seeds = sorted(set(mine) & set(rand))
            row["vs_random"] = paired_ci(
                [mine[s]["final_test_acc"] for s in seeds],
                [rand[s]["final_test_acc"] for s in seeds],
            )
            rows.append(row)
    return rows


def _anchor(suite, method: str, noise: float) -> str | None:
    for spec in suite.methods:
        if spec.method == method and spec.label_noise == noise:
            return spec.label
    return None


def _val(run: dict) -> float:
    value = run.get("final_val_acc")
    return run["epochs"][-1]["val_acc"] if value is None else value


def regime_check(suite, runs: list[dict]) -> list[str]:
    """On validation: does full augmentation beat none by more than twice the seed spread?

    Reports the unpaired reading (gain of the means against each arm's seed std) and the
    paired one (per-seed differences — same seed, same validation split — against their
    std); the verdict uses the paired reading, which matches the suite's paired design.
    """
    lines = []
    for noise in sorted({r.get("label_noise", 0.0) for r in runs}):
        same = [r for r in runs if r.get("label_noise", 0.0) == noise]
        none = _by_seed(same, _anchor(suite, "full", noise) or "")
        allaug = _by_seed(same, _anchor(suite, "augment-full", noise) or "")
        seeds = sorted(set(none) & set(allaug))
        if len(seeds) < 2:
            continue
        a = np.array([_val(allaug[s]) for s in seeds])
        b = np.array([_val(none[s]) for s in seeds])
        diff = a - b
        spread = max(a.std(ddof=1), b.std(ddof=1))
        paired_spread = diff.std(ddof=1)
        verdict = "matters" if diff.mean() > 2 * paired_spread else "does NOT matter"
        lines.append(
            f"- label noise {noise:.0%}: full augmentation {100 * diff.mean():+.2f} points over "
            f"none on validation ({len(seeds)} seeds); unpaired: arms' seed std up to "
            f"{100 * spread:.2f} (gain {'>' if diff.mean() > 2 * spread else '≤'} 2×); paired: "
            f"std of the per-seed gains {100 * paired_spread:.2f} → augmentation {verdict} "
            "here (paired gain > 2× its std)."
        )
    return lines


def write_augment_report(suite, store: dict, out: Path, header: list[str]) -> Path:
    """Write ``report.md`` for an augmentation suite from the stored runs."""
    rows = summarize_augment(suite, store.get("runs", []))
    lines = list(header)
    lines += ["Regime, judged on validation (final accuracy, seeds' mean and std):", ""]
    lines += regime_check(suite, store.get("runs", [])) + [""]
    lines += [
        "| row | augmented share | label noise | test acc % | Δ vs no strong aug (95% CI) | "
        "gain kept | wall s | extra time share | Δ vs random subset (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['fraction']:g} | {r['label_noise']:.0%} | "
            f"{_pm(r['acc'], 100)} | {_ci(r['vs_none'])} | {_pct(r.get('gain_share'))} | "
            f"{_pm(r['wall'])} | {_pct(r.get('extra_time_share'))} | {_ci(r['vs_random'])} |"
        )
    lines += [
        "",
        "Gain kept: (row − no strong augmentation) / (augment everything − no strong "
        "augmentation), accuracy, seed-paired means. Extra time share: the same ratio for wall "
        "time (selection included). Δ: paired differences in points with Student-t 95 % "
        "intervals over seeds.",
        "",
    ]
    if suite.name in ("fmnist-augment", "fmnist-augment-gpu"):
        lines += ["## Goals", "", augment_goals_table(rows), ""]
    lines += notes_section(out)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def augment_goals_table(rows: list[dict]) -> str:
    """Markdown table of the augmentation issue's goals against the summarized ``rows``:
    coreset at 30 % keeps ≥ 90 % of full augmentation's gain at ≤ 60 % of its extra time and
    beats random-30 % (paired 95 % interval above 0); with 30 % label noise, coreset at 50 %
    ≥ full augmentation."""

    def row(label, fraction):
        return next((r for r in rows if r["label"] == label and r["fraction"] == fraction), None)

    out = ["| goal | measured | met | margin |", "|---|---|---|---|"]

    def add(goal, r, measure):
        if r is None:
            out.append(f"| {goal} | not run | – | – |")
            return
        text, met, margin = measure(r)
        out.append(f"| {goal} | {text} | {'met' if met else '**not met**'} | {margin} |")

    c30 = row("coreset", 0.3)
    add(
        "coreset 30 %: ≥ 90 % of full augmentation's gain",
        c30,
        lambda r: (
            _pct(r.get("gain_share", math.nan)),
            r.get("gain_share", math.nan) >= 0.9,
            _pts(r.get("gain_share", math.nan) - 0.9),
        ),
    )
    add(
        "coreset 30 %: ≤ 60 % of full augmentation's extra time",
        c30,
        lambda r: (
            _pct(r.get("extra_time_share", math.nan)),
            r.get("extra_time_share", math.nan) <= 0.6,
            _pts(0.6 - r.get("extra_time_share", math.nan)),
        ),
    )
    add(
        "coreset 30 % beats random 30 %, paired 95 % CI > 0",
        c30,
        lambda r: (
            _ci(r["vs_random"]),
            r["vs_random"][1] > 0,
            f"CI low {100 * r['vs_random'][1]:+.2f}",
        ),
    )
    noisy, full_noisy = row("coreset+noise30", 0.5), row("augment-all+noise30", 1.0)

    def vs_full(r):
        d = 100 * (r["acc"][0] - full_noisy["acc"][0])
        return f"{d:+.2f} points vs augment-all", d >= 0, f"{d:+.2f}"

    add(
        "30 % label noise: coreset 50 % ≥ full augmentation", noisy if full_noisy else None, vs_full
    )
    return "\n".join(out)


def _pts(share: float) -> str:
    return f"{100 * share:+.0f} % points"


def _pm(ms, scale=1.0, digits=1):
    if not ms or ms[0] is None or math.isnan(ms[0]):
        return "–"
    return f"{scale * ms[0]:.{digits}f} ± {scale * ms[1]:.{digits}f}"


def _ci(t):
    m, lo, hi = t
    if math.isnan(m):
        return "–"
    if math.isnan(lo):
        return f"{100 * m:+.2f}"
    return f"{100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def _pct(value):
    return "–" if value is None or math.isnan(value) else f"{100 * value:.0f}%"
