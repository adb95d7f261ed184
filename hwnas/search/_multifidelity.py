"""Multi-fidelity search: successive halving and Hyperband over an evaluator that trains in rungs
(continuing each candidate from its checkpoint), with any registered strategy as the sampler
(``random``; ``bo`` makes Hyperband BOHB-like). Rungs and promotions are journalled; a killed run
resumes at the rung it was in."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import ArgumentError, HwnasError
from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import Strategy

__all__ = ["Rung", "successive_halving_schedule", "hyperband_schedule", "RungJournal", "MultiFidelitySearch",
           "RungResult", "MULTI_FIDELITY"]

#: the multi-fidelity methods and their parameters (name -> default)
#: (``restart``: each rung trains from scratch with a schedule of its own instead of continuing)
MULTI_FIDELITY = {"successive-halving": {"n": 9, "eta": 3, "min_epochs": 1, "max_epochs": 9, "restart": False},
                  "hyperband": {"max_epochs": 9, "eta": 3, "min_epochs": 1, "restart": False}}


@dataclass(frozen=True)
class Rung:
    """``n`` candidates trained to ``epochs`` in rung ``rung`` of bracket ``bracket``."""

    bracket: int
    rung: int
    n: int
    epochs: int


@dataclass(frozen=True)
class RungResult:
    bracket: int
    rung: int
    arch: str
    epochs: int
    accuracy: float
    latency_ms: float
    seconds: float


def _check_eta_epochs(eta: Any, min_epochs: Any, max_epochs: Any) -> None:
    for name, v, low in (("eta", eta, 2), ("min_epochs", min_epochs, 1), ("max_epochs", max_epochs, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ArgumentError(name, f"takes an integer >= {low}", v)
    if max_epochs < min_epochs * eta:
        raise ArgumentError("max_epochs", f"is below the minimum for one promotion (min_epochs * eta = "
                            f"{min_epochs * eta})", max_epochs)


def successive_halving_schedule(n: int, eta: int, min_epochs: int, max_epochs: int, bracket: int = 0) -> list[Rung]:
    """``n`` candidates at ``min_epochs``, the best ``1/eta`` promoted to ``eta`` times the epochs,
    until ``max_epochs`` (the last rung trains to exactly ``max_epochs``)."""
    _check_eta_epochs(eta, min_epochs, max_epochs)
    if isinstance(n, bool) or not isinstance(n, int) or n < eta:
        raise ArgumentError("n", f"takes an integer >= eta ({eta}): one promotion needs eta candidates", n)
    rungs, epochs, k = [], min_epochs, n
    while True:
        last = epochs * eta > max_epochs or k // eta < 1
        rungs.append(Rung(bracket, len(rungs), k, max_epochs if last else epochs))
        if last:
            return rungs
        epochs, k = epochs * eta, k // eta


def hyperband_schedule(max_epochs: int, eta: int, min_epochs: int = 1) -> list[list[Rung]]:
    """Hyperband's brackets (Li et al. 2018): ``s_max = floor(log_eta(R / min_epochs))``; bracket
    ``s`` starts ``ceil((s_max + 1) / (s + 1) * eta^s)`` candidates at ``R * eta^-s`` epochs and
    runs successive halving to ``R``: from the most exploratory bracket to plain full-fidelity
    evaluation."""
    _check_eta_epochs(eta, min_epochs, max_epochs)
    s_max = int(math.floor(math.log(max_epochs / min_epochs, eta) + 1e-9))
    brackets = []
    for b, s in enumerate(range(s_max, -1, -1)):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s))
        r = max_epochs / eta ** s
        brackets.append([Rung(b, i, int(n // eta ** i), max(1, int(round(r * eta ** i)))) for i in range(s + 1)])
    return brackets


def schedule_text(brackets: list[list[Rung]], restart: bool = False) -> str:
    """One line per bracket: ``bracket 0: 9 x 1 ep -> 3 x 3 ep -> 1 x 9 ep``, and the epochs in all."""
    lines = [f"bracket {rungs[0].bracket}: " + " -> ".join(f"{r.n} x {r.epochs} ep" for r in rungs)
             for rungs in brackets]
    if restart:
        total = sum(r.n * r.epochs for rungs in brackets for r in rungs)
        return "\n".join([*lines, f"{total} training epochs in all (each rung trains from scratch)"])
    total = sum(r.n * (r.epochs - (rungs[i - 1].epochs if i else 0)) for rungs in brackets for i, r in enumerate(rungs))
    return "\n".join([*lines, f"{total} training epochs in all (a promoted candidate continues from its checkpoint)"])


class RungJournal:
    """The rungs of a multi-fidelity run in SQLite: each (bracket, rung, architecture) evaluated,
    with its epochs, accuracy and predicted latency; the settings it was started with."""

    def __init__(self, path: str | Path | None, settings: dict[str, Any], resume: bool = True) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(":memory:" if self.path is None else str(self.path))
        self.con.execute("CREATE TABLE IF NOT EXISTS mf_settings (key TEXT PRIMARY KEY, value TEXT)")
        self.con.execute("CREATE TABLE IF NOT EXISTS rungs (bracket INTEGER, rung INTEGER, arch TEXT, epochs INTEGER, "
                         "accuracy REAL, latency_ms REAL, seconds REAL, created_at REAL, "
                         "PRIMARY KEY (bracket, rung, arch))")
        row = self.con.execute("SELECT value FROM mf_settings WHERE key = 'settings'").fetchone()
        text = json.dumps(settings, sort_keys=True, default=str)
        if row is None:
            self.con.execute("INSERT INTO mf_settings VALUES ('settings', ?)", (text,))
            self.con.commit()
        elif not resume:
            raise HwnasError(f"{self.path} holds a multi-fidelity run: pass --resume to continue it")
        elif row[0] != text:
            raise HwnasError(f"{self.path} was started with other settings; the settings differ: "
                             f"{_diff(json.loads(row[0]), settings)}")

    def get(self, rung: Rung, arch: str) -> RungResult | None:
        row = self.con.execute("SELECT bracket, rung, arch, epochs, accuracy, latency_ms, seconds FROM rungs "
                               "WHERE bracket = ? AND rung = ? AND arch = ?", (rung.bracket, rung.rung, arch)).fetchone()
        return None if row is None else RungResult(*row)

    def add(self, r: RungResult) -> None:
        self.con.execute("INSERT INTO rungs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (r.bracket, r.rung, r.arch, r.epochs, r.accuracy, r.latency_ms, r.seconds, time.time()))
        self.con.commit()

    def results(self) -> list[RungResult]:
        rows = self.con.execute("SELECT bracket, rung, arch, epochs, accuracy, latency_ms, seconds FROM rungs "
                                "ORDER BY created_at").fetchall()
        return [RungResult(*r) for r in rows]

    def close(self) -> None:
        self.con.close()


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    new = json.loads(json.dumps(new, default=str))
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


class MultiFidelitySearch:
    """Run ``brackets`` of successive halving: each bracket asks ``sampler`` for its first rung's
    candidates (feasible ones: the sampler's own hard limits), trains them to the rung's epochs
    (``evaluator.train_to``, continuing from ``checkpoints``), promotes the most accurate ``n`` of
    the next rung, and tells the sampler each candidate's accuracy at the last rung it reached when
    it leaves the bracket. The result is the most accurate candidate trained to the full epochs.
    ``restart``: each rung trains from scratch over its own epochs (ranks candidates better at
    short rungs, BENCHMARKS.md; costs the sum of the rungs' epochs).
    Deterministic given the sampler's seed and the accuracies: a resumed run replays the journal."""

    def __init__(self, space: SearchSpace, sampler: Strategy, evaluator: Any, latency: Callable[[Arch], float],
                 brackets: list[list[Rung]], journal: RungJournal, checkpoints: Path | None,
                 restart: bool = False) -> None:
        if not getattr(evaluator, "supports_fidelity", False):
            raise HwnasError(f"the evaluator {type(evaluator).__name__} cannot train in rungs (no train_to); "
                             "multi-fidelity search needs the proxy evaluator")
        self.space, self.sampler, self.evaluator, self.latency = space, sampler, evaluator, latency
        self.brackets, self.journal, self.checkpoints = brackets, journal, checkpoints
        self.max_epochs = max(r.epochs for rungs in brackets for r in rungs)
        self.restart = restart

    def run(self, on_result: Callable[[RungResult, bool], None] | None = None) -> RungResult | None:
        """Every bracket; ``on_result(result, resumed)`` after each rung evaluation. The best
        full-epoch result (None if no candidate reached the full epochs)."""
        for rungs in self.brackets:
            self._bracket(rungs, on_result)
        return self.best()

    def _bracket(self, rungs: list[Rung], on_result: Callable[[RungResult, bool], None] | None) -> None:
        alive = [self.sampler.ask() for _ in range(rungs[0].n)]
        for i, rung in enumerate(rungs):
            results = [self._evaluate(rung, a, on_result) for a in alive]
            order = sorted(range(len(alive)), key=lambda j: -results[j].accuracy)  # stable: ties by ask order
            keep = rungs[i + 1].n if i + 1 < len(rungs) else 0
            for j in order[keep:]:
                self.sampler.tell(alive[j], results[j].accuracy)
            alive = [alive[j] for j in order[:keep]]

    def _evaluate(self, rung: Rung, arch: Arch, on_result: Callable[[RungResult, bool], None] | None) -> RungResult:
        text = self.space.to_string(arch)
        done = self.journal.get(rung, text)
        if done is None:
            t0 = time.perf_counter()
            if self.restart:  # a training of its own over the rung's epochs
                acc = float(self.evaluator.train_to(arch, rung.epochs, rung.epochs))
            else:
                acc = float(self.evaluator.train_to(arch, rung.epochs, self.max_epochs, self._checkpoint(text)))
            done = RungResult(rung.bracket, rung.rung, text, rung.epochs, acc, float(self.latency(arch)),
                              time.perf_counter() - t0)
            self.journal.add(done)
        if on_result is not None:
            on_result(done, False)
        return done

    def _checkpoint(self, text: str) -> Path | None:
        if self.checkpoints is None:
            return None
        return self.checkpoints / f"{zlib.crc32(text.encode()):08x}.pt"

    def best(self) -> RungResult | None:
        full = [r for r in self.journal.results() if r.epochs == self.max_epochs]
        return max(full, key=lambda r: r.accuracy, default=None)
