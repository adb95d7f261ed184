"""An op's cost alone against inside a model, per activation (the evidence behind a calibration term).

For each op (a 1x1 conv, a depthwise 3x3 conv and a 3x3 conv at 28x28) and each activation, times
on ONNX Runtime (CPU, 2 threads) a model of the op alone and a chain of 8 copies of it; the
marginal cost of an op inside the chain is (chain - alone) / 7. Three repeats, medians of 200 runs.

    python benchmarks/activation_in_model.py [--acts relu hardswish relu6 silu] [--runs 200] [--json OUT]

Where an activation's in-chain / alone ratio is far below the others', ops with it cost less in a
model than timed alone, which the per-op profiles cannot see: what ``Calibration.hardswish_scale``
fits on whole models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort

from hwnas.profilers import chain_of_ops
from hwnas.profilers import Act, OpConfig, OpType

OPS = {"pwconv": dict(op=OpType.PWCONV, cin=96, cout=96, h=28, w=28),
       "dwconv": dict(op=OpType.DWCONV, cin=192, cout=192, h=28, w=28, kernel=3),
       "conv": dict(op=OpType.CONV, cin=32, cout=32, h=28, w=28, kernel=3)}


def session(cfgs: list[OpConfig]):
    model = chain_of_ops(cfgs).eval().to_onnx("probe")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
    return lambda: s.run(None, {i.name: x})


def median_ms(run, n: int) -> float:
    for _ in range(20):
        run()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", nargs="+", default=["relu", "hardswish", "relu6", "silu"])
    ap.add_argument("--runs", type=int, default=200, help="timed runs per median")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs must be >= 1; got {args.runs}")  # exit code 2
    known = [a.value for a in Act]
    bad = [a for a in args.acts if a not in known]
    if bad:
        ap.error(f"unknown activation(s) {', '.join(bad)}; known: {', '.join(known)}")  # exit code 2
    rows = []
    for op, kw in OPS.items():
        for act in args.acts:
            cfg = OpConfig(**kw, act=Act(act))
            one, eight = session([cfg]), session([cfg] * 8)
            reps = [(median_ms(one, args.runs), median_ms(eight, args.runs)) for _ in range(3)]
            alone = float(np.median([a for a, _ in reps]))
            marginal = float(np.median([(b - a) / 7 for a, b in reps]))
            rows.append({"op": op, "act": act, "alone_ms": alone, "in_chain_ms": marginal, "ratio": marginal / alone})
            print(f"{op:7s} {act:10s} alone {alone:.4f} ms  inside a chain {marginal:.4f} ms  ratio {marginal / alone:.3f}",
                  flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
