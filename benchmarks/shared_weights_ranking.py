"""How well ENAS's shared weights and the SMASH-style hypernetwork rank subnetworks, on the
architectures and stand-alone accuracies of ``benchmarks/supernet_ranking.py`` (its JSON): per
seed, each method trained with the same epochs, resolution and width, then each architecture
scored without training it (ENAS: shared weights, batch norm recalibrated as for once-for-all,
the controller's reward being the accuracy alone since latency is not what is ranked here;
hypernetwork: generated weights, batch statistics); Kendall tau and Spearman rho against
stand-alone training, beside once-for-all's on the same architectures. The JSON is rewritten
after every seed.

    python benchmarks/shared_weights_ranking.py benchmarks/results/supernet_ranking.json \\
        --json benchmarks/results/shared_weights_ranking.json
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


def score(method: str, space, data, epochs: int, seed: int, archs: list) -> tuple[list[float], float]:
    """Each architecture's accuracy read off the method's trained weights, and the training seconds."""
    if method == "enas":
        from hwnas.search.enas import EnasConfig, EnasSearch

        m = EnasSearch(space, data, EnasConfig(epochs=epochs, seed=seed), lambda a: 1.0, 1.0)
        m.run(on_epoch=lambda e, loss, r: print(f"  seed {seed} enas epoch {e}: CE {loss:.3f}, reward {r:.3f}",
                                                flush=True))
        return [m.shared.accuracy(a) for a in archs], m.train_s
    from hwnas.search.hypernet import HyperConfig, HyperTrainer

    h = HyperTrainer(space, data, HyperConfig(epochs=epochs, seed=seed))
    h.train(on_epoch=lambda e, loss: print(f"  seed {seed} hypernetwork epoch {e}: CE {loss:.3f}", flush=True))
    return [h.accuracy(a) for a in archs], h.train_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ranking_json", type=Path)
    ap.add_argument("--methods", nargs="+", default=["enas", "hypernetwork"], choices=["enas", "hypernetwork"])
    ap.add_argument("--seeds", nargs="+", type=int, help="only these of the ranking's seeds (default: all)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    base = json.loads(args.ranking_json.read_text())
    a = base["args"]
    space = create_space("proxyless", resolution=a["resolution"], width=a["width"], classes=10)
    rows = []  # with --seeds, the JSON's other seeds are kept
    if args.seeds and args.json_out and Path(args.json_out).exists():
        rows = [x for x in json.loads(Path(args.json_out).read_text())["seeds"] if x["seed"] not in args.seeds]
    for r in base["seeds"]:
        if args.seeds and r["seed"] not in args.seeds:
            continue
        seed, archs = r["seed"], [space.from_string(s) for s in r["archs"]]
        row = {"seed": seed, "ofa_kendall_tau": r["kendall_tau"], "ofa_spearman_rho": r["spearman_rho"],
               "random_tau_p95": r["random_tau_p95"]}
        for method in args.methods:
            acc, secs = score(method, space, load_dataset("digits", a["resolution"], seed), a["supernet_epochs"], seed,
                              archs)
            row[method] = {"acc": acc, "kendall_tau": float(kendalltau(acc, r["alone_acc"])[0]),
                           "spearman_rho": float(spearmanr(acc, r["alone_acc"])[0]), "train_s": round(secs, 1)}
            print(f"seed {seed} {method}: tau {row[method]['kendall_tau']:.3f} rho {row[method]['spearman_rho']:.3f} "
                  f"(once-for-all tau {r['kendall_tau']:.3f}); {secs:.0f} s", flush=True)
        rows.append(row)
        if args.json_out:
            rows.sort(key=lambda x: x["seed"])
            Path(args.json_out).write_text(json.dumps({"args": a, "methods": args.methods, "seeds": rows}, indent=1))
    for method in args.methods:
        print(f"mean {method}: tau {np.mean([x[method]['kendall_tau'] for x in rows]):.3f} rho "
              f"{np.mean([x[method]['spearman_rho'] for x in rows]):.3f}")
    print(f"mean once-for-all: tau {np.mean([x['ofa_kendall_tau'] for x in rows]):.3f} rho "
          f"{np.mean([x['ofa_spearman_rho'] for x in rows]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
