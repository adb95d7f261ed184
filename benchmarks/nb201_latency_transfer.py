"""Latency prediction on a new device from N of its measurements (NAS-Bench-201 cells).

    python benchmarks/nb201_latency_transfer.py --latency-csv CSV --target DEVICE --samples N
        [--seeds K] [--json OUT]

The CSV has the format of nb201_latency.csv: ``index, arch_str, <device>...``. Per seed, N
architectures are drawn at random; the target column is read only at those N (training). All other
device columns are sources, used in full. Evaluation is on all the target's remaining architectures.
Model: hwnas.latency_models.TransferLatencyModel (geometric mean of a ridge on the source devices'
log latencies and a ridge on their latencies plus the cell encoding, each refitted with Huber weights).
The last line printed is ``spearman=<mean> acc10=<mean>``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from scipy import stats

from hwnas.latency_models import TransferLatencyModel, encode_nb201


class InputError(Exception):
    pass


def load(csv: str, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    try:
        df = pd.read_csv(csv)
    except FileNotFoundError:
        raise InputError(f"latency CSV not found: {csv}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{csv} is not a readable CSV: {exc}") from None
    if "arch_str" not in df.columns:
        raise InputError(f"{csv} has no arch_str column (columns: {', '.join(df.columns)})")
    devices = [c for c in df.columns if c not in ("index", "arch_str")]
    if target not in devices:
        raise InputError(f"unknown target device {target!r}; devices in {csv}: {', '.join(devices)}")
    sources = [d for d in devices if d != target]
    if not sources:
        raise InputError(f"{csv} has no source device besides {target!r}")
    try:
        X = np.stack([encode_nb201(a) for a in df["arch_str"]])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    S = df[sources].to_numpy(dtype=float)
    y = df[target].to_numpy(dtype=float)
    if not np.isfinite(S).all():
        raise InputError("source device columns have missing values")
    return X, S, y, sources


def run(X: np.ndarray, S: np.ndarray, y: np.ndarray, samples: int, seeds: int) -> dict:
    valid = np.flatnonzero(np.isfinite(y) & (y > 0))
    if samples < 2 or samples >= len(valid):
        raise InputError(f"--samples must be between 2 and {len(valid) - 1}")
    per_seed = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        train = rng.choice(valid, size=samples, replace=False)
        test = np.setdiff1d(np.arange(len(y)), train)
        test = test[np.isfinite(y[test]) & (y[test] > 0)]
        model = TransferLatencyModel().fit(X[train], S[train], y[train])
        pred = model.predict(X[test], S[test])
        t = y[test]
        rel = np.abs(pred - t) / t
        per_seed.append({
            "seed": seed, "spearman": float(stats.spearmanr(t, pred).statistic),
            "kendall": float(stats.kendalltau(t, pred).statistic),
            "acc10": float((rel <= 0.10).mean()), "acc5": float((rel <= 0.05).mean()),
            "rmse_ms": float(np.sqrt(np.mean((pred - t) ** 2))), "mape": float(rel.mean()),
            "n_test": int(len(t)),
        })
    mean = lambda k: float(np.mean([s[k] for s in per_seed]))  # noqa: E731
    return {"spearman_mean": mean("spearman"), "kendall_mean": mean("kendall"), "acc10_mean": mean("acc10"),
            "acc5_mean": mean("acc5"), "rmse_ms": mean("rmse_ms"), "mape_mean": mean("mape"), "per_seed": per_seed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    try:
        X, S, y, sources = load(args.latency_csv, args.target)
        res = run(X, S, y, args.samples, args.seeds)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res.update({"target": args.target, "samples": args.samples, "seeds": args.seeds, "sources": sources})
    for s in res["per_seed"]:
        print(f"seed {s['seed']}: spearman {s['spearman']:.4f} acc10 {s['acc10']:.4f} acc5 {s['acc5']:.4f} "
              f"rmse {s['rmse_ms']:.3f} ms")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=2)
    print(f"spearman={res['spearman_mean']:.4f} acc10={res['acc10_mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
