#!/usr/bin/env bash
# Engine on CUDA: the property tests, then n=100k, d=512, one pool, fraction 0.1.
set -uo pipefail
export PYTHONPATH="$PWD/src" CORESELECT_DATA="$PWD/.data"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 -m pytest -q -x -k cuda tests/test_submodular_engine.py \
    tests/test_submodular_grouped.py tests/test_submodular_memory.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
timeout 200 python3 -m coreselect.cli bench engine --n 100000 --d 512 --fraction 0.1 \
    --data blobs --device cuda --ours lazy,stochastic --repeats 2 --out "$OUT/engine-gpu.json"
