"""How well can a device's NAS-Bench-201 latencies be predicted at all? An upper reference for
``nb201_transfer_all.py``: LightGBM on the cell encoding and the other devices' log latencies,
trained on ``--train`` (default 10,000) of the target's own architectures, scored on the rest.
Measurement noise (whole-millisecond timers, noisy devices) caps what any predictor reaches.

    python benchmarks/nb201_transfer_ceiling.py --latency-csv CSV [--train 10000] [--seed 0] [--json OUT]

Last line: ``spearman=<mean over devices> acc10=<mean over devices>``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from scipy import stats

from hwnas.latency_models import encode_nb201


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--train", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    import lightgbm as lgb

    try:
        df = pd.read_csv(args.latency_csv)
    except FileNotFoundError:
        print(f"error: latency CSV not found: {args.latency_csv}", file=sys.stderr)
        return 2
    devices = [c for c in df.columns if c not in ("index", "arch_str")]
    if len(devices) < 2 or "arch_str" not in df.columns:
        print(f"error: {args.latency_csv} needs an arch_str column and at least two device columns", file=sys.stderr)
        return 2
    X = np.stack([encode_nb201(a) for a in df["arch_str"]])
    rows = {}
    for target in devices:
        y = df[target].to_numpy(dtype=float)
        S = np.log(np.maximum(df[[d for d in devices if d != target]].to_numpy(dtype=float), 1e-3))
        valid = np.flatnonzero(np.isfinite(y) & (y > 0))
        if not 0 < args.train < len(valid):
            print(f"error: --train must be between 1 and {len(valid) - 1} for {target}", file=sys.stderr)
            return 2
        order = np.random.default_rng(args.seed).permutation(valid)
        tr, te = order[:args.train], order[args.train:]
        F = np.column_stack([X, S])
        m = lgb.LGBMRegressor(n_estimators=600, learning_rate=0.05, num_leaves=63, random_state=args.seed,
                              verbose=-1).fit(F[tr], np.log(y[tr]))
        p = np.exp(m.predict(F[te]))
        rel = np.abs(p / y[te] - 1)
        rows[target] = {"spearman": float(stats.spearmanr(y[te], p).statistic), "acc10": float(np.mean(rel <= 0.10)),
                        "acc5": float(np.mean(rel <= 0.05))}
        print(f"{target:16s} spearman {rows[target]['spearman']:.4f} acc10 {rows[target]['acc10']:.4f}", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("spearman", "acc10", "acc5")}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"train": args.train, "seed": args.seed, "mean": mean, "devices": rows}, f, indent=2)
    print(f"spearman={mean['spearman']:.4f} acc10={mean['acc10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
