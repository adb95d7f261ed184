"""The main job through the public Python API (names in ``hwnas.__all__`` only), beside
``hwnas quickstart`` with the same settings and seed.

1. ``hwnas.quickstart(OUT/quickstart)``: profile, predictor, budget, search, export (the CLI's job).
2. The same search through the API: ``hwnas.create_search`` with the quickstart's predictor, budget
   and hard limit (``limit_ms``), its strategy, reward, space settings, dataset, epochs and seed;
   ``Search.optimize``; ``hwnas.export`` of ``search.best_trial`` with the quickstart's export
   epochs. Where nothing measured differs (the predictor and the limit are the quickstart's), the
   chosen architecture, its search accuracy and its trained accuracy must be the same.
3. The whole job from scratch through the API on a second store: ``hwnas.train_predictor`` (profile
   + fit + calibration on the space's models), ``hwnas.create_search`` (10 proxy-trained
   architectures), ``hwnas.export``; a predictor of its own, so its choice may differ.

Writes ``--json`` with the figures; exits 1 when step 2 disagrees with step 1.

    python benchmarks/api_vs_quickstart.py --out /tmp/api --json benchmarks/results/api_vs_quickstart.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import hwnas


def _api_search(qs: dict, out: Path, device: str) -> dict:
    """Step 2: the quickstart's search and export through the API."""
    space_args = {"resolution": 32, "width": 0.35, "classes": 10}
    search = hwnas.create_search("proxyless", device, target_ms=qs["budget_ms"], limit_ms=qs["limit_ms"],
                                 predictor=Path(qs["paths"]["predictor"]), strategy="evolution", reward="hard",
                                 space_args=space_args, dataset="digits", epochs=2, resolution=32, seed=0,
                                 storage=out / "api_run")
    search.optimize(10)
    best = search.best_trial
    card = hwnas.export(best, device, out / "api_run" / "model" / "model.onnx", epochs=6, overwrite=True)
    return {"best_arch": best.arch, "search_accuracy": best.accuracy, "accuracy": card["accuracy"],
            "predicted_latency_ms": card["predicted_latency_ms"], "measured_latency_ms": card["measured_latency_ms"]}


def _api_from_scratch(out: Path, device: str) -> dict:
    """Step 3: profile, train, search and export with the API alone."""
    space_args = {"resolution": 32, "width": 0.35, "classes": 10}
    t0 = time.perf_counter()
    pred = hwnas.train_predictor(device, store=out / "scratch" / "profiles.sqlite", space="proxyless",
                                 space_args=space_args, samples=60, adaptive=20, space_models=10, recheck=0,
                                 out=out / "scratch" / "predictor")
    search = hwnas.create_search("proxyless", device, target_ms=0.2, predictor=pred, strategy="evolution",
                                 space_args=space_args, resolution=32, storage=out / "scratch" / "run")
    search.optimize(10)
    card = hwnas.export(search.best_trial, device, out / "scratch" / "model.onnx", epochs=6, overwrite=True)
    return {"best_arch": search.best_trial.arch, "accuracy": card["accuracy"], "trials": len(search.trials),
            "predicted_latency_ms": card["predicted_latency_ms"], "measured_latency_ms": card["measured_latency_ms"],
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--skip-scratch", action="store_true", help="only steps 1 and 2")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        qs = hwnas.quickstart(args.out / "quickstart", args.device).summary
        row = {"quickstart": {k: qs[k] for k in ("best_arch", "search_accuracy", "accuracy", "budget_ms", "limit_ms",
                                                 "predicted_latency_ms", "measured_latency_ms")},
               "quickstart_seconds": round(time.perf_counter() - t0, 1), "api": _api_search(qs, args.out, args.device)}
        if not args.skip_scratch:
            row["api_from_scratch"] = _api_from_scratch(args.out, args.device)
    except hwnas.HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    same = {k: row["api"][k] == row["quickstart"][k] for k in ("best_arch", "search_accuracy", "accuracy")}
    row["agree"] = same
    print(json.dumps(row, indent=2))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(row, indent=2) + "\n")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
