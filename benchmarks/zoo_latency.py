"""Whole-model latency of the zoo's classic CNNs on several devices side by side.

Every model is measured on every device through the profiler (the same statistics and convergence
rule as ``hwnas profile-model``), device after device within one run, so the ratios compare
like with like. On a GPU: eager PyTorch against CUDA graphs in fp32 and fp16; on the CPU: fp32
against int8 ONNX Runtime.

    python benchmarks/zoo_latency.py --devices cuda-torch-eager cuda-torch cuda-torch-fp16 \\
        [--resolution 224] [--json OUT] [--db STORE]
    python benchmarks/zoo_latency.py --devices cpu-ort cpu-ort-int8 --resolution 96
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hwnas import get_device, zoo
from hwnas.errors import HwnasError
from hwnas.profilers import Profiler, ProfileStore

#: (family, width): MobileNetV2 at three widths and one of each other family
MODELS = [("mobilenetv2", 0.5), ("mobilenetv2", 1.0), ("mobilenetv2", 1.4), ("efficientnet", 1.0),
          ("mnasnet", 1.0), ("resnet", 1.0), ("resnet", 0.5), ("squeezenet", 1.0)]


def measure(devices: list[str], resolution: int, db: str | None) -> dict[str, dict[str, float]]:
    """``{model: {device: ms}}``; each device's models are measured in one pass."""
    store = ProfileStore(db) if db else None
    models = [zoo.create(f, w, resolution, 1000) for f, w in MODELS]
    out: dict[str, dict[str, float]] = {m.name: {} for m in models}
    for name in devices:
        profiler = Profiler(get_device(name), store=store)
        start = time.perf_counter()
        for m in models:
            out[m.name][name] = profiler.profile_model(m.onnx, name=m.name, breakdown_runs=0).latency_ms
        print(f"{name}: {len(models)} models in {time.perf_counter() - start:.1f} s "
              f"(fingerprint {profiler.fingerprint.id}, {profiler.fingerprint.runtime_version})", flush=True)
    return out


def table(results: dict[str, dict[str, float]], devices: list[str]) -> str:
    base = devices[0]
    head = "| model | " + " | ".join(f"{d} (ms)" for d in devices) + " | " + " | ".join(
        f"{base} / {d}" for d in devices[1:]) + " |"
    rows = [head, "|" + "---|" * (1 + 2 * len(devices) - 1)]
    for model, ms in results.items():
        cells = [f"{ms[d]:.3f}" for d in devices] + [f"{ms[base] / ms[d]:.2f}x" for d in devices[1:]]
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", nargs="+", required=True)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--db", help="a profile store to record into (optional)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    try:
        results = measure(args.devices, args.resolution, args.db)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(results, args.devices))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"resolution": args.resolution, "devices": args.devices, "latency_ms": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
