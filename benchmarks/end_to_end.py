"""The whole pipeline (profile -> predictor -> search -> export -> measure) for several budgets.

    python benchmarks/end_to_end.py [--device cpu-ort] [--quantiles 0.2 0.5 0.8] [--out DIR] [--json OUT]

Each budget is a quantile of the search space's predicted latencies (or ``--budgets-ms``); all
budgets share one profile store, so only the first run profiles. Per budget: the chosen model's
accuracy, predicted and measured latency, whether it meets the budget, measured/predicted.
Targets: every exported model within budget when measured; measured/predicted within +-10%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from hwnas.devices import default_registry
from hwnas.errors import HwnasError
from hwnas.jobs import PipelineConfig, run_pipeline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--quantiles", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    ap.add_argument("--budgets-ms", type=float, nargs="+")
    ap.add_argument("--search-budget", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/out/end_to_end")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    try:
        dev = default_registry().get(args.device)
    except HwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    rows = []
    budgets = [("budget", b) for b in args.budgets_ms] if args.budgets_ms else [("quantile", q) for q in args.quantiles]
    for kind, value in budgets:
        d = out / f"{kind}_{value}"
        if (d / "run").exists():  # a fresh search and export per run; the profile store is shared
            shutil.rmtree(d / "run")
        d.mkdir(parents=True, exist_ok=True)
        shared = out / "profiles.sqlite"
        if shared.exists() and not (d / "profiles.sqlite").exists():
            shutil.copy(shared, d / "profiles.sqlite")
        cfg = dataclasses.replace(PipelineConfig(), search_budget=args.search_budget,
                                  **({"budget_ms": value} if kind == "budget" else {"budget_quantile": value}))
        t0 = time.perf_counter()
        res = run_pipeline(d, dev, cfg, log=lambda m: print("  " + m, flush=True))
        shutil.copy(d / "profiles.sqlite", shared)
        s = res.summary
        row = {"budget_from": f"{kind} {value}", "budget_ms": s["budget_ms"], "limit_ms": s["limit_ms"],
               "arch": s["best_arch"], "accuracy": s["accuracy"], "predicted_ms": s["predicted_latency_ms"],
               "measured_ms": s["measured_latency_ms"], "meets_budget": s["meets_budget"],
               "measured_over_predicted": s["measured_latency_ms"] / s["predicted_latency_ms"],
               "heldout_mape": s["predictor_heldout"]["mape"],
               "speed_factor_at_export": s.get("speed_factor_at_export"),
               "calibration_models_speed_factor": s["calibration_models_speed_factor"],
               "ratio_at_calibration_speed": s["measured_latency_ms"] / s["predicted_latency_ms"]
               / s["calibration_models_speed_factor"], "speed_checks": s.get("speed_checks"), "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(f"{row['budget_from']}: budget {row['budget_ms']:.3f} ms -> accuracy {row['accuracy']:.4f}, predicted "
              f"{row['predicted_ms']:.3f} ms, measured {row['measured_ms']:.3f} ms "
              f"({'meets' if row['meets_budget'] else 'OVER'}; measured/predicted {row['measured_over_predicted']:.3f}; "
              f"calibration models re-measured at {row['calibration_models_speed_factor']:.3f}x)",
              flush=True)
    print("| budget | budget (ms) | accuracy | predicted (ms) | measured (ms) | within budget | measured/predicted "
          "| calibration models now/then | measured/predicted at calibration speed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['budget_from']} | {r['budget_ms']:.3f} | {r['accuracy']:.4f} | {r['predicted_ms']:.3f} | "
              f"{r['measured_ms']:.3f} | {'yes' if r['meets_budget'] else 'NO'} | {r['measured_over_predicted']:.3f} | "
              f"{r['calibration_models_speed_factor']:.3f} | {r['ratio_at_calibration_speed']:.3f} |")
    ok = all(r["meets_budget"] for r in rows)
    within = all(abs(r["measured_over_predicted"] - 1) <= 0.10 for r in rows)
    print(f"all within budget: {ok}; all measured/predicted within +-10%: {within}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"device": args.device, "rows": rows, "all_within_budget": ok,
                                                   "all_ratio_within_10pct": within}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
