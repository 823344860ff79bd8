#!/bin/bash
# Reproduce benchmarks/results/engine.json (about 30 minutes on 2 cores).
# Needs the bench extra: pip install -e '.[bench]'  (apricot-select, submodlib-py).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-benchmarks/results/engine.json}  # OUT=path writes elsewhere
coreselect bench engine --n 30000 --d 64 --fraction 0.1 --data fmnist --threads 2 \
    --compare apricot,apricot64,apricot64-mt,submodlib --out "$out"
coreselect bench engine --n 300000 --d 64 --fraction 0.01 --data blobs --threads 2 \
    --ours knn --repeats 0 --append --out "$out"
python benchmarks/engine/table.py "$out"
