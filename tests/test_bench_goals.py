"""Goal checks: met / missed with the right margin, and missing runs reported as such."""

import math

from coreselect.bench.goals import Goal, check_goal, goals_table


def _row(acc, vs_random=(0.0, 0.0, 0.0), vs_short=(0.0, 0.0, 0.0), wall=1.0, speed=None):
    return {
        "acc": (acc, 0.0),
        "vs_random": vs_random,
        "vs_full-short": vs_short,
        "vs_full": (acc - 0.9, math.nan, math.nan),
        "wall_vs_random": (wall, 0.0),
        "speedup_2": {"mean_std": speed, "reached": 3 if speed else 0, "seeds": 3},
    }


def _summary(craig):
    return {
        "fractions": {
            0.1: {
                "random": _row(0.80),
                "full-short": _row(0.81),
                "craig": craig,
            }
        }
    }


def test_beats_controls_uses_the_better_control_and_its_interval():
    g = Goal("craig", 0.1, "beats_controls", 1.0)
    # +1.5 vs full-short (the better control), interval above 0: met by 0.5
    ok = _row(0.825, vs_random=(0.025, 0.01, 0.04), vs_short=(0.015, 0.002, 0.028))
    c = check_goal(g, _summary(ok))
    assert c["met"] is True and abs(c["margin"] - 0.5) < 1e-9
    # same mean but the interval crosses 0: not met even though the mean clears the bar
    wide = _row(0.825, vs_random=(0.025, 0.01, 0.04), vs_short=(0.015, -0.01, 0.04))
    assert check_goal(g, _summary(wide))["met"] is False
    # beats random by 2.5 but full-short only by 0.5: missed by 0.5
    c = check_goal(g, _summary(_row(0.815, vs_short=(0.005, 0.001, 0.009))))
    assert c["met"] is False and abs(c["margin"] + 0.5) < 1e-9


def test_wall_speedup_vs_full_and_missing_rows():
    s = _summary(_row(0.88, wall=4.4))
    c = check_goal(Goal("craig", 0.1, "wall_vs_random", 1.5), s)
    assert c["met"] is False and abs(c["margin"] + 2.9) < 1e-9
    c = check_goal(Goal("craig", 0.1, "vs_full", -1.5), s)  # 88 vs 90: −2.0
    assert c["met"] is False and abs(c["margin"] + 0.5) < 1e-9
    c = check_goal(Goal("craig", 0.1, "speedup_2", 2.0), s)
    assert c["met"] is False and "not reached" in c["measured"]
    s2 = _summary(_row(0.88, speed=(2.5, 0.1)))
    assert check_goal(Goal("craig", 0.1, "speedup_2", 2.0), s2)["met"] is True
    assert check_goal(Goal("crest", 0.1, "acc_at_least", 91.0), s)["met"] is None
    assert "not met" in goals_table("fmnist-cpu", s)
