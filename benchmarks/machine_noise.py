"""Is this machine quiet enough to check a latency predictor? Whole models timed back to back.

Each zoo model is measured through the profiler (the same statistics and convergence rule as
``hwnas profile-model``) ``--repeats`` times in a row on each device, with nothing in between;
reported per model: the spread of those latencies (largest / smallest - 1) and how many lie within
+-10% and +-5% of the smallest; the same for each measurement's 10th percentile and fastest run
(statistics a busy machine moves less, since contention only adds time). On a quiet machine the spread is a few tenths of a percent
(fp32 ``cpu-ort``, BENCHMARKS.md); where it reaches 10%, no predictor can be checked to +-10%.

    python benchmarks/machine_noise.py [--devices cpu-ort cpu-ort-int8] [--resolution 128]
        [--repeats 10] [--with-reference] [--json OUT]

``--with-reference``: the models are measured in rounds, each with the drift guard's reference op
timed just before and after it, to see whether that reference tracks the models' slowdowns
(its spread, the correlation, the models' spread normalised by it, and how far the models
measured in the same round move together).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hwnas import get_device, zoo
from hwnas.errors import HwnasError
from hwnas.profilers import OpConfig, Profiler, default_reference

#: (family, width): one model of three families
MODELS = [("efficientnet", 0.75), ("squeezenet", 1.0), ("mobilenetv2", 1.0)]


def spread(values: list[float]) -> dict[str, float]:
    """How far repeated latencies of one model agree."""
    a = np.asarray(values, dtype=float)
    return {"spread": float(a.max() / a.min() - 1), "within_10": float(np.mean(a <= 1.10 * a.min())),
            "within_5": float(np.mean(a <= 1.05 * a.min()))}


def run(devices: list[str], resolution: int, repeats: int, with_reference: bool = False) -> dict[str, dict[str, dict]]:
    """``{device: {model: {"ms": [...], "spread": ..., ...}}}``; with ``with_reference``, the models
    are measured in rounds (each model once per round) with the drift guard's reference op timed
    just before and after each, and :func:`reference_check` is added per model."""
    models = [zoo.create(f, w, resolution, 1000) for f, w in MODELS]
    out: dict[str, dict[str, dict]] = {}
    for name in devices:
        profiler = Profiler(get_device(name))
        ref = OpConfig.parse(default_reference(profiler.device))
        stats: dict[str, list] = {m.name: [] for m in models}
        refs: dict[str, list[float]] = {m.name: [] for m in models}
        order = [m for _ in range(repeats) for m in models] if with_reference else \
            [m for m in models for _ in range(repeats)]
        for m in order:
            before = profiler.profile_op(ref).latency_ms if with_reference else None
            stats[m.name].append(profiler.profile_model(m.onnx, name=m.name, breakdown_runs=0).stats)
            if with_reference:
                refs[m.name].append(float(np.sqrt(before * profiler.profile_op(ref).latency_ms)))
        out[name] = {m.name: summarise(stats[m.name], refs[m.name]) for m in models}
        for m in models:
            r = out[name][m.name]
            print(f"{name} {m.name}: {min(r['ms']):.3f}-{max(r['ms']):.3f} ms, spread {100 * r['spread']:.1f}%, "
                  f"within +-10% of the fastest {100 * r['within_10']:.0f}%, +-5% {100 * r['within_5']:.0f}%; "
                  f"by each measurement's 10th percentile: spread {100 * r['p10']['spread']:.1f}%, "
                  f"fastest run: {100 * r['min']['spread']:.1f}%", flush=True)
            if with_reference:
                c = r["reference"]
                print(f"  reference {c['reference_spread']:.1%} spread, correlation with the model "
                      f"{c['correlation']:.2f}, model normalised by it: spread {c['normalised_spread']:.1%}", flush=True)
        if with_reference:
            out[name]["rounds_correlation"] = rounds_correlation([[s.latency_ms for s in stats[m.name]] for m in models])
            print(f"  models measured in the same round, pairwise correlation: {out[name]['rounds_correlation']}")
    return out


def summarise(stats: list, refs: list[float]) -> dict:
    ms = [s.latency_ms for s in stats]
    p10, low = [s.p10_ms for s in stats], [s.min_ms for s in stats]
    r = {"ms": ms, **spread(ms), "p10_ms": p10, "p10": spread(p10), "min_ms": low, "min": spread(low)}
    if refs:
        r["reference"] = reference_check(ms, refs)
    return r


def reference_check(ms: list[float], refs: list[float]) -> dict[str, float]:
    """Does the reference op track the model? Its spread, the correlation of the logs, and the
    spread of the model's latencies divided by the reference's speed factor (reading / fastest)."""
    a, b = np.log(ms), np.log(refs)
    norm = np.asarray(ms) / (np.asarray(refs) / min(refs))
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    return {"ref_ms": list(refs), "reference_spread": float(max(refs) / min(refs) - 1), "correlation": corr,
            "normalised_spread": float(norm.max() / norm.min() - 1)}


def rounds_correlation(series: list[list[float]]) -> list[float]:
    """Pairwise correlation of the models' log latencies across rounds (do they move together?)."""
    c = np.corrcoef(np.log(np.asarray(series)))
    return [round(float(c[i, j]), 2) for i in range(len(series)) for j in range(i + 1, len(series))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs="+", default=["cpu-ort", "cpu-ort-int8"])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--with-reference", action="store_true",
                    help="measure in rounds with the drift guard's reference op timed around each model")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    if args.repeats < 2:
        ap.error(f"--repeats must be >= 2; got {args.repeats}")  # exit code 2
    if args.resolution < 32:
        ap.error(f"--resolution must be >= 32; got {args.resolution}")
    try:
        for name in args.devices:
            get_device(name)
        result = run(args.devices, args.resolution, args.repeats, args.with_reference)
    except HwnasError as exc:  # an unknown device lists the known ones
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"resolution": args.resolution, "repeats": args.repeats,
                                                   "devices": result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
