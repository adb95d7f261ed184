"""A self-contained HTML report of a search run: Pareto front, search progress, predicted vs
measured latency, and the chosen model's per-op latency breakdown (images inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas.errors import HwnasError

__all__ = ["write_report"]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _find_card(run: Path) -> dict[str, Any] | None:
    cards = sorted(run.rglob("model_card.json"))
    return json.loads(cards[0].read_text()) if cards else None


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (or ``out``) for the run directory ``run``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    if not (run / "best.json").exists() or not (run / "trials.csv").exists():
        raise HwnasError(f"{run} is not a search run directory (no best.json / trials.csv); run `hwnas search` first")
    best = json.loads((run / "best.json").read_text())
    trials = pd.read_csv(run / "trials.csv")
    settings = best.get("settings", {})
    limit = settings.get("limit_ms") or settings.get("target_ms")
    card = _find_card(run)
    sections: list[str] = []

    # summary
    rows: list[tuple[str, Any]] = [("device", settings.get("device")), ("space", f"{best.get('space')} "
                                   f"{settings.get('space_args') or ''}"), ("strategy", settings.get("strategy")),
                                   ("latency target", f"{settings.get('target_ms')} ms (limit {limit} ms)"),
                                   ("architectures evaluated", len(trials))]
    if best.get("best"):
        b = best["best"]
        rows += [("best architecture", b["arch"]), ("its accuracy in the search", f"{b['accuracy']:.4f}"),
                 ("its predicted latency", f"{b['latency_ms']:.3f} ms")]
    if card:
        rows += [("exported model", card.get("onnx")), ("accuracy after training", card.get("accuracy")),
                 ("measured latency", f"{card['measured_latency_ms']:.3f} ms on {card['device']}"),
                 ("meets the budget", card.get("meets_budget")),
                 ("ONNX parity, max abs diff", card.get("parity_max_abs_diff"))]
    sections.append("<h2>Summary</h2>" + _table(rows))

    # Pareto front
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter(trials["latency_ms"], trials["accuracy"], s=14, alpha=0.6, label="evaluated")
    if (run / "pareto.csv").exists():
        front = pd.read_csv(run / "pareto.csv")
        if len(front):
            ax.plot(front["latency_ms"], front["accuracy"], "r.-", label="Pareto front")
    if limit:
        ax.axvline(float(limit), color="k", ls="--", lw=1, label=f"limit {float(limit):.3f} ms")
    ax.set(xlabel="predicted latency (ms)", ylabel="accuracy", title="accuracy vs latency")
    ax.legend(fontsize=8)
    sections.append("<h2>Pareto front</h2>" + _png(fig))

    # progress
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ok = trials["latency_ms"] <= float(limit) if limit else pd.Series(True, index=trials.index)
    ax.plot(trials["number"], trials["accuracy"], ".", alpha=0.5, label="accuracy of each")
    ax.plot(trials["number"], trials["accuracy"].where(ok).cummax(), "g-", label="best within the limit so far")
    ax.set(xlabel="trial", ylabel="accuracy", title="search progress")
    ax.legend(fontsize=8)
    progress = _png(fig)
    if (run / "epochs.csv").exists():  # proxyless supernet
        ep = pd.read_csv(run / "epochs.csv")
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.plot(ep["epoch"], ep["expected_latency_ms"], "b.-", label="E[LAT]")
        ax.plot(ep["epoch"], ep["derived_latency_ms"], "g.-", label="derived architecture")
        if limit:
            ax.axhline(float(limit), color="k", ls="--", lw=1)
        ax.set(xlabel="epoch", ylabel="predicted latency (ms)", title="supernet search")
        ax.legend(fontsize=8)
        progress += _png(fig)
    sections.append("<h2>Search progress</h2>" + progress)

    # predicted vs measured
    pts = []
    if (run / "predictor_heldout.csv").exists():
        h = pd.read_csv(run / "predictor_heldout.csv")
        pts.append(("held-out models", h["measured_ms"], h["predicted_ms"]))
    if card and card.get("predicted_latency_ms"):
        pts.append(("exported model", [card["measured_latency_ms"]], [card["predicted_latency_ms"]]))
    if pts:
        fig, ax = plt.subplots(figsize=(5, 5))
        allv = []
        for name, m, p in pts:
            ax.scatter(m, p, s=30, label=name)
            allv += list(m) + list(p)
        lo, hi = min(allv) * 0.9, max(allv) * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="g", alpha=0.1, label="+-10%")
        ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", title="predicted vs measured")
        ax.legend(fontsize=8)
        sections.append("<h2>Predicted vs measured latency</h2>" + _png(fig))
    else:
        sections.append("<h2>Predicted vs measured latency</h2><p>No measured models in this run: export the best "
                        "architecture with <code>hwnas export --run</code> to measure it.</p>")

    # per-op breakdown
    if card and card.get("breakdown"):
        bd = pd.DataFrame(card["breakdown"]).head(20)
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(bd) + 1))
        ax.barh(bd["name"].astype(str).str.slice(0, 40)[::-1], bd["duration_ms"][::-1])
        ax.set(xlabel="ms per run", title=f"slowest kernels of the chosen model on {card['device']}")
        sections.append("<h2>Per-op latency breakdown</h2>" + _png(fig))
    else:
        sections.append("<h2>Per-op latency breakdown</h2><p>No model card in this run yet "
                        "(<code>hwnas export --run</code> measures the chosen model).</p>")

    title = f"hwnas report: {run.name}"
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;"
           "font-size:13px}th{background:#f4f4f4}img{max-width:100%}</style></head><body>"
           f"<h1>{html.escape(title)}</h1>" + "".join(sections) + "</body></html>")
    path = Path(out) if out else run / "report.html"
    path.write_text(doc)
    return path
