"""How well a device's predictor knows a search space: architectures spread over the space's FLOPs
range, measured on the device the way ``hwnas search --verify`` measures (the module exported to
ONNX, untrained weights, timed by the device's profiler), against the predictor on the search's
path (the space's op configurations) and on the ONNX path (``hwnas predict``).

    python benchmarks/space_predictor_check.py --space nb201 [--device cpu-ort] [--predictor DIR]
        [--space-arg NAME=VALUE ...] [--n 14] [--seed 123] [--json OUT]

Last lines: per path, ``MAPE``, the share within +-10% and the worst relative error.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", required=True)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--predictor", type=Path, help="predictor directory (default: the one `hwnas search` would use: "
                    "the space's own from `predictor train --space`, else the device's)")
    ap.add_argument("--space-arg", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--n", type=int, default=14, help="architectures, spread over the FLOPs range")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    try:
        from hwnas.jobs import arch_latency_on, get_device, load_predictor, parse_key_values
        from hwnas.search import create_space

        if args.n < 2:
            raise HwnasError(f"--n must be >= 2; got {args.n}")
        dev = get_device(args.device)
        space_args = parse_key_values(args.space_arg, "--space-arg")
        space = create_space(args.space, **space_args).restrict(dev.constraints)
        # the predictor `hwnas search` would use: the space's own where `predictor train --space` made one
        pred = load_predictor(dev, space=args.space, space_args=space_args, path=args.predictor)
        print(f"predictor: {pred.path_}", flush=True)
        rng = np.random.default_rng(args.seed)
        pool = list(dict.fromkeys(space.sample(rng) for _ in range(3000)))
        flops = np.array([space.flops(a) for a in pool])
        order = np.argsort(flops, kind="stable")
        archs = list(dict.fromkeys(pool[order[int(round(q))]] for q in np.linspace(0, len(pool) - 1, args.n)))
        measure = arch_latency_on(dev, space)
        rows = []
        for k, a in enumerate(archs, 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cfg_ms = float(pred.predict_architectures([space.op_configs(a)])[0])
                onnx_ms = pred.predict_onnx(space.to_onnx(a)).latency_ms
            ms = float(measure(a))
            rows.append({"arch": space.to_string(a), "mflops": space.flops(a) / 1e6, "measured_ms": ms,
                         "predicted_op_configs_ms": cfg_ms, "predicted_onnx_ms": float(onnx_ms)})
            print(f"[{k}/{len(archs)}] {rows[-1]['mflops']:8.1f} MFLOPs: measured {ms:.3f} ms, predicted "
                  f"{cfg_ms:.3f} (op configs) / {onnx_ms:.3f} (ONNX)", flush=True)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = np.array([r["measured_ms"] for r in rows])
    summary = {}
    for path in ("op_configs", "onnx"):
        e = np.array([r[f"predicted_{path}_ms"] for r in rows]) / m - 1
        summary[path] = {"mape": float(np.mean(np.abs(e))), "within_10": float(np.mean(np.abs(e) <= 0.1)),
                         "worst": float(e[np.argmax(np.abs(e))])}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"space": args.space, "device": args.device,
                                                   "predictor": str(pred.path_), "summary": summary, "rows": rows},
                                                  indent=2) + "\n")
    for path, s in summary.items():
        print(f"{path}: MAPE {100 * s['mape']:.1f}%, within +-10% {100 * s['within_10']:.0f}%, "
              f"worst {100 * s['worst']:+.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
