"""Latency-constrained search on NAS-Bench-201 with real accuracy and real device latency.

    python benchmarks/nb201_search.py --latency-csv CSV --accuracy-csv CSV --accuracy-column COL
        --device DEVICE --target-ms T --strategy S --budget N [--latency-samples M] [--seeds K] [--json OUT]

Per seed, at most M architectures of DEVICE are "measured" (their latency read from the CSV: the
only reads of that column during search); N counts accuracy queries. M - V of the measurements
(``--verify-samples V``, default 60% of M) are random architectures measured before the search; a
TransferLatencyModel is trained on them, with the other devices' columns as sources. The other V
are spent during the search the way a user spends device time: the incumbent (the most accurate
architecture evaluated so far that is within T) is measured before it is trusted, and every
measurement is added to the predictor's training set (refit). A measured architecture is feasible
when its measured latency is <= T; an unmeasured one when its prediction, corrected by the
``--margin-percentile`` (default 50: the median) of the predictor's cross-validated relative
under-prediction, is <= T. Strategies propose only feasible architectures, and, while
verifications are left, borderline ones: predicted over T by at most ``--qualify-band`` (default
5%; or within T when corrected by the ``--qualify-percentile`` of the under-prediction); a
borderline architecture that is the most accurate evaluated is measured, which qualifies or
disqualifies it (the predictor's error cuts both ways). The returned architecture (the most
accurate feasible one evaluated) is judged on the true latency and accuracy; the oracle is the
most accurate architecture whose true latency is <= T. The strategy is told each architecture's
reward after the incumbent check, at no more than T (``hwnas.search.strategy_reward``: the limit is
enforced by feasibility and measurement, not by penalising the reward; with the hard preset it is
the accuracy). ``--oracle-latency`` (a diagnostic) judges
feasibility by the true latency instead, which isolates the search's share of the regret.
``--verify-samples 40 --qualify-band 0`` is the method before (stop 15), ``--verify-samples 0
--margin-percentile 90`` the one before that (every measurement up front, a safety margin instead
of verification). ``--target-ms median`` uses the device's median latency, ``p25`` its 25th percentile.
Last line: ``regret=<mean> violations=<rate>``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from hwnas.errors import HwnasError
from hwnas.jobs._profile import parse_key_values
from hwnas.latency_models import TransferLatencyModel, encode_nb201
from hwnas.search import MnasReward, strategy_reward
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
    target = target_latency(df[args.device].to_numpy(float), args.target_ms)
    return df, [d for d in devices if d != args.device], target


def target_latency(latencies: np.ndarray, spec: str) -> float:
    """``--target-ms``: milliseconds, ``median``, or ``pNN`` (the NN-th percentile of the device's
    latencies over the space).

    >>> target_latency(np.arange(1.0, 102.0), "p25"), target_latency(np.arange(1.0, 4.0), "median")
    (26.0, 2.0)
    """
    if spec == "median":
        return float(np.median(latencies))
    if spec.startswith("p"):
        try:
            q = float(spec[1:])
        except ValueError:
            q = -1.0
        if not 0 < q < 100:
            raise HwnasError(f"--target-ms p<percentile> takes a percentile in (0, 100); got {spec!r}")
        return float(np.percentile(latencies, q))
    try:
        return float(spec)
    except ValueError:
        raise HwnasError(f"--target-ms takes milliseconds, median or p<percentile>; got {spec!r}") from None


def latency_predictor_cv(X: np.ndarray, S: np.ndarray, y_train: np.ndarray,
                         train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted latency of every architecture, and the relative under-predictions (measured /
    predicted - 1) of 5-fold cross-validation on the measured ones."""
    under = []
    for tr, te in KFold(5, shuffle=True, random_state=0).split(train):
        m = TransferLatencyModel().fit(X[train[tr]], S[train[tr]], y_train[tr])
        p = m.predict(X[train[te]], S[train[te]])
        under.extend(y_train[te] / p - 1)
    model = TransferLatencyModel().fit(X[train], S[train], y_train)
    return model.predict(X, S), np.asarray(under)


class DeviceLatency:
    """The device in the benchmark: a measurement budget, the measured latencies, and the
    predictor refit on them after every measurement."""

    def __init__(self, X: np.ndarray, S: np.ndarray, truth: np.ndarray, target: float, percentile: float,
                 band: float = 0.0, qualify_percentile: float | None = None) -> None:
        self.X, self.S, self._truth, self.target, self.percentile = X, S, truth, target, percentile
        self.band, self.qualify_percentile = band, qualify_percentile
        self.measured: dict[int, float] = {}
        self.qualify_margin = 0.0

    def measure(self, rows: list[int]) -> None:
        for i in rows:
            self.measured[int(i)] = float(self._truth[i])  # a read of the device column
        idx = np.array(sorted(self.measured))
        self.pred, under = latency_predictor_cv(self.X, self.S, np.array([self.measured[i] for i in idx]), idx)
        self.margin = float(np.percentile(under, self.percentile))
        if self.qualify_percentile is not None:
            self.qualify_margin = float(np.percentile(under, self.qualify_percentile))

    def corrected(self, i: int) -> float:
        return float(self.pred[i] * (1 + self.margin))

    def feasible(self, i: int) -> bool:
        if i in self.measured:
            return self.measured[i] <= self.target
        return self.corrected(i) <= self.target

    @property
    def qualifying(self) -> bool:
        return self.band > 0 or self.qualify_percentile is not None

    def borderline(self, i: int) -> bool:
        """Unmeasured, predicted over T but possibly within it: within the qualification band, or
        within T when corrected by the qualification percentile of the cross-validated
        under-prediction (an adaptive band: wide where the predictor is uncertain). A measurement
        decides."""
        if i in self.measured or not self.qualifying or self.corrected(i) <= self.target:
            return False
        in_band = self.band > 0 and self.corrected(i) <= self.target * (1 + self.band)
        in_percentile = (self.qualify_percentile is not None
                         and self.pred[i] * (1 + self.qualify_margin) <= self.target)
        return in_band or in_percentile

    def latency(self, i: int) -> float:
        return self.measured.get(i, float(self.pred[i]))


def run_seed(df: pd.DataFrame, sources: list[str], args: argparse.Namespace, target: float, seed: int) -> dict:
    space = NB201Space()
    rng = np.random.default_rng(seed)
    X = np.stack([encode_nb201(a) for a in df["arch_str"]])
    truth_lat = df[args.device].to_numpy(float)
    truth_acc = df[args.accuracy_column].to_numpy(float)
    device = DeviceLatency(X, df[sources].to_numpy(float), truth_lat, target, args.margin_percentile,
                           0.0 if args.oracle_latency else args.qualify_band,
                           None if args.oracle_latency else args.qualify_percentile)
    if args.oracle_latency:  # diagnostic: the true latency, no predictor and no measurements
        device.pred, device.margin = truth_lat.copy(), 0.0
        verify_left = 0
    else:
        device.measure(list(rng.choice(len(df), size=args.latency_samples - args.verify_samples, replace=False)))
        verify_left = args.verify_samples
    initial_pred, initial_margin = device.pred.copy(), device.margin
    # what the initial predictor lets the search reach: within T, or borderline
    initial_reach = initial_pred * (1 + initial_margin) <= target * (1 + device.band)
    if device.qualify_percentile is not None:
        initial_reach |= initial_pred * (1 + device.qualify_margin) <= target
    row = {a: i for i, a in enumerate(df["arch_str"])}
    params = parse_key_values(args.strategy_param, "--strategy-param")
    def proposable(arch) -> bool:  # noqa: ANN001
        i = row[space.to_string(arch)]
        return device.feasible(i) or (verify_left > 0 and device.borderline(i))

    strategy = create_strategy(args.strategy, space, seed=seed, feasible=proposable, **params)
    reward = MnasReward(target, 0.0, -1.0)
    evaluated: list[int] = []
    curve, rewards = [], []

    def incumbent(qualify: bool = False) -> int | None:
        """The most accurate evaluated architecture within T; with ``qualify``, borderline ones
        (predicted just over T) compete too: measuring one qualifies or disqualifies it."""
        ok = [i for i in evaluated if device.feasible(i) or (qualify and device.borderline(i))]
        return max(ok, key=lambda i: truth_acc[i]) if ok else None

    for _ in range(args.budget):
        try:
            arch = strategy.ask()
        except SearchExhausted:
            break
        i = row[space.to_string(arch)]
        acc = truth_acc[i]  # an accuracy query
        evaluated.append(i)
        # verify the incumbent on the device before trusting it (a new one may appear when the
        # measurement shows the old one over T), then reward: a measured architecture's reward
        # is computed from its measurement, not from the prediction it was proposed on
        while verify_left > 0 and (best := incumbent(qualify=True)) is not None and best not in device.measured:
            device.measure([best])
            verify_left -= 1
        # what the strategy learns: the reward at the limit where the latency is over it (the
        # hard preset: the accuracy); feasibility and verification enforce the limit
        rewards.append(strategy_reward(reward, acc, device.latency(i), target))
        strategy.tell(arch, rewards[-1])
        best = incumbent()
        curve.append(float(truth_acc[best]) if best is not None else float("nan"))
    best_i = incumbent()
    if best_i is None:
        raise HwnasError(f"seed {seed}: no evaluated architecture is within {target} ms")
    feasible_true = truth_lat <= target
    oracle = float(truth_acc[feasible_true].max())
    # the best a search could return if every architecture the initial predictor puts within T
    # were evaluated (and the ones over T found out by measurement)
    reachable = initial_reach & feasible_true
    floor = oracle - float(truth_acc[reachable].max()) if reachable.any() else float("nan")
    return {"seed": seed, "regret_floor": floor, "found_arch": df["arch_str"][best_i], "found_acc": float(truth_acc[best_i]),
            "found_true_latency_ms": float(truth_lat[best_i]), "found_pred_latency_ms": float(device.pred[best_i]),
            "found_measured": best_i in device.measured,
            "oracle_acc": oracle, "regret": oracle - float(truth_acc[best_i]),
            "violation": bool(truth_lat[best_i] > target), "margin": initial_margin,
            "measurements": len(device.measured),
            "verifications": 0 if args.oracle_latency else args.verify_samples - verify_left,
            "qualified": sum(1 for i in device.measured if i in evaluated and device.measured[i] <= target
                             and initial_pred[i] * (1 + initial_margin) > target),
            "curve": curve, "rewards": rewards}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--accuracy-csv", required=True)
    ap.add_argument("--accuracy-column", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--target-ms", required=True, help="milliseconds, 'median', or 'pNN' (a percentile of the device's latencies)")
    ap.add_argument("--strategy", required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--latency-samples", type=int, default=100, help="M: device measurements per seed, in all")
    ap.add_argument("--verify-samples", type=int, help="V: how many of the M verify incumbents during the search "
                    "(default 60%% of M)")
    ap.add_argument("--margin-percentile", type=float, default=50.0,
                    help="percentile of the cross-validated under-prediction that corrects unmeasured predictions")
    ap.add_argument("--oracle-latency", action="store_true",
                    help="diagnostic: feasibility from the true latency (no predictor); separates the search's "
                    "regret from the predictor's")
    ap.add_argument("--qualify-band", type=float, default=0.05,
                    help="B: unmeasured architectures predicted over T by at most this fraction may be proposed "
                    "too, and are measured (qualified or disqualified) when they are the most accurate evaluated")
    ap.add_argument("--qualify-percentile", type=float,
                    help="Q (< --margin-percentile): unmeasured architectures within T when corrected by the Q-th "
                    "percentile of the cross-validated under-prediction may be proposed too, and are measured "
                    "when they are the most accurate evaluated (an adaptive --qualify-band)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--strategy-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a strategy hyper-parameter, e.g. population_size=50 (repeatable)")
    args = ap.parse_args(argv)
    try:
        if args.verify_samples is None:
            args.verify_samples = int(round(0.6 * args.latency_samples))
        if not 0 <= args.verify_samples <= args.latency_samples - 5:
            raise HwnasError(f"--verify-samples must be between 0 and --latency-samples - 5 "
                             f"({args.latency_samples - 5}); got {args.verify_samples}")
        if not 0 <= args.qualify_band <= 1:
            raise HwnasError(f"--qualify-band must be in [0, 1]; got {args.qualify_band}")
        if not 0 <= args.margin_percentile <= 100:
            raise HwnasError(f"--margin-percentile must be in [0, 100]; got {args.margin_percentile}")
        if args.qualify_percentile is not None and not 0 <= args.qualify_percentile < args.margin_percentile:
            raise HwnasError(f"--qualify-percentile must be in [0, --margin-percentile) = [0, {args.margin_percentile:g}); "
                             f"got {args.qualify_percentile}")
        target_latency(np.ones(1), args.target_ms)  # the form of --target-ms, before the CSVs load
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
        "latency_samples": args.latency_samples, "verify_samples": args.verify_samples,
        "margin_percentile": args.margin_percentile, "qualify_band": args.qualify_band,
        "qualify_percentile": args.qualify_percentile,
        "accuracy_column": args.accuracy_column,
        "measurements_mean": float(np.mean([r["measurements"] for r in runs])),
        "regret_mean": float(regrets.mean()), "regret_median": float(np.median(regrets)),
        "violation_rate": float(np.mean([r["violation"] for r in runs])),
        "regret_floor_median": float(np.median([r["regret_floor"] for r in runs])),
        "oracle_acc": runs[0]["oracle_acc"], "found_acc_mean": float(np.mean([r["found_acc"] for r in runs])),
        "best_so_far_curve": np.nanmean([r["curve"][:curve_len] for r in runs], axis=0).tolist(),
        # the rewards of the proposed architectures, mean over seeds in windows of 20 queries: a
        # learning strategy's rise over time
        "reward_curve": [float(np.mean([r["rewards"][i:i + 20] for r in runs])) for i in range(0, curve_len, 20)],
        "per_seed": runs,
    }
    for r in runs:
        print(f"seed {r['seed']}: found {r['found_acc']:.2f} (oracle {r['oracle_acc']:.2f}, regret {r['regret']:.2f}), "
              f"true latency {r['found_true_latency_ms']:.3f} ms (predicted {r['found_pred_latency_ms']:.3f}, "
              f"limit {target:.3f}, {'measured' if r['found_measured'] else 'not measured'}; "
              f"{r['measurements']} measurements){' VIOLATION' if r['violation'] else ''}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=2)
    print(f"median regret {res['regret_median']:.4f}; regret if every architecture the initial predictor puts "
          f"within T were evaluated (median): {res['regret_floor_median']:.4f}; device measurements per seed "
          f"{res['measurements_mean']:.1f} of {args.latency_samples}")
    print(f"regret={res['regret_mean']:.4f} violations={res['violation_rate']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
