"""The search's records and rules: trials, the journal (SQLite, committed trial by trial), hard
limits, the incumbent and the reward the strategy learns. :class:`hwnas.search.Search` runs them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.errors import HwnasError, RunExistsError
from hwnas.search._objective import MnasReward, pareto_front
from hwnas.search.spaces._base import Arch, InfeasibleError, SearchSpace

#: what a search optimises: ``mnas`` (the MNAS reward at the target) or ``pareto`` (the front)
OBJECTIVES = ("mnas", "pareto")

__all__ = ["OBJECTIVES", "STORED_FIELDS", "Limits", "Journal", "Trial", "strategy_reward", "check_budget_feasible",
           "feasibility", "best_and_front", "incumbent"]


@dataclass(frozen=True)
class Limits:
    """Hard limits checked before an architecture is evaluated (``None`` = no limit)."""

    latency_ms: float | None = None
    max_params: int | None = None
    max_peak_memory_mb: float | None = None


#: the fields of a trial the journal stores, in its column order
STORED_FIELDS = ("number", "arch", "accuracy", "latency_ms", "reward", "params", "flops", "eval_seconds")


@dataclass(frozen=True)
class Trial:
    """One evaluated (or, from :meth:`Search.ask`, pending) architecture.

    ``arch`` is the architecture's compact string (``space.from_string`` gives the value back),
    ``latency_ms`` its predicted latency, ``measured_latency_ms`` the device's measurement where it
    was measured, ``reward`` the MNAS reward (at the measured latency where measured); ``settings``
    are the run's (space, space_args, dataset, resolution, target and limit): what an export needs.
    """

    number: int
    arch: str
    accuracy: float | None
    latency_ms: float
    reward: float | None
    params: int
    flops: int
    eval_seconds: float
    measured_latency_ms: float | None = None
    state: str = "complete"  # "pending" (asked, not told yet) or "failed" (its evaluation failed for good)
    settings: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: why a failed trial's evaluation failed (its last attempt)
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The stored fields and the measured latency (a row of ``trials.csv``)."""
        return {**{k: getattr(self, k) for k in STORED_FIELDS}, "measured_latency_ms": self.measured_latency_ms}


class Journal:
    """Every trial in SQLite, committed one by one: a row when it is asked (``pending``), completed
    or ``failed`` later, and the order of the asks, tells and failures (``events``), which is the
    order a resumed search replays them in (trials finish out of order with several workers)."""

    TABLES = {"meta", "trials", "measurements", "epochs", "events", "sqlite_sequence"}

    def __init__(self, path: str | Path, settings: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        memory = str(path) == ":memory:"
        exists = not memory and self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume:
            raise RunExistsError(self.path)
        if exists:
            self._check_ours()  # read only: a foreign file is never written to, nor locked beside
        if not memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_file(self.path)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=10)
            self._create_tables()
            row = self.conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise HwnasError(f"{self.path} is not a search journal ({exc}); refusing to use it") from None
        except HwnasError:
            self.close()
            raise
        if row is None:
            with self.conn:
                self.conn.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))
        else:
            self._check_settings(json.loads(row[0]), settings)
        self.conn.execute("PRAGMA journal_mode=WAL")

    def _check_ours(self) -> None:
        """An existing file must be an hwnas journal: never write into another application's SQLite."""
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                row = (conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
                       if "meta" in tables else None)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise HwnasError(f"{self.path} is not a search journal ({exc}); refusing to use it") from None
        if not {"meta", "trials"} <= tables or tables - self.TABLES or row is None:
            raise HwnasError(f"{self.path} is not an hwnas search journal (tables: {', '.join(sorted(tables)) or 'none'}); "
                             "refusing to write into it")

    def _create_tables(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS trials (number INTEGER PRIMARY KEY, arch TEXT NOT NULL, accuracy REAL, "
            "latency_ms REAL, reward REAL, params INTEGER, flops INTEGER, eval_seconds REAL, created_at TEXT)")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS measurements (arch TEXT PRIMARY KEY, after_trial INTEGER NOT NULL, "
            "measured_latency_ms REAL NOT NULL, created_at TEXT)")
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(trials)")}
        for col in ("state", "error"):  # journals written before parallel search have neither: all complete
            if col not in have:
                self.conn.execute(f"ALTER TABLE trials ADD COLUMN {col} TEXT")
        if "events" not in {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
            self.conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
                              "number INTEGER NOT NULL)")
            # a journal from before: its trials were asked and told one after the other
            self.conn.executemany("INSERT INTO events (kind, number) VALUES (?, ?)",
                                  [(k, n) for (n,) in self.conn.execute("SELECT number FROM trials ORDER BY number")
                                   for k in ("ask", "tell")])
        self.conn.commit()

    def _check_settings(self, stored: dict[str, Any], settings: dict[str, Any]) -> None:
        diff = {k: (stored.get(k), settings.get(k)) for k in set(stored) | set(settings) if stored.get(k) != settings.get(k)}
        if diff:
            detail = "; ".join(f"{k}: journal {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            self.close()
            raise HwnasError(f"cannot resume {self.path}: the settings differ ({detail})")

    def trials(self) -> list[Trial]:
        """Every trial (pending, complete and failed), by number."""
        rows = self.conn.execute("SELECT number, arch, accuracy, latency_ms, reward, params, flops, eval_seconds, "
                                 "state, error FROM trials ORDER BY number").fetchall()
        return [Trial(*r[:8], state=r[8] or "complete", error=r[9]) for r in rows]

    def events(self) -> list[tuple[str, int]]:
        """``(kind, trial number)`` in the order they happened: ``ask``, ``tell`` or ``fail``."""
        return self.conn.execute("SELECT kind, number FROM events ORDER BY seq").fetchall()

    def add(self, t: Trial) -> None:
        """A trial asked and completed at once."""
        self.add_pending(t)
        self.complete(t)

    def add_pending(self, t: Trial) -> None:
        """An asked trial (no accuracy yet)."""
        with self.conn:
            self.conn.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL)",
                              (*(getattr(t, k) for k in STORED_FIELDS[:2]), None, t.latency_ms, None, t.params,
                               t.flops, None, _utc_now()))
            self.conn.execute("INSERT INTO events (kind, number) VALUES ('ask', ?)", (t.number,))

    def complete(self, t: Trial) -> None:
        """A pending trial completed with its accuracy, reward and evaluation time."""
        with self.conn:
            self.conn.execute("UPDATE trials SET accuracy = ?, latency_ms = ?, reward = ?, eval_seconds = ?, "
                              "state = 'complete', error = NULL WHERE number = ?",
                              (t.accuracy, t.latency_ms, t.reward, t.eval_seconds, t.number))
            self.conn.execute("INSERT INTO events (kind, number) VALUES ('tell', ?)", (t.number,))

    def fail(self, number: int, error: str) -> None:
        """A pending trial whose evaluation failed for good."""
        with self.conn:
            self.conn.execute("UPDATE trials SET state = 'failed', error = ? WHERE number = ?", (error, number))
            self.conn.execute("INSERT INTO events (kind, number) VALUES ('fail', ?)", (number,))

    def measurements(self) -> list[tuple[str, int, float]]:
        """Device measurements of incumbents: (arch, the trial after which it was measured, ms)."""
        return self.conn.execute("SELECT arch, after_trial, measured_latency_ms FROM measurements "
                                 "ORDER BY after_trial, rowid").fetchall()

    def add_measurement(self, arch: str, after_trial: int, latency_ms: float) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO measurements VALUES (?, ?, ?, ?)", (arch, after_trial, latency_ms, _utc_now()))

    def set_reward(self, number: int, reward: float) -> None:
        """A trial's reward recomputed (at its measured latency)."""
        with self.conn:
            self.conn.execute("UPDATE trials SET reward = ? WHERE number = ?", (reward, number))

    def dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([{**{k: getattr(t, k) for k in STORED_FIELDS}, "state": t.state} for t in self.trials()])

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            Path(lock.name).unlink(missing_ok=True)
            lock.close()  # releases the lock
            self._lock = None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lock_file(path: Path) -> Any:
    """An exclusive lock on ``<journal>.lock`` for this process, or one line naming the holder:
    two processes never write one run."""
    import fcntl
    import os

    f = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise HwnasError(f"{path} is in use by {holder}; wait for it to finish (one process per run)") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()}")
    f.flush()
    return f


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
