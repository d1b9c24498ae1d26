#!/usr/bin/env bash
# The GPU tables of BENCHMARKS.md in one run (at most BUDGET seconds, 570 by default),
# most important first: overhead.py on the CNN and the MLP with the default selection
# (auto: the sort on a GPU); the steps that matter for the targets again with XLA:GPU's
# command buffers (CUDA graphs) extended to conditionals and loops; the anatomy
# (kernels, device time, optimized HLO) of the CNN's dense step and RigL update steps
# (decided on the device, and told by the host); the counting selection, whose branches
# hold no library calls, with conditionals in command buffers; the selection tests on
# the GPU. Each part runs under its own time limit and writes as it goes, so a part that
# fails or runs out of time leaves the others' results.
#
# Usage (from the repository root, jax with CUDA installed; jaxprune needs no install):
#   bash benchmarks/gpu.sh   # or OUT=DIR bash benchmarks/gpu.sh
# Writes to $OUT: log.txt (every table and the tests' output), gpu_{cnn,mlp}_auto.json,
# gpu_cmdbuf.json, gpu_cnn_count_cmdbuf.json, anatomy/{anatomy.json,hlo.tar.gz}.
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

# All parts together stay within BUDGET seconds (a device command may run 600 s): a part
# gets its own limit or what is left of the budget, whichever is less, and is skipped
# when less than 20 s is left.
budget=${BUDGET:-570}
part() {  # part SECONDS NAME COMMAND...: one timed part, its output in the log
  local seconds=$1 name=$2 left=$((budget - SECONDS))
  shift 2
  if ((left < 20)); then
    echo -e "\n=== $name: skipped, ${left}s of the budget left" | tee -a "$log"
    return
  fi
  ((seconds > left)) && seconds=$left
  echo -e "\n=== $name ($(date -u +%T), limit ${seconds}s): $*" | tee -a "$log"
  timeout "$seconds" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}

host="RigL every 100 (host-scheduled),RigL update step (host-scheduled)"
targets="masked,RigL every 100,RigL update step,$host,straight-through"
part 200 "CNN, auto" $py benchmarks/overhead.py --models cnn --rounds 20 --calls 20 \
  --json "$out/gpu_cnn_auto.json"
# Conditionals and loops inside CUDA graphs: a lax.cond's predicate need not go to the host.
part 120 "MLP and CNN, command buffers with conditionals" \
  env XLA_FLAGS="--xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE" \
  $py benchmarks/overhead.py --models mlp,cnn --rounds 15 --calls 20 \
  --variants "dense (again),$targets" --json "$out/gpu_cmdbuf.json"
part 70 "CNN anatomy" $py benchmarks/anatomy.py --models cnn --calls 10 \
  --variants "dense,RigL update step,RigL update step (host-scheduled)" --out "$out/anatomy"
rm -f "$out"/anatomy/trace_*.json.gz  # too large to keep; the summary has its counts
part 70 "MLP, auto" $py benchmarks/overhead.py --models mlp --rounds 20 --calls 50 \
  --json "$out/gpu_mlp_auto.json"
# The device-decided RigL step with the counting selection (fusions and reductions only):
# a conditional whose branch holds no library call may become a CUDA-graph node.
part 70 "CNN, count, command buffers with conditionals" \
  env XLA_FLAGS="--xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE" \
  $py benchmarks/overhead.py --models cnn --rounds 15 --calls 20 --method count \
  --variants "dense (again),RigL every 100,RigL update step" \
  --json "$out/gpu_cnn_count_cmdbuf.json"
# The default options need plugins the GPU image may lack (nbmake): set them here.
part 40 "selection tests on the GPU" $py -m pytest -o addopts="" -p no:cacheprovider \
  --import-mode=importlib -m "not slow" -q -rfE tests/test_select.py
