"""ProxylessNAS's derivation under a latency limit: the exact branch and bound against the
Lagrangian relaxation it starts from.

For random per-layer distributions over the proxyless space (log-probabilities from a standard
normal, softmaxed over each layer's allowed options) and limits at fractions of the argmax's
latency, both derive the most likely architecture within the limit from the same predictor's
latency table. Reported per case: the log-likelihood each found, whether the exact one is higher,
the milliseconds each took; overall: how often the relaxation missed the best and by how much.

    python benchmarks/constrained_derivation.py --predictor DIR [--cases 20] [--fractions 0.5 0.7 0.9]
        [--resolution 224] [--width 1.0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def distribution(space, rng: np.random.Generator) -> list[np.ndarray]:  # noqa: ANN001
    """Per-layer log-probabilities over the allowed options (-inf elsewhere)."""
    out = []
    for a in space.allowed:
        v = np.full(7, -np.inf)
        z = rng.normal(0, 1.0, len(a))
        v[list(a)] = z - np.log(np.exp(z).sum())
        out.append(v)
    return out


def run(predictor_dir: str, cases: int, fractions: list[float], resolution: int, width: float) -> dict:
    from hwnas.latency_models import LatencyPredictor
    from hwnas.search.proxyless import LatencyTable
    from hwnas.search.spaces._proxyless import ProxylessSpace

    pred = LatencyPredictor.load(predictor_dir, None, True)
    space = ProxylessSpace(resolution=resolution, width=width)
    table = LatencyTable(pred, space)
    rows = []
    for seed in range(cases):
        lp = distribution(space, np.random.default_rng(seed))
        top = table.of(space, space.make([int(np.argmax(v)) for v in lp]))
        for f in fractions:
            t = f * top
            t0 = time.perf_counter()
            relaxed = table.relaxed_argmax(space, lp, t)
            t1 = time.perf_counter()
            exact = table.constrained_argmax(space, lp, t)
            t2 = time.perf_counter()
            ll = [float(sum(v[c] for v, c in zip(lp, a.choices))) for a in (relaxed, exact)]
            rows.append({"seed": seed, "fraction": f, "target_ms": t, "relaxed_ll": ll[0], "exact_ll": ll[1],
                         "relaxed_ms": 1e3 * (t1 - t0), "exact_ms": 1e3 * (t2 - t1),
                         "exact_within": table.of(space, exact) <= t, "relaxed_within": table.of(space, relaxed) <= t})
            print(json.dumps(rows[-1]), flush=True)
    gaps = np.array([r["exact_ll"] - r["relaxed_ll"] for r in rows])
    summary = {"cases": len(rows), "layers": len(space.allowed), "relaxation_missed": int((gaps > 1e-9).sum()),
               "largest_gap": float(gaps.max()), "never_worse": bool((gaps >= -1e-9).all()),
               "all_within": all(r["exact_within"] for r in rows),
               "exact_ms_max": max(r["exact_ms"] for r in rows), "exact_ms_median": float(np.median([r["exact_ms"] for r in rows]))}
    print(json.dumps({"summary": summary}))
    return {"rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    from hwnas.errors import HwnasError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", required=True, help="a trained predictor's directory")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.cases < 1 or not all(0 < f <= 1 for f in args.fractions):
        ap.error("need --cases >= 1 and fractions in (0, 1]")  # exit code 2
    try:
        result = run(args.predictor, args.cases, args.fractions, args.resolution, args.width)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
