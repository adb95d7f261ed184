"""The MNAS reward and the accuracy-latency Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.errors import UnknownNameError

__all__ = ["MnasReward", "reward_preset", "pareto_front"]


@dataclass(frozen=True)
class MnasReward:
    """``ACC * (LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else ``beta`` (Tan et al. 2019).

    >>> r = MnasReward(target_ms=10.0, alpha=0.0, beta=-1.0)   # the "hard" preset
    >>> r(0.9, 5.0), r(0.9, 20.0)
    (0.9, 0.45)
    """

    target_ms: float
    alpha: float = -0.07
    beta: float = -0.07

    def __post_init__(self) -> None:
        if not self.target_ms > 0:
            raise ValueError(f"target_ms must be > 0, got {self.target_ms}")

    def __call__(self, accuracy: float, latency_ms: float) -> float:
        w = self.alpha if latency_ms <= self.target_ms else self.beta
        return float(accuracy * (latency_ms / self.target_ms) ** w)

    def many(self, accuracy: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
        ratio = np.asarray(latency_ms, float) / self.target_ms
        return np.asarray(accuracy, float) * ratio ** np.where(ratio <= 1, self.alpha, self.beta)


_PRESETS = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}


def reward_preset(name: str, target_ms: float) -> MnasReward:
    """``soft`` (alpha = beta = -0.07) or ``hard`` (alpha = 0, beta = -1)."""
    if name not in _PRESETS:
        raise UnknownNameError("reward preset", name, _PRESETS)
    a, b = _PRESETS[name]
    return MnasReward(target_ms, a, b)


def pareto_front(accuracy: Sequence[float], latency_ms: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both (higher accuracy, lower latency),
    sorted by latency."""
    acc, lat = np.asarray(accuracy, float), np.asarray(latency_ms, float)
    order = np.lexsort((-acc, lat))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.array(front, dtype=int)
