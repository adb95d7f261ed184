"""Latency-constrained search on NAS-Bench-201 with real accuracy and real device latency.

    python benchmarks/nb201_search.py --latency-csv CSV --accuracy-csv CSV --accuracy-column COL
        --device DEVICE --target-ms T --strategy S --budget N [--latency-samples M] [--seeds K] [--json OUT]

Per seed: M architectures of DEVICE are "measured" (their latency read from the CSV: the only
reads of that column during search) and a TransferLatencyModel is trained on them, with the other
devices' columns as sources. Its predictions, inflated by the 90th percentile of its
cross-validated relative error (a safety margin learnt from the M samples), decide feasibility:
strategies propose only architectures predicted within T. N counts accuracy queries. The returned
architecture (the most accurate feasible one evaluated) is judged on the true latency and accuracy;
the oracle is the most accurate architecture whose true latency is <= T. ``--target-ms median``
uses the device's median latency. Last line: ``regret=<mean> violations=<rate>``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from hwnas.errors import HwnasError
from hwnas.latency_models import TransferLatencyModel, encode_nb201
from hwnas.search import MnasReward
from hwnas.search._run import Limits, feasibility
from hwnas.search.spaces import NB201Space
from hwnas.search.strategies import SearchExhausted, create_strategy, strategy_names


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], float]:
    try:
        lat = pd.read_csv(args.latency_csv)
        acc = pd.read_csv(args.accuracy_csv)
    except FileNotFoundError as exc:
        raise HwnasError(f"file not found: {exc.filename}") from None
    devices = [c for c in lat.columns if c not in ("index", "arch_str")]
    if args.device not in devices:
        raise HwnasError(f"unknown device {args.device!r}; devices in {args.latency_csv}: {', '.join(devices)}")
    acc_cols = [c for c in acc.columns if c not in ("index", "arch_str")]
    if args.accuracy_column not in acc_cols:
        raise HwnasError(f"unknown accuracy column {args.accuracy_column!r}; columns: {', '.join(acc_cols)}")
    if args.strategy not in strategy_names():
        raise HwnasError(f"unknown strategy {args.strategy!r}; known strategies: {', '.join(strategy_names())}")
    df = lat.merge(acc[["arch_str", args.accuracy_column]], on="arch_str")
    df = df[np.isfinite(df[args.device]) & (df[args.device] > 0)].reset_index(drop=True)
    target = float(df[args.device].median()) if args.target_ms == "median" else float(args.target_ms)
    return df, [d for d in devices if d != args.device], target


def latency_predictor(X: np.ndarray, S: np.ndarray, y_train: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, float]:
    """Predicted latency of every architecture, and the 90th-percentile relative under-prediction
    found by 5-fold cross-validation on the measured ones."""
    under = []
    for tr, te in KFold(5, shuffle=True, random_state=0).split(train):
        m = TransferLatencyModel().fit(X[train[tr]], S[train[tr]], y_train[tr])
        p = m.predict(X[train[te]], S[train[te]])
        under.extend(y_train[te] / p - 1)
    margin = max(0.0, float(np.percentile(under, 90)))
    model = TransferLatencyModel().fit(X[train], S[train], y_train)
    return model.predict(X, S), margin


def run_seed(df: pd.DataFrame, sources: list[str], args: argparse.Namespace, target: float, seed: int) -> dict:
    space = NB201Space()
    rng = np.random.default_rng(seed)
    X = np.stack([encode_nb201(a) for a in df["arch_str"]])
    S = df[sources].to_numpy(float)
    truth_lat = df[args.device].to_numpy(float)
    truth_acc = df[args.accuracy_column].to_numpy(float)
    train = rng.choice(len(df), size=args.latency_samples, replace=False)
    pred, margin = latency_predictor(X, S, truth_lat[train], train)  # the device column, read at M rows only
    row = {a: i for i, a in enumerate(df["arch_str"])}
    limit = target / (1 + margin)
    latency = lambda arch: float(pred[row[space.to_string(arch)]])  # noqa: E731
    params = {k: (float(v) if "." in v else int(v)) for k, v in (p.split("=", 1) for p in args.strategy_param)}
    strategy = create_strategy(args.strategy, space, seed=seed, feasible=feasibility(space, Limits(latency_ms=limit), latency),
                               **params)
    reward = MnasReward(target, 0.0, -1.0)
    best_i, best_acc, curve, rewards = None, -np.inf, [], []
    for _ in range(args.budget):
        try:
            arch = strategy.ask()
        except SearchExhausted:
            break
        i = row[space.to_string(arch)]
        acc = truth_acc[i]  # an accuracy query
        rewards.append(reward(acc, pred[i]))
        strategy.tell(arch, rewards[-1])
        if acc > best_acc:
            best_i, best_acc = i, acc
        curve.append(float(best_acc))
    feasible_true = truth_lat <= target
    oracle = float(truth_acc[feasible_true].max())
    # the best any search could return under the predicted limit (all architectures evaluated)
    floor = oracle - float(truth_acc[pred <= limit].max())
    return {"seed": seed, "regret_floor": floor, "found_arch": df["arch_str"][best_i], "found_acc": float(truth_acc[best_i]),
            "found_true_latency_ms": float(truth_lat[best_i]), "found_pred_latency_ms": float(pred[best_i]),
            "oracle_acc": oracle, "regret": oracle - float(truth_acc[best_i]),
            "violation": bool(truth_lat[best_i] > target), "margin": margin, "curve": curve, "rewards": rewards}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--accuracy-csv", required=True)
    ap.add_argument("--accuracy-column", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--target-ms", required=True, help="milliseconds, or 'median'")
    ap.add_argument("--strategy", required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--strategy-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a strategy hyper-parameter, e.g. population_size=50 (repeatable)")
    args = ap.parse_args(argv)
    try:
        if args.target_ms != "median":
            float(args.target_ms)
        df, sources, target = load(args)
        if target < df[args.device].min():
            raise HwnasError(f"no architecture has a latency <= {target} ms on {args.device} "
                             f"(smallest: {df[args.device].min():.3f} ms)")
        runs = [run_seed(df, sources, args, target, s) for s in range(args.seeds)]
    except (HwnasError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    regrets = np.array([r["regret"] for r in runs])
    curve_len = min(len(r["curve"]) for r in runs)
    res = {
        "device": args.device, "target_ms": target, "strategy": args.strategy, "budget": args.budget,
        "latency_samples": args.latency_samples, "accuracy_column": args.accuracy_column,
        "regret_mean": float(regrets.mean()), "regret_median": float(np.median(regrets)),
        "violation_rate": float(np.mean([r["violation"] for r in runs])),
        "regret_floor_median": float(np.median([r["regret_floor"] for r in runs])),
        "oracle_acc": runs[0]["oracle_acc"], "found_acc_mean": float(np.mean([r["found_acc"] for r in runs])),
        "best_so_far_curve": np.mean([r["curve"][:curve_len] for r in runs], axis=0).tolist(),
        # the rewards of the proposed architectures, mean over seeds in windows of 20 queries: a
        # learning strategy's rise over time
        "reward_curve": [float(np.mean([r["rewards"][i:i + 20] for r in runs])) for i in range(0, curve_len, 20)],
        "per_seed": runs,
    }
    for r in runs:
        print(f"seed {r['seed']}: found {r['found_acc']:.2f} (oracle {r['oracle_acc']:.2f}, regret {r['regret']:.2f}), "
              f"true latency {r['found_true_latency_ms']:.3f} ms (predicted {r['found_pred_latency_ms']:.3f}, "
              f"limit {target:.3f}, margin {100 * r['margin']:.1f}%){' VIOLATION' if r['violation'] else ''}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=2)
    print(f"median regret {res['regret_median']:.4f}; regret if every architecture predicted within the limit "
          f"were evaluated (median): {res['regret_floor_median']:.4f}")
    print(f"regret={res['regret_mean']:.4f} violations={res['violation_rate']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
