"""How the command line shows each job's result (rich tables and lines); no logic of the jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from hwnas.console import err_console as _err
from hwnas.console import out_console as _out

__all__ = ["profile_result", "model_measurement", "trained_predictor", "predictor_evaluation", "prediction",
           "search_result", "proxyless_result", "model_card", "device_list", "device", "detection", "table", "store_summary"]


def profile_result(res: Any, summary: dict[str, Any]) -> None:
    out = _out()
    t = Table("op configuration", "median ms", "95% CI", "runs", title=f"{res.device} ({res.fingerprint})")
    for m in res.run.measured:
        if m.stats:
            t.add_row(str(m.config), f"{m.stats.latency_ms:.4f}", f"+-{100 * m.stats.rel_ci:.1f}%", str(m.stats.n_runs))
        else:
            t.add_row(str(m.config), "[red]unsupported[/]", m.reason[:60], "")
    if res.run.measured:
        out.print(t)
    out.print(
        f"measured {summary['measured']} op(s) ({len(summary['unsupported'])} unsupported), skipped "
        f"{summary['skipped']} already stored"
        + (f" (their kernel time added to {summary['kernel_time_added']})" if summary["kernel_time_added"] else "")
        + f", {summary['elapsed_s']:.1f} s ({summary['ops_per_minute']:.0f} ops/min); store: {res.db}"
    )
    if res.recheck is not None:
        out.print(f"repeat check: {res.recheck.summary()}")


def model_measurement(m: Any, s: dict[str, Any]) -> None:
    out = _out()
    out.print(
        f"[bold]{m.model_name}[/] on {m.device_name}: [bold]{m.stats.latency_ms:.3f} ms[/] median "
        f"(95% CI {m.stats.ci95_low_ms:.3f}-{m.stats.ci95_high_ms:.3f}, p10 {m.stats.p10_ms:.3f}, "
        f"p90 {m.stats.p90_ms:.3f}, {m.stats.n_runs} runs)"
    )
    if s["top_nodes"]:
        t = Table("kernel", "op type", "fused", "ms", "share", title=f"top {len(s['top_nodes'])} of {s['kernels']} kernels")
        for n in s["top_nodes"]:
            t.add_row(n["name"], n["op_type"], "yes" if n["fused"] else "", f"{n['duration_ms']:.4f}", f"{100 * n['share']:.1f}%")
        out.print(t)


def trained_predictor(result: dict[str, Any], report: Any, pred: Any, model: str, device: str, cal_: Any) -> None:
    o = _out()
    op = result["op_level_5fold"] or {}
    o.print(f"trained {model} on {report.n_configs} op configurations ({report.n_adaptive} adaptive) of {device}, "
            f"op time: {report.op_time}")
    if report.op_time_choice is not None:
        o.print(report.op_time_choice.summary())
    if op:
        o.print(f"op level, 5-fold: MAPE {100 * op['mape']:.1f}%, within +-10% {100 * op['acc10']:.1f}%")
    if cal_.fitted:
        o.print(f"calibrated on {cal_.n_models} whole models: MAPE {100 * (cal_.train_mape or 0):.1f}% on them")
    if report.recheck is not None:
        o.print(f"repeat check: {report.recheck.summary()}")
    o.print(f"saved to {pred.path_}")


def predictor_evaluation(ev: Any, metrics: dict[str, Any], plot: Any) -> None:
    t = Table("family", "model", "measured ms", "predicted ms", "error")
    for r in ev.rows:
        t.add_row(r["family"], r["model"], f"{r['measured_ms']:.3f}", f"{r['predicted_ms']:.3f}",
                  f"{100 * (r['predicted_ms'] / r['measured_ms'] - 1):+.1f}%")
    o = _out()
    o.print(t)
    o.print(f"RMSE {metrics['rmse_ms']:.3f} ms, MAPE {100 * metrics['mape']:.2f}%, within +-5% "
            f"{100 * metrics['acc5']:.1f}%, within +-10% {100 * metrics['acc10']:.1f}%, Spearman "
            f"{metrics.get('spearman', float('nan')):.4f}, Kendall {metrics.get('kendall', float('nan')):.4f}"
            + (f"; plot: {plot}" if plot else ""))


def prediction(result: Any, top: int, model: Path, dev: Any) -> None:
    kernels = sorted(result.kernels, key=lambda k: -k.latency_ms)
    shown = kernels[:top] if top else kernels
    t = Table("kernel", "kind", "ms", "note", title=f"{model.name} on {dev.name}: {len(result.kernels)} kernels")
    for k in shown:
        t.add_row(k.label, k.kind + (" (fallback)" if k.fallback else ""), f"{k.latency_ms:.4f}", k.note[:70])
    o = _out()
    o.print(t)
    o.print(f"predicted latency: [bold]{result.latency_ms:.3f} ms[/] (sum of kernels {result.op_sum_ms:.3f} ms, "
            f"{result.n_units} kernels, {'calibrated' if result.calibrated else 'uncalibrated'})")


def model_card(card: Any, err: Any) -> None:
    from hwnas.deploy import card_summary

    t = Table("", "", title=f"exported {card.onnx_path}")
    for k, v in card_summary(card):
        t.add_row(k, v)
    t.add_row("model card", str(card.card_path))
    if card.library_path:
        t.add_row("compiled library (TVM)", str(card.library_path))
    _out().print(t)
    if card["meets_budget"] is False:
        err.print(f"[yellow]warning:[/] measured {card['measured_latency_ms']:.3f} ms is over the budget "
                  f"{card['budget_ms']} ms")


def search_result(s: Any, done: int, out: Path, verify: int, target_ms: float) -> None:
    o, measured, best, limit = _out(), s.measured, s.best_trial, s.limit_ms
    if s.objective == "pareto":
        t = Table("arch", "accuracy", "predicted ms", "measured ms", title=f"accuracy-latency front ({len(s.best_trials)})")
        for f in s.best_trials:
            t.add_row(f.arch, f"{f.accuracy:.4f}", f"{f.latency_ms:.3f}",
                      f"{measured[f.arch]:.3f}" if f.arch in measured else "")
        o.print(t)
    if best is None:
        o.print("no evaluated architecture is within the latency limit")
    else:
        seen = f", measured {measured[best.arch]:.3f} ms" if best.arch in measured else ""
        o.print(f"best: [bold]{best.arch}[/] accuracy {best.accuracy:.4f}, predicted {best.latency_ms:.3f} ms{seen} "
                f"(target {target_ms} ms), {best.params:,} parameters")
        over = sum(ms > limit for ms in measured.values()) if limit is not None else 0
        if measured and s.objective == "mnas":
            o.print(f"{len(measured)} incumbents measured on {s.device.name}; {over} over the limit, disqualified")
            if best.arch not in measured and len(measured) >= verify:
                o.print(f"[yellow]the best was not measured:[/] the --verify {verify} measurements went to earlier "
                        f"incumbents; its latency is the prediction (`hwnas export --run {out}` measures it; a "
                        f"larger --verify measures more in a new run)")
    n = len(s.trials)
    if s.failed_trials:
        o.print(f"[yellow]{len(s.failed_trials)} trial(s) failed[/] (in the journal; the last: "
                f"{s.failed_trials[-1].error})")
    o.print(f"{n} evaluated ({n - done} now); run directory: {out} "
            f"(journal.sqlite, best.json, trials.csv, pareto.csv, pareto.png)")


def proxyless_result(result: dict[str, Any], epochs: int, target_ms: float, out: Path) -> None:
    d, meets = result["best"], result["meets_target"]
    _out().print(f"derived: [bold]{d['arch']}[/] accuracy {d['accuracy']:.4f} after {epochs} epochs from scratch, "
                 f"predicted {d['latency_ms']:.3f} ms (target {target_ms} ms{'' if meets else ': NOT MET'})")
    if not meets:
        _err().print("[yellow]warning:[/] the derived architecture's predicted latency is over the target: raise "
                     "--latency-beta/--latency-lambda or train longer")
    _out().print(f"run directory: {out} (journal.sqlite, best.json, epochs.csv, proxyless.png, supernet.pt)")


def ofa_result(result: dict[str, Any], out: Path) -> None:
    sn = result["supernet"]
    t = Table("device", "architecture", "supernet acc", "predicted ms", "target ms", "measured ms", "accuracy",
              "device s")
    for r in result["devices"]:
        measured = r.get("measured_ms")
        t.add_row(r["device"], r["arch"], f"{r['supernet_acc']:.3f}", f"{r['latency_ms']:.3f}", f"{r['target_ms']:g}",
                  "-" if measured is None else f"{measured:.3f}" + ("" if r.get("meets_budget_measured") else " [red]over[/]"),
                  "-" if r.get("accuracy") is None else f"{r['accuracy']:.3f}", f"{r['device_s']:.0f}")
    _out().print(t)
    if sn.get("accuracy_table_s"):
        _out().print(f"accuracy predictor: {sn['config']['accuracy_samples']} subnetworks scored on the supernet, "
                     f"{sn['accuracy_table_s']:.0f} s (accuracy_table.json, reused with the supernet)")
    _out().print(f"supernet: {sn['epochs']} epochs, {sn['train_s']:.0f} s of training ({sn['path']}, reused by later "
                 f"searches in {out}); each device: <device>/arch.json (and model.onnx, model_card.json); device s: "
                 "its search, export and measurement")


def hypernet_result(result: dict[str, Any], out: Path) -> None:
    t = Table("architecture", "generated-weights acc", "trained acc", "predicted ms")
    for r in result["trained"]:
        t.add_row(r["arch"], f"{r['generated_acc']:.3f}", f"{r['accuracy']:.3f}", f"{r['predicted_ms']:.3f}")
    _out().print(t)
    measured = result.get("measured_ms")
    _out().print(f"best: [bold]{result['arch']}[/] (target {result['target_ms']:g} ms"
                 + ("" if measured is None else f", measured {measured:.3f} ms" +
                    ("" if result.get("meets_budget_measured") in (True, None) else " [red]over[/]"))
                 + f"); {result['candidates']} candidates ranked; hypernetwork {result['hypernet_epochs']} epochs in "
                   f"{result['hypernet_train_s']:.0f} s; {out} (hypernet.pt, trained.json, arch.json, hypernet.json)")


def pnas_result(result: dict[str, Any], out: Path) -> None:
    t = Table("blocks", "expansions within the target", "surrogate's prediction of the trained", "their accuracy")
    for st in result["steps"]:
        t.add_row(str(st["blocks"]), str(st["expansions"]), " ".join(f"{x:.3f}" for x in st["surrogate_predicted"]),
                  " ".join(f"{x:.3f}" for x in st["trained_accuracy"]))
    _out().print(t)
    measured = result.get("measured_ms")
    _out().print(f"best cell: [bold]{result['arch']}[/]")
    _out().print(f"proxy accuracy {result['proxy_accuracy']:.3f}, predicted {result['predicted_ms']:.3f} ms (target "
                 f"{result['target_ms']:g} ms)" + ("" if measured is None else f", measured {measured:.3f} ms" +
                                                   ("" if result.get("meets_budget_measured") in (True, None) else " [red]over[/]"))
                 + f"; {result['trained_cells']} cells trained in {result['search_s']:.0f} s; {out} (pnas.json, "
                   "arch.json, result.json)")


def enas_result(result: dict[str, Any], out: Path) -> None:
    measured = result.get("measured_ms")
    _out().print(f"best path: [bold]{result['arch']}[/]")
    _out().print(f"shared-weights accuracy {result['shared_weights_acc']:.3f}, predicted {result['predicted_ms']:.3f} ms "
                 f"(target {result['target_ms']:g} ms)"
                 + ("" if measured is None else f", measured {measured:.3f} ms" +
                    ("" if result.get("meets_budget_measured") in (True, None) else " [red]over[/]"))
                 + ("" if result.get("accuracy") is None else f", accuracy {result['accuracy']:.3f}")
                 + f"; {result['epochs']} epochs in {result['train_s']:.0f} s; {out} (enas.pt, arch.json, enas.json)")


def darts_result(result: dict[str, Any], out: Path) -> None:
    target = result["target_ms"]
    measured = result.get("measured_ms")
    _out().print(f"derived: [bold]{result['arch']}[/]")
    _out().print(f"predicted {result['predicted_ms']:.3f} ms" + (f" (target {target:g} ms)" if target else "")
                 + ("" if measured is None else f", measured {measured:.3f} ms" +
                    ("" if result.get("meets_budget_measured") in (True, None) else " [red]over[/]"))
                 + ("" if result.get("accuracy") is None else f", accuracy {result['accuracy']:.3f}")
                 + f"; {result['supernet_epochs']} epochs in {result['search_s']:.0f} s; {out} (supernet.pt, "
                   "epochs.csv, arch.json, darts.json)")


def export_line(result: dict[str, Any]) -> None:
    """The exported model's measured latency and accuracy (``measured_ms``, ``accuracy``, ``onnx_path``)."""
    if result.get("measured_ms") is None:
        return
    over = "" if result.get("meets_budget_measured") in (True, None) else " [red]over its budget[/]"
    acc = "" if result.get("accuracy") is None else f", accuracy {result['accuracy']:.3f}"
    _out().print(f"exported {result['onnx_path']}: measured {result['measured_ms']:.3f} ms{over}{acc}", highlight=False)


def scaling_result(result: dict[str, Any], out: Path) -> None:
    t = Table("alpha", "beta", "gamma", "resolution", "MFLOPs", "accuracy (phi = 1)", "train s")
    for g in result["grid"]:
        mark = "[bold]" if g == result["best"] else ""
        t.add_row(*(f"{mark}{g[k]:g}" for k in ("alpha", "beta", "gamma")), str(g["resolution"]),
                  f"{g['mflops']:.1f}", f"{mark}{g['accuracy']:.3f}", f"{g['train_s']:.0f}")
    _out().print(t)
    if result["phi"] is None:
        _out().print(f"even the base network is predicted over {result['target_ms']:g} ms on {result['device']}")
        return
    ex = result.get("export")
    if ex is None:
        _out().print(f"largest phi predicted within {result['target_ms']:g} ms: {result['phi']:g} (not exported)")
        return
    last = ex["tries"][-1]
    _out().print(f"phi {last['phi']:g} (resolution {last['resolution']}, width {last['width']:.3f}, depth "
                 f"{last['depth']:.3f}): predicted {last['predicted_ms']:.3f} ms, measured {last['measured_ms']:.3f} ms "
                 f"(target {result['target_ms']:g} ms{'' if ex['meets_target_measured'] else ', [red]over[/]'}), "
                 f"accuracy {last['accuracy']:.3f}; {out}/model.onnx, arch.json, scaling.json")


def multifidelity_result(result: dict[str, Any], out: Path) -> None:
    b, mf = result["best"], result["multi_fidelity"]
    if b is None:
        _out().print("no candidate reached the full epochs within the limit")
    else:
        _out().print(f"best: [bold]{b['arch']}[/] accuracy {b['accuracy']:.4f} at the full epochs, predicted "
                     f"{b['latency_ms']:.3f} ms")
    _out().print(f"{mf['evaluations']} rung evaluations, {mf['epochs_trained']} epochs trained in "
                 f"{mf['seconds']:.0f} s; run directory: {out} (journal.sqlite, rungs.csv, best.json, trials.csv, "
                 f"checkpoints/)")


def device_list(rows: list[dict[str, Any]]) -> None:
    t = Table("device", "runtime", "here", "description")
    for r in rows:
        t.add_row(r["name"], r["runtime"], "yes" if r["available"] else "[red]no[/]", r["description"])
    _out().print(t)


def device(d: Any, data: dict[str, Any]) -> None:
    out = _out()
    out.print(f"[bold]{d.name}[/]: {d.description}")
    t = Table("field", "value")
    t.add_row("runtime", d.runtime)
    for k, v in data["options"].items():
        t.add_row(f"options.{k}", str(v))
    for k, v in data["constraints"].items():
        t.add_row(f"constraints.{k}", str(v))
    t.add_row("available here", "yes" if data["available"] else "no: " + "; ".join(data["problems"]))
    out.print(t)


def detection(result: dict[str, Any]) -> None:
    out = _out()
    avail = [e for e in result["devices"] if e["available"]]
    if avail:
        fp = avail[0]["fingerprint"]
        out.print(f"CPU: {fp['cpu_model']} ({fp['cpu_cores_physical']} physical / {fp['cpu_cores_logical']} logical "
                  f"cores, {fp['machine']}, {fp['os']})")
    out.print(f"CPU frequency governors: {result['cpu_governors'] or 'not exposed by this kernel'}")
    t = Table("device", "status", "runtime version", "fingerprint")
    for e in result["devices"]:
        if e["available"]:
            t.add_row(e["name"], "[green]available[/]", e["fingerprint"]["runtime_version"], e["fingerprint"]["id"])
        else:
            t.add_row(e["name"], "[red]unavailable[/]", "", "; ".join(e["problems"]))
    out.print(t)


def table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Rows (dicts, in column order) as a table."""
    t = Table(*columns)
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    _out().print(t)


def store_summary(summary: dict[str, Any], fingerprints: list[dict[str, Any]]) -> None:
    out = _out()
    for k, v in summary.items():
        out.print(f"{k}: {v}")
    for f in fingerprints:
        out.print(f"  {f['id']}  {f['device_name']}  {f['runtime']} {f['runtime_version']}  {f['cpu_model']}")


def adapted_predictor(pred: Any, device: str) -> dict[str, Any]:
    """What ``hwnas predictor adapt`` reports: the predictor, its sources and leave-one-out error,
    and a one-line summary (``line``)."""
    loo = pred.loo()
    out = {"predictor": str(pred.path_), "device": device, "sources": pred.source_names, "samples": len(pred.y),
           "loo_mape": float(abs(loo).mean()), "loo_acc10": float((abs(loo) <= 0.1).mean())}
    out["line"] = (f"adapted predictor for {device} from {', '.join(pred.source_names)} on {len(pred.y)} networks: "
                   f"leave-one-out MAPE {100 * out['loo_mape']:.1f}%, within +-10% {100 * out['loo_acc10']:.0f}%; "
                   f"saved to {pred.path_}")
    return out
