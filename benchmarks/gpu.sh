#!/usr/bin/env bash
# The GPU tables of BENCHMARKS.md in one run (about 9 minutes at most): overhead.py on
# the MLP and the CNN with the default selection (auto: the sort on a GPU), the
# selection, sparse-training and in-place tests on the GPU, then the mask-updating rows
# with the counting selection (MLP and CNN) and the radix select (MLP; its CNN rows did
# not finish in 130 s on an H200). Each part runs under its own time limit and writes as
# it goes, so a part that fails or runs out of time leaves the others' results.
#
# Usage (from the repository root, jax with CUDA installed; jaxprune needs no install):
#   bash benchmarks/gpu.sh   # or OUT=DIR bash benchmarks/gpu.sh
# Writes to $OUT: log.txt (every table and the tests' output), gpu_{mlp,cnn}_{auto,count}.json, gpu_mlp_radix.json.
set -uo pipefail
out=${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxprune-jax-cache}
py=${PYTHON:-python3}
log=$out/log.txt

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$log"

part() {  # part SECONDS NAME COMMAND...: one timed part, its output in the log
  local seconds=$1 name=$2
  shift 2
  echo -e "\n=== $name ($(date -u +%T), limit ${seconds}s): $*" | tee -a "$log"
  timeout "$seconds" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}

few="mask update,step + mask update,gradual every 100,RigL every 100,RigL update step,straight-through"
part 80 "MLP, auto" $py benchmarks/overhead.py --models mlp --rounds 30 --calls 50 \
  --json "$out/gpu_mlp_auto.json"
part 150 "CNN, auto" $py benchmarks/overhead.py --models cnn --rounds 20 --calls 20 \
  --json "$out/gpu_cnn_auto.json"
# The default options need plugins the GPU image may lack (nbmake): set them here.
part 60 "tests on the GPU" $py -m pytest -o addopts="" -p no:cacheprovider \
  --import-mode=importlib -m "not slow" -q -rfE \
  tests/test_select.py tests/test_inplace.py tests/test_dynamic.py
part 50 "MLP, count" $py benchmarks/overhead.py --models mlp --rounds 30 --calls 50 \
  --method count --variants "$few" --json "$out/gpu_mlp_count.json"
part 130 "CNN, count" $py benchmarks/overhead.py --models cnn --rounds 20 --calls 20 \
  --method count --variants "$few" --json "$out/gpu_cnn_count.json"
part 50 "MLP, radix" $py benchmarks/overhead.py --models mlp --rounds 30 --calls 50 \
  --method radix --variants "$few" --json "$out/gpu_mlp_radix.json"
