"""How well ENAS's shared weights rank subnetworks, on the architectures and stand-alone
accuracies of ``benchmarks/supernet_ranking.py`` (its JSON): per seed, ENAS trained with the same
epochs, resolution and width (shared weights on controller-sampled paths; the reward is the
accuracy alone: latency is not what is ranked here), then each architecture scored with the
shared weights (batch norm recalibrated, as for once-for-all); Kendall tau and Spearman rho
against stand-alone training, beside once-for-all's on the same architectures.

    python benchmarks/enas_ranking.py benchmarks/results/supernet_ranking.json --json benchmarks/results/enas_ranking.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwnas.search import create_space
from hwnas.search._evaluators import load_dataset
from hwnas.search.enas import EnasConfig, EnasSearch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ranking_json", type=Path)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    base = json.loads(args.ranking_json.read_text())
    a = base["args"]
    space = create_space("proxyless", resolution=a["resolution"], width=a["width"], classes=10)
    rows = []
    for r in base["seeds"]:
        seed = r["seed"]
        enas = EnasSearch(space, load_dataset("digits", a["resolution"], seed),
                          EnasConfig(epochs=a["supernet_epochs"], seed=seed), lambda arch: 1.0, 1.0)
        enas.run(on_epoch=lambda e, loss, reward: print(f"  seed {seed} enas epoch {e}: CE {loss:.3f}, "
                                                        f"reward {reward:.3f}", flush=True))
        shared = [enas.shared.accuracy(space.from_string(s)) for s in r["archs"]]
        rows.append({"seed": seed, "shared_acc": shared, "kendall_tau": float(kendalltau(shared, r["alone_acc"])[0]),
                     "spearman_rho": float(spearmanr(shared, r["alone_acc"])[0]), "ofa_kendall_tau": r["kendall_tau"],
                     "ofa_spearman_rho": r["spearman_rho"], "random_tau_p95": r["random_tau_p95"],
                     "train_s": round(enas.train_s, 1)})
        print(f"seed {seed}: ENAS tau {rows[-1]['kendall_tau']:.3f} rho {rows[-1]['spearman_rho']:.3f} "
              f"(once-for-all tau {r['kendall_tau']:.3f} rho {r['spearman_rho']:.3f}); {enas.train_s:.0f} s", flush=True)
    print(f"mean: ENAS tau {np.mean([x['kendall_tau'] for x in rows]):.3f} rho "
          f"{np.mean([x['spearman_rho'] for x in rows]):.3f}; once-for-all tau "
          f"{np.mean([x['ofa_kendall_tau'] for x in rows]):.3f} rho {np.mean([x['ofa_spearman_rho'] for x in rows]):.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": a, "seeds": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
