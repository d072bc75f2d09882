#!/usr/bin/env bash
# One lent-GPU session of itgan_jax as ONE command (the device tool: 15 minutes of device time per
# session in all, 10 minutes per command, 8 files back from $OUT). Prepare here first, then run:
#   bash experiments/device/prepare.sh
#   run(command="bash experiments/device/h200_session.sh", carry=[".whl", ".device_data"],
#       timeout_s=590)
# and record what it printed in RESULTS.md with the GPU named. With device time left, a second call
# trains another cell without the benchmarks, e.g. "BENCH_SECONDS=0 CELL_CONFIG=configs/mnist_ssl.py:prerelease
# bash experiments/device/h200_session.sh" (or LABELS=20|50|200). What comes back under $OUT:
#   env.txt    nvidia-smi, the Python/JAX versions and devices
#   bench.txt  benchmarks/mnist_step.py and benchmarks/cifar_step.py (FM and MD, synthetic data):
#              ms per iteration, FLOPs, share of the measured matmul throughput, on the GPU
#   cell.log   the MNIST 100-label cell (released protocol, configs/mnist_ssl.py): the 10 labeled
#              subsets as ONE vmapped program (experiments/table.py --vmap_seeds), then the table
#   cell.tgz   the cell's metrics.jsonl, final.json, config.json, curves.png, last sample grid and
#              table json/markdown (checkpoints stay behind: 30 MB a subset)
# Budget: BUDGET seconds in all (default 560, inside the command's 590); the benchmarks stop after
# BENCH_SECONDS (default 100); the cell gets the rest less 80 s, then SIGTERM (a checkpoint at the
# next chunk boundary; the metrics so far are kept) and the table over what finished.
# Dry run on a CPU (checks the plumbing, not the numbers):
#   OUT=/tmp/devout PYTHON=.venv/bin/python CELL_CONFIG=configs/mnist_ssl.py:tiny SUBSETS=2 \
#     BUDGET=300 BENCH_SECONDS=120 BENCH_ARGS_MNIST="--steps 5 --repeats 1 --compare_no_noise 0" \
#     BENCH_ARGS_CIFAR="--count_only --synthetic_data" bash experiments/device/h200_session.sh
# (add CELL_ARGS=--config.train.num_epochs=400 BUDGET=130 to see a cell cut by SIGTERM).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder whose files come back}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-560}
BENCH_SECONDS=${BENCH_SECONDS:-100}
CELL_CONFIG=${CELL_CONFIG:-configs/mnist_ssl.py}
SUBSETS=${SUBSETS:-10}
LABELS=${LABELS:-100}      # another cell: LABELS=20|50|200, or CELL_CONFIG=configs/mnist_ssl.py:prerelease
CELL_ARGS=${CELL_ARGS:-}   # more --config.* overrides for every subset (word-split)
BENCH_ARGS_MNIST=${BENCH_ARGS_MNIST:-"--steps 600 --repeats 2 --compare_no_noise 0"}
BENCH_ARGS_CIFAR=${BENCH_ARGS_CIFAR:-"--steps 5 --repeats 2 --synthetic_data"}
WORK=${WORK:-/tmp/itgan_device}
DATA=${DATA:-.device_data}   # holds mnist/*-ubyte.gz (prepare.sh)
export PYTHONUNBUFFERED=1
SECONDS=0

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { echo "installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
[ -f "$DATA/mnist/train-images-idx3-ubyte.gz" ] || {
  echo "no $DATA/mnist/*-ubyte.gz: run experiments/device/prepare.sh here and carry .device_data" >&2
  exit 1; }

{ date -u; git log -1 --format='commit %H' 2>/dev/null || true; nvidia-smi 2>&1 || true
  "$PYTHON" -c "import sys, jax, flax, optax; print(sys.version); print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$BENCH_SECONDS" -gt 0 ]; then   # BENCH_SECONDS=0: only the cell (a second call)
echo "== benchmarks (at most ${BENCH_SECONDS} s) =="
{ timeout "$BENCH_SECONDS" "$PYTHON" benchmarks/mnist_step.py --data_dir="$DATA" $BENCH_ARGS_MNIST
  left=$((BENCH_SECONDS - SECONDS)); [ "$left" -gt 20 ] &&
    timeout "$left" "$PYTHON" benchmarks/cifar_step.py --configs configs/cifar10_ssl.py \
        configs/cifar10_ssl.py:md $BENCH_ARGS_CIFAR
} 2>&1 | grep --line-buffered -v "^W[0-9]* \|UserWarning\|warnings.warn" | tee "$OUT/bench.txt"
fi

cell_seconds=$((BUDGET - SECONDS - 80))
echo "== the cell ($CELL_CONFIG, $LABELS labels): $SUBSETS subsets vmapped, at most ${cell_seconds} s =="
rm -rf "$WORK" && mkdir -p "$WORK"
table=(experiments/table.py --config="$CELL_CONFIG" --labels="$LABELS" --subsets="$SUBSETS"
       --workdir_root="$WORK/table" --config.data.dir="$DATA" --config.log.progress=False
       --markdown="$WORK/table/table.md" --vmap_seeds --config.checkpoint.every_epochs=50 $CELL_ARGS)
timeout -s TERM -k 30 "$cell_seconds" "$PYTHON" "${table[@]}" --run 2>&1 \
    | grep --line-buffered -v "UserWarning\|warnings.warn" | tee "$OUT/cell.log"
echo "== the table over what finished ==" | tee -a "$OUT/cell.log"
timeout 35 "$PYTHON" "${table[@]}" 2>&1 | grep --line-buffered -v "UserWarning\|warnings.warn" | tee -a "$OUT/cell.log"

(cd "$WORK" && {
  find table -maxdepth 2 -type f \( -name metrics.jsonl -o -name final.json -o -name config.json \
      -o -name curves.png -o -name 'table*' \)
  for d in table/*/samples*; do [ -d "$d" ] && find "$d" -name '*.png' | sort | tail -1; done
} > files.txt; tar czf "$OUT/cell.tgz" -T files.txt)
ls -la "$OUT"
echo "done in ${SECONDS} s"
