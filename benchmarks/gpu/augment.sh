#!/usr/bin/env bash
# fmnist-augment-gpu suite; results append run by run.
set -uo pipefail
export PYTHONPATH="$PWD/src" CORESELECT_DATA="$PWD/.data"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT/fmnist-augment-gpu"
timeout 560 python3 -m coreselect.cli bench train --suite fmnist-augment-gpu \
    --out "$OUT/fmnist-augment-gpu"
python3 -m coreselect.cli bench train --suite fmnist-augment-gpu \
    --out "$OUT/fmnist-augment-gpu" --report-only
