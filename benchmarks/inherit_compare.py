"""Two sets of ``benchmarks/inherit_proxy.py`` results on the same pairs, compared (no training).

    python benchmarks/inherit_compare.py --before benchmarks/results/inherit_proxy_nb201_e8_s{0,1,2}.json \\
        --after benchmarks/results/inherit_proxy_nb201_e8_blend_s{0,1,2}.json [--json OUT]

For each set: the mean e / E (a pair that never reaches its scratch accuracy counts as 1.0, as in
``inherit_proxy.py``), the same counted within 1 and 2 validation images of the scratch accuracy
(``--val-images``: digits' 359; accuracies are stored to 4 decimals, so 1e-4 of rounding is
allowed), how far the exact mean moves when the pairs are resampled with replacement (2,000 draws,
the 5th-95th percentile), the pairs never reached, and the mean accuracy after one inherited epoch.
The files are paired in order and each pair must be the same parent and child.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hwnas._files import write_json


def ratio_within(pair: dict, images: int, val_images: int, epochs: int) -> float:
    """e / E of the first inherited epoch within ``images`` of the scratch accuracy (0 when the
    child's accuracy before training is; 1.0: never)."""
    bar = pair["scratch_acc"] - images / val_images - 1e-4
    if pair.get("untrained_acc", -1.0) >= bar:  # the parent's weights alone: 0 epochs (files before stop 43 lack it)
        return 0.0
    for e, acc in enumerate(pair["inherited_curve"], 1):
        if acc >= bar:
            return e / epochs
    return 1.0


def summary(pairs: list[dict], val_images: int, epochs: int) -> dict:
    within = {k: np.array([ratio_within(p, k, val_images, epochs) for p in pairs]) for k in (0, 1, 2)}
    out = {f"mean_ratio_within_{k}": round(float(r.mean()), 3) for k, r in within.items()}
    exact = within[0]
    means = exact[np.random.default_rng(0).integers(0, len(exact), (2000, len(exact)))].mean(axis=1)
    out["mean_ratio_90pct_pairs_resampled"] = [round(float(q), 3) for q in np.percentile(means, [5, 95])]
    out["never_reached"] = sum(p["ratio"] is None for p in pairs)
    out["mean_acc_after_1_epoch"] = round(float(np.mean([p["inherited_curve"][0] for p in pairs])), 4)
    return {"pairs": len(pairs), **out}


def load(paths: list[Path]) -> tuple[list[dict], int]:
    pairs, epochs = [], set()
    for p in paths:
        d = json.loads(p.read_text())
        pairs += d["pairs"]
        epochs.add(int(d["settings"]["epochs"]))
    if len(epochs) != 1:
        raise ValueError(f"the files were run with different --epochs: {sorted(epochs)}")
    return pairs, epochs.pop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs="+", type=Path, required=True)
    ap.add_argument("--after", nargs="+", type=Path, required=True)
    ap.add_argument("--val-images", type=int, default=359)
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    if args.val_images < 1:
        ap.error(f"--val-images must be >= 1; got {args.val_images}")
    missing = [str(p) for p in args.before + args.after if not p.is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    try:
        (before, e1), (after, e2) = load(args.before), load(args.after)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        ap.error(f"not inherit_proxy.py results: {exc}")
    bad = [i for i, (a, b) in enumerate(zip(before, after)) if (a["parent"], a["child"]) != (b["parent"], b["child"])]
    if len(before) != len(after) or bad or e1 != e2:
        ap.error(f"the two sets are not the same pairs ({len(before)} and {len(after)} pairs, "
                 f"{len(bad)} differing, epochs {e1} and {e2})")
    result = {"before": summary(before, args.val_images, e1), "after": summary(after, args.val_images, e2),
              "pairs_better_after_1_epoch": sum(b["inherited_curve"][0] > a["inherited_curve"][0]
                                                for a, b in zip(before, after)),
              "pairs_worse_after_1_epoch": sum(b["inherited_curve"][0] < a["inherited_curve"][0]
                                               for a, b in zip(before, after))}
    print(json.dumps(result, indent=1))
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
