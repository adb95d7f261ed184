"""The search loop: ask, check hard limits, evaluate, reward, journal, tell. Resumable.

Resume replays the journal through the strategy (asks are deterministic given the seed and the
tells), so a killed search continues without losing or repeating finished evaluations.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.errors import HwnasError, UnknownNameError
from hwnas.search._objective import MnasReward, pareto_front
from hwnas.search.spaces._base import Arch, InfeasibleError, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

#: what a search optimises: ``mnas`` (the MNAS reward at the target) or ``pareto`` (the front)
OBJECTIVES = ("mnas", "pareto")

__all__ = ["OBJECTIVES", "Limits", "Journal", "Trial", "run_search", "strategy_reward", "check_budget_feasible",
           "feasibility", "best_and_front", "incumbent", "write_run"]


@dataclass(frozen=True)
class Limits:
    """Hard limits checked before an architecture is evaluated (``None`` = no limit)."""

    latency_ms: float | None = None
    max_params: int | None = None
    max_peak_memory_mb: float | None = None


@dataclass(frozen=True)
class Trial:
    number: int
    arch: str
    accuracy: float
    latency_ms: float
    reward: float
    params: int
    flops: int
    eval_seconds: float


class Journal:
    """Every evaluated candidate in SQLite, committed one by one."""

    def __init__(self, path: str | Path, settings: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume:
            raise HwnasError(f"{self.path} already holds a search; pass --resume to continue it, or another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path))
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS trials (number INTEGER PRIMARY KEY, arch TEXT NOT NULL, accuracy REAL, "
                "latency_ms REAL, reward REAL, params INTEGER, flops INTEGER, eval_seconds REAL, created_at TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS measurements (arch TEXT PRIMARY KEY, after_trial INTEGER NOT NULL, "
                "measured_latency_ms REAL NOT NULL, created_at TEXT)")
            row = self.conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise HwnasError(f"{self.path} is not a search journal ({exc}); refusing to use it") from None
        if row is None:
            with self.conn:
                self.conn.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))
        else:
            stored = json.loads(row[0])
            diff = {k: (stored.get(k), settings.get(k)) for k in set(stored) | set(settings) if stored.get(k) != settings.get(k)}
            if diff:
                detail = "; ".join(f"{k}: journal {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
                raise HwnasError(f"cannot resume {self.path}: the settings differ ({detail})")
        self.conn.execute("PRAGMA journal_mode=WAL")

    def trials(self) -> list[Trial]:
        rows = self.conn.execute("SELECT number, arch, accuracy, latency_ms, reward, params, flops, eval_seconds "
                                 "FROM trials ORDER BY number").fetchall()
        return [Trial(*r) for r in rows]

    def add(self, t: Trial) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (*asdict(t).values(), datetime.now(timezone.utc).isoformat(timespec="seconds")))

    def measurements(self) -> list[tuple[str, int, float]]:
        """Device measurements of incumbents: (arch, the trial after which it was measured, ms)."""
        return self.conn.execute("SELECT arch, after_trial, measured_latency_ms FROM measurements "
                                 "ORDER BY after_trial, rowid").fetchall()

    def add_measurement(self, arch: str, after_trial: int, latency_ms: float) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO measurements VALUES (?, ?, ?, ?)",
                              (arch, after_trial, latency_ms, datetime.now(timezone.utc).isoformat(timespec="seconds")))

    def set_reward(self, number: int, reward: float) -> None:
        """A trial's reward recomputed (at its measured latency)."""
        with self.conn:
            self.conn.execute("UPDATE trials SET reward = ? WHERE number = ?", (reward, number))

    def dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(t) for t in self.trials()])

    def close(self) -> None:
        self.conn.close()


def feasibility(space: SearchSpace, limits: Limits, latency: Callable[[Arch], float]) -> Callable[[Arch], bool]:
    """A predicate: does ``arch`` meet the hard limits (latency from ``latency``)?"""

    def ok(arch: Arch) -> bool:
        if limits.max_params is not None and space.params(arch) > limits.max_params:
            return False
        if limits.max_peak_memory_mb is not None and space.peak_memory_mb(arch) > limits.max_peak_memory_mb:
            return False
        return limits.latency_ms is None or latency(arch) <= limits.latency_ms

    return ok


def check_budget_feasible(space: SearchSpace, feasible: Callable[[Arch], bool], latency: Callable[[Arch], float],
                          samples: int = 1000, seed: int = 0,
                          latency_many: Callable[[list[Arch]], np.ndarray] | None = None) -> None:
    """Raise :class:`InfeasibleError` naming the smallest predicted latency found when none of
    ``samples`` random architectures is feasible. ``latency_many`` predicts a batch at once (and
    should fill ``latency``'s cache)."""
    rng = np.random.default_rng(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(samples)))
    if latency_many is not None:
        latency_many(archs)
    if any(feasible(a) for a in archs):
        return
    best = min(archs, key=latency)
    raise InfeasibleError(
        f"no architecture of {space.name!r} meets the limits ({len(archs)} random ones checked); the smallest predicted "
        f"latency found is {latency(best):.3f} ms ({space.to_string(best)}). Raise the budget or restrict the space."
    )


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluate: Callable[[Arch], float],
    latency: Callable[[Arch], float],
    reward: MnasReward,
    budget: int,
    journal: Journal,
    on_trial: Callable[[Trial, int], None] | None = None,
    measure: Callable[[Arch], float] | None = None,
    measure_budget: int = 0,
    limit_ms: float | None = None,
    on_measured: Callable[[Arch, float], None] | None = None,
    qualify_ms: float | None = None,
    objective: str = "mnas",
) -> list[Trial]:
    """Run until ``budget`` evaluations are in the journal (continuing a resumed one).

    With ``measure`` (a device measurement, ms), the incumbent (the best trial within
    ``limit_ms``) is measured before it is trusted, up to ``measure_budget`` times: a measurement
    over the limit disqualifies it and the next best is measured. With ``qualify_ms`` (> the
    limit), an unmeasured trial predicted within ``qualify_ms`` competes too: when it is the best,
    its measurement qualifies it (within the limit) or disqualifies it (the predictor's error cuts
    both ways; the strategy should then propose such architectures while measurements are left).
    Measurements go to the journal and to ``on_measured`` (e.g. to make feasibility use them), at
    the same points on resume; a measured trial's reward is recomputed from its measurement.

    The strategy is told a trial's reward after the incumbent check (so at the measured latency
    where the check measured it), and, with ``limit_ms``, at no more than the limit: the limit
    (feasibility, measurement) enforces the constraint, and a reward penalised for a predicted or
    measured excess would teach the strategy that the accurate architectures near the limit are
    bad (see :func:`strategy_reward`).

    ``objective="pareto"`` (multi-objective: the accuracy-latency front) tells the strategy
    ``(accuracy, -latency_ms)`` instead (measured latency where measured), which a strategy with
    ``multi_objective`` (``nsga2``; ``random`` and ``grid`` ignore it) takes; the journal still
    keeps the MNAS reward, and the incumbent check runs if ``measure`` is given (``hwnas search``
    measures members of the front at the end instead).
    """
    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    if objective == "pareto" and not strategy.multi_objective:
        raise HwnasError(f"strategy {strategy.name!r} takes one reward; the pareto objective needs a multi-objective "
                         f"strategy (nsga2; random and grid ignore rewards)")

    def told(acc: float, latency_ms: float) -> float | tuple[float, float]:
        if objective == "pareto":
            return acc, -latency_ms
        return strategy_reward(reward, acc, latency_ms, limit_ms)

    done = journal.trials()
    by_trial: dict[int, list[tuple[str, float]]] = {}
    for arch_s, after, ms in journal.measurements():
        by_trial.setdefault(after, []).append((arch_s, ms))
    measured: dict[str, float] = {}

    def apply(arch_s: str, ms: float) -> None:
        measured[arch_s] = ms
        if on_measured:
            on_measured(space.from_string(arch_s), ms)

    trials = list(done)
    for t in done:  # replay: the strategy re-proposes what it proposed before, and is told the same
        arch = strategy.ask()
        if space.to_string(arch) != t.arch:
            raise HwnasError(f"cannot resume: trial {t.number} was {t.arch}, the strategy now proposes "
                             f"{space.to_string(arch)} (different code or settings)")
        for arch_s, ms in by_trial.get(t.number, []):
            apply(arch_s, ms)
        strategy.tell(arch, told(t.accuracy, measured.get(t.arch, t.latency_ms)))
    while len(trials) < budget:
        try:
            arch = strategy.ask()
        except SearchExhausted:
            break
        t0 = time.perf_counter()
        acc = float(evaluate(arch))
        lat = float(latency(arch))
        t = Trial(len(trials), space.to_string(arch), acc, lat, reward(acc, lat), space.params(arch),
                  space.flops(arch), time.perf_counter() - t0)
        journal.add(t)
        trials.append(t)
        while measure is not None and len(measured) < measure_budget:
            best = incumbent(trials, limit_ms, measured, qualify_ms, reward)
            if best is None or best.arch in measured:
                break
            ms = float(measure(space.from_string(best.arch)))
            journal.add_measurement(best.arch, t.number, ms)
            apply(best.arch, ms)
            # its reward at the measured latency (the journal's too); a trial's number is its index
            trials[best.number] = replace(best, reward=reward(best.accuracy, ms))
            journal.set_reward(best.number, trials[best.number].reward)
        strategy.tell(arch, told(acc, measured.get(t.arch, lat)))
        if on_trial:
            on_trial(trials[-1], len(trials))
    return trials


def strategy_reward(reward: MnasReward, accuracy: float, latency_ms: float, limit_ms: float | None) -> float:
    """What the strategy learns from a trial: the reward at its latency (measured where it was
    measured, predicted otherwise), taken at the limit where that is over ``limit_ms``. Strategies propose only architectures
    within the limit (or, while measurements are left, borderline ones whose measurement decides),
    so a latency over it means a prediction or measurement just over a limit that is already
    enforced; penalising it too (the hard preset: accuracy x limit / latency, 5% over costs 5% of
    the accuracy) made guided evolution's surrogate learn that the accurate region near the limit is
    bad (NAS-Bench-201, BENCHMARKS.md). The journal keeps the MNAS reward itself."""
    return reward(accuracy, latency_ms if limit_ms is None else min(latency_ms, limit_ms))


def incumbent(trials: list[Trial], limit_ms: float | None, measured: dict[str, float] | None = None,
              qualify_ms: float | None = None, reward: MnasReward | None = None) -> Trial | None:
    """The best-reward trial within the latency limit: its measured latency where it was measured,
    its predicted one otherwise. With ``qualify_ms``, unmeasured trials predicted over the limit but
    within ``qualify_ms`` compete too (candidates for a measurement), with the reward they would
    have at the limit (``reward``; their own was penalised for the predicted excess)."""
    measured = measured or {}

    def borderline(t: Trial) -> bool:
        return (qualify_ms is not None and limit_ms is not None and t.arch not in measured
                and limit_ms < t.latency_ms <= qualify_ms)

    def score(t: Trial) -> tuple[float, float]:
        if reward is not None and borderline(t):
            return strategy_reward(reward, t.accuracy, t.latency_ms, limit_ms), t.accuracy
        return t.reward, t.accuracy

    ok = [t for t in trials if limit_ms is None or measured.get(t.arch, t.latency_ms) <= limit_ms or borderline(t)]
    return max(ok, key=score) if ok else None


def best_and_front(trials: list[Trial], limit_ms: float | None,
                   measured: dict[str, float] | None = None) -> tuple[Trial | None, list[Trial]]:
    """The best-reward trial within the latency limit (measured latency where there is one), and
    the accuracy-latency Pareto front (predicted latencies)."""
    best = incumbent(trials, limit_ms, measured)
    idx = pareto_front([t.accuracy for t in trials], [t.latency_ms for t in trials]) if trials else []
    return best, [trials[i] for i in idx]


def write_run(out: Path, sp: Any, trials: list, best: Any, front: list, settings: dict, target_ms: float,
               pred: Any, measured: dict[str, float] | None = None) -> dict[str, Any]:
    """trials.csv, pareto.csv, best.json and pareto.png in a run directory; returns best.json's content."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    measured = measured or {}
    table = pd.DataFrame([dataclasses.asdict(t) for t in trials])
    if len(table):
        table["measured_latency_ms"] = [measured.get(t.arch) for t in trials]
    table.to_csv(out / "trials.csv", index=False)
    front_rows = [{**dataclasses.asdict(t), "measured_latency_ms": measured.get(t.arch)} for t in front]
    pd.DataFrame(front_rows, columns=[*table.columns] if len(table) else None).to_csv(out / "pareto.csv", index=False)
    result = {"settings": settings, "n_trials": len(trials),
              "best": dataclasses.asdict(best) if best else None,
              "fingerprint": pred.fingerprint, "space": sp.name,
              "pareto_front": [{k: r[k] for k in ("number", "arch", "accuracy", "latency_ms", "measured_latency_ms")}
                               for r in front_rows]}
    if best is not None:
        result["best"]["predicted_latency_ms"] = best.latency_ms
        result["best"]["measured_latency_ms"] = measured.get(best.arch)
    result["device_measurements"] = len(measured)
    (out / "best.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([t.latency_ms for t in trials], [t.accuracy for t in trials], s=12, alpha=0.6, label="evaluated")
    ax.plot([t.latency_ms for t in front], [t.accuracy for t in front], "r.-", label="Pareto front")
    ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms} ms")
    if best is not None:
        ax.scatter([best.latency_ms], [best.accuracy], s=80, facecolors="none", edgecolors="g", label="best")
    ax.set(xlabel="predicted latency (ms)", ylabel="accuracy", title=f"{settings['strategy']} on {sp.name}, {settings['device']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)
    return result
