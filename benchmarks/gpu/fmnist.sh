#!/usr/bin/env bash
# fmnist-gpu suite (DESIGN.md §5): results append run by run, so a cut-off run keeps what finished.
set -uo pipefail
export PYTHONPATH="$PWD/src" CORESELECT_DATA="$PWD/.data"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT/fmnist-gpu"
timeout 470 python3 -m coreselect.cli bench train --suite fmnist-gpu --out "$OUT/fmnist-gpu"
python3 -m coreselect.cli bench train --suite fmnist-gpu --out "$OUT/fmnist-gpu" --report-only
