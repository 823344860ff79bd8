"""``coreselect bench train``: side-by-side, paired-seed, equal-budget training benchmarks.

Every run is appended to ``DIR/results.json`` as soon as it finishes (a rerun skips finished
runs, a dead run loses nothing); ``DIR/report.md`` and ``DIR/curves.png`` are regenerated from
it. Headline metrics (DESIGN.md §5): accuracy at equal step budget against ``random`` and
``full-short`` with paired 95 % intervals; speedup to (full − 1 / − 2 points); selection share
of wall time and wall time relative to ``random``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from coreselect.bench.goals import goals_table, notes_section
from coreselect.bench.stats import mean_std, paired_ci, time_to_target
from coreselect.bench.suites import MethodSpec, Suite, get_suite

RESULTS = "results.json"


def register(bench_subparsers) -> None:
    """Add ``coreselect bench train`` to the ``bench`` subcommands."""
    p = bench_subparsers.add_parser(
        "train", help="time-to-accuracy suites (fmnist-cpu, fmnist-gpu)"
    )
    p.add_argument("--suite", required=True, help="fmnist-cpu | fmnist-gpu | fmnist-augment | …")
    p.add_argument("--out", required=True, help="folder for results.json, report.md, curves.png")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the suite's)")
    p.add_argument("--methods", default=None, help="comma-separated row labels (default: all)")
    p.add_argument("--fractions", default=None, help="comma-separated fractions")
    p.add_argument("--device", default=None, help="override the suite's device")
    p.add_argument("--report-only", action="store_true", help="only rebuild report.md/curves")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    suite = get_suite(args.suite)
    out = Path(args.out)
    if not args.report_only:
        run_suite(
            suite,
            out,
            seeds=_parse_list(args.seeds, int),
            labels=_parse_list(args.methods, str),
            fractions=_parse_list(args.fractions, float),
            device=args.device,
        )
    path = write_report(suite, out)
    print(f"report written to {path}")
    return 0


def _parse_list(text, kind):
    return None if text is None else [kind(t) for t in text.split(",") if t.strip()]


# --------------------------------------------------------------------------- running
def run_suite(
    suite: Suite,
    out: Path,
    *,
    seeds=None,
    labels=None,
    fractions=None,
    device: str | None = None,
    quiet: bool = True,
) -> list[dict]:
    """Run every (seed, fraction, method) of ``suite`` not yet in ``out/results.json``.

    Seed-0 runs come first so that tuned options (``MethodSpec.tune``) are chosen on
    validation before the other seeds run with the choice. Returns all stored runs.
    """
    from coreselect.data import load_dataset

    out.mkdir(parents=True, exist_ok=True)
    store = _load(out)
    store.setdefault("suite", suite.name)
    store.setdefault("runs", [])
    seeds = list(seeds or suite.seeds)
    specs = [m for m in suite.methods if labels is None or m.label in labels]
    unknown = set(labels or []) - {m.label for m in suite.methods}
    if unknown:
        raise ValueError(
            f"unknown method label(s) {sorted(unknown)}; valid: "
            + ", ".join(m.label for m in suite.methods)
        )
    dev = device or suite.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"suite {suite.name} needs a GPU (device 'cuda'), none is available")
    if dev == "cpu":
        torch.set_num_threads(int(os.environ.get("CORESELECT_THREADS", torch.get_num_threads())))
    torch.backends.cudnn.benchmark = suite.cudnn_benchmark
    warmed = False
    from coreselect.methods import get_method

    for seed in seeds:
        datasets = {}
        for spec in specs:
            noise = spec.label_noise
            if noise not in datasets:
                datasets[noise] = load_dataset(
                    suite.dataset, seed=seed, limit=suite.limit, label_noise=noise
                )
            data = datasets[noise]
            spec_fractions = spec.fractions or suite.fractions
            fixed = get_method(spec.method).cls.fixed_fraction
            for fraction in spec_fractions:
                if fractions is not None and fraction not in fractions and fixed is None:
                    continue
                f = fixed if fixed is not None else fraction
                for options, candidate in _candidates(spec, store, f, seed):
                    run_id = _run_id(spec.label, f, seed, candidate)
                    if any(r["run_id"] == run_id for r in store["runs"]):
                        continue
                    if not warmed:
                        _warm_up(suite, data, dev)
                        warmed = True
                    print(f"[{suite.name}] {run_id} …", flush=True)
                    started = time.perf_counter()
                    record = _train_one(suite, data, spec, options, f, seed, dev, quiet)
                    entry = record.to_dict() | {
                        "run_id": run_id,
                        "label": spec.label,
                        "candidate": candidate,
                        "label_noise": spec.label_noise,
                        "elapsed_s": time.perf_counter() - started,
                    }
                    store["runs"].append(entry)
                    store["machine"] = record.env
                    _save(out, store)
                    print(
                        f"    test {100 * (record.final_test_acc or 0):.2f}%  wall "
                        f"{record.total_wall_s:.1f}s  select {record.total_select_s:.1f}s",
                        flush=True,
                    )
    return store["runs"]


def _candidates(spec: MethodSpec, store: dict, fraction: float, seed: int):
    """(options, candidate-name) pairs to run: all candidates on seed 0, else the chosen one."""
    if not spec.tune:
        yield dict(spec.options), None
        return
    ((key, values),) = spec.tune.items()
    chosen = choose_on_validation(store["runs"], spec, fraction)
    if chosen is None or seed == _first_seed(store, spec, fraction):
        for value in values:
            yield dict(spec.options) | {key: value}, f"{key}={value}"
    else:
        yield dict(spec.options) | {key: chosen}, f"{key}={chosen}"


def _first_seed(store, spec, fraction):
    seeds = [
        r["seed"] for r in store["runs"] if r["label"] == spec.label and r["fraction"] == fraction
    ]
    return min(seeds) if seeds else None


def choose_on_validation(runs: list[dict], spec: MethodSpec, fraction: float):
    """The tuned option value with the best final validation accuracy on the tuning seed."""
    if not spec.tune:
        return None
    ((key, values),) = spec.tune.items()
    tried = [r for r in runs if r["label"] == spec.label and r["fraction"] == fraction]
    if not tried:
        return None
    seed0 = min(r["seed"] for r in tried)
    scores = {}
    for r in tried:
        if r["seed"] == seed0 and r["candidate"]:
            value = json.loads(r["candidate"].split("=", 1)[1])
            scores[value] = _final_val(r)
    if set(scores) != set(values):
        return None  # tuning not finished
    return max(values, key=lambda v: (scores[v], -values.index(v)))


def _final_val(run: dict) -> float:
    """Validation accuracy at the end of a stored run (whole validation set when recorded)."""
    value = run.get("final_val_acc")
    if value is None:
        value = run["epochs"][-1]["val_acc"]
    return value or 0.0


def _run_id(label, fraction, seed, candidate):
    return f"{label}|f={fraction:g}|seed={seed}" + (f"|{candidate}" if candidate else "")


def _train_one(suite: Suite, data, spec: MethodSpec, options, fraction, seed, device, quiet):
    from coreselect.methods import build_strategy
    from coreselect.models import build_model
    from coreselect.train import Trainer
    from coreselect.transforms import build_transform, default_padding

    strategy = build_strategy(spec.method, **options)
    torch.manual_seed(seed)
    model = build_model(suite.model, data.input_shape, data.num_classes)
    trainer = Trainer(
        model,
        data,
        strategy,
        epochs=suite.epochs,
        fraction=fraction,
        batch_size=suite.batch_size,
        optimizer=suite.optimizer,
        lr=suite.lr,
        schedule=suite.schedule,
        weight_decay=suite.weight_decay,
        augment=build_transform(suite.augment, padding=default_padding(data.input_shape)),
        device=device,
        seed=seed,
        amp=suite.amp,
        eval_test_subset=suite.eval_test_subset,
        eval_val_subset=suite.eval_val_subset,
        quiet=quiet,
        names={
            "dataset": data.name,
            "model": suite.model,
            "method": spec.method,
            "config": {"suite": suite.name, "label": spec.label, "options": options},
        },
    )
    return trainer.fit()


def _warm_up(suite: Suite, data, device: str) -> None:
    """Untimed: a few training steps and evaluation-shaped forwards on a throwaway model, so
    one-time costs (cuDNN autotuning, allocator growth, lazy init) land in no method's run."""
    from coreselect.methods import build_strategy
    from coreselect.models import build_model
    from coreselect.train import Trainer
    from coreselect.transforms import build_transform, default_padding

    if torch.device(device).type != "cuda":
        return
    torch.manual_seed(12345)
    model = build_model(suite.model, data.input_shape, data.num_classes)
    trainer = Trainer(
        model,
        data,
        build_strategy("random"),
        epochs=1,
        fraction=min(1.0, 4 * suite.batch_size / len(data.y_train)),
        batch_size=suite.batch_size,
        optimizer=suite.optimizer,
        lr=suite.lr,
        augment=build_transform(suite.augment, padding=default_padding(data.input_shape)),
        device=device,
        amp=suite.amp,
        eval_test_subset=suite.eval_test_subset,
        quiet=True,
    )
    trainer.fit()
    from coreselect.train.context import TrainContext

    ctx = TrainContext(
        model,
        data.x_train.to(device),
        data.y_train.to(device),
        np.arange(len(data.y_train)),
        data.num_classes,
        torch.device(device),
        np.random.default_rng(0),
        0.1,
        suite.batch_size,
        1,
        1,
        1,
        autocast_dtype=trainer.amp_dtype,
    )
    ctx.forward(ctx.pool)
    torch.cuda.synchronize()


def _load(out: Path) -> dict:
    path = out / RESULTS
    if path.exists():
        return json.loads(path.read_text())
    return {}


def _save(out: Path, store: dict) -> None:
    path = out / RESULTS
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(store, indent=1, default=str) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- reporting
def summarize(suite: Suite, runs: list[dict]) -> dict:
    """Aggregate stored runs into the report's numbers (per label and fraction)."""
    chosen = {}
    for spec in suite.methods:
        for f in suite.fractions:
            value = choose_on_validation(runs, spec, f)
            if value is not None:
                chosen[(spec.label, f)] = f"{next(iter(spec.tune))}={value}"

    def rows(label, fraction):
        out = [r for r in runs if r["label"] == label and r["fraction"] == fraction]
        if (label, fraction) in chosen:
            out = [r for r in out if r["candidate"] == chosen[(label, fraction)]]
        return {r["seed"]: r for r in out if r.get("status", "completed") == "completed"}

    full = rows("full", 1.0)
    summary = {
        "full": _row_stats(full),
        "fractions": {},
        "chosen": {f"{k[0]}|{k[1]:g}": v for k, v in chosen.items()},
    }
    for f in suite.fractions:
        table = {}
        random_runs, short_runs = rows("random", f), rows("full-short", f)
        for spec in suite.methods:
            if spec.label == "full":
                continue
            runs_lf = rows(spec.label, f)
            if not runs_lf:
                continue
            stats = _row_stats(runs_lf)
            for name, ref in (("random", random_runs), ("full-short", short_runs)):
                seeds = sorted(set(runs_lf) & set(ref))
                stats[f"vs_{name}"] = paired_ci(
                    [runs_lf[s]["final_test_acc"] for s in seeds],
                    [ref[s]["final_test_acc"] for s in seeds],
                )
                if name == "random":
                    ratios = [runs_lf[s]["total_wall_s"] / ref[s]["total_wall_s"] for s in seeds]
                    stats["wall_vs_random"] = mean_std(ratios)
            seeds = sorted(set(runs_lf) & set(full))
            stats["vs_full"] = paired_ci(
                [runs_lf[s]["final_test_acc"] for s in seeds],
                [full[s]["final_test_acc"] for s in seeds],
            )
            for drop in (1, 2):
                speedups, reached = [], 0
                for s in seeds:
                    full_curve = _curve(full[s])
                    target = full_curve[-1][1] - drop / 100
                    t_full = time_to_target(full_curve, target)
                    t = time_to_target(_curve(runs_lf[s]), target)
                    if t is not None and t_full is not None:
                        reached += 1
                        speedups.append(t_full / t)
                stats[f"speedup_{drop}"] = {
                    "mean_std": mean_std(speedups) if speedups else None,
                    "reached": reached,
                    "seeds": len(seeds),
                }
            table[spec.label] = stats
        summary["fractions"][f] = table
    return summary


def _curve(run: dict):
    return [(e["wall_s"], e["test_acc"]) for e in run["epochs"]]


def _row_stats(runs_by_seed: dict) -> dict:
    runs = list(runs_by_seed.values())
    if not runs:
        return {}
    return {
        "n": len(runs),
        "acc": mean_std(r["final_test_acc"] for r in runs),
        "wall": mean_std(r["total_wall_s"] for r in runs),
        "select": mean_std(r["total_select_s"] for r in runs),
        "select_share": mean_std(r["total_select_s"] / r["total_wall_s"] for r in runs),
        "parts": _parts(runs),
    }


def _parts(runs: list[dict]) -> dict:
    """Seed means of a row's time split: training steps (wall − selection) and every timed
    (``*_s``) or counted entry of ``strategy_stats``."""
    parts = {"train_s": float(np.mean([r["total_wall_s"] - r["total_select_s"] for r in runs]))}
    keys = {k for r in runs for k, v in r.get("strategy_stats", {}).items() if _is_number(v)}
    for k in sorted(keys):
        vals = [r["strategy_stats"][k] for r in runs if _is_number(r["strategy_stats"].get(k))]
        parts[k] = float(np.mean(vals))
    return parts


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def write_report(suite: Suite, out: Path) -> Path:
    """Regenerate ``report.md`` and ``curves.png`` from ``out/results.json``."""
    store = _load(out)
    runs = store.get("runs", [])
    summary = summarize(suite, runs)
    n_train = runs[0]["config"]["n_train"] if runs else "?"
    options = {s.label: s.options for s in suite.methods if s.options}
    lines = [
        f"# {suite.name}: {suite.description}",
        "",
        f"Model `{suite.model}`, {suite.epochs} epochs of budget, batch {suite.batch_size}, "
        f"{suite.optimizer} lr {suite.lr} ({suite.schedule}), augmentation {suite.augment}, "
        f"amp {suite.amp}; per-epoch test accuracy on a fixed {suite.eval_test_subset}-image "
        "subset, final accuracy on the whole test set. Every method at a fraction f trains "
        "⌈f·E·N/b⌉ steps; wall time = training steps + selection (evaluation excluded).",
        "",
        f"Command: `coreselect bench train --suite {suite.name} --out {out}`. "
        f"Seeds: {sorted({r['seed'] for r in runs})}. Training examples: {n_train}. "
        f"Machine: `{_machine(store)}`.",
        "",
    ]
    if options:
        lines += [f"Method options: {options}.", ""]
    if suite.report == "augment":
        from coreselect.bench.augment import write_augment_report

        path = write_augment_report(suite, store, out, lines)
        _plot(suite, runs, summary, out / "curves.png")
        return path
    full = summary["full"]
    if full:
        lines += [
            f"**full** (f = 1): {_pm(full['acc'], 100)} % test accuracy, "
            f"{_pm(full['wall'])} s wall ({full['n']} seeds).",
            "",
        ]
    if summary["chosen"]:
        lines += ["Chosen on validation (seed-0 runs, final validation accuracy):", ""]
        lines += [f"- {k.replace('|', ' at f=')}: {v}" for k, v in summary["chosen"].items()]
        lines += ["", _tuning_table(suite, runs), ""]
    for f, table in summary["fractions"].items():
        lines += [
            f"## f = {f:g}",
            "",
            "| method | test acc % | Δ vs random (95% CI) | Δ vs full-short (95% CI) | Δ vs full | "
            "wall s | wall / random | selection share | speedup to full−1 | speedup to full−2 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, s in table.items():
            lines.append(
                f"| {label} | {_pm(s['acc'], 100)} | {_ci(s['vs_random'])} | "
                f"{_ci(s['vs_full-short'])} | {_ci(s['vs_full'], ci=False)} | {_pm(s['wall'])} | "
                f"{_pm(s.get('wall_vs_random'), 1, 2)} | {_pm(s['select_share'], 100, 0)}% | "
                f"{_speed(s['speedup_1'])} | {_speed(s['speedup_2'])} |"
            )
        lines.append("")
    goals = goals_table(suite.name, summary)
    if goals:
        lines += ["## Goals", "", goals, ""]
    lines += ["## Where the time goes", "", _time_table(summary), ""]
    lines += notes_section(out)
    lines += [
        "Δ: paired differences of final test accuracy in points (mean and Student-t 95 % "
        "interval over seeds). Speedup: time for `full` to first reach (its final accuracy − 1 "
        "or − 2 points) on the per-epoch curve, divided by the method's time to reach the same "
        "accuracy, selection included; 'not reached' when the method never gets there.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    _plot(suite, runs, summary, out / "curves.png")
    return path


def _time_table(summary) -> str:
    """Per method and fraction: wall time, training steps, and the strategy's own timers."""
    rows = [
        "| method | f | wall s | training s | selection s | selection parts (s) and counts |",
        "|---|---|---|---|---|---|",
    ]
    for f, table in summary["fractions"].items():
        for label, s in table.items():
            if not s["select"][0]:
                continue
            parts = s["parts"]
            detail = ", ".join(
                f"{k.removesuffix('_s')} {v:.1f}" if k.endswith("_s") else f"{k} {v:.3g}"
                for k, v in parts.items()
                if k != "train_s"
            )
            rows.append(
                f"| {label} | {f:g} | {s['wall'][0]:.1f} | {parts['train_s']:.1f} | "
                f"{s['select'][0]:.1f} | {detail or '–'} |"
            )
    return "\n".join(rows)


def _tuning_table(suite, runs) -> str:
    rows = ["| method | f | candidate | validation acc % (seed 0) |", "|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["label"], r["fraction"], r["candidate"] or "")):
        if r["candidate"] and r["seed"] == min(x["seed"] for x in runs if x["label"] == r["label"]):
            rows.append(
                f"| {r['label']} | {r['fraction']:g} | {r['candidate']} | "
                f"{100 * _final_val(r):.2f} |"
            )
    return "\n".join(rows)


def _plot(suite, runs, summary, path):
    from coreselect.plots import plot_curves

    curves = {}
    chosen = summary["chosen"]
    for r in runs:
        key_f = f"{r['label']}|{r['fraction']:g}"
        if key_f in chosen and r["candidate"] != chosen[key_f]:
            continue
        label = f"{r['label']} f={r['fraction']:g}"
        curves.setdefault(label, []).append(_curve(r))
    mean_curves = {}
    for label, cs in curves.items():
        length = min(len(c) for c in cs)
        mean_curves[label] = [
            (
                float(np.mean([c[i][0] for c in cs])),
                float(np.mean([c[i][1] for c in cs if c[i][1] is not None])),
            )
            for i in range(length)
        ]
    plot_curves(mean_curves, path, title=f"{suite.name}: test accuracy vs wall time (seed mean)")


def _machine(store) -> str:
    m = store.get("machine", {})
    return (
        f"{m.get('cpu', '?')}, {m.get('threads', '?')} threads, {m.get('gpu', 'no GPU')}, "
        f"torch {m.get('torch', '?')}"
    )


def _pm(ms, scale: float = 1.0, digits: int = 1) -> str:
    if not ms or ms[0] is None or (isinstance(ms[0], float) and math.isnan(ms[0])):
        return "–"
    return f"{scale * ms[0]:.{digits}f} ± {scale * ms[1]:.{digits}f}"


def _ci(t, ci: bool = True) -> str:
    m, lo, hi = t
    if math.isnan(m):
        return "–"
    if not ci or math.isnan(lo):
        return f"{100 * m:+.2f}"
    return f"{100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def _speed(s) -> str:
    if not s["seeds"]:
        return "–"
    if not s["mean_std"]:
        return f"not reached (0/{s['seeds']})"
    m, sd = s["mean_std"]
    extra = "" if s["reached"] == s["seeds"] else f" ({s['reached']}/{s['seeds']} reached)"
    return f"{m:.2f}× ± {sd:.2f}{extra}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
