"""How far stand-alone proxy training ranks the same architectures alike when trained again with
another seed: the ceiling for any ranking measured against it. Reads the architectures and
stand-alone accuracies of ``benchmarks/supernet_ranking.py``'s JSON (one of its seeds), trains them
again with ``--train-seed``, and reports Kendall tau and Spearman rho between the two trainings.

    python benchmarks/standalone_repeatability.py benchmarks/results/supernet_ranking.json --seed 0 \\
        --train-seed 100 --json benchmarks/results/standalone_repeatability.json

With ``--epochs E`` (other than the ranking's) both trainings are new, with ``--train-seed`` and
``--train-seed + 1``: whether longer training gives a reference that repeats, and each shared-weights
method's tau against the mean of the two (``--shared`` names ``shared_weights_ranking.py``'s JSON).
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
    ap.add_argument("--epochs", type=int, help="train this many epochs, twice (default: the ranking's, once)")
    ap.add_argument("--shared", type=Path, help="shared_weights_ranking.py's JSON: its methods against the mean")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    base = json.loads(args.ranking_json.read_text())
    a = base["args"]
    row = next(r for r in base["seeds"] if r["seed"] == args.seed)
    space = create_space("proxyless", resolution=a["resolution"], width=a["width"], classes=10)
    epochs = args.epochs or a["epochs"]
    first = row["alone_acc"] if args.epochs in (None, a["epochs"]) else _train(space, row["archs"], epochs,
                                                                                a["resolution"], args.train_seed + 1)
    again = _train(space, row["archs"], epochs, a["resolution"], args.train_seed, first)
    tau, rho = float(kendalltau(first, again)[0]), float(spearmanr(first, again)[0])
    print(f"stand-alone vs stand-alone ({epochs} epochs): tau {tau:.3f} rho {rho:.3f}")
    out = {"args": a, "seed": args.seed, "train_seed": args.train_seed, "epochs": epochs, "first": first,
           "again": again, "kendall_tau": tau, "spearman_rho": rho}
    if args.shared is not None:
        out["methods_vs_mean"] = _methods_vs_mean(args.shared, row, [(x + y) / 2 for x, y in zip(first, again)])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return 0


def _train(space, archs: list[str], epochs: int, resolution: int, seed: int,  # noqa: ANN001
           first: list[float] | None = None) -> list[float]:
    ev = ProxyTrainingEvaluator(space, "digits", epochs, resolution, seed=seed)
    accs = []
    for i, s in enumerate(archs):
        accs.append(float(ev(space.from_string(s))))
        before = "" if first is None else f"first {first[i]:.3f} "
        print(f"  arch {i + 1}/{len(archs)} ({epochs} epochs, seed {seed}): {before}{accs[-1]:.3f}", flush=True)
    return accs


def _methods_vs_mean(shared: Path, row: dict, mean: list[float]) -> dict[str, dict[str, float]]:
    seed_row = next(r for r in json.loads(shared.read_text())["seeds"] if r["seed"] == row["seed"])
    methods = {"once-for-all": row["supernet_acc"], **{m: seed_row[m]["acc"] for m in ("enas", "hypernetwork")
                                                      if m in seed_row}}
    out = {}
    for name, acc in methods.items():
        out[name] = {"kendall_tau": float(kendalltau(acc, mean)[0]), "spearman_rho": float(spearmanr(acc, mean)[0])}
        print(f"{name} vs the mean of both: tau {out[name]['kendall_tau']:.3f} rho {out[name]['spearman_rho']:.3f}")
    return out


if __name__ == "__main__":
    sys.exit(main())
