"""A search run directory: one type for the files a search writes and export and the report read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas._files import atomic_write_text, read_json, write_json
from hwnas.errors import HwnasError
from hwnas.search._run import Trial

__all__ = ["RunDir", "atomic_write_text", "write_json"]


class RunDir:
    """The files of one search run: ``journal.sqlite`` (the trials, resumable), ``best.json``
    (settings, best trial, front), ``trials.csv``, ``pareto.csv``, ``pareto.png``, and what later
    commands add (``report.html``, an exported ``model/``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    journal = property(lambda self: self.path / "journal.sqlite")
    best_json = property(lambda self: self.path / "best.json")
    trials_csv = property(lambda self: self.path / "trials.csv")
    pareto_csv = property(lambda self: self.path / "pareto.csv")
    rungs_csv = property(lambda self: self.path / "rungs.csv")  # multi-fidelity runs
    pareto_png = property(lambda self: self.path / "pareto.png")

    def has_journal(self) -> bool:
        return self.journal.exists() and self.journal.stat().st_size > 0

    def read_best(self) -> dict[str, Any]:
        """``best.json``, checked: settings (with space), best (or null) and the front."""
        p = self.best_json
        if not p.is_file():
            raise HwnasError(f"{self.path} is not a search run directory (no best.json); run `hwnas search` first")
        data = read_json(p)
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or "space" not in data["settings"]:
            raise HwnasError(f"{p} is not a run's best.json (no settings with a space)")
        best = data.get("best")
        if best is not None and not (isinstance(best, dict) and isinstance(best.get("arch"), str)):
            raise HwnasError(f"{p}: 'best' has no architecture string")
        front = data.get("pareto_front")
        if front is not None and not (isinstance(front, list) and all(isinstance(m, dict) and "arch" in m
                                                                      for m in front)):
            raise HwnasError(f"{p}: 'pareto_front' is not a list of trials")
        return data

    def write(self, space_name: str, trials: Sequence[Trial], best: Trial | None, front: Sequence[Trial],
              settings: dict[str, Any], target_ms: float, fingerprint: Any,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """trials.csv, pareto.csv, best.json (with ``extra`` fields) and pareto.png (each written
        atomically); returns best.json's content. Trials carry their measured latency where measured."""
        import pandas as pd

        self.path.mkdir(parents=True, exist_ok=True)
        rows = [t.row() for t in trials]
        columns = list(rows[0]) if rows else None
        atomic_write_text(self.trials_csv, pd.DataFrame(rows, columns=columns).to_csv(index=False))
        front_rows = [t.row() for t in front]
        atomic_write_text(self.pareto_csv, pd.DataFrame(front_rows, columns=columns).to_csv(index=False))
        result = {"settings": settings, "n_trials": len(trials), "best": best.row() if best else None,
                  "fingerprint": fingerprint, "space": space_name,
                  "pareto_front": [{k: r[k] for k in ("number", "arch", "accuracy", "latency_ms", "measured_latency_ms")}
                                   for r in front_rows]}
        if best is not None:
            result["best"]["predicted_latency_ms"] = best.latency_ms
        result["device_measurements"] = sum(t.measured_latency_ms is not None for t in trials)
        result.update(extra or {})
        write_json(self.best_json, result)
        self._plot(trials, front, best, settings, target_ms, space_name)
        return result

    def _plot(self, trials: Sequence[Trial], front: Sequence[Trial], best: Trial | None, settings: dict[str, Any],
              target_ms: float, space_name: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter([t.latency_ms for t in trials], [t.accuracy for t in trials], s=12, alpha=0.6, label="evaluated")
        ax.plot([t.latency_ms for t in front], [t.accuracy for t in front], "r.-", label="Pareto front")
        ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms} ms")
        if best is not None:
            ax.scatter([best.latency_ms], [best.accuracy], s=80, facecolors="none", edgecolors="g", label="best")
        ax.set(xlabel="predicted latency (ms)", ylabel="accuracy",
               title=f"{settings.get('strategy')} on {space_name}, {settings.get('device')}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        tmp = self.path / ".pareto.png.tmp"
        fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        os.replace(tmp, self.pareto_png)
