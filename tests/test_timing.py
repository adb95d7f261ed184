from __future__ import annotations

import numpy as np
import pytest

from hwnas.profilers import LatencyStats, TimingPolicy, measure
from hwnas.profilers._timing import median_ci


def test_stats_from_samples() -> None:
    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0, 100.0], n_warmup=2, converged=False, measure_time_s=0.1)
    assert s.latency_ms == 3.0 and s.min_ms == 1.0 and s.max_ms == 100.0
    assert s.mad_ms == 1.0 and s.mean_ms == pytest.approx(22.0)
    assert s.n_runs == 5 and s.n_warmup == 2
    assert s.ci95_low_ms <= s.latency_ms <= s.ci95_high_ms


def test_median_ci_covers_the_median() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        a = np.sort(rng.exponential(1.0, size=51))
        lo, hi = median_ci(a)
        hits += lo <= np.log(2) <= hi
    assert 0.9 <= hits / 400 <= 0.995


def test_converges_on_stable_samples() -> None:
    rng = np.random.default_rng(1)
    stats, raw = measure(lambda n: list(1e-3 * (1 + 0.001 * rng.standard_normal(n))), TimingPolicy(min_time_s=0.0))
    assert stats.converged and stats.rel_ci <= 0.01
    assert stats.latency_ms == pytest.approx(1.0, rel=0.01)
    assert len(raw) == stats.n_runs and stats.n_warmup >= 5


def test_noisy_samples_stop_at_the_cap() -> None:
    rng = np.random.default_rng(2)
    policy = TimingPolicy(max_time_s=0.05, min_time_s=0.0, max_runs=300, target_rel_ci=1e-6, abs_tol_ms=0.0)
    stats, raw = measure(lambda n: list(1e-3 * rng.lognormal(0, 1, n)), policy)
    assert not stats.converged
    assert stats.n_runs >= policy.min_runs


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        TimingPolicy(min_runs=2)
    with pytest.raises(ValueError):
        TimingPolicy(max_time_s=0)


def test_median_of_rounds_rejects_one_slow_episode() -> None:
    calls = {"n": 0}

    def sample(n: int) -> list[float]:
        calls["n"] += 1
        return [1e-3] * n

    policy = TimingPolicy(rounds=3, min_time_s=0.0, min_runs=10, warmup_runs=1, warmup_s=0.0)
    stats, _ = measure(sample, policy)
    assert stats.n_rounds == 3 and stats.round_spread_rel == 0.0

    # round 2 of 3 is 10% slow (a noisy neighbour): the reported latency ignores it
    state = {"round_runs": 0}

    def episodic(n: int) -> list[float]:
        state["round_runs"] += n
        slow = 12 <= state["round_runs"] <= 22
        return [1.1e-3 if slow else 1e-3] * n

    stats, raw = measure(episodic, TimingPolicy(rounds=3, min_time_s=0.0, min_runs=10, batch=10, warmup_runs=1, warmup_s=0.0))
    assert stats.latency_ms == pytest.approx(1.0)
    assert stats.round_spread_rel == pytest.approx(0.1) and max(raw) == pytest.approx(1.1)
