"""Predictor accuracy on whole models measured on a device (issue: latency models).

1. Profiles op configurations sampled from nn-Meter-style priors plus the kernels of the training
   models, then an adaptive round around the worst-predicted ones.
2. Measures >= 100 whole models: training models (random architectures, MobileNetV2- and ResNet-like
   at several widths/resolutions) calibrate each predictor; held-out test models (other random
   architectures and the MnasNet-, EfficientNet- and SqueezeNet-like families, never profiled or
   used for training) evaluate it.
3. Reports RMSE, MAPE, +-5% / +-10% accuracy, Spearman and Kendall for LightGBM, LUT and FLOPs
   models side by side, a predicted-vs-measured plot, and batch prediction throughput.

    python benchmarks/predictor_accuracy.py --device cpu-ort [--samples 700] [--adaptive 150]
        [--db benchmarks/out/predictor.sqlite] [--model-passes 3] [--remeasure-models] [--recheck 30]
        [--op-time auto|e2e|kernel|mean] [--heldout-set first|second|third] [--json OUT] [--plot PNG]

Everything measured is kept in the store: a rerun reuses it (pass a new --db to re-measure).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwnas import zoo
from hwnas.devices import default_registry
from hwnas.errors import HwnasError
from hwnas.latency_models import LatencyPredictor, sample_configs
from hwnas.latency_models import (
    OP_TIME_CHOICES, adaptive_configs, calibrate_on, op_time_candidates, select_op_time, calibration_models, evaluate, evaluation_models, HELDOUT_SETS, fit_model, kernel_units, training_data,
)
from hwnas.profilers import OpConfig, OpType, Profiler, ProfileStore, governor_warning, measure_models
from hwnas.profilers import mobilenetv2_layers

MODELS = ["lightgbm", "lut", "flops"]


def model_sets(quick: bool, heldout: str = "first") -> tuple[list[zoo.ZooModel], list[zoo.ZooModel]]:
    """The predictor's own calibration and held-out sets, with 40 random architectures in each
    (``heldout``: which held-out set, see ``evaluation_models``)."""
    n = 4 if quick else 40
    return calibration_models(quick, n_random=n), evaluation_models(quick, n_random=n, heldout=heldout)


def progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console)


def profile_ops(profiler: Profiler, configs: list[OpConfig], console: Console, what: str) -> None:
    with progress(console) as prog:
        task = prog.add_task(what, total=len(configs))
        profiler.profile_ops(configs, on_start=lambda todo, skipped: prog.update(task, completed=skipped),
                             on_done=lambda m: prog.advance(task))


def proxyless_like_choices() -> list[list[list[OpConfig]]]:
    """Per layer of the MobileNetV2 skeleton: MBConv k{3,5,7} x e{3,6}, or skip where allowed."""
    layers = mobilenetv2_layers(224, 1.0)
    choices = []
    for cfg in layers:
        if cfg.op is not OpType.MBCONV or cfg.expand == 1:
            choices.append([[cfg]])
            continue
        opts = [[OpConfig(OpType.MBCONV, cfg.cin, cfg.cout, cfg.h, cfg.w, kernel=k, stride=cfg.stride, expand=e,
                          act=cfg.act, residual=cfg.residual)] for k in (3, 5, 7) for e in (3, 6)]
        if cfg.residual:
            opts.append([])  # the zero op: skip the layer
        choices.append(opts)
    return choices


def throughput(predictor: LatencyPredictor, n: int = 1_000_000) -> dict[str, float]:
    choices = proxyless_like_choices()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    table = predictor.layer_table(choices)
    build_s = time.perf_counter() - t0
    idx = np.stack([rng.integers(0, len(c), size=n) for c in choices], axis=1)
    t0 = time.perf_counter()
    lat = table.predict(idx)
    batch_s = time.perf_counter() - t0
    # the generic path (architectures as lists of op configurations), on fewer architectures
    m = 20_000
    archs = [[c for li, j in enumerate(idx[i]) for c in choices[li][j]] for i in range(m)]
    t0 = time.perf_counter()
    lat2 = predictor.predict_architectures(archs)
    generic_s = time.perf_counter() - t0
    assert np.allclose(lat[:m], lat2, rtol=1e-6)
    return {"archs_per_s_table": n / batch_s, "table_build_s": build_s, "archs_per_s_generic": m / generic_s,
            "n_table": n, "n_generic": m}


def without_hardswish_term(pred: LatencyPredictor, train_m: list, test_m: list) -> dict[str, float]:
    """Held-out metrics of the same op model calibrated without the HardSwish term (its ablation)."""
    from hwnas.latency_models import latency_metrics
    from hwnas.latency_models import Calibration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = pred.calibration_terms([kernel_units(m.onnx) for m in train_m])
        te = pred.calibration_terms([kernel_units(m.onnx) for m in test_m])
    s, n, b, w, q, _ = tr.T
    cal = Calibration.fit(s, n, b, w, [m.latency_ms for m in train_m], q)
    return latency_metrics(np.array([m.latency_ms for m in test_m]), cal.apply(*te[:, :5].T))


def pass_statistics(store: ProfileStore, fingerprint_id: str, names: list[str], statistic: str) -> dict:
    """Per model, its stored passes' latency by ``statistic`` (the profiler's ``median`` of round
    medians, or ``p10``: the 10th percentile of its runs): the fastest pass (what is scored) and how
    far the passes agree (the largest / the fastest - 1), the ceiling of any prediction's agreement."""
    df = store.model_measurements(fingerprint_id)
    col = {"median": "latency_ms", "p10": "p10_ms"}[statistic]
    df = df[df["model_name"].isin(names)]
    g = df.groupby("model_name")[col]
    fastest, spread = g.min(), g.max() / g.min() - 1
    return {"fastest_ms": fastest.to_dict(), "spread": spread.to_dict(), "passes": g.size().to_dict()}


def repeatability(stats: dict, names: list[str]) -> dict[str, float]:
    """How far the models' passes agree: median spread and the share within +-5% and +-10%."""
    sp = np.array([stats["spread"][n] for n in names if stats["passes"][n] > 1])
    if not len(sp):
        return {"n": 0}
    return {"n": int(len(sp)), "median_spread": float(np.median(sp)), "within_5": float(np.mean(sp <= 0.05)),
            "within_10": float(np.mean(sp <= 0.10))}


def with_statistic(models: list, stats: dict) -> list:
    """The measured models with the fastest pass by the chosen statistic as their latency."""
    from hwnas.profilers._records import MeasuredModel

    return [MeasuredModel(m.name, m.onnx, float(stats["fastest_ms"][m.name])) for m in models]


def plot(results: dict, measured: dict[str, np.ndarray], families: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 4.8), sharex=True, sharey=True)
    fams = sorted(set(families))
    colors = dict(zip(fams, plt.cm.tab10.colors))
    m = measured["test"]
    lim = (0.8 * m.min(), 1.25 * m.max())
    for ax, name in zip(axes, MODELS):
        p = np.asarray(results[name]["test_predicted_ms"])
        for f in fams:
            sel = np.array([x == f for x in families])
            ax.scatter(m[sel], p[sel], s=14, color=colors[f], label=f)
        x = np.geomspace(*lim, 50)
        ax.plot(x, x, "k-", lw=0.8)
        ax.fill_between(x, 0.9 * x, 1.1 * x, color="grey", alpha=0.2, label="+-10%")
        met = results[name]["test"]
        ax.set_title(f"{name}: acc10 {100 * met['acc10']:.0f}%, MAPE {100 * met['mape']:.1f}%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured latency (ms)")
    axes[0].set_ylabel("predicted latency (ms)")
    axes[0].legend(fontsize=7)
    fig.suptitle("held-out whole models: predicted vs measured")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu-ort")
    ap.add_argument("--db", default="benchmarks/out/predictor.sqlite")
    ap.add_argument("--samples", type=int, default=700)
    ap.add_argument("--adaptive", type=int, default=150)
    ap.add_argument("--quick", action="store_true", help="a smoke run with few models")
    ap.add_argument("--model-passes", type=int, default=3,
                    help="measure every whole model in this many passes and keep its fastest (contention on a "
                    "shared machine slows whole models in phases of minutes)")
    ap.add_argument("--remeasure-models", action="store_true",
                    help="measure the whole models again instead of reusing the store's measurements")
    ap.add_argument("--op-time", choices=OP_TIME_CHOICES,
                    help="what the op models learn: each op timed alone end to end, the runtime's own kernel time, "
                    "their geometric mean, or auto: each calibrated on the calibration models and the one with the "
                    "lowest leave-one-out MAPE kept, per latency model (default: auto)")
    ap.add_argument("--recheck", type=int, default=30,
                    help="stored ops measured again after profiling: how far this machine's measurements repeat "
                    "(reported beside the accuracy; 0: no check)")
    ap.add_argument("--heldout-set", choices=tuple(HELDOUT_SETS), default="first",
                    help="second, third: held-out models disjoint from the earlier sets (other random seeds, the "
                    "families at other widths and resolutions), to check a choice made while looking at those")
    ap.add_argument("--model-statistic", choices=("median", "p10"), default="median",
                    help="what a whole model's latency is, from its stored passes: the fastest pass's median "
                    "(what the profiler reports) or its 10th percentile (less moved by a busy machine; an "
                    "analysis of how far measurement noise limits the score)")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--plot", default="benchmarks/out/predictor_accuracy.png")
    args = ap.parse_args()
    if args.recheck < 0:
        ap.error(f"--recheck must be >= 0; got {args.recheck}")  # exit code 2
    if args.model_passes < 1:
        ap.error(f"--model-passes must be >= 1; got {args.model_passes}")  # exit code 2
    console = Console(stderr=True)
    warn = governor_warning()
    if warn:
        console.print(f"warning: {warn}")
    device = default_registry().get(args.device)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with ProfileStore(args.db) as store:
        profiler = Profiler(device, store=store)
        train_models, test_models = model_sets(args.quick, args.heldout_set)
        train_kernels = list(dict.fromkeys(c for m in train_models for c in kernel_units(m.onnx)))
        sampled = sample_configs(args.samples, seed=0)
        profile_ops(profiler, sampled + train_kernels, console, "profiling ops")
        configs, y = training_data(store, profiler.fingerprint)  # the adaptive round: on end-to-end times
        if args.adaptive:
            new = adaptive_configs(configs, y, sampled + train_kernels, args.adaptive, seed=1)
            profile_ops(profiler, new, console, "adaptive ops")
        repeat = profiler.recheck(args.recheck) if args.recheck else None
        if repeat is not None:
            console.print(f"repeat check: {repeat.summary()}")
            if repeat.warning():
                console.print(f"warning: {repeat.warning()}")
        args.op_time = args.op_time or "auto"
        times = op_time_candidates(profiler) if args.op_time == "auto" else (args.op_time,)
        data = {ot: training_data(store, profiler.fingerprint, ot) for ot in times}
        configs = next(iter(data.values()))[0]
        t_ops = time.perf_counter() - t_start
        with progress(console) as prog:
            # one list, so that each pass goes over every model before the next pass (spread in time)
            both = [(m.name, m.onnx) for m in train_models + test_models]
            task = prog.add_task(f"whole models ({args.model_passes} passes)", total=len(both) * args.model_passes)
            every = measure_models(profiler, both, lambda *a: prog.advance(task), passes=args.model_passes,
                                   force=args.remeasure_models)
            train_m, test_m = every[:len(train_models)], every[len(train_models):]
        t_all = time.perf_counter() - t_start
        names = [m.name for m in train_models + test_models]
        stats = pass_statistics(store, profiler.fingerprint.id, names, args.model_statistic)
        if args.model_statistic != "median":
            train_m, test_m = with_statistic(train_m, stats), with_statistic(test_m, stats)
        repeat_models = repeatability(stats, [m.name for m in test_models])
        test_kernels = {c for m in test_models for c in kernel_units(m.onnx)}
        profiled = set(configs)
    results: dict[str, dict] = {}
    measured = {"train": np.array([m.latency_ms for m in train_m]), "test": np.array([m.latency_ms for m in test_m])}
    families = [m.family for m in test_models]
    for name in MODELS:
        choice = None
        if args.op_time == "auto":
            pred, choice = select_op_time(data, profiler.fingerprint, train_m, name)
            raw = LatencyPredictor(pred.model)
            console.print(f"{name}: {choice.summary()}")
        else:
            raw = LatencyPredictor(fit_model(name, *data[args.op_time], profiler.fingerprint, args.op_time))
            pred = calibrate_on(raw, train_m)
        train_metrics, _ = evaluate(pred, train_m)
        test_metrics, test_pred = evaluate(pred, test_m)
        raw_metrics, _ = evaluate(raw, test_m)
        per_family = {}
        for f in sorted(set(families)):
            sel = np.array([x == f for x in families])
            from hwnas.latency_models import latency_metrics

            per_family[f] = latency_metrics(measured["test"][sel], test_pred[sel])
        results[name] = {
            "op_level_5fold": pred.model.validation_["op_level_5fold"] if getattr(pred.model, "validation_", None) else None,
            "calibration": pred.calibration.__dict__, "train": train_metrics, "test": test_metrics,
            "test_uncalibrated": raw_metrics, "test_per_family": per_family,
            "test_predicted_ms": test_pred.tolist(),
            "op_time": choice.op_time if choice else args.op_time,
            "op_time_selection": choice.to_dict() if choice else None,
        }
        if name == "lightgbm":
            results[name]["test_without_hardswish_term"] = without_hardswish_term(pred, train_m, test_m)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[name]["throughput"] = throughput(pred)
    plot(results, measured, families, Path(args.plot))
    out = Console(width=170)
    t = Table("model", "op-level acc10 (5-fold)", "test RMSE ms", "MAPE", "acc5", "acc10", "Spearman", "Kendall",
              "acc10 uncalibrated", title=f"held-out whole models on {device.name}: {len(test_m)} models")
    for name in MODELS:
        r = results[name]
        te = r["test"]
        op = r["op_level_5fold"]
        t.add_row(name, f"{100 * op['acc10']:.1f}%" if op else "-", f"{te['rmse_ms']:.3f}", f"{100 * te['mape']:.2f}%",
                  f"{100 * te['acc5']:.1f}%", f"{100 * te['acc10']:.1f}%", f"{te['spearman']:.4f}",
                  f"{te['kendall']:.4f}", f"{100 * r['test_uncalibrated']['acc10']:.1f}%")
    out.print(t)
    t2 = Table("family", *MODELS, title="acc10 per held-out family")
    for f in sorted(set(families)):
        t2.add_row(f, *(f"{100 * results[n]['test_per_family'][f]['acc10']:.0f}% (MAPE {100 * results[n]['test_per_family'][f]['mape']:.1f}%)" for n in MODELS))
    out.print(t2)
    ab = results["lightgbm"]["test_without_hardswish_term"]
    out.print(f"lightgbm without the HardSwish calibration term: acc10 {100 * ab['acc10']:.1f}%, MAPE "
              f"{100 * ab['mape']:.2f}% (with it: {100 * results['lightgbm']['test']['acc10']:.1f}%, "
              f"{100 * results['lightgbm']['test']['mape']:.2f}%)")
    if repeat_models["n"]:
        out.print(f"whole-model passes ({args.model_statistic}) of the held-out models agree within +-10% for "
                  f"{100 * repeat_models['within_10']:.0f}% (within +-5%: {100 * repeat_models['within_5']:.0f}%, median "
                  f"spread {100 * repeat_models['median_spread']:.1f}%): how far a measurement repeats on this machine")
    tp = results["lightgbm"]["throughput"]
    summary = {
        "device": device.name, "fingerprint": profiler.fingerprint.to_dict(), "op_time": args.op_time,
        "op_time_lightgbm": results["lightgbm"]["op_time"],
        "n_op_configs": len(configs), "n_train_models": len(train_m), "n_test_models": len(test_m),
        "model_passes": args.model_passes, "remeasured_models": args.remeasure_models, "heldout_set": args.heldout_set,
        "test_kernels_profiled_share": len(test_kernels & profiled) / max(1, len(test_kernels)),
        "repeat_check": repeat.to_dict() if repeat is not None else None,
        "model_statistic": args.model_statistic, "model_pass_repeatability": repeat_models,
        "profiling_s": t_ops, "total_measure_s": t_all, "results": results,
        "measured_test_ms": measured["test"].tolist(), "test_models": [m.name for m in test_models],
    }
    print(f"op configurations profiled: {len(configs)}; whole models measured: {len(train_m)} train + {len(test_m)} test; "
          f"test kernels that were profiled exactly: {100 * summary['test_kernels_profiled_share']:.0f}%")
    print(f"batch prediction: {tp['archs_per_s_table']:,.0f} architectures/s (layer table, {tp['n_table']:,} archs), "
          f"{tp['archs_per_s_generic']:,.0f}/s generic path; plot: {args.plot}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    lg = results["lightgbm"]["test"]
    print(f"acc10={lg['acc10']:.4f} mape={lg['mape']:.4f} spearman={lg['spearman']:.4f} archs_per_s={tp['archs_per_s_table']:.0f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HwnasError as exc:  # e.g. a store without kernel times for --op-time kernel
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
