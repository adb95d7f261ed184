"""Weight inheritance: how many epochs an inherited child needs to reach its from-scratch accuracy.

    python benchmarks/inherit_proxy.py [--space mlp] [--epochs 8] [--pairs 20] [--seeds 2] [--first-seed 0]
        [--inherit-schedule one-cycle|constant|cosine] [--json OUT]

Per pair: a random parent trained ``--epochs`` epochs from scratch (proxy training on digits, as
``hwnas search`` does), a child one mutation away (``space.mutate``, as evolution breeds it), the
child trained ``--epochs`` from scratch (its accuracy A), then the child trained e = 1, 2, ...
epochs from the parent's weights (``ProxyTrainingEvaluator.train_inherited``: each e a full
one-cycle schedule of e epochs, or ``--inherit-schedule``; an operation the mutation switched is
blended in from the parent's, ``blended_layers``) until its accuracy reaches A (e = 0 when the
parent's weights alone, BatchNorm statistics re-estimated, already reach it; one epoch is still
trained for the curve); every training ends with its BatchNorm statistics re-estimated, from scratch
as inherited. Reported: e / epochs per pair (1.0 when only the full epochs reach A, ``null`` when
they do not), their mean (pairs that never reach A
count as 1.0), and the accuracies; also the child's accuracy with the parent's weights before any
training (``untrained_acc``, its BatchNorm statistics re-estimated: how much of the parent's function
survives the mutation). torch uses one thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def pair(ev, space, rng, epochs: int) -> dict:  # noqa: ANN001
    parent = space.sample(rng)
    child = space.mutate(parent, rng)
    module, parent_acc = ev.train(parent)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    _, scratch = ev.train(child)
    _, untrained, _ = ev.train_inherited(child, state, 0, parent=parent)  # no epochs: the BatchNorm re-estimate only
    reached = 0 if untrained >= scratch else None  # the parent's weights alone are enough: 0 epochs
    curve, frac, blend = [], 0.0, 0
    for e in range(1, epochs + 1):  # at least one epoch, for the curve
        _, acc, stats = ev.train_inherited(child, state, e, parent=parent)
        curve.append(round(acc, 4))
        frac, blend = stats.fraction, stats.blended_layers
        if reached is None and acc >= scratch:
            reached = e
        if reached is not None:
            break
    return {"parent": space.to_string(parent), "child": space.to_string(child), "parent_acc": round(parent_acc, 4),
            "scratch_acc": round(scratch, 4), "untrained_acc": round(untrained, 4), "inherited_curve": curve, "epochs_to_scratch": reached,
            "ratio": None if reached is None else reached / epochs, "inherited_fraction": round(frac, 3),
            "blended_layers": blend}


def main() -> None:
    from hwnas.search import ProxyTrainingEvaluator, create_space
    from hwnas.search._evaluators import SCHEDULES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--inherit-schedule", choices=SCHEDULES, default="one-cycle",
                    help="the learning-rate schedule of a child trained from its parent's weights")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.first_seed < 0:
        ap.error(f"--first-seed must be >= 0; got {args.first_seed}")  # exit code 2, nothing written
    torch.set_num_threads(1)
    space = create_space(args.space)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        ev = ProxyTrainingEvaluator(space, epochs=args.epochs, resolution=args.resolution, seed=seed,
                                    inherit_schedule=args.inherit_schedule)
        rng = np.random.default_rng(seed)
        for _ in range(args.pairs):
            rows.append({"seed": seed, **pair(ev, space, rng, args.epochs)})
            print(json.dumps(rows[-1]), flush=True)
    ratios = [1.0 if r["ratio"] is None else r["ratio"] for r in rows]
    summary = {"pairs": len(rows), "mean_ratio": round(float(np.mean(ratios)), 3),
               "median_ratio": round(float(np.median(ratios)), 3),
               "never_reached": sum(r["ratio"] is None for r in rows),
               "mean_scratch_acc": round(float(np.mean([r["scratch_acc"] for r in rows])), 4),
               "mean_untrained_acc": round(float(np.mean([r["untrained_acc"] for r in rows])), 4)}
    print(json.dumps({"summary": summary}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "pairs": rows,
                                         "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
