"""Accuracy metrics for latency predictions."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["latency_metrics"]


def latency_metrics(measured_ms: np.ndarray, predicted_ms: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE, share within +-5% / +-10%, Spearman and Kendall rank correlation."""
    m = np.asarray(measured_ms, dtype=float)
    p = np.asarray(predicted_ms, dtype=float)
    rel = np.abs(p - m) / m
    out = {
        "n": int(len(m)),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "mape": float(rel.mean()),
        "acc5": float((rel <= 0.05).mean()),
        "acc10": float((rel <= 0.10).mean()),
    }
    if len(m) > 2:
        out["spearman"] = float(stats.spearmanr(m, p).statistic)
        out["kendall"] = float(stats.kendalltau(m, p).statistic)
    return out
