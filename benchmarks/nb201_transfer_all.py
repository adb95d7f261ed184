"""Run nb201_latency_transfer for every device of the CSV held out in turn and average.

    python benchmarks/nb201_transfer_all.py --latency-csv CSV --samples 10 100 [--seeds K] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from nb201_latency_transfer import load, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--samples", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    devices = [c for c in pd.read_csv(args.latency_csv, nrows=1).columns if c not in ("index", "arch_str")]
    out: dict = {}
    for n in args.samples:
        rows = {}
        for d in devices:
            X, S, y, _ = load(args.latency_csv, d)
            r = run(X, S, y, n, args.seeds)
            rows[d] = {k: r[k] for k in ("spearman_mean", "acc10_mean", "acc5_mean", "rmse_ms")}
            print(f"N={n:4d} {d:16s} spearman {r['spearman_mean']:.4f} acc10 {r['acc10_mean']:.4f} "
                  f"acc5 {r['acc5_mean']:.4f} rmse {r['rmse_ms']:.3f} ms", flush=True)
        mean = {k: float(np.mean([v[k] for v in rows.values()])) for k in ("spearman_mean", "acc10_mean", "acc5_mean")}
        print(f"N={n}: mean over {len(devices)} held-out devices: spearman {mean['spearman_mean']:.4f} "
              f"acc10 {mean['acc10_mean']:.4f} acc5 {mean['acc5_mean']:.4f}")
        out[str(n)] = {"mean": mean, "devices": rows}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
