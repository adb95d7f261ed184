"""Once-for-all for two devices from one supernet: the time to the first device's network
(supernet training, the accuracy table of the accuracy predictor, its search, export and
measurement) against the time to the second's (search, export, measurement: no training), and
whether each exported network meets its target measured.

Each device's target is a quantile of its own predictor's latencies over random architectures of the
space (the devices differ by an order of magnitude, so one target would be trivial for one of them).
Needs each device's predictor for the space (``hwnas predictor train --device D --space proxyless
--space-arg ...``, or ``--predictor D=PATH``).

    python benchmarks/ofa_two_devices.py --device cpu-ort --device cpu-tvm --supernet-epochs 30 \\
        --json benchmarks/results/ofa_two_devices.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.jobs import get_device, load_predictor, once_for_all_search
from hwnas.search import create_space


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", action="append", required=True)
    ap.add_argument("--predictor", action="append", default=[], help="DEVICE=PATH (default: the device's for the space)")
    ap.add_argument("--resolution", type=int, default=32, help="the space's (deployed) resolution")
    ap.add_argument("--width", type=float, default=0.35)
    ap.add_argument("--train-resolution", type=int, default=16)
    ap.add_argument("--supernet-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs of each exported subnetwork")
    ap.add_argument("--quantile", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("runs/ofa-two-devices"))
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    space_args = {"resolution": args.resolution, "width": args.width}
    paths = dict(p.split("=", 1) for p in args.predictor)
    preds = [load_predictor(get_device(d), space="proxyless", space_args={**space_args, "classes": 10},
                            path=paths.get(d), allow_fingerprint_mismatch=True) for d in args.device]
    space = create_space("proxyless", **space_args, classes=10)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(200)]
    targets = [round(float(np.quantile(p.predict_architectures([space.op_configs(a) for a in archs]),
                                       args.quantile)), 4) for p in preds]
    print("targets (ms):", dict(zip(args.device, targets)), flush=True)
    start = time.perf_counter()
    res = once_for_all_search(args.device, args.out, target_ms=targets, space_args=space_args, predictors=preds,
                              supernet_epochs=args.supernet_epochs, epochs=args.epochs,
                              resolution=args.train_resolution, allow_fingerprint_mismatch=True)
    total_s = time.perf_counter() - start
    first = res["supernet"]["train_s"] + res["supernet"]["accuracy_table_s"] + res["devices"][0]["device_s"]
    rows = [{k: r.get(k) for k in ("device", "arch", "target_ms", "latency_ms", "measured_ms", "meets_budget_measured",
                                   "supernet_acc", "accuracy", "search_s", "device_s", "attempts")}
            for r in res["devices"]]
    summary = {"args": vars(args) | {"out": str(args.out)}, "targets_ms": targets, "supernet": res["supernet"],
               "devices": rows, "total_s": round(total_s, 1), "first_device_s": round(first, 1),
               "second_over_first": [round(r["device_s"] / first, 4) for r in rows[1:]]}
    for r in rows:
        print(f"{r['device']}: target {r['target_ms']} ms, predicted {r['latency_ms']:.3f}, measured "
              f"{r['measured_ms']:.3f} ms, supernet acc {r['supernet_acc']:.3f}, exported acc {r['accuracy']:.3f}, "
              f"{r['device_s']:.1f} s")
    print(f"first device: {first:.1f} s (supernet {res['supernet']['train_s']:.1f} s, accuracy table "
          f"{res['supernet']['accuracy_table_s']:.1f} s); second / first: "
          f"{summary['second_over_first']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
