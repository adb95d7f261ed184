"""Op-level accuracy of latency models on a profile store: interpolation and extrapolation.

    python benchmarks/op_model_accuracy.py [--db benchmarks/out/predictor.sqlite] [--device cpu-ort]
        [--op-time e2e|kernel|mean] [--holdout 0.15] [--json OUT]

Nothing is measured: the ops already in the store are the data. Two scores per model, side by side:

- **5-fold cross-validation** over all stored op configurations (each op type's model sees the other
  four folds): how well the model predicts ops of the same kinds and sizes as those profiled;
- **extrapolation**: per op type, the ``--holdout`` share of the configurations with the largest
  cost (MACs + bytes moved) is held out and predicted from the rest: how the model does on ops
  larger than any it was trained on (a user's model at a higher resolution or width than the
  profile covered).

Models: ``lightgbm`` (default: a linear cost base, the booster on the log of the rest),
``lightgbm:base=none`` (the booster alone), ``lut``, ``flops``. Last line:
``cv_acc10=<lightgbm> extrap_acc10=<lightgbm>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hwnas.devices import default_registry
from hwnas.errors import HwnasError
from hwnas.latency_models import create_latency_model, latency_metrics
from hwnas.latency_models import FEATURE_NAMES, feature_matrix
from hwnas.latency_models import OP_TIMES, default_op_time, training_data
from hwnas.profilers import Profiler, ProfileStore

MODELS = ["lightgbm", "lightgbm:base=none", "lut", "flops"]


def make(spec: str):
    """``name`` or ``name:key=value,...`` (values read as in ``hwnas --strategy-param``)."""
    from hwnas.jobs import parse_key_values as _key_values

    name, _, params = spec.partition(":")
    return create_latency_model(name, **_key_values([p for p in params.split(",") if p], "--models"))


def cross_validated(spec: str, configs: list, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    from sklearn.model_selection import KFold

    oof = np.zeros(len(y))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(configs):
        model = make(spec).fit([configs[i] for i in tr], y[tr])
        oof[te] = model.predict([configs[i] for i in te])
    return oof


def extrapolated(spec: str, configs: list, y: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for the ``holdout`` largest-cost share of each op type, from a model fitted on
    everything else (all op types' small ops together); returns (indices, predictions)."""
    X = feature_matrix(configs)
    cost = X[:, [FEATURE_NAMES.index(n) for n in ("macs", "bytes_in", "bytes_out", "bytes_weights")]].sum(1)
    ops = np.array([c.op.value for c in configs])
    test = np.zeros(len(y), dtype=bool)
    for op in np.unique(ops):
        idx = np.flatnonzero(ops == op)
        if len(idx) >= 10:
            test[idx[cost[idx] > np.quantile(cost[idx], 1 - holdout)]] = True
    train = np.flatnonzero(~test)
    model = make(spec).fit([configs[i] for i in train], y[train])
    held = np.flatnonzero(test)
    return held, model.predict([configs[i] for i in held])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="benchmarks/out/predictor.sqlite")
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--op-time", choices=OP_TIMES, help="default: mean where the runtime reports kernel times")
    ap.add_argument("--holdout", type=float, default=0.15, help="share of each op type's largest ops held out")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    if not 0 < args.holdout < 1:
        ap.error(f"--holdout takes a fraction in (0, 1), got {args.holdout}")
    if not Path(args.db).exists():
        print(f"error: no profile store at {args.db}; run benchmarks/predictor_accuracy.py first", file=sys.stderr)
        return 2
    console = Console(stderr=True, width=120)
    warnings.simplefilter("ignore")
    try:
        for spec in args.models:  # unknown names and bad parameters: a clear message, before any work
            try:
                make(spec)
            except TypeError as exc:
                raise HwnasError(f"bad parameter in --models {spec!r}: {exc}") from None
        device = default_registry().get(args.device)
        with ProfileStore(args.db) as store:
            profiler = Profiler(device, store=store)
            op_time = args.op_time or default_op_time(profiler)
            configs, y = training_data(store, profiler.fingerprint, op_time)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = np.unique([c.op.value for c in configs], return_counts=True)[1]
    if counts.max(initial=0) < 10:
        print(f"error: the extrapolation score needs an op type with at least 10 stored configurations; {args.db} "
              f"has at most {counts.max(initial=0)}", file=sys.stderr)
        return 2
    results = {}
    for spec in args.models:
        cv = latency_metrics(y, cross_validated(spec, configs, y))
        held, pred = extrapolated(spec, configs, y, args.holdout)
        ex = latency_metrics(y[held], pred)
        ex["median_signed_error"] = float(np.median(pred / y[held] - 1))
        results[spec] = {"cv5": cv, "extrapolation": ex}
    table = Table(title=f"op-level accuracy, {len(y)} op configurations ({op_time} op time) of {args.db}")
    for col in ("model", "5-fold acc10", "5-fold MAPE", "extrap. acc10", "extrap. MAPE", "extrap. median error"):
        table.add_column(col)
    for spec, r in results.items():
        cv, ex = r["cv5"], r["extrapolation"]
        table.add_row(spec, f"{100 * cv['acc10']:.1f}%", f"{100 * cv['mape']:.1f}%", f"{100 * ex['acc10']:.1f}%",
                      f"{100 * ex['mape']:.1f}%", f"{100 * ex['median_signed_error']:+.1f}%")
    console.print(table)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"db": args.db, "device": device.name, "op_time": op_time,
                                                   "n_ops": len(y), "holdout": args.holdout, "results": results},
                                                  indent=2) + "\n")
    lg = results.get("lightgbm")
    if lg:
        print(f"cv_acc10={lg['cv5']['acc10']:.4f} extrap_acc10={lg['extrapolation']['acc10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
