#!/usr/bin/env bash
# The GPU checks, run once on a lent CUDA machine (this workplace's `device` tool) from the repository
# root, with only the wheels carried to it (.whl/: lightgbm, platformdirs):
#   1. the precision/CUDA-graph tests with a GPU present;
#   2. eager vs CUDA-graph (fp32, fp16) whole-model latency of the zoo, side by side;
#   3. profiling and predictor accuracy on the CUDA-graph device (held-out families);
#   4. the quickstart on cuda-torch, timed.
# Everything goes to $OUT (default benchmarks/out/gpu): session.log (all text), JSON, the plot, the
# store (xz) and the quickstart's summary; at most 8 files (the device tool's limit).
# Budgets (seconds) are environment variables: TEST_TIMEOUT, ZOO_TIMEOUT, PA_TIMEOUT, QS_TIMEOUT.
set -uo pipefail
OUT=${OUT:-benchmarks/out/gpu}; mkdir -p "$OUT"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
stage() { echo "== $1 ($(date +%T))" | tee -a "$LOG"; }
stage "environment"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
  python3 -c "import torch, onnxruntime, lightgbm; print('torch', torch.__version__, torch.cuda.get_device_name(), 'ort', onnxruntime.__version__, 'lgbm', lightgbm.__version__)"
  lscpu | grep -E "Model name|^CPU\(s\)"; } 2>&1 | tee -a "$LOG"

stage "tests with a GPU present"
timeout "${TEST_TIMEOUT:-60}" python3 -m pytest -q -p no:cacheprovider tests/test_precision.py 2>&1 | tail -8 | tee -a "$LOG"

stage "zoo: eager vs CUDA graphs (fp32, fp16), 224 px, batch 1"
timeout "${ZOO_TIMEOUT:-90}" python3 benchmarks/zoo_latency.py --devices cuda-torch-eager cuda-torch cuda-torch-fp16 \
  --resolution 224 --json "$OUT/zoo_latency_gpu.json" 2>&1 | grep -v Warning | tee -a "$LOG"

stage "predictor accuracy on cuda-torch (CUDA graphs)"
DB=/tmp/cuda.sqlite
[ -f gpu_carry/cuda.sqlite.xz ] && xz -dc gpu_carry/cuda.sqlite.xz > $DB
timeout "${PA_TIMEOUT:-300}" python3 benchmarks/predictor_accuracy.py --device cuda-torch --db $DB ${PA_ARGS:-} \
  --json "$OUT/predictor_accuracy_cuda.json" --plot "$OUT/predictor_accuracy_cuda.png" 2>&1 \
  | grep -v -e "━" -e Warning | tail -45 | tee -a "$LOG"
python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for t in ("op_measurements", "model_measurements"):
    c.execute(f"update {t} set samples_json='[]'")
c.commit(); c.execute("vacuum")
PY
xz -T16 -6 -c $DB > "$OUT/cuda.sqlite.xz"

stage "quickstart on cuda-torch"
START=$(date +%s)
timeout "${QS_TIMEOUT:-200}" python3 -m hwnas quickstart --device cuda-torch --out /tmp/qs-cuda 2>&1 \
  | grep -v -e "━" -e Warning | tail -30 | tee -a "$LOG"
echo "quickstart rc=${PIPESTATUS[0]} in $(( $(date +%s) - START )) s" | tee -a "$LOG"
[ -f /tmp/qs-cuda/quickstart.json ] && cp /tmp/qs-cuda/quickstart.json "$OUT/quickstart_cuda.json"
stage "done"
ls -la "$OUT" | tee -a "$LOG"
