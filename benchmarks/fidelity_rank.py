"""How well a short training ranks candidates: Spearman correlation between the validation accuracy
after each rung's epochs and after the full epochs (what successive halving and Hyperband rely on).

    python benchmarks/fidelity_rank.py [--space mlp] [--candidates 20] [--rungs 1 3 9 27]
        [--restart | --schedule constant] [--json OUT]

Each candidate (random, seeded) is trained once through the rungs (``train_to`` continuing from its
checkpoint: every rung a prefix of one full-epoch training, as in a multi-fidelity run; with
``--restart`` each rung is a training of its own, from scratch, over that many epochs). Also
reported: how often the full-epoch best is among the top 1/3 at each rung (it survives a promotion
with eta = 3). ``--schedule constant``: the rungs train at a constant learning rate
(``ProxyTrainingEvaluator(schedule="constant")``), and each rung is also compared with the
candidate's accuracy after the full epochs of the default one-cycle training (what the winner is
retrained with). torch uses one thread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr


def main() -> None:
    from hwnas.search import ProxyTrainingEvaluator, create_space
    from hwnas.search._evaluators import SCHEDULES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--rungs", type=int, nargs="+", default=[1, 3, 9, 27])
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--restart", action="store_true", help="each rung trained from scratch with its own schedule "
                    "of that many epochs (instead of a prefix of the full one)")
    ap.add_argument("--schedule", default="one-cycle", choices=SCHEDULES, help="the rungs' learning-rate schedule")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = create_space(args.space)
    ev = ProxyTrainingEvaluator(space, resolution=args.resolution, seed=args.seed, schedule=args.schedule)
    other = args.schedule != "one-cycle"  # then also the default one-cycle training's full-epoch accuracy
    ref = ProxyTrainingEvaluator(space, resolution=args.resolution, seed=args.seed) if other else None
    rng = np.random.default_rng(args.seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(args.candidates)))
    acc = np.zeros((len(archs), len(args.rungs)))
    one_cycle = np.zeros(len(archs))
    with tempfile.TemporaryDirectory() as d:
        for i, a in enumerate(archs):
            for j, e in enumerate(args.rungs):
                acc[i, j] = (ev.train_to(a, e, e) if args.restart
                             else ev.train_to(a, e, args.rungs[-1], Path(d) / f"{i}.pt"))
            if ref is not None:
                one_cycle[i] = ref.train_to(a, args.rungs[-1], args.rungs[-1])
            print(json.dumps({"arch": space.to_string(a), "accuracy": acc[i].round(4).tolist(),
                              "one_cycle_full": round(float(one_cycle[i]), 4)}), flush=True)
    best = int(np.argmax(acc[:, -1]))
    out = {"rungs": args.rungs, "candidates": len(archs),
           "spearman_vs_full": [round(float(spearmanr(acc[:, j], acc[:, -1])[0]), 3) for j in range(len(args.rungs))],
           "full_best_in_top_third": [bool(best in np.argsort(-acc[:, j])[: max(1, len(archs) // 3)])
                                      for j in range(len(args.rungs))],
           "accuracy_spread_at_full": [round(float(acc[:, -1].min()), 4), round(float(acc[:, -1].max()), 4)]}
    if other:
        best1 = int(np.argmax(one_cycle))
        out["spearman_vs_one_cycle_full"] = [round(float(spearmanr(acc[:, j], one_cycle)[0]), 3)
                                             for j in range(len(args.rungs))]
        out["one_cycle_best_in_top_third"] = [bool(best1 in np.argsort(-acc[:, j])[: max(1, len(archs) // 3)])
                                              for j in range(len(args.rungs))]
    print(json.dumps(out))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                         "accuracy": acc.tolist(), "archs": [space.to_string(a) for a in archs],
                                         **out}, indent=1))


if __name__ == "__main__":
    main()
