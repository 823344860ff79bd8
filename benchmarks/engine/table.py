"""Render benchmarks/results/engine.json as the markdown table of benchmarks/README.md."""

from __future__ import annotations

import json
import sys


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def threads(r: dict) -> str:
    """Thread count, with the BLAS threads when they were held lower (apricot64-mt)."""
    if r.get("blas_threads"):
        return f"{r['threads']} (BLAS {r['blas_threads']})"
    return str(r["threads"])


def table(result: dict) -> str:
    lines = [
        "| impl | optimizer | ε | mode | threads | n | k | cold s | warm s | kernel s | "
        "greedy s | peak MB | cost ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        if "error" in r:
            lines.append(
                f"| {r['impl']} | {r['optimizer']} | {fmt(r.get('epsilon'))} | "
                f"{r['mode']} | {r['threads']} | {r['n']} | {r['k']} | "
                f"error: {r['error'][:60]} |||||"
            )
            continue
        lines.append(
            f"| {r['impl']} | {r['optimizer']} | {fmt(r.get('epsilon'))} | {r['mode']} | "
            f"{threads(r)} | {r['n']} | {r['k']} | {fmt(r['cold_s'])} | "
            f"{fmt(r.get('seconds'))} | {fmt(r['kernel_s'])} | {fmt(r['greedy_s'])} | "
            f"{fmt(r['peak_mb'], 0)} | {fmt(r.get('cost_ratio'), 4)} |"
        )
    return "\n".join(lines)


def main(path: str) -> None:
    res = json.load(open(path))
    print(table(res))
    if res.get("floor"):
        f = res["floor"]
        cold = f"(cold torch.empty + mm: {f['cold_alloc_gemm_s']:.2f} s)"
        if f.get("alloc_populate_s") is None:  # runs before the eleventh session, or refused
            touch = f"alloc+touch {f['alloc_touch_s']:.2f} s"
        else:  # each part in its own fresh process
            touch = (
                f"alloc + first touch (fill_ {f['alloc_touch_s']:.2f} s, "
                f"madvise {f['alloc_populate_s']:.2f} s)"
            )
        print(f"\nfloor: {touch} + GEMM {f['gemm_s']:.2f} s = {f['floor_s']:.2f} s {cold}")
    print()
    for k, v in res.get("ratios", {}).items():
        print(f"- {k}: {v}")
    for extra in res.get("extra", []):
        print()
        print(table(extra))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/engine.json")
