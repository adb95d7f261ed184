"""Few-shot adaptation from two candidate pools, side by side: the zoo's calibration networks alone
(``zoo``, the default) and with 20 random networks of every block kind (``zoo+mixed``,
:func:`hwnas.zoo.random_mixed_model`, ``default_candidates(mixed=20)``).

    python benchmarks/adapt_pools.py --from-run benchmarks/out/adapt_s46 --targets cpu-ort cpu-torch \\
        --samples 20 --out benchmarks/out/pools [--json OUT]

Each target's sources are the other devices' scratch predictors in --from-run (as
``benchmarks/adapt_accuracy.py`` left them). Per target, both pools are adapted at each K, back to
back, into one new store (a network both pools choose is measured once); then the held-out zoo models
are measured again into that store, so that every figure of a target comes from the same hour. Each
adapted predictor and the target's scratch predictor are scored on those measurements: within
+-10%, MAPE, Spearman and the median error per held-out family.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import hwnas
from hwnas._files import write_json
from hwnas.errors import HwnasError
from hwnas.jobs import default_candidates, load_predictor

from adapt_accuracy import _bar, _fmt
from adapt_by_family import by_family

#: the candidate pools compared (the default pool is ``zoo``)
POOLS = {"zoo": default_candidates, "zoo+mixed": lambda: default_candidates(mixed=20)}


def family_medians(rows: list[dict]) -> dict[str, float]:
    """The median relative error of each family in ``PredictorEvaluation.rows``."""
    import numpy as np

    return {f: round(float(np.median(v)), 4) for f, v in by_family(rows).items()}


def run_target(target: str, sources: list[str], ks: list[int], from_run: Path, out: Path, passes: int,
               heldout: str) -> dict:
    d = out / target
    store = d / "measured.sqlite"
    srcs = [f"{s}={from_run / s / 'scratch'}" for s in sources]
    preds, result = {}, {"sources": sources, "adapted": {}}
    for k in sorted(ks):
        for name, pool in POOLS.items():
            t = time.perf_counter()
            preds[f"{name} K={k}"] = hwnas.adapt_predictor(target, srcs, samples=k, store=store, candidates=pool(),
                                                           out=d / f"{name}-{k}", model_passes=passes,
                                                           progress=_bar(f"{target} {name} K={k}"))
            result["adapted"][f"{name} K={k}"] = {"adapt_s": round(time.perf_counter() - t, 1),
                                                  "measured": preds[f"{name} K={k}"].measured}
    preds["scratch"] = load_predictor(target, path=from_run / target / "scratch")
    for key, pred in preds.items():
        ev = hwnas.evaluate_predictor(target, predictor=pred, store=store, model_passes=passes, heldout=heldout,
                                      progress=_bar(f"{target} held-out"))
        entry = result["adapted"].setdefault(key, {}) if key != "scratch" else result.setdefault("scratch", {})
        entry.update(heldout=ev.metrics, family_median=family_medians(ev.rows))
        fam = ", ".join(f"{f} {100 * m:+.0f}%" for f, m in entry["family_median"].items())
        print(f"{target} {key}: held-out {_fmt(ev.metrics)}; median error by family: {fam}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-run", type=Path, required=True, help="an adapt_accuracy.py --out with scratch predictors")
    ap.add_argument("--targets", nargs="+", required=True)
    ap.add_argument("--samples", nargs="+", type=int, default=[20])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-passes", type=int, default=2)
    ap.add_argument("--heldout-set", default="first")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    have = sorted(p.parent.parent.name for p in args.from_run.glob("*/scratch/model.json"))
    missing = [t for t in args.targets if t not in have]
    if missing or len(have) < 2:
        ap.error(f"{args.from_run} has scratch predictors for {', '.join(have) or 'no device'}; need one for each "
                 f"target ({', '.join(missing) or 'ok'}) and at least one other device as a source")
    result = {}
    try:
        for t in args.targets:
            result[t] = run_target(t, [s for s in have if s != t], args.samples, args.from_run, args.out,
                                   args.model_passes, args.heldout_set)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
