"""How far stand-alone proxy training ranks the same architectures alike when trained again with
another seed: the ceiling for any ranking measured against it. Reads the architectures and
stand-alone accuracies of ``benchmarks/supernet_ranking.py``'s JSON (one of its seeds), trains them
again with ``--train-seed``, and reports Kendall tau and Spearman rho between the two trainings.

    python benchmarks/standalone_repeatability.py benchmarks/results/supernet_ranking.json --seed 0 \\
        --train-seed 100 --json benchmarks/results/standalone_repeatability.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy.stats import kendalltau, spearmanr

from hwnas.search import create_space
from hwnas.search._evaluators import ProxyTrainingEvaluator


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ranking_json", type=Path)
    ap.add_argument("--seed", type=int, default=0, help="which seed's architectures")
    ap.add_argument("--train-seed", type=int, default=100)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    base = json.loads(args.ranking_json.read_text())
    a = base["args"]
    row = next(r for r in base["seeds"] if r["seed"] == args.seed)
    space = create_space("proxyless", resolution=a["resolution"], width=a["width"], classes=10)
    ev = ProxyTrainingEvaluator(space, "digits", a["epochs"], a["resolution"], seed=args.train_seed)
    again = []
    for i, s in enumerate(row["archs"]):
        again.append(float(ev(space.from_string(s))))
        print(f"  arch {i + 1}/{len(row['archs'])}: first {row['alone_acc'][i]:.3f} again {again[-1]:.3f}", flush=True)
    tau, rho = float(kendalltau(row["alone_acc"], again)[0]), float(spearmanr(row["alone_acc"], again)[0])
    print(f"stand-alone vs stand-alone (seed {args.seed} vs {args.train_seed}): tau {tau:.3f} rho {rho:.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": a, "seed": args.seed, "train_seed": args.train_seed,
                                                   "first": row["alone_acc"], "again": again, "kendall_tau": tau,
                                                   "spearman_rho": rho}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
