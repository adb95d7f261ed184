"""How well a search strategy's surrogate ranks NAS-Bench-201 cells by accuracy, per input encoding.

    python benchmarks/nb201_surrogate.py --accuracy-csv CSV [--columns COL ...] [--samples 50 100 200]
        [--seeds 10] [--json OUT]

The surrogate is the one ``guided-evolution`` fits (LightGBM, 50 trees) on N architectures drawn at
random with their accuracy; it then ranks all 15,625 cells. Reported per encoding: Spearman over all
cells, and the regret of the best of the surrogate's top 20 (what a search that evaluated them
would find). Encodings: the space's one-hot ``encode`` and its surrogate ``features`` (one-hot, op
counts, convolutions on the longest live path). Last line: ``spearman_onehot=<mean>
spearman_features=<mean>`` at the largest N, averaged over the columns.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from hwnas.search.spaces import NB201Space
from hwnas.search.strategies import surrogate_regressor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accuracy-csv", required=True)
    ap.add_argument("--columns", nargs="+", default=["cifar10_test_acc", "cifar100_test_acc"])
    ap.add_argument("--samples", nargs="+", type=int, default=[50, 100, 200])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    try:
        acc = pd.read_csv(args.accuracy_csv)
    except FileNotFoundError:
        print(f"error: file not found: {args.accuracy_csv}", file=sys.stderr)
        return 2
    known = [c for c in acc.columns if c not in ("index", "arch_str")]
    bad = [c for c in args.columns if c not in known]
    if bad or "arch_str" not in acc.columns:
        print(f"error: unknown accuracy column {bad[0] if bad else 'arch_str'!r}; columns: {', '.join(known)}",
              file=sys.stderr)
        return 2
    space = NB201Space()
    archs = [space.from_string(a) for a in acc["arch_str"]]
    encodings = {"onehot": np.stack([space.encode(a) for a in archs]),
                 "features": np.stack([space.features(a) for a in archs])}
    results: dict = {}
    for col in args.columns:
        y = acc[col].to_numpy(float)
        for n in args.samples:
            for name, X in encodings.items():
                sp, regret = [], []
                for seed in range(args.seeds):
                    train = np.random.default_rng(seed).choice(len(y), n, replace=False)
                    p = surrogate_regressor(seed).fit(X[train], y[train]).predict(X)
                    sp.append(float(spearmanr(p, y)[0]))
                    regret.append(float(y.max() - y[np.argsort(-p)[:20]].max()))
                results.setdefault(col, {}).setdefault(str(n), {})[name] = {
                    "spearman_mean": float(np.mean(sp)), "top20_regret_median": float(np.median(regret)),
                    "spearman": sp, "top20_regret": regret}
                print(f"{col} N={n:4d} {name:9s} Spearman {np.mean(sp):.3f}  regret of the top 20 (median) "
                      f"{np.median(regret):.3f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)
    big = str(max(args.samples))
    means = {name: np.mean([results[c][big][name]["spearman_mean"] for c in args.columns]) for name in encodings}
    print(f"spearman_onehot={means['onehot']:.4f} spearman_features={means['features']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
