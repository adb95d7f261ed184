"""Where an adapted predictor goes wrong: its median error per held-out family, beside the scratch one's.

Reads what ``benchmarks/adapt_accuracy.py`` left under --out (the predictors, and the held-out
measurements in each device's store, which are reused: give the same --model-passes and
--heldout-set as that run, or the missing measurements are taken now):

    python benchmarks/adapt_by_family.py --out benchmarks/out/adapt_s46 --targets cpu-ort cpu-torch --samples 20 50

Per target and K: for each family of the held-out zoo models (MnasNet-, EfficientNet-, SqueezeNet-like
and random), the median of predicted / measured - 1, adapted and from scratch.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import hwnas
from hwnas._files import write_json
from hwnas.errors import HwnasError
from hwnas.jobs import load_predictor


def by_family(rows: list[dict]) -> dict[str, list[float]]:
    """Relative errors (predicted / measured - 1) of ``PredictorEvaluation.rows``, grouped by family."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        out[r["family"]].append(r["predicted_ms"] / r["measured_ms"] - 1)
    return dict(out)


def medians(adapted: dict[str, list[float]], scratch: dict[str, list[float]]) -> dict[str, dict]:
    """Per family: its size and the median error of each predictor (``None`` where scratch has none)."""
    return {f: {"n": len(v), "adapted_median": float(np.median(v)),
                "scratch_median": float(np.median(scratch[f])) if f in scratch else None}
            for f, v in adapted.items()}


def errors(device: str, path: Path, store: Path, passes: int, heldout: str) -> dict[str, list[float]]:
    ev = hwnas.evaluate_predictor(device, predictor=load_predictor(device, path=path), store=store,
                                  model_passes=passes, heldout=heldout)
    return by_family(ev.rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="adapt_accuracy.py's --out")
    ap.add_argument("--targets", nargs="+", required=True)
    ap.add_argument("--samples", nargs="+", type=int, default=[20])
    ap.add_argument("--model-passes", type=int, default=2)
    ap.add_argument("--heldout-set", default="first")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    missing = [str(args.out / t / f"adapt-{k}") for t in args.targets for k in args.samples
               if not (args.out / t / f"adapt-{k}").is_dir()]
    if missing:
        ap.error(f"no adapted predictor at {', '.join(missing)} (run benchmarks/adapt_accuracy.py first)")
    result: dict = {}
    try:
        for t in args.targets:
            d = args.out / t
            ref = (errors(t, d / "scratch", d / "scratch.sqlite", args.model_passes, args.heldout_set)
                   if (d / "scratch").is_dir() else {})
            for k in args.samples:
                got = errors(t, d / f"adapt-{k}", d / "scratch.sqlite", args.model_passes, args.heldout_set)
                result[f"{t} K={k}"] = medians(got, ref)
                for f, m in result[f"{t} K={k}"].items():
                    s = "" if m["scratch_median"] is None else f", scratch {100 * m['scratch_median']:+.0f}%"
                    print(f"{t} K={k} {f} (n={m['n']}): adapted {100 * m['adapted_median']:+.0f}%{s}")
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
