"""Profiler stability benchmark (issue: foundation).

Profiles a fixed set of >= 30 op configurations twice on a device and reports the pass-to-pass
relative difference of the medians and ops profiled per minute (model building, session creation,
warm-up and timing all included); then compares hwnas's whole-model latency for 3 models with a
plain ``InferenceSession.run`` timing loop.

    python benchmarks/profiler_stability.py [--device cpu-ort] [--op-passes 1 [3 ...]] [--json OUT]

``--op-passes K ...``: each of the two profiles measures every op in K passes and keeps its fastest
(``Profiler.profile_ops(passes=K)``); several values are measured side by side, one after the other
in one run (the targets and the last line are for the first).

Targets (2-core machine): median pass-to-pass difference <= 2%; whole-model within +-5% of the
plain loop; >= 60 op configurations profiled per minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

from hwnas.devices import default_registry
from hwnas.profilers import fingerprint
from hwnas.devices import resolve_threads
from hwnas.profilers import Act, OpConfig, OpType, Profiler, build_sequence_onnx, governor_warning
from hwnas.profilers import mobilenetv2_layers, op_set
from hwnas.profilers import random_inputs


def vgg_like(resolution: int = 64) -> list[OpConfig]:
    r, cin, layers = resolution, 3, []
    for c in (16, 32, 64):
        layers.append(OpConfig(OpType.CONV, cin, c, r, r, kernel=3, act=Act.RELU))
        layers.append(OpConfig(OpType.CONV, c, c, r, r, kernel=3, act=Act.RELU))
        layers.append(OpConfig(OpType.MAXPOOL, c, h=r, w=r, kernel=3, stride=2))
        r, cin = layers[-1].out_hw[0], c
    return layers + [OpConfig(OpType.GAP, cin, h=r, w=r), OpConfig(OpType.LINEAR, cin, 10)]


def plain_loop_ms(model, device, seconds: float = 2.0) -> float:
    """The reference: a bare ONNX Runtime session with the same options, timed run by run."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = resolve_threads(device.options.intra_op_threads)
    so.inter_op_num_threads = resolve_threads(device.options.inter_op_threads)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = random_inputs(model)
    for _ in range(20):
        sess.run(None, feeds)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--op-passes", type=int, nargs="+", default=[1])
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if min(args.op_passes) < 1:
        ap.error("--op-passes must be >= 1")  # exit code 2
    device = default_registry().get(args.device)
    warn = governor_warning()
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    configs = op_set("stability")
    profiler = Profiler(device)
    per_k = {}
    for k in args.op_passes:
        runs = []
        for i in (1, 2):
            run = profiler.profile_ops(configs, passes=k)
            print(f"op passes {k}, profile {i}: {len(run.measured)} ops in {run.elapsed_s:.1f} s = "
                  f"{run.ops_per_minute:.0f} ops/min")
            runs.append(run)
        a = np.array([m.latency_ms for m in runs[0].measured])
        b = np.array([m.latency_ms for m in runs[1].measured])
        rel_k = np.abs(a - b) / ((a + b) / 2)
        per_k[k] = {"runs": runs, "rel": rel_k}
        print(f"op passes {k}: profile-to-profile relative difference: median {100 * np.median(rel_k):.2f}%, p90 "
              f"{100 * np.percentile(rel_k, 90):.2f}%, max {100 * rel_k.max():.2f}%, within +-10% "
              f"{100 * np.mean(rel_k <= 0.10):.0f}%, within +-5% {100 * np.mean(rel_k <= 0.05):.0f}%")
    passes, rel = per_k[args.op_passes[0]]["runs"], per_k[args.op_passes[0]]["rel"]
    worst = int(np.argmax(rel))
    converged = sum(m.stats.converged for r in passes for m in r.measured)
    print(f"converged (median 95% CI within +-1%): {converged}/{2 * len(configs)}")

    models = {
        "mobilenetv2-1.0-224": mobilenetv2_layers(224, 1.0),
        "mobilenetv2-0.5-96": mobilenetv2_layers(96, 0.5, classes=10),
        "vgg-like-64": vgg_like(64),
    }
    whole = []
    for name, layers in models.items():
        _, model = build_sequence_onnx(layers, name=name)
        ref1 = plain_loop_ms(model, device)
        m = profiler.profile_model(model, name=name, breakdown_runs=0)
        ref2 = plain_loop_ms(model, device)
        ref = (ref1 + ref2) / 2
        diff = m.latency_ms / ref - 1
        whole.append({"model": name, "hwnas_ms": m.latency_ms, "plain_loop_ms": ref, "rel_diff": diff,
                      "hwnas_runs": m.stats.n_runs, "hwnas_ci95_rel": m.stats.rel_ci})
        print(f"{name}: hwnas {m.latency_ms:.3f} ms ({m.stats.n_runs} runs), plain loop {ref:.3f} ms "
              f"(before {ref1:.3f}, after {ref2:.3f}): {100 * diff:+.2f}%")
    result = {
        "device": device.name,
        "fingerprint": fingerprint(device).to_dict(),
        "python": platform.python_version(),
        "n_ops": len(configs),
        "ops_per_minute": [r.ops_per_minute for r in passes],
        "pass_rel_diff_median": float(np.median(rel)),
        "pass_rel_diff_p90": float(np.percentile(rel, 90)),
        "pass_rel_diff_max": float(rel.max()),
        "worst_op": str(configs[worst]),
        "op_passes": {str(k): {"rel_diff_median": float(np.median(v["rel"])), "rel_diff_p90": float(np.percentile(v["rel"], 90)),
                               "within_10": float(np.mean(v["rel"] <= 0.10)), "within_5": float(np.mean(v["rel"] <= 0.05)),
                               "ops_per_minute": [r.ops_per_minute for r in v["runs"]]} for k, v in per_k.items()},
        "converged": converged,
        "whole_model": whole,
        "governor_warning": warn,
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    ok = (result["pass_rel_diff_median"] <= 0.02 and min(result["ops_per_minute"]) >= 60
          and all(abs(w["rel_diff"]) <= 0.05 for w in whole))
    print(f"median_diff={100 * result['pass_rel_diff_median']:.2f}% ops_per_min={min(result['ops_per_minute']):.0f} "
          f"whole_max_abs_diff={100 * max(abs(w['rel_diff']) for w in whole):.2f}% targets_met={ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
