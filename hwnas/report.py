"""A self-contained HTML report of a search run: Pareto front, search progress (and a multi-fidelity
run's rungs), predicted vs measured latency, and the chosen model's per-op latency breakdown (images
inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas._files import atomic_write_text, read_json
from hwnas.errors import HwnasError
from hwnas.search import RunDir

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
    """The first model card under the run (None if there is none); a damaged card is one line."""
    cards = sorted(run.rglob("model_card.json"))
    if not cards:
        return None
    card = read_json(cards[0])
    need = ("measured_latency_ms", "device")
    if not isinstance(card, dict) or any(not isinstance(card.get(k), (int, float, str)) for k in need):
        raise HwnasError(f"{cards[0]} is not a model card (needs {', '.join(need)})")
    return card


def _read_csv(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """``path`` as a table with ``columns`` (one line naming the file where it is not), the
    ``numeric`` ones as numbers (NaN where a value is not one)."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HwnasError(f"{path} cannot be read as CSV ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise HwnasError(f"{path} lacks the column(s) {', '.join(missing)}")
    for c in numeric:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    return table


def _trials(run: RunDir) -> pd.DataFrame:
    if not run.trials_csv.is_file():
        raise HwnasError(f"{run.path} is not a search run directory (no trials.csv); run `hwnas search` first")
    numeric = ("number", "accuracy", "latency_ms")
    return _read_csv(run.trials_csv, numeric, numeric)


def _summary(best: dict[str, Any], trials: pd.DataFrame, card: dict[str, Any] | None, limit: Any) -> str:
    settings = best["settings"]
    rows: list[tuple[str, Any]] = [("device", settings.get("device")), ("space", f"{best.get('space')} "
                                   f"{settings.get('space_args') or ''}"), ("strategy", settings.get("strategy")),
                                   ("latency target", f"{settings.get('target_ms')} ms (limit {limit} ms)"),
                                   ("architectures evaluated", len(trials))]
    b = best.get("best")
    if b:
        rows += [("best architecture", b["arch"]), ("its accuracy in the search", _fmt(b.get("accuracy"), ".4f")),
                 ("its predicted latency", _fmt(b.get("latency_ms"), ".3f", " ms"))]
    if card:
        rows += [("exported model", card.get("onnx")), ("accuracy after training", card.get("accuracy")),
                 ("measured latency", f"{_fmt(card['measured_latency_ms'], '.3f', ' ms')} on {card['device']}"),
                 ("meets the budget", card.get("meets_budget")),
                 ("ONNX parity, max abs diff", card.get("parity_max_abs_diff"))]
    return "<h2>Summary</h2>" + _table(rows)


def _fmt(v: Any, spec: str, unit: str = "") -> str:
    return f"{v:{spec}}{unit}" if isinstance(v, (int, float)) else "-"


def _front(plt: Any, run: RunDir, trials: pd.DataFrame, limit: Any) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter(trials["latency_ms"], trials["accuracy"], s=14, alpha=0.6, label="evaluated")
    if run.pareto_csv.is_file():
        front = pd.read_csv(run.pareto_csv)
        if len(front) and {"latency_ms", "accuracy"} <= set(front.columns):
            ax.plot(front["latency_ms"], front["accuracy"], "r.-", label="Pareto front")
    if limit:
        ax.axvline(float(limit), color="k", ls="--", lw=1, label=f"limit {float(limit):.3f} ms")
    ax.set(xlabel="predicted latency (ms)", ylabel="accuracy", title="accuracy vs latency")
    ax.legend(fontsize=8)
    return "<h2>Pareto front</h2>" + _png(fig)


def _progress(plt: Any, run: RunDir, trials: pd.DataFrame, limit: Any) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ok = trials["latency_ms"] <= float(limit) if limit else pd.Series(True, index=trials.index)
    ax.plot(trials["number"], trials["accuracy"], ".", alpha=0.5, label="accuracy of each")
    ax.plot(trials["number"], trials["accuracy"].where(ok).cummax(), "g-", label="best within the limit so far")
    ax.set(xlabel="trial", ylabel="accuracy", title="search progress")
    ax.legend(fontsize=8)
    progress = _png(fig)
    if (run.path / "epochs.csv").exists():  # proxyless supernet
        ep = pd.read_csv(run.path / "epochs.csv")
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.plot(ep["epoch"], ep["expected_latency_ms"], "b.-", label="E[LAT]")
        ax.plot(ep["epoch"], ep["derived_latency_ms"], "g.-", label="derived architecture")
        if limit:
            ax.axhline(float(limit), color="k", ls="--", lw=1)
        ax.set(xlabel="epoch", ylabel="predicted latency (ms)", title="supernet search")
        ax.legend(fontsize=8)
        progress += _png(fig)
    return "<h2>Search progress</h2>" + progress


def _rungs(plt: Any, run: RunDir) -> str:
    """A multi-fidelity run's rungs (``rungs.csv``; empty for other runs): each candidate's accuracy
    at every rung it reached, a colour per bracket, a line joining the rungs of a promoted one; and
    a table per bracket and rung of the candidates trained, their epochs and accuracies."""
    if not run.rungs_csv.is_file():
        return ""
    numeric = ("bracket", "rung", "epochs", "accuracy")
    rungs = _read_csv(run.rungs_csv, ("arch", *numeric), numeric)
    if rungs.empty:
        return "<h2>Rungs</h2><p>No rung evaluated yet.</p>"
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for k, (bracket, group) in enumerate(rungs.groupby("bracket")):
        for _, one in group.groupby("arch"):
            one = one.sort_values("epochs")
            ax.plot(one["epochs"], one["accuracy"], "-", color=f"C{k % 10}", alpha=0.5, lw=1)
        ax.scatter(group["epochs"], group["accuracy"], s=14, color=f"C{k % 10}", label=f"bracket {bracket:g}")
    ax.set_xticks(sorted(rungs["epochs"].dropna().unique()))
    ax.set(xlabel="epochs trained", ylabel="accuracy", title="rungs: candidates and their promotions")
    ax.legend(fontsize=8)
    return f"<h2>Rungs</h2>{_png(fig)}{_rung_table(rungs)}"


def _rung_table(rungs: pd.DataFrame) -> str:
    per = rungs.groupby(["bracket", "rung"]).agg(candidates=("arch", "size"), epochs=("epochs", "max"),
                                                 best=("accuracy", "max"), median=("accuracy", "median"))
    head = "".join(f"<th>{h}</th>" for h in ("bracket", "rung", "candidates", "epochs", "best accuracy",
                                              "median accuracy"))
    body = "".join(f"<tr><td>{b:g}</td><td>{r:g}</td><td>{int(v['candidates'])}</td><td>{v['epochs']:g}</td>"
                   f"<td>{_fmt(v['best'], '.4f')}</td><td>{_fmt(v['median'], '.4f')}</td></tr>"
                   for (b, r), v in per.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _predicted_vs_measured(plt: Any, run: RunDir, card: dict[str, Any] | None) -> str:
    pts = []
    if (run.path / "predictor_heldout.csv").exists():
        h = pd.read_csv(run.path / "predictor_heldout.csv")
        pts.append(("held-out models", h["measured_ms"], h["predicted_ms"]))
    if card and isinstance(card.get("predicted_latency_ms"), (int, float)):
        pts.append(("exported model", [card["measured_latency_ms"]], [card["predicted_latency_ms"]]))
    if not pts:
        return ("<h2>Predicted vs measured latency</h2><p>No measured models in this run: export the best "
                "architecture with <code>hwnas export --run</code> to measure it.</p>")
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
    return "<h2>Predicted vs measured latency</h2>" + _png(fig)


def _breakdown(plt: Any, card: dict[str, Any] | None) -> str:
    if not card or not card.get("breakdown"):
        return ("<h2>Per-op latency breakdown</h2><p>No model card in this run yet "
                "(<code>hwnas export --run</code> measures the chosen model).</p>")
    bd = pd.DataFrame(card["breakdown"]).head(20)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(bd) + 1))
    ax.barh(bd["name"].astype(str).str.slice(0, 40)[::-1], bd["duration_ms"][::-1])
    ax.set(xlabel="ms per run", title=f"slowest kernels of the chosen model on {card['device']}")
    return "<h2>Per-op latency breakdown</h2>" + _png(fig)


def _output(run: RunDir, out: str | Path | None, overwrite: bool) -> Path:
    """The report's path: ``out`` or ``RUN/report.html``; never one of the run's own files, a
    folder, or (unless ``overwrite``) an existing file that is not an hwnas report."""
    path = Path(out) if out else run.path / "report.html"
    if path.is_dir():
        raise HwnasError(f"{path} is a directory; give the HTML file to write")
    if path.suffix.lower() not in (".html", ".htm"):
        raise HwnasError(f"the report is HTML: give an .html path, got {path}")
    if path.exists() and not overwrite:
        head = path.read_bytes()[:300]
        if b"hwnas report" not in head:
            raise HwnasError(f"{path} exists and is not an hwnas report; refusing to replace it (--overwrite)")
    return path


def write_report(run: str | Path, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write ``report.html`` (or ``out``) for the run directory ``run``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd = RunDir(run)
    path = _output(rd, out, overwrite)
    best = rd.read_best()
    trials = _trials(rd)
    settings = best["settings"]
    limit = settings.get("limit_ms") or settings.get("target_ms")
    card = _find_card(rd.path)
    sections = [_summary(best, trials, card, limit), _front(plt, rd, trials, limit), _progress(plt, rd, trials, limit),
                _rungs(plt, rd), _predicted_vs_measured(plt, rd, card), _breakdown(plt, card)]
    title = f"hwnas report: {rd.path.name}"
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;"
           "font-size:13px}th{background:#f4f4f4}img{max-width:100%}</style></head><body>"
           f"<h1>{html.escape(title)}</h1>" + "".join(sections) + "</body></html>")
    atomic_write_text(path, doc)
    return path
