"""Multi-fidelity search against full-fidelity evolution at equal wall time, proxy training on digits.

    python benchmarks/multifidelity_proxy.py --predictor DIR [--space mlp] [--max-epochs 9] [--eta 3]
        [--seeds 5] [--target-ms 1000] [--json OUT]

``--restart``: the multi-fidelity runs train each rung from scratch over its own epochs.

Per seed, in this order: ``hyperband`` (sampler random), ``hyperband`` with ``--sampler bo``
(BOHB-like), ``successive-halving`` (n = eta^3, 1 -> max epochs), each a real run
(:func:`hwnas.jobs.multifidelity_search`, checkpoints and journal in a temporary folder); then
``evolution`` (aging evolution, population 10, every candidate trained for the full ``max_epochs``),
``random`` (full epochs) and ``evolution-inherit`` (the same evolution, children trained
``max_epochs // 3`` epochs from their parent's weights, ``--inherit``; its best retrained from
scratch to the full epochs), each for as long as that seed's Hyperband run took (the equal wall
time), timed on training alone. Reported: the validation accuracy of the best candidate trained to
the full epochs (a multi-fidelity run's rungs are prefixes of one full-epoch training, so its best
is already "retrained to the full epochs": ``train_to`` equals training straight through, tested),
candidates evaluated, epochs trained, seconds. torch uses one thread throughout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def multifidelity(args: argparse.Namespace, method: str, sampler: str, seed: int, params: dict) -> dict:
    from hwnas.jobs import multifidelity_search

    params = {**params, "restart": args.restart}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = multifidelity_search(method, args.space, "cpu-ort", args.predictor, Path(d) / "run", target_ms=args.target_ms,
                                 params=params, sampler=sampler, seed=seed, message=lambda m: None)
        wall = time.perf_counter() - t0
    mf = r["multi_fidelity"]
    return {"method": f"{method}:{sampler}", "seed": seed, "best_accuracy": r["best"]["accuracy"],
            "best_arch": r["best"]["arch"], "evaluations": mf["evaluations"], "epochs": mf["epochs_trained"],
            "train_s": round(mf["seconds"], 2), "wall_s": round(wall, 2)}


def full_fidelity(args: argparse.Namespace, strategy: str, seed: int, seconds: float) -> dict:
    """``strategy`` (``evolution``, ``random``, or ``evolution-inherit``: evolution whose children
    train ``max_epochs // 3`` epochs from their parent's weights) for ``seconds`` of training; the
    best candidate of an inheriting run is then trained from scratch for the full epochs (not
    counted in its time), and that is its accuracy."""
    from hwnas.jobs import create_search

    inherit = strategy == "evolution-inherit"
    params = {"population_size": 10, "tournament_size": 10} if strategy.startswith("evolution") else {}
    with tempfile.TemporaryDirectory() as d:
        s = create_search(args.space, "cpu-ort", target_ms=args.target_ms, predictor=args.predictor,
                          strategy=strategy.removesuffix("-inherit"), evaluator="proxy", epochs=args.max_epochs,
                          seed=seed, verify=0, strategy_params=params, storage=Path(d) / "run",
                          inherit_epochs=max(1, args.max_epochs // 3) if inherit else None)
        spent, best, n, epochs = 0.0, (0.0, ""), 0, 0
        while spent < seconds:
            t = s.ask()
            arch = s.arch_of(t)
            t0 = time.perf_counter()
            acc = s.evaluator(arch)
            spent += time.perf_counter() - t0
            s.tell(t, acc)
            n += 1
            epochs += s.evaluator.epochs if inherit and arch in s.evaluator.inherited else args.max_epochs
            best = max(best, (acc, t.arch))
        row = {"method": strategy, "seed": seed, "best_accuracy": best[0], "best_arch": best[1], "evaluations": n,
               "epochs": epochs, "train_s": round(spent, 2)}
        if inherit:
            arch = s.space.from_string(best[1])
            row.update(search_accuracy=best[0], inherited=len(s.evaluator.inherited),
                       best_accuracy=s.evaluator.base(arch))  # retrained from scratch, full epochs
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", type=Path, required=True)
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--max-epochs", type=int, default=9)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--target-ms", type=float, default=1000.0)
    ap.add_argument("--restart", action="store_true", help="the multi-fidelity runs' rungs train from scratch")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    full_fidelity(args, "random", 0, 1e-9)  # warm-up: imports, data, torch's first steps (not timed)
    rows = []
    for seed in range(args.seeds):
        hb = multifidelity(args, "hyperband", "random", seed, {"max_epochs": args.max_epochs, "eta": args.eta})
        rows.append(hb)
        print(json.dumps(hb), flush=True)
        rows.append(multifidelity(args, "hyperband", "bo", seed, {"max_epochs": args.max_epochs, "eta": args.eta}))
        print(json.dumps(rows[-1]), flush=True)
        rows.append(multifidelity(args, "successive-halving", "random", seed,
                                  {"n": args.eta ** 3, "eta": args.eta, "max_epochs": args.max_epochs}))
        print(json.dumps(rows[-1]), flush=True)
        for strategy in ("evolution", "random", "evolution-inherit"):
            rows.append(full_fidelity(args, strategy, seed, hb["train_s"]))
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        accs = {r["seed"]: r["best_accuracy"] for r in rows if r["method"] == method}
        evo = {r["seed"]: r["best_accuracy"] for r in rows if r["method"] == "evolution"}
        summary[method] = {"mean_best_accuracy": round(sum(accs.values()) / len(accs), 4),
                           "seeds_at_least_evolution": sum(accs[s] >= evo[s] for s in accs)}
    print(json.dumps({"summary": summary}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "runs": rows,
                                         "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
