"""Adaptive timing: warm up, then sample until the median is stable or a time cap is hit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["TimingPolicy", "LatencyStats", "measure", "median_ci"]


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop sampling.

    Warm-up runs are discarded. Timing is split into ``rounds`` consecutive rounds; in each, sampling
    continues in batches until the 95% confidence interval of the median is within
    ``+-target_rel_ci`` of it (after at least ``min_runs`` runs and ``min_time_s``), or the round's
    share of ``max_time_s`` / ``max_runs`` is used. For sub-50 us ops the CI also counts as stable
    when its half-width is under ``abs_tol_ms`` (the timer's noise floor). The reported latency is
    the median of the rounds' medians, so one slow episode (a noisy neighbour, a clock change) does
    not move it.
    """

    warmup_runs: int = 5
    warmup_s: float = 0.05
    min_runs: int = 20
    max_runs: int = 100_000
    min_time_s: float = 0.15
    max_time_s: float = 1.5
    target_rel_ci: float = 0.01
    abs_tol_ms: float = 0.0005
    batch: int = 10
    rounds: int = 3

    def __post_init__(self) -> None:
        if self.min_runs < 3 or self.max_runs < self.min_runs:
            raise ValueError("need 3 <= min_runs <= max_runs")
        if self.max_time_s <= 0 or self.target_rel_ci <= 0:
            raise ValueError("max_time_s and target_rel_ci must be > 0")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")


def median_ci(sorted_ms: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95% CI of the median from order statistics."""
    n = len(sorted_ms)
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)) - 1)
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return float(sorted_ms[lo]), float(sorted_ms[hi])


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed runs (warm-up excluded). All times in milliseconds."""

    latency_ms: float  # the median of the rounds' medians: the figure hwnas reports
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    mad_ms: float
    ci95_low_ms: float
    ci95_high_ms: float
    n_runs: int
    n_warmup: int
    converged: bool
    measure_time_s: float
    n_rounds: int = 1
    round_spread_rel: float = 0.0  # (max - min) of the rounds' medians / latency_ms

    @property
    def rel_ci(self) -> float:
        """Half-width of the median's 95% CI relative to the median."""
        return (self.ci95_high_ms - self.ci95_low_ms) / (2 * self.latency_ms) if self.latency_ms else 0.0

    @classmethod
    def from_samples(
        cls, samples_ms: np.ndarray | list[float], n_warmup: int, converged: bool, measure_time_s: float,
        round_medians_ms: list[float] | None = None,
    ) -> LatencyStats:
        """Statistics of all samples; the latency is the median of ``round_medians_ms`` when given."""
        a = np.sort(np.asarray(samples_ms, dtype=np.float64))
        rounds = round_medians_ms or [float(np.median(a))]
        med = float(np.median(rounds))
        lo, hi = median_ci(a)
        return cls(
            latency_ms=med,
            mean_ms=float(a.mean()),
            std_ms=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            min_ms=float(a[0]),
            max_ms=float(a[-1]),
            p10_ms=float(np.percentile(a, 10)),
            p90_ms=float(np.percentile(a, 90)),
            mad_ms=float(np.median(np.abs(a - med))),
            ci95_low_ms=lo,
            ci95_high_ms=hi,
            n_runs=len(a),
            n_warmup=n_warmup,
            converged=converged,
            measure_time_s=measure_time_s,
            n_rounds=len(rounds),
            round_spread_rel=(max(rounds) - min(rounds)) / med if med else 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(sample: Callable[[int], list[float]], policy: TimingPolicy = TimingPolicy()) -> tuple[LatencyStats, np.ndarray]:
    """Time a runtime. ``sample(n)`` runs the model ``n`` times and returns each run's seconds.

    Returns the statistics and the raw samples in milliseconds.
    """
    start = time.perf_counter()
    n_warm = 0
    while n_warm < policy.warmup_runs or time.perf_counter() - start < policy.warmup_s:
        sample(1)
        n_warm += 1
        if time.perf_counter() - start > policy.max_time_s / 3:
            break
    samples: list[float] = []
    round_medians: list[float] = []
    converged = True
    batch = max(1, policy.batch)
    for _ in range(policy.rounds):
        t0 = time.perf_counter()
        round_samples: list[float] = []
        round_ok = False
        max_time, max_runs = policy.max_time_s / policy.rounds, max(policy.min_runs, policy.max_runs // policy.rounds)
        while True:
            round_samples.extend(s * 1e3 for s in sample(batch))
            elapsed = time.perf_counter() - t0
            n = len(round_samples)
            if n >= policy.min_runs and elapsed >= policy.min_time_s / policy.rounds:
                a = np.sort(np.asarray(round_samples))
                med = float(np.median(a))
                lo, hi = median_ci(a)
                if med > 0 and (hi - lo) / 2 <= max(policy.target_rel_ci * med, policy.abs_tol_ms):
                    round_ok = True
                    break
            if elapsed >= max_time or n >= max_runs:
                break
            # keep each batch around 1/20 of the round's time cap, so the cap is not overshot much
            per_run = elapsed / n if n else 0.0
            if per_run > 0:
                batch = int(min(max(1, (max_time / 20) / per_run), 200))
        converged = converged and round_ok
        samples.extend(round_samples)
        round_medians.append(float(np.median(round_samples)))
    arr = np.asarray(samples, dtype=np.float64)
    stats = LatencyStats.from_samples(arr, n_warm, converged, time.perf_counter() - start, round_medians)
    return stats, arr
