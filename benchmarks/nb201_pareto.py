"""Multi-objective search on NAS-Bench-201: how much of the true accuracy-latency front a strategy
finds in N accuracy queries (``hwnas search --objective pareto``'s method, real accuracy and real
device latency).

    python benchmarks/nb201_pareto.py --latency-csv CSV --accuracy-csv CSV [--accuracy-column COL]
        [--devices D ... | all] [--strategies random nsga2 ...] [--budget 200] [--latency-samples 100]
        [--seeds 10] [--json OUT] [--png OUT]

Per device and seed, M architectures are "measured" (their latency read from the CSV) and a
TransferLatencyModel (the other devices' columns as sources) predicts the rest; every strategy of
that seed gets the same predictor. A strategy is told ``(accuracy, -predicted latency)`` for each of
its N queries (a single-objective strategy cannot be: ``random`` ignores what it is told). Judged on
the true values: the hypervolume of the evaluated architectures' true front, both objectives scaled
to [0, 1] over the whole space (accuracy up, latency down; reference point: the worst of each),
against the hypervolume of the space's true front. Reported per device: the median over seeds of
the hypervolume regret ``1 - HV(found) / HV(true front)``, and how many true-front members were
evaluated. A strategy may carry hyper-parameters, ``nsga2:crossover_prob=0``.
Last line: ``hv_regret=<mean over devices of the medians> ...`` per strategy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import HwnasError
from hwnas.latency_models import TransferLatencyModel, encode_nb201
from hwnas.search import pareto_front
from hwnas.search.spaces import NB201Space
from hwnas.search.strategies import SearchExhausted, create_strategy, strategy_class, strategy_names


def hypervolume(acc: np.ndarray, lat: np.ndarray) -> float:
    """2-D hypervolume of points (accuracy up, latency down, both in [0, 1]) against (0, 1)."""
    hv, best = 0.0, 0.0
    for i in pareto_front(acc, lat):  # by latency, accuracy rising
        hv += (acc[i] - best) * (1.0 - lat[i])
        best = acc[i]
    return float(hv)


def parse_strategy(spec: str) -> tuple[str, dict]:
    name, _, params = spec.partition(":")
    if name not in strategy_names():
        raise HwnasError(f"unknown strategy {name!r}; known strategies: {', '.join(strategy_names())}")
    if name != "random" and not strategy_class(name).multi_objective:
        multi = [n for n in strategy_names() if strategy_class(n).multi_objective]
        raise HwnasError(f"strategy {name!r} takes one reward; multi-objective strategies: {', '.join(multi)}")
    kv = (p.split("=", 1) for p in params.split(",") if p)
    return name, {k: (float(v) if "." in v else int(v)) for k, v in kv}


def run_device(lat: pd.DataFrame, acc: pd.DataFrame, device: str, args: argparse.Namespace) -> dict:
    df = lat.merge(acc[["arch_str", args.accuracy_column]], on="arch_str")
    df = df[np.isfinite(df[device]) & (df[device] > 0)].reset_index(drop=True)
    sources = [c for c in lat.columns if c not in ("index", "arch_str", device)]
    X = np.stack([encode_nb201(a) for a in df["arch_str"]])
    S = df[sources].to_numpy(float)
    true_lat, true_acc = df[device].to_numpy(float), df[args.accuracy_column].to_numpy(float)
    a01 = (true_acc - true_acc.min()) / np.ptp(true_acc)
    l01 = (true_lat - true_lat.min()) / np.ptp(true_lat)
    true_front = set(pareto_front(true_acc, true_lat).tolist())
    hv_true = hypervolume(a01, l01)
    space = NB201Space()
    row = {a: i for i, a in enumerate(df["arch_str"])}
    out: dict[str, list[dict]] = {s: [] for s in args.strategies}
    examples: dict[str, list[int]] = {}
    for seed in range(args.seeds):
        train = np.random.default_rng(seed).choice(len(df), size=args.latency_samples, replace=False)
        pred = TransferLatencyModel().fit(X[train], S[train], true_lat[train]).predict(X, S)
        for spec in args.strategies:
            name, params = parse_strategy(spec)
            strategy = create_strategy(name, space, seed=seed, **params)
            seen: list[int] = []
            for _ in range(args.budget):
                try:
                    arch = strategy.ask()
                except SearchExhausted:
                    break
                i = row[space.to_string(arch)]
                seen.append(i)
                strategy.tell(arch, (true_acc[i], -pred[i]) if name != "random" else 0.0)
            idx = np.array(seen)
            if seed == 0:  # for the plot: what seed 0 evaluated
                examples[spec] = idx.tolist()
            hv = hypervolume(a01[idx], l01[idx])
            out[spec].append({"seed": seed, "hv_regret": 1 - hv / hv_true,
                              "true_front_found": len(true_front & set(seen)),
                              # the front the search reports (predicted latency), judged on the truth
                              "reported_front_hv_regret": 1 - hypervolume(
                                  a01[idx[pareto_front(true_acc[idx], pred[idx])]],
                                  l01[idx[pareto_front(true_acc[idx], pred[idx])]]) / hv_true})
    front_idx = pareto_front(true_acc, true_lat)
    return {"device": device, "true_front_size": len(true_front),
            "true_front": [[float(true_lat[i]), float(true_acc[i])] for i in front_idx],
            "seed0_found_front": {s: [[float(true_lat[j]), float(true_acc[j])] for j in np.array(ix)[
                pareto_front(true_acc[ix], true_lat[ix])]] for s, ix in examples.items()},
            "strategies": {s: {"hv_regret_median": float(np.median([r["hv_regret"] for r in rs])),
                               "reported_front_hv_regret_median": float(np.median(
                                   [r["reported_front_hv_regret"] for r in rs])),
                               "true_front_found_mean": float(np.mean([r["true_front_found"] for r in rs])),
                               "per_seed": rs} for s, rs in out.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--accuracy-csv", required=True)
    ap.add_argument("--accuracy-column", default="cifar10_test_acc")
    ap.add_argument("--devices", nargs="+", default=["all"])
    ap.add_argument("--strategies", nargs="+", default=["random", "nsga2"])
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--png")
    args = ap.parse_args(argv)
    try:
        for s in args.strategies:
            parse_strategy(s)
        try:
            lat, acc = pd.read_csv(args.latency_csv), pd.read_csv(args.accuracy_csv)
        except FileNotFoundError as exc:
            raise HwnasError(f"file not found: {exc.filename}") from None
        devices = [c for c in lat.columns if c not in ("index", "arch_str")]
        if args.devices == ["all"]:
            args.devices = devices
        unknown = [d for d in args.devices if d not in devices]
        if unknown:
            raise HwnasError(f"unknown device(s) {', '.join(unknown)}; devices in {args.latency_csv}: {', '.join(devices)}")
        cols = [c for c in acc.columns if c not in ("index", "arch_str")]
        if args.accuracy_column not in cols:
            raise HwnasError(f"unknown accuracy column {args.accuracy_column!r}; columns: {', '.join(cols)}")
        if not 5 <= args.latency_samples < len(lat) or args.budget < 1 or args.seeds < 1:
            raise HwnasError("need 5 <= --latency-samples < the number of architectures, --budget >= 1, --seeds >= 1")
        results, t0 = [], time.perf_counter()
        for k, d in enumerate(args.devices, 1):
            results.append(run_device(lat, acc, d, args))
            el = time.perf_counter() - t0
            print(f"[{k}/{len(args.devices)}] {d} done, elapsed {el:.0f} s, ETA {el / k * (len(args.devices) - k):.0f} s",
                  file=sys.stderr, flush=True)
    except (HwnasError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| device (true front size) | " + " | ".join(args.strategies) + " |")
    print("|---|" + "---|" * len(args.strategies))
    for r in results:
        print(f"| {r['device']} ({r['true_front_size']}) | " + " | ".join(
            f"{r['strategies'][s]['hv_regret_median']:.4f} ({r['strategies'][s]['true_front_found_mean']:.1f})"
            for s in args.strategies) + " |")
    summary = {}
    for s in args.strategies:
        med = [r["strategies"][s]["hv_regret_median"] for r in results]
        rep = [r["strategies"][s]["reported_front_hv_regret_median"] for r in results]
        summary[s] = {"hv_regret_mean_of_medians": float(np.mean(med)), "reported_front_mean_of_medians": float(np.mean(rep))}
        if s != args.strategies[0]:
            base = [r["strategies"][args.strategies[0]]["hv_regret_median"] for r in results]
            summary[s][f"below_{args.strategies[0]}"] = int(sum(m < b for m, b in zip(med, base)))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"settings": vars(args), "summary": summary, "results": results},
                                                  indent=2) + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [3, 2]})
        x = np.arange(len(results))
        w = 0.8 / len(args.strategies)
        for k, s in enumerate(args.strategies):
            ax.bar(x + k * w, [r["strategies"][s]["hv_regret_median"] for r in results], w, label=s)
        ax.set_xticks(x + 0.4 - w / 2, [r["device"] for r in results], rotation=70, fontsize=7)
        ax.set(ylabel="hypervolume regret (median of seeds)",
               title=f"NB201 {args.accuracy_column}: accuracy-latency front in {args.budget} queries")
        ax.legend()
        ex = results[0]  # the first device, seed 0: the fronts themselves (true values)
        tf = np.array(ex["true_front"])
        ax2.step(tf[:, 0], tf[:, 1], "k-", where="post", lw=1, label="true front (whole space)")
        for s in args.strategies:
            f = np.array(ex["seed0_found_front"][s])
            ax2.step(f[:, 0], f[:, 1], where="post", marker=".", label=f"{s} ({args.budget} queries)")
        ax2.set(xlabel=f"latency on {ex['device']} (ms)", ylabel=args.accuracy_column,
                title=f"{ex['device']}, seed 0: fronts found")
        ax2.set_ylim(np.percentile([a for _, a in ex["true_front"]], 10) - 5, tf[:, 1].max() + 1)
        ax2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    for s in args.strategies:
        extra = "".join(f" {k}={v}" for k, v in summary[s].items() if k.startswith("below"))
        print(f"{s}: hv_regret={summary[s]['hv_regret_mean_of_medians']:.4f} "
              f"reported_front={summary[s]['reported_front_mean_of_medians']:.4f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
