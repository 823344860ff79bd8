"""The goals an issue sets for a suite, checked against its summary and reported with margins.

A goal is a claim such as "CRAIG at 10 % beats the better of random and full-short by one point
with a paired 95 % interval above 0". :func:`check_goals` turns a suite summary (see
:func:`coreselect.bench.train.summarize`) into one row per goal: what was measured, whether it
was met and by how much it was missed, so a report never hides a miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """One target for a ``label`` at ``fraction``.

    ``kind`` is one of
    ``"beats_controls"`` (accuracy − max(random, full-short) ≥ ``value`` points and the paired
    interval against that control above 0), ``"vs_full"`` (accuracy − full ≥ ``value`` points),
    ``"acc_at_least"`` (accuracy ≥ ``value`` %), ``"at_least"`` (accuracy ≥ that of the method
    named by ``other``), ``"wall_vs_random"`` (wall / random's ≤ ``value``), ``"speedup_1"`` /
    ``"speedup_2"`` (time to full − 1 / − 2 points, full's over the method's, ≥ ``value``).
    """

    label: str
    fraction: float
    kind: str
    value: float
    other: str | None = None


GOALS: dict[str, tuple[Goal, ...]] = {
    "fmnist-cpu": (
        Goal("craig", 0.1, "beats_controls", 1.0),
        Goal("craig", 0.3, "vs_full", -1.5),
        Goal("craig", 0.1, "wall_vs_random", 1.5),
        Goal("craig", 0.3, "wall_vs_random", 1.5),
        Goal("craig", 0.1, "speedup_2", 2.0),
        Goal("craig", 0.3, "speedup_2", 2.0),
        Goal("crest", 0.1, "beats_controls", 1.5),
        Goal("crest", 0.1, "at_least", 0.0, other="craig"),
        Goal("crest", 0.1, "wall_vs_random", 1.3),
        Goal("crest", 0.1, "speedup_2", 2.5),
    ),
    "fmnist-gpu": (
        Goal("craig", 0.1, "acc_at_least", 91.0),
        Goal("craig", 0.3, "acc_at_least", 93.6),
        Goal("craig", 0.1, "wall_vs_random", 1.3),
        Goal("craig", 0.3, "wall_vs_random", 1.3),
        Goal("craig", 0.1, "speedup_1", 2.0),
        Goal("craig", 0.3, "speedup_1", 2.0),
        Goal("crest", 0.1, "acc_at_least", 91.5),
        Goal("crest", 0.3, "acc_at_least", 94.0),
        Goal("crest", 0.1, "wall_vs_random", 1.3),
        Goal("crest", 0.3, "wall_vs_random", 1.3),
    ),
}


def _describe(goal: Goal) -> str:
    f = f"{goal.label} at f = {goal.fraction:g}"
    return {
        "beats_controls": f"{f}: ≥ max(random, full-short) + {goal.value:g} points, 95 % CI > 0",
        "vs_full": f"{f}: within {-goal.value:g} points of full",
        "acc_at_least": f"{f}: test accuracy ≥ {goal.value:g} %",
        "at_least": f"{f}: accuracy ≥ {goal.other}'s",
        "wall_vs_random": f"{f}: wall time ≤ {goal.value:g}× random's",
        "speedup_1": f"{f}: speedup to full − 1 point ≥ {goal.value:g}×",
        "speedup_2": f"{f}: speedup to full − 2 points ≥ {goal.value:g}×",
    }[goal.kind]


def check_goal(goal: Goal, summary: dict) -> dict:
    """Evaluate one goal against a suite summary.

    Returns ``{"goal", "measured", "met", "margin"}``: ``met`` is True, False, or None when the
    runs it needs are missing; ``margin`` says by how much it was met (+) or missed (−), in
    the goal's unit.
    """
    row = summary.get("fractions", {}).get(goal.fraction, {}).get(goal.label)
    out = {"goal": _describe(goal), "measured": "not run", "met": None, "margin": None}
    if not row:
        return out
    acc = 100 * row["acc"][0]
    if goal.kind == "beats_controls":
        controls = summary["fractions"][goal.fraction]
        best = max(("random", "full-short"), key=lambda c: controls[c]["acc"][0])
        d, lo, _ = row[f"vs_{best}"]
        d, lo = 100 * d, 100 * lo
        margin = d - goal.value
        met = margin >= 0 and lo > 0
        out.update(measured=f"{d:+.2f} vs {best} (CI low {lo:+.2f})", met=met, margin=margin)
    elif goal.kind == "vs_full":
        d = 100 * row["vs_full"][0]
        out.update(measured=f"{d:+.2f} vs full", met=d >= goal.value, margin=d - goal.value)
    elif goal.kind == "acc_at_least":
        out.update(measured=f"{acc:.2f} %", met=acc >= goal.value, margin=acc - goal.value)
    elif goal.kind == "at_least":
        other = summary["fractions"][goal.fraction].get(goal.other)
        if not other:
            return out
        d = acc - 100 * other["acc"][0]
        out.update(measured=f"{d:+.2f} vs {goal.other}", met=d >= goal.value, margin=d)
    elif goal.kind == "wall_vs_random":
        r = row["wall_vs_random"][0]
        out.update(measured=f"{r:.2f}×", met=r <= goal.value, margin=goal.value - r)
    elif goal.kind in ("speedup_1", "speedup_2"):
        s = row[goal.kind]
        if not s["mean_std"] or s["reached"] < s["seeds"]:
            out.update(measured=f"not reached ({s['reached']}/{s['seeds']} seeds)", met=False)
        else:
            m = s["mean_std"][0]
            out.update(measured=f"{m:.2f}×", met=m >= goal.value, margin=m - goal.value)
    else:
        raise ValueError(f"unknown goal kind {goal.kind!r}")
    if isinstance(out["margin"], float) and math.isnan(out["margin"]):
        out["met"] = None
    return out


def goals_table(suite_name: str, summary: dict) -> str:
    """Markdown table of the suite's goals (empty string when it has none)."""
    goals = GOALS.get(suite_name, ())
    if not goals:
        return ""
    lines = ["| goal | measured | met | margin |", "|---|---|---|---|"]
    for g in goals:
        c = check_goal(g, summary)
        met = {True: "met", False: "**not met**", None: "–"}[c["met"]]
        margin = "–" if c["margin"] is None else f"{c['margin']:+.2f}"
        lines.append(f"| {c['goal']} | {c['measured']} | {met} | {margin} |")
    return "\n".join(lines)


def notes_section(out) -> list[str]:
    """Report lines for ``out/notes.md``, the hand-written reading of a suite's numbers kept
    beside its results (``[]`` when there is none)."""
    from pathlib import Path

    notes = Path(out) / "notes.md"
    if not notes.exists():
        return []
    return ["## Notes", "", notes.read_text().strip(), ""]
