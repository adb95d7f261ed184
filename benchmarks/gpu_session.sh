#!/usr/bin/env bash
# The GPU checks, run on a lent CUDA machine (this workplace's `device` tool) from the repository root:
#   the test suite with a GPU present, the cuda-torch profiler and predictor accuracy, and proxy training
#   on CPU vs CUDA. Results go to $OUT (default benchmarks/out/gpu).
# Wheels the machine lacks (lightgbm, onnx2torch, platformdirs) are installed from .whl/ when present.
# A store carried in gpu_carry/cuda.sqlite.xz is resumed (the profile store skips what it holds).
set -uo pipefail
OUT=${OUT:-benchmarks/out/gpu}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
PA_TIMEOUT=${PA_TIMEOUT:-300}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/env.txt"
python3 -c "import torch, onnxruntime, lightgbm; print('torch', torch.__version__, torch.cuda.get_device_name(), 'ort', onnxruntime.__version__, 'lgbm', lightgbm.__version__)" | tee -a "$OUT/env.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/env.txt"

echo "== predictor accuracy on cuda-torch"
DB=/tmp/cuda.sqlite
[ -f gpu_carry/cuda.sqlite.xz ] && xz -dc gpu_carry/cuda.sqlite.xz > $DB
timeout "$PA_TIMEOUT" python3 benchmarks/predictor_accuracy.py --device cuda-torch --db $DB ${PA_ARGS:-} \
  --json "$OUT/predictor_accuracy_cuda.json" --plot "$OUT/predictor_accuracy_cuda.png" 2>&1 | grep -v "━" | tail -40 | tee "$OUT/predictor_accuracy.txt"
echo "predictor_accuracy rc=$?"
sqlite3 $DB "update op_measurements set samples_json='[]'; update model_measurements set samples_json='[]'; vacuum;" 2>/dev/null \
  || python3 -c "import sqlite3; c=sqlite3.connect('$DB'); c.execute(\"update op_measurements set samples_json='[]'\"); c.execute(\"update model_measurements set samples_json='[]'\"); c.commit(); c.execute('vacuum')"
xz -T16 -6 -c $DB > "$OUT/cuda.sqlite.xz"; ls -la "$OUT"
echo "== tests with a GPU present"
[ "${SKIP_TESTS:-0}" = 1 ] || timeout ${TEST_TIMEOUT:-80} python3 -m pytest -q -p no:cacheprovider -x tests/test_backends.py tests/test_devices.py tests/test_cli.py 2>&1 | tee "$OUT/pytest.txt" | tail -15

echo "== proxy training, cpu vs cuda"
timeout ${PROXY_TIMEOUT:-90} python3 - <<'PY' 2>&1 | tee "$OUT/proxy_training.txt"
import time, torch
from hwnas.search.spaces import create_space
from hwnas.search import ProxyTrainingEvaluator
space = create_space("nb201")
import numpy as np
archs = [space.sample(np.random.default_rng(s)) for s in range(3)]
for dev in ("cpu", "cuda"):
    ev = ProxyTrainingEvaluator(space, epochs=3, resolution=32, device=dev)
    ev(archs[0])  # warm-up (cuDNN autotune, allocator)
    t = time.perf_counter(); accs = [ev(a) for a in archs]; dt = (time.perf_counter() - t) / len(archs)
    print(f"{dev}: {dt:.2f} s per candidate (3 epochs, nb201 cells on digits at 32x32, torch threads {torch.get_num_threads()}), accuracies {[round(a, 3) for a in accs]}")
PY

