"""Where an adapted predictor goes wrong: its median error per held-out family, beside the scratch one's.

Reads what ``benchmarks/adapt_accuracy.py`` left under --out (the predictors and the held-out
measurements in each device's store; nothing is measured again):

    python benchmarks/adapt_by_family.py --out benchmarks/out/adapt_s46 --targets cpu-ort cpu-torch --samples 20 50

Per target and K: for each family of the held-out zoo models (MnasNet-, EfficientNet-, SqueezeNet-like
and random), the median of predicted / measured - 1, adapted and from scratch.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

import hwnas
from hwnas.jobs import load_predictor


def errors(device: str, path: Path, store: Path, heldout: str) -> dict[str, list[float]]:
    """Each held-out model's relative error, grouped by family."""
    ev = hwnas.evaluate_predictor(device, predictor=load_predictor(device, path=path), store=store,
                                  model_passes=2, heldout=heldout)
    out: dict[str, list[float]] = defaultdict(list)
    for r in ev.rows:
        out[r["family"]].append(r["predicted_ms"] / r["measured_ms"] - 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--targets", nargs="+", required=True)
    ap.add_argument("--samples", nargs="+", type=int, default=[20])
    ap.add_argument("--heldout-set", default="first")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args()
    result: dict = {}
    for t in args.targets:
        d = args.out / t
        ref = errors(t, d / "scratch", d / "scratch.sqlite", args.heldout_set) if (d / "scratch").is_dir() else {}
        for k in args.samples:
            got = errors(t, d / f"adapt-{k}", d / "scratch.sqlite", args.heldout_set)
            result[f"{t} K={k}"] = {f: {"n": len(v), "adapted_median": float(np.median(v)),
                                        "scratch_median": float(np.median(ref[f])) if f in ref else None}
                                    for f, v in got.items()}
            for f, m in result[f"{t} K={k}"].items():
                s = "" if m["scratch_median"] is None else f", scratch {100 * m['scratch_median']:+.0f}%"
                print(f"{t} K={k} {f} (n={m['n']}): adapted {100 * m['adapted_median']:+.0f}%{s}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
