"""Strategies side by side on NAS-Bench-201: ``nb201_search.py`` for every (device, strategy) pair
in one run, the same seeds and predictors for all; a table of median regret and a PNG of the
controllers' sampled rewards over time. Each count of devices within 0.3 comes with how far it moves
when each device's seeds are resampled (a bootstrap: the 5th-95th percentile of the count).

    python benchmarks/nb201_search_compare.py --latency-csv CSV --accuracy-csv CSV
        [--accuracy-column COL] [--devices D ...] [--strategies S ...] [--target median|pNN|MS]
        [--budget 200] [--seeds 10] [--jobs 2] [--json OUT] [--png OUT] [--oracle-latency]

A strategy may carry hyper-parameters, ``evolution:tournament_size=5,crossover_prob=0.3``; it is
then a column of its own, and so may options of ``nb201_search.py`` after an ``@``:
``guided-evolution@qualify-band=0.1``. ``--devices all`` takes every device column of the CSV.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import nb201_search  # noqa: E402


def one(job: tuple[str, str, argparse.Namespace]) -> dict:
    device, spec, a = job
    spec, _, options = spec.partition("@")
    strategy, _, params = spec.partition(":")
    extra = [x for p in params.split(",") if p for x in ("--strategy-param", p)]
    for opt in filter(None, options.split(",")):  # nb201_search options, e.g. @qualify-band=0.1
        name, _, value = opt.partition("=")
        extra += [f"--{name}", value] if value else [f"--{name}"]
    if a.oracle_latency:
        extra.append("--oracle-latency")
    import contextlib
    import io
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as f, contextlib.redirect_stdout(io.StringIO()):
        rc = nb201_search.main(["--latency-csv", a.latency_csv, "--accuracy-csv", a.accuracy_csv,
                                "--accuracy-column", a.accuracy_column, "--device", device, "--target-ms", a.target,
                                "--strategy", strategy, "--budget", str(a.budget), "--seeds", str(a.seeds),
                                "--json", f.name, *extra])
        if rc:
            raise SystemExit(f"nb201_search failed for {device}/{spec}")
        return json.load(open(f.name))


def seed_interval(rows: list[dict], draws: int = 2000, seed: int = 0) -> tuple[int, int]:
    """How far the count of devices with median regret <= 0.3 (violations <= 5%) moves with the
    seeds: each device's seeds resampled with replacement ``draws`` times; the 5th and 95th
    percentiles of the count."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(draws, dtype=int)
    for row in rows:
        reg, vio = np.array(row["regrets"]), np.array(row["violations"], dtype=float)
        idx = rng.integers(0, len(reg), size=(draws, len(reg)))
        counts += (np.median(reg[idx], axis=1) <= 0.3) & (vio[idx].mean(axis=1) <= 0.05)
    return int(np.percentile(counts, 5)), int(np.percentile(counts, 95))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-csv", required=True)
    ap.add_argument("--accuracy-csv", required=True)
    ap.add_argument("--accuracy-column", default="cifar10_test_acc")
    ap.add_argument("--devices", nargs="+", default=["titanx_1", "2080ti_256", "1080ti_32", "silver_4210r",
                                                     "gold_6240", "samsung_s7", "essential_ph_1", "pixel3"])
    ap.add_argument("--strategies", nargs="+", default=["random", "evolution", "reinforce", "ppo"])
    ap.add_argument("--target", default="median", help="each device's limit: median, pNN (a percentile of "
                    "its latencies) or milliseconds")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--png")
    ap.add_argument("--oracle-latency", action="store_true", help="diagnostic: feasibility from the true latency")
    args = ap.parse_args()
    if args.devices == ["all"]:
        import pandas as pd

        args.devices = [c for c in pd.read_csv(args.latency_csv, nrows=1).columns if c not in ("index", "arch_str")]
    jobs = [(d, s, args) for d in args.devices for s in args.strategies]
    # one thread per worker, in fresh (spawned) processes: forked workers inherit the parent's
    # initialised OpenMP/BLAS pools, and --jobs workers each running a pool per core oversubscribe
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        results = list(ex.map(one, jobs))
    table: dict[str, dict[str, dict]] = {}
    for (d, s, _), r in zip(jobs, results):
        table.setdefault(d, {})[s] = {**{k: r[k] for k in ("regret_median", "regret_mean", "violation_rate",
                                                             "regret_floor_median", "reward_curve")},
                                      "regrets": [float(x["regret"]) for x in r["per_seed"]],
                                      "violations": [bool(x["violation"]) for x in r["per_seed"]]}
    print("| device | " + " | ".join(args.strategies) + " |")
    print("|---|" + "---|" * len(args.strategies))
    for d, row in table.items():
        print(f"| {d} | " + " | ".join(f"{row[s]['regret_median']:.3f} ({100 * row[s]['violation_rate']:.0f}%)"
                                        for s in args.strategies) + " |")
    for s in args.strategies:
        med = [table[d][s]["regret_median"] for d in table]
        hit = sum(table[d][s]["regret_median"] <= 0.3 and table[d][s]["violation_rate"] <= 0.05 for d in table)
        lo, hi = seed_interval([table[d][s] for d in table])
        print(f"{s}: mean over devices of the median regret {np.mean(med):.3f}; median regret <= 0.3 with "
              f"violations <= 5% on {hit} of {len(table)} devices (seeds resampled: 90% of counts in {lo}-{hi})")
    for s in args.strategies:
        if s == "random":
            continue
        wins = sum(table[d][s]["regret_median"] < table[d]["random"]["regret_median"] for d in table) \
            if "random" in args.strategies else 0
        print(f"{s} below random on {wins} of {len(table)} devices")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()},
                                                   "results": table}, indent=2) + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for s in args.strategies:
            curves = np.array([table[d][s]["reward_curve"] for d in table])
            x = 20 * np.arange(curves.shape[1]) + 10
            ax.plot(x, curves.mean(0), marker="o", ms=3, label=s)
        ax.set(xlabel="accuracy queries (windows of 20)", ylabel="mean reward of proposals (acc %)",
               title=f"NB201 {args.accuracy_column}, T = {args.target} latency, mean over {len(table)} devices")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
