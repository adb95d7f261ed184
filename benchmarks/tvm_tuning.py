"""Tuned TVM against untuned TVM and ONNX Runtime on zoo models, with the tuning time.

Each model is measured whole through the profiler (the statistics and convergence rule of
``hwnas profile-model``) on ``cpu-ort``, untuned ``cpu-tvm`` and ``cpu-tvm`` tuned by MetaSchedule for
each budget (trials per task). Every budget has its own tuning database in ``--workdir``, so its
tuning time is what that budget costs; a task the models share is tuned once per budget (the
time is charged to the first model that has it). Everything runs in one process, side by side.

    python benchmarks/tvm_tuning.py --budgets 8 32 --resolution 96 --json benchmarks/results/tvm_tuning.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hwnas import get_device, tuned_device, zoo
from hwnas.errors import HwnasError
from hwnas.profilers import Profiler
from hwnas.profilers._tvm_tune import STATS

#: (family, width) measured by default: one inverted-residual, one residual and one fire-module net
MODELS = [("mobilenetv2", 0.5), ("resnet", 0.5), ("squeezenet", 1.0)]


def measure_device(device, models, workdir: Path) -> dict[str, dict[str, float]]:
    """``{model: {"latency_ms", "tuning_s", "tuned_tasks", "reused_tasks"}}`` on one device."""
    profiler = Profiler(device)
    out = {}
    for m in models:
        before = STATS.as_dict()
        start = time.perf_counter()
        latency = profiler.profile_model(m.onnx, name=m.name, breakdown_runs=0).latency_ms
        after = STATS.as_dict()
        out[m.name] = {"latency_ms": latency, "wall_s": round(time.perf_counter() - start, 1),
                       "tuning_s": round(after["tuning_s"] - before["tuning_s"], 1),
                       "tuned_tasks": after["tuned_tasks"] - before["tuned_tasks"],
                       "reused_tasks": after["reused_tasks"] - before["reused_tasks"]}
        print(f"  {device.name} {m.name}: {latency:.3f} ms ({out[m.name]})", flush=True)
    return out


def run(budgets: list[int], resolution: int, workdir: Path, families: list[tuple[str, float]]) -> dict:
    models = [zoo.create(f, w, resolution, 1000) for f, w in families]
    columns = {"cpu-ort": get_device("cpu-ort"), "cpu-tvm": get_device("cpu-tvm")}
    for n in budgets:
        columns[f"cpu-tvm tuned {n}"] = tuned_device(get_device("cpu-tvm"), n, workdir / "store.sqlite")
    results = {}
    for label, device in columns.items():
        print(f"{label}:", flush=True)
        results[label] = measure_device(device, models, workdir)
    return {"resolution": resolution, "budgets": budgets, "models": [m.name for m in models], "results": results}


def table(res: dict) -> str:
    labels = list(res["results"])
    head = ("| model | " + " | ".join(f"{c} (ms)" for c in labels)
            + " | " + " | ".join(f"tuning {n} (s)" for n in res["budgets"]) + " |")
    rows = [head, "|" + "---|" * (1 + len(labels) + len(res["budgets"]))]
    for m in res["models"]:
        lat = [f"{res['results'][c][m]['latency_ms']:.3f}" for c in labels]
        tun = [f"{res['results'][f'cpu-tvm tuned {n}'][m]['tuning_s']:.0f}" for n in res["budgets"]]
        rows.append(f"| {m} | " + " | ".join(lat + tun) + " |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--models", nargs="+", help="family:width pairs (default: " +
                    " ".join(f"{f}:{w:g}" for f, w in MODELS) + ")")
    ap.add_argument("--workdir", help="where the tuning databases go (default: a temporary directory)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    families = [(s.split(":")[0], float(s.split(":")[1])) for s in args.models] if args.models else MODELS
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hwnas-tune-bench-"))
    try:
        res = run(args.budgets, args.resolution, workdir, families)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(res))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
