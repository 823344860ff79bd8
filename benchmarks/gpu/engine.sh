#!/usr/bin/env bash
# Engine on CUDA: the property tests, then n=100k, d=512, one pool, fraction 0.1.
set -uo pipefail
export PYTHONPATH="$PWD/src" CORESELECT_DATA="$PWD/.data"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 -m pytest -q -x -k cuda tests/test_submodular_engine.py \
    tests/test_submodular_grouped.py tests/test_submodular_memory.py \
    tests/test_submodular_resident.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
# the dense build on CUDA (one transposed copy per block): symmetric, and its upper triangle
# the very products a whole-matrix GEMM gives (True expected for every metric and size)
timeout 60 python3 -c "
import torch
from coreselect.submodular.facility_location import make_oracle
from coreselect.submodular.kernels import cost_tile, prepare_features
for m in ('euclidean', 'rbf', 'cosine'):
    for n, d in ((37, 3), (3001, 17), (20000, 512)):
        X = torch.randn(n, d, device='cuda')
        C = make_oracle(X, m, 'dense').C
        D = cost_tile(*(2 * [prepare_features(X, m)])).fill_diagonal_(0)
        up = torch.ones(n, n, dtype=torch.bool, device='cuda').triu(1)
        err = (C - D)[up].abs().max().item()
        print('dense', m, n, d, 'symmetric', bool(torch.equal(C, C.T)), 'max |C - GEMM|', err)
" 2>&1 | tee "$OUT/symmetry.txt"
timeout 200 python3 -m coreselect.cli bench engine --n 100000 --d 512 --fraction 0.1 \
    --data blobs --device cuda --ours lazy,stochastic --repeats 2 --out "$OUT/engine-gpu.json"
# the lazy greedy's paths on one built matrix: host-driven batched rounds against the
# resident greedy, eager and as CUDA graphs (same picks asked)
timeout 120 python3 benchmarks/gpu/greedy_paths.py --n 100000 --d 512 --fraction 0.1 \
    --device cuda --out "$OUT/engine-gpu-greedy-paths.json"
