"""Does ProxylessNAS's latency loss work? Supernet search on digits for T = infinity and several
targets; the derived architecture's predicted latency and its latency measured on the device.

    python benchmarks/proxyless_latency.py --predictor DIR [--device cpu-ort]
        [--targets-ms 0.13 0.15 0.17 | --targets-relative 0.7 0.8 0.9]
        [--latency-loss additive|multiplicative|absolute] [--derive factorised|constrained|argmax]
        [--epochs 8] [--json OUT] [--png OUT]

Targets: explicit (``--targets-ms``), fractions of the T = infinity run's derived architecture's
predicted latency (``--targets-relative``: "tight" targets by construction), or by default the 5th,
25th and 50th percentiles of 1,000 random architectures' predicted latency. Every row also reports
what the other derivations read from the same final alphas.

The predictor must cover the space given by --resolution/--width (``hwnas quickstart`` writes one for
resolution 32, width 0.35 under ``hwnas-quickstart/predictor``). Derived models are exported
untrained (latency does not depend on the weights) and measured with the default timing policy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwnas.devices import default_registry
from hwnas.profilers import fingerprint
from hwnas.deploy import ArchSpec, export_architecture
from hwnas.latency_models import LatencyPredictor
from hwnas.search import load_dataset
from hwnas.search.proxyless import DERIVATIONS, ProxylessConfig, ProxylessSearch
from hwnas.search.spaces import ProxylessSpace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", required=True)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.35)
    tg = ap.add_mutually_exclusive_group()
    tg.add_argument("--targets-ms", type=float, nargs="+")
    tg.add_argument("--targets-relative", type=float, nargs="+",
                    help="targets as fractions of the T = inf derived architecture's predicted latency")
    ap.add_argument("--latency-loss", default="additive")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.6)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup-epochs", type=int, default=2)
    ap.add_argument("--arch-lr", type=float, default=0.05)
    ap.add_argument("--derive", default="factorised", choices=DERIVATIONS,
                    help="factorised (keep/skip then op, best within T), constrained (most likely within T) or argmax")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--remeasure", type=int, default=2,
                    help="after the searches, measure every derived model this many more times, round robin "
                         "(measured_ms is then the median of all its measurements)")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--png")
    args = ap.parse_args()
    dev = default_registry().get(args.device)
    pred = LatencyPredictor.load(args.predictor, fingerprint(dev))
    space_args = {"resolution": args.resolution, "width": args.width, "classes": 10}
    space = ProxylessSpace(**space_args)
    data = load_dataset("digits", args.resolution, args.seed)
    table = pred.layer_table(space.layer_options())
    rng = np.random.default_rng(0)
    probe = np.array([space.layer_indices(space.sample(rng)) for _ in range(1000)])
    lat = table.predict(probe)
    if args.targets_ms:
        targets = list(args.targets_ms)
    elif not args.targets_relative:
        targets = [float(np.quantile(lat, q)) for q in (0.05, 0.25, 0.5)]
    if args.targets_relative and min(args.targets_relative) <= 0:
        ap.error("--targets-relative: fractions must be > 0")
    print(f"predicted latency of 1000 random architectures: min {lat.min():.4f}, median {np.median(lat):.4f}, "
          f"max {lat.max():.4f} ms", flush=True)
    rows = []
    tmp = tempfile.TemporaryDirectory()
    pending: list[float | None] = [None]
    while pending:
        t = pending.pop(0)
        cfg = ProxylessConfig(target_ms=t, latency_loss=args.latency_loss, lam=args.lam, beta=args.beta,
                              epochs=args.epochs, warmup_epochs=args.warmup_epochs, arch_lr=args.arch_lr,
                              derive=args.derive, seed=args.seed)
        t0 = time.perf_counter()
        s = ProxylessSearch(space, pred, cfg, data)
        arch = s.run()
        onnx_path = Path(tmp.name) / f"m{len(rows)}.onnx"
        res = export_architecture(ArchSpec("proxyless", space.to_string(arch), space_args, budget_ms=t), dev,
                                  onnx_path, pred, train=False)
        r = {"target_ms": t, "arch": space.to_string(arch), "expected_latency_ms": s.records[-1].expected_latency_ms,
             "predicted_ms": res.card["predicted_latency_ms"], "measured_ms": res.card["measured_latency_ms"],
             "supernet_val_acc": s.records[-1].supernet_val_acc,
             "argmax_arch": space.to_string(s.net.derive()),
             "argmax_predicted_ms": s.latency.of(space, s.net.derive()), "seconds": round(time.perf_counter() - t0, 1),
             "expected_curve": [x.expected_latency_ms for x in s.records],
             "onnx": str(onnx_path), "measurements_ms": [res.card["measured_latency_ms"]],
             "derivations": {}}
        for how in DERIVATIONS:  # the same final alphas read every way
            a = s.derive(how)
            r["derivations"][how] = {"arch": space.to_string(a), "predicted_ms": s.latency.of(space, a),
                                     "skipped_layers": space.to_string(a).split("-").count("zero")}
        rows.append(r)
        if t is None:
            if args.targets_relative:
                targets = [f * r["predicted_ms"] for f in args.targets_relative]
            print(f"targets {', '.join(f'{x:.4f}' for x in targets)} ms", flush=True)
            pending.extend(targets)
        tt = "inf" if t is None else f"{t:.4f} ms"
        print(f"T = {tt}: predicted {r['predicted_ms']:.4f} ms, measured "
              f"{r['measured_ms']:.4f} ms, E[LAT] {r['expected_latency_ms']:.4f} ms, {r['arch']} ({r['seconds']} s)",
              flush=True)
    if args.remeasure > 0:
        from hwnas.profilers import Profiler

        prof = Profiler(dev)
        for _ in range(args.remeasure):
            for r in rows:
                r["measurements_ms"].append(prof.profile_model(r["onnx"], breakdown_runs=0, record=False).stats.latency_ms)
        for r in rows:
            r["measured_ms"] = float(np.median(r["measurements_ms"]))
            del r["onnx"]
        print("measured again round robin; measured_ms = median of " + ", ".join(
            "/".join(f"{x:.4f}" for x in r["measurements_ms"]) for r in rows), flush=True)
    tmp.cleanup()
    others = [h for h in DERIVATIONS if h != args.derive]
    print(f"| T (ms) | derived ({args.derive}): predicted (ms) | measured (ms) | E[LAT] last epoch (ms) | "
          + " | ".join(f"{h}: predicted (ms)" for h in others) + " | skipped layers |")
    print("|---|---|---|---|" + "---|" * len(others) + "---|")
    for r in rows:
        tt = "inf" if r["target_ms"] is None else f"{r['target_ms']:.4f}"
        print(f"| {tt} | {r['predicted_ms']:.4f} | {r['measured_ms']:.4f} | {r['expected_latency_ms']:.4f} | "
              + " | ".join(f"{r['derivations'][h]['predicted_ms']:.4f}" for h in others)
              + f" | {r['derivations'][args.derive]['skipped_layers']} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in rows:
            label = "T = inf" if r["target_ms"] is None else f"T = {r['target_ms']:.3f} ms"
            line = ax.plot(r["expected_curve"], ".-", label=label)[0]
            if r["target_ms"] is not None:
                ax.axhline(r["target_ms"], color=line.get_color(), ls="--", lw=0.8)
        ax.set(xlabel="epoch", ylabel="expected latency E[LAT] (ms)", title="ProxylessNAS latency loss")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
