"""How well a once-for-all supernet ranks subnetworks: Kendall tau and Spearman rho between the
accuracy read off the supernet (batch-norm recalibrated, no training) and the accuracy of the
same architectures trained stand-alone, on digits, per seed; beside a random ranking and FLOPs.

For each seed: one supernet over ``proxyless`` (width, resolution as given) trained
``--supernet-epochs``; ``--archs`` architectures spread over the space's FLOPs (quantiles of 400
random samples); each trained alone ``--epochs`` with the search's proxy evaluator.

    python benchmarks/supernet_ranking.py --seeds 0 1 2 --archs 20 --json benchmarks/results/supernet_ranking.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwnas.search import create_space
from hwnas.search._evaluators import ProxyTrainingEvaluator, load_dataset
from hwnas.search.ofa import OFAConfig, OnceForAll


def spread(space, n: int, seed: int) -> list:
    """``n`` distinct architectures at evenly spaced FLOPs quantiles of 400 random ones."""
    rng = np.random.default_rng(seed)
    pool = sorted({space.sample(rng) for _ in range(400)}, key=space.flops)
    idx = np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))
    return [pool[i] for i in idx]


def one_seed(seed: int, args) -> dict:
    space = create_space("proxyless", resolution=args.resolution, width=args.width, classes=10)
    ofa = OnceForAll(space, load_dataset("digits", args.resolution, seed), OFAConfig(epochs=args.supernet_epochs,
                                                                                    seed=seed))
    ofa.train(on_epoch=lambda e, loss: print(f"  seed {seed} supernet epoch {e}: CE {loss:.3f}", flush=True))
    archs = spread(space, args.archs, seed)
    t0 = time.perf_counter()
    shared = [ofa.accuracy(a) for a in archs]
    shared_s = time.perf_counter() - t0
    ev = ProxyTrainingEvaluator(space, "digits", args.epochs, args.resolution, seed=seed)
    t0 = time.perf_counter()
    alone = []
    for i, a in enumerate(archs):
        alone.append(float(ev(a)))
        print(f"  seed {seed} arch {i + 1}/{len(archs)}: supernet {shared[i]:.3f} alone {alone[-1]:.3f}", flush=True)
    alone_s = time.perf_counter() - t0
    flops = [space.flops(a) for a in archs]
    rng = np.random.default_rng(seed)
    rand = [kendalltau(rng.permutation(len(archs)), alone)[0] for _ in range(1000)]
    return {"seed": seed, "archs": [space.to_string(a) for a in archs], "supernet_acc": shared, "alone_acc": alone,
            "kendall_tau": float(kendalltau(shared, alone)[0]), "spearman_rho": float(spearmanr(shared, alone)[0]),
            "flops_tau": float(kendalltau(flops, alone)[0]),
            "random_tau_mean": float(np.nanmean(rand)), "random_tau_p95": float(np.nanpercentile(rand, 95)),
            "supernet_train_s": round(ofa.train_s, 1), "supernet_eval_s": round(shared_s, 1),
            "standalone_s": round(alone_s, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--supernet-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=5, help="stand-alone training epochs per architecture")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.35)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    rows = [one_seed(s, args) for s in args.seeds]
    print("| seed | Kendall tau | Spearman rho | FLOPs tau | random tau (p95) | supernet s | stand-alone s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} | {r['flops_tau']:.3f} | "
              f"{r['random_tau_mean']:.3f} ({r['random_tau_p95']:.3f}) | {r['supernet_train_s'] + r['supernet_eval_s']:.0f} | "
              f"{r['standalone_s']:.0f} |")
    print(f"mean Kendall tau {np.mean([r['kendall_tau'] for r in rows]):.3f}, "
          f"Spearman rho {np.mean([r['spearman_rho'] for r in rows]):.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "seeds": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
