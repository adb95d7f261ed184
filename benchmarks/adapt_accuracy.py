"""Few-shot adaptation against predictors trained from scratch, device by device.

For every device in --devices a predictor is trained from scratch (profile + calibrate, timed)
and scored on the held-out zoo models (MnasNet-, EfficientNet-, SqueezeNet-like and random
architectures never used for training or adaptation). Then each device in --targets is the new one
in turn, the other devices' scratch predictors its sources: ``hwnas.adapt_predictor`` measures K
networks whole on it (K = --samples, nested: each K's networks include the smaller K's) into a store
of its own, and the adapted predictor is scored on the same held-out measurements.

    python benchmarks/adapt_accuracy.py --devices cpu-ort cpu-ort-mt cpu-tvm cpu-ort-int8 \\
        --targets cpu-ort-mt cpu-tvm --samples 5 10 20 50 --out benchmarks/out/adapt [--json OUT]

A target left out of --devices is adapted (from every device in --devices) and scored without a
scratch predictor of its own; a later run that lists it in --devices adds one.

Everything measured is kept under --out (a rerun reuses the stores and the scratch predictors, and
the times recorded when they were made).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import hwnas
from hwnas.errors import HwnasError
from hwnas.jobs import load_predictor
from hwnas.latency_models import AdaptedPredictor


#: which held-out set scores the predictors (``--heldout-set``)
HELDOUT = ["first"]
#: the transfer views compared on the same measured networks (``--variants``)
VARIANTS: list[tuple[str, ...]] = []


def _bar(prefix: str):  # noqa: ANN202
    last = [0.0]

    def progress(stage: str, done: int, total: int, current: str = "") -> None:
        now = time.monotonic()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(f"  {prefix} {stage}: {done}/{total} {current}", flush=True)
    return progress


def scratch(device: str, out: Path, passes: int, log: dict) -> None:
    """Train (or reuse) the device's scratch predictor and score it on the held-out models."""
    d = out / device
    entry = log.setdefault(device, {})
    seconds = d / "scratch_seconds.txt"  # the time it took when it was made (a rerun reuses it)
    if not seconds.is_file() and "scratch_s" in entry:
        seconds.write_text(str(entry["scratch_s"]))
    if not seconds.is_file() or not (d / "scratch" / "model.json").is_file():
        t = time.perf_counter()
        hwnas.train_predictor(device, store=d / "scratch.sqlite", out=d / "scratch", model_passes=passes,
                              progress=_bar(f"{device} scratch"))
        seconds.write_text(str(time.perf_counter() - t))
    entry["scratch_s"] = float(seconds.read_text())
    pred = load_predictor(device, path=d / "scratch")
    ev = hwnas.evaluate_predictor(device, predictor=pred, store=d / "scratch.sqlite", model_passes=passes,
                                  progress=_bar(f"{device} held-out"), heldout=HELDOUT[0])
    entry["scratch"] = ev.metrics
    print(f"{device} scratch: {entry['scratch_s'] / 60:.1f} min, held-out {_fmt(ev.metrics)}", flush=True)


def adapt(target: str, sources: list[str], ks: list[int], out: Path, passes: int, log: dict) -> None:
    """Adapt to ``target`` from the sources' scratch predictors at each K; score on the held-out models."""
    d = out / target
    entry = log.setdefault(target, {}).setdefault("adapted", {})
    spent = 0.0
    for k in sorted(ks):
        t = time.perf_counter()
        pred = hwnas.adapt_predictor(target, [f"{s}={out / s / 'scratch'}" for s in sources], samples=k,
                                     store=d / "adapt.sqlite", out=d / f"adapt-{k}", model_passes=passes,
                                     progress=_bar(f"{target} K={k}"))
        seconds = d / f"adapt-{k}-seconds.txt"  # cumulative measuring time when first made
        if not seconds.is_file():
            seconds.write_text(str(entry.get(str(k), {}).get("adapt_s", spent + time.perf_counter() - t)))
        spent = float(seconds.read_text())
        ev = hwnas.evaluate_predictor(target, predictor=pred, store=d / "scratch.sqlite", model_passes=passes,
                                      heldout=HELDOUT[0])
        loo = pred.loo()
        entry[str(k)] = {"sources": sources, "views": list(pred.views), "adapt_s": spent, "heldout": ev.metrics,
                         "loo_mape": float(abs(loo).mean()), "loo_acc10": float((abs(loo) <= 0.1).mean()),
                         "variants": variants(target, pred, d, passes)}
        print(f"{target} K={k} from {'+'.join(sources)}: {spent / 60:.1f} min, held-out {_fmt(ev.metrics)}",
              flush=True)


def variants(target: str, pred: AdaptedPredictor, d: Path, passes: int) -> dict:
    """The same measured networks fitted with each of --variants' views, scored on the held-out models."""
    out = {}
    for views in VARIANTS:
        alt = AdaptedPredictor(pred.sources, pred.source_names, pred.X, pred.S, pred.y, pred.fingerprint,
                               pred.measured, pred.G, views)
        ev = hwnas.evaluate_predictor(target, predictor=alt, store=d / "scratch.sqlite", model_passes=passes,
                                      heldout=HELDOUT[0])
        loo = alt.loo()
        out["+".join(views)] = {"heldout": ev.metrics, "loo_mape": float(abs(loo).mean())}
        print(f"    views {'+'.join(views)}: held-out {_fmt(ev.metrics)}, leave-one-out MAPE "
              f"{100 * abs(loo).mean():.1f}%", flush=True)
    return out


def _fmt(m: dict) -> str:
    return f"MAPE {100 * m['mape']:.1f}%, within +-10% {100 * m['acc10']:.0f}%, Spearman {m['spearman']:.3f}"


def table(log: dict, targets: list[str], ks: list[int]) -> str:
    rows = ["| new device | predictor | minutes | held-out MAPE | within +-10% | Spearman |", "|---|---|---|---|---|---|"]
    for t in targets:
        s = log[t]
        if "scratch" in s:  # a target left out of --devices has no scratch predictor (yet)
            rows.append(f"| {t} | from scratch | {s['scratch_s'] / 60:.1f} | {100 * s['scratch']['mape']:.1f}% | "
                        f"{100 * s['scratch']['acc10']:.0f}% | {s['scratch']['spearman']:.3f} |")
        for k in sorted(ks):
            a = s["adapted"][str(k)]
            rows.append(f"| {t} | adapted, K={k} | {a['adapt_s'] / 60:.1f} | {100 * a['heldout']['mape']:.1f}% | "
                        f"{100 * a['heldout']['acc10']:.0f}% | {a['heldout']['spearman']:.3f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", nargs="+", default=["cpu-ort", "cpu-ort-mt", "cpu-tvm", "cpu-torch"])
    ap.add_argument("--targets", nargs="+", default=None, help="default: every device")
    ap.add_argument("--samples", nargs="+", type=int, default=[5, 10, 20, 50])
    ap.add_argument("--model-passes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/adapt"))
    ap.add_argument("--json", dest="json_out", type=Path)
    ap.add_argument("--heldout-set", default="first", help="first, second or third (HELDOUT_SETS): a later set "
                    "checks a choice made while looking at an earlier one")
    ap.add_argument("--variants", nargs="*", default=["multiplicative,additive", "multiplicative,parts", "parts",
                                                      "multiplicative,additive,parts"],
                    help="transfer views to compare on the same networks, each comma-separated")
    args = ap.parse_args()
    HELDOUT[0] = args.heldout_set
    VARIANTS[:] = [tuple(v.split(",")) for v in args.variants]
    targets = args.targets or args.devices
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / ("log.json" if args.heldout_set == "first" else f"log-{args.heldout_set}.json")
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    try:
        for d in args.devices:
            scratch(d, args.out, args.model_passes, log)
            log_path.write_text(json.dumps(log, indent=1))
        for t in targets:
            adapt(t, [d for d in args.devices if d != t], args.samples, args.out, args.model_passes, log)
            log_path.write_text(json.dumps(log, indent=1))
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(log, targets, args.samples))
    if args.json_out:
        args.json_out.write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
