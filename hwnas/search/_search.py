"""The search as an object: ask/tell over a strategy with the hard limits, the incumbent check on
the device, and a journal (resume); ``optimize`` is a loop over them."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from hwnas.errors import ArgumentError, HwnasError, UnknownNameError
from hwnas.search._objective import MnasReward
from hwnas.search._run import (OBJECTIVES, Journal, Limits, Trial, best_and_front, feasibility, incumbent,
                               strategy_reward)
from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

__all__ = ["LatencyCache", "Feasibility", "Search"]


class LatencyCache:
    """Predicted latency (ms) of architectures, predicted in batches and cached; a device
    measurement (:meth:`set_measured`) replaces the prediction.

    >>> import numpy as np
    >>> from hwnas.search.spaces import create_space
    >>> sp = create_space("mlp")
    >>> lat = LatencyCache(lambda archs: [float(sum(a.choices)) for a in archs])
    >>> a = sp.sample(np.random.default_rng(0))
    >>> lat(a) == float(sum(a.choices))
    True
    """

    def __init__(self, predict_many: Callable[[list[Arch]], Sequence[float]],
                 known: dict[Arch, float] | None = None) -> None:
        self._predict_many = predict_many
        self._ms: dict[Arch, float] = dict(known or {})

    def many(self, archs: Iterable[Arch]) -> list[float]:
        archs = list(archs)
        todo = list(dict.fromkeys(a for a in archs if a not in self._ms))
        if todo:
            with warnings.catch_warnings():  # fallback estimates are reported where the predictor is checked
                warnings.simplefilter("ignore")
                self._ms.update(zip(todo, (float(x) for x in self._predict_many(todo))))
        return [self._ms[a] for a in archs]

    def __call__(self, arch: Arch) -> float:
        return self.many([arch])[0]

    def set_measured(self, arch: Arch, latency_ms: float) -> None:
        self._ms[arch] = float(latency_ms)


class Feasibility:
    """Does an architecture meet the hard limits? With ``qualify_ms`` (> the latency limit), an
    architecture predicted within ``qualify_ms`` is feasible too while fewer than ``verify``
    device measurements were made (:meth:`note_measurement`): its measurement decides."""

    def __init__(self, space: SearchSpace, limits: Limits, latency: Callable[[Arch], float],
                 qualify_ms: float | None = None, verify: int = 0) -> None:
        self._within = feasibility(space, limits, latency)
        self._loose = (feasibility(space, replace(limits, latency_ms=qualify_ms), latency)
                       if qualify_ms is not None else None)
        self.verify, self.n_measured = verify, 0

    def __call__(self, arch: Arch) -> bool:
        if self._within(arch):
            return True
        return self._loose is not None and self.n_measured < self.verify and self._loose(arch)

    def note_measurement(self) -> None:
        self.n_measured += 1


class Search:
    """A latency-constrained search (Optuna-style ask/tell).

    ``ask()`` returns a pending :class:`Trial` (a feasible architecture the strategy proposes, with
    its predicted latency); ``tell(trial, accuracy)`` completes it: the MNAS ``reward`` at its
    latency is journalled, the incumbent (the best trial within ``limit_ms``) is measured on the
    device (``measure``, up to ``verify`` measurements; a measurement over the limit disqualifies
    it, see :func:`hwnas.search.incumbent`) and the strategy learns the trial's reward
    (:func:`hwnas.search.strategy_reward`; ``(accuracy, -latency_ms)`` with ``objective="pareto"``).
    ``optimize(budget)`` asks, evaluates (``evaluator(arch) -> accuracy``) and tells until the search
    holds ``budget`` trials. A ``Search`` on a journal that holds trials replays them through the
    strategy first (asks are deterministic given the seed and the tells), so the same script rerun
    after a crash finishes the same search. One trial is pending at a time.

    ``incumbent_check`` (default: when ``measure`` is given) turns the incumbent check on;
    :meth:`measure_now` measures any trial. ``on_measured(arch, ms)`` callbacks see every device
    measurement (replayed ones too).
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, latency: Callable[[Arch], float], reward: MnasReward,
                 journal: Journal, *, evaluator: Callable[[Arch], float] | None = None, limit_ms: float | None = None,
                 measure: Callable[[Arch], float] | None = None, verify: int = 0, qualify_ms: float | None = None,
                 incumbent_check: bool | None = None,
                 objective: str = "mnas", on_measured: Sequence[Callable[[Arch, float], None]] = (),
                 settings: dict[str, Any] | None = None) -> None:
        if objective not in OBJECTIVES:
            raise UnknownNameError("objective", objective, OBJECTIVES)
        if objective == "pareto" and not strategy.multi_objective:
            raise HwnasError(f"strategy {strategy.name!r} takes one reward; the pareto objective needs a "
                             "multi-objective strategy (nsga2; random and grid ignore rewards)")
        self.space, self.strategy, self.latency, self.reward = space, strategy, latency, reward
        self.journal, self.evaluator, self.limit_ms, self.objective = journal, evaluator, limit_ms, objective
        self.measure, self.verify, self.qualify_ms = measure, verify, qualify_ms
        self.incumbent_check = measure is not None if incumbent_check is None else incumbent_check
        self.settings = dict(settings or {})
        self._on_measured = list(on_measured)
        self.measured: dict[str, float] = {}
        self._trials: list[Trial] = []
        self._pending: tuple[Trial, Arch, float] | None = None
        self._replay()

    # ---- state -------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """The completed trials, in order, with their measured latency where measured."""
        return [self._view(t) for t in self._trials]

    @property
    def best_trial(self) -> Trial | None:
        """The most accurate trial within the latency limit (best MNAS reward; measured latency
        where measured), or None."""
        return best_and_front(self.trials, self.limit_ms, self.measured)[0]

    @property
    def best_trials(self) -> list[Trial]:
        """The accuracy-latency Pareto front of the trials (predicted latencies), fastest first."""
        return best_and_front(self.trials, self.limit_ms, self.measured)[1]

    # ---- ask / tell --------------------------------------------------------------------------
    def ask(self) -> Trial:
        """A pending trial: the strategy's next (feasible) architecture. Raises
        :class:`~hwnas.search.strategies.SearchExhausted` when the strategy has none left."""
        if self._pending is not None:
            raise HwnasError(f"trial {self._pending[0].number} is pending: tell its accuracy before asking again")
        arch = self.strategy.ask()
        t = Trial(len(self._trials), self.space.to_string(arch), None, float(self.latency(arch)), None,
                  self.space.params(arch), self.space.flops(arch), 0.0, state="pending", settings=self.settings)
        self._pending = (t, arch, time.perf_counter())
        return t

    def tell(self, trial: Trial, accuracy: float) -> Trial:
        """Complete the pending ``trial`` with its ``accuracy``; returns the completed trial."""
        if self._pending is None or self._pending[0].number != trial.number:
            raise HwnasError(f"trial {trial.number} is not the pending trial of this search")
        _, arch, t0 = self._pending
        self._pending = None
        acc, lat = float(accuracy), float(self.latency(arch))
        t = Trial(trial.number, trial.arch, acc, lat, self.reward(acc, lat), trial.params, trial.flops,
                  time.perf_counter() - t0)
        self.journal.add(t)
        self._trials.append(t)
        self._check_incumbent(t.number)
        self.strategy.tell(arch, self._told(acc, self.measured.get(t.arch, lat)))
        return self._view(self._trials[-1])

    def optimize(self, budget: int, callbacks: Iterable[Callable[[Search, Trial], None]] = ()) -> list[Trial]:
        """Evaluate until the search holds ``budget`` trials (or the strategy is exhausted);
        ``callback(search, trial)`` after each. Returns the trials."""
        if self.evaluator is None:
            raise HwnasError("optimize needs an evaluator (arch -> accuracy); or drive the search with ask/tell")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ArgumentError("budget", "takes a count >= 1", budget)
        callbacks = list(callbacks)
        while len(self._trials) < budget:
            try:
                trial = self.ask()
            except SearchExhausted:
                break
            done = self.tell(trial, float(self.evaluator(self._pending[1])))  # type: ignore[index]
            for cb in callbacks:
                cb(self, done)
        return self.trials

    def measure_now(self, arch: str) -> float:
        """Measure a trial's architecture on the device now (journalled; a resumed search does
        not measure it again); returns the latency in ms."""
        if self.measure is None:
            raise HwnasError("this search has no device measurement (verify=0)")
        if arch in self.measured:
            return self.measured[arch]
        ms = float(self.measure(self.space.from_string(arch)))
        self.journal.add_measurement(arch, self._trials[-1].number if self._trials else -1, ms)
        self._apply(arch, ms)
        return ms

    def close(self) -> None:
        """Close the journal."""
        self.journal.close()

    # ---- internals ---------------------------------------------------------------------------
    def _view(self, t: Trial) -> Trial:
        """A stored trial with its measured latency and the run's settings."""
        return replace(t, measured_latency_ms=self.measured.get(t.arch), settings=self.settings)

    def _told(self, acc: float, latency_ms: float) -> float | tuple[float, float]:
        if self.objective == "pareto":
            return acc, -latency_ms
        return strategy_reward(self.reward, acc, latency_ms, self.limit_ms)

    def _apply(self, arch_s: str, ms: float) -> None:
        self.measured[arch_s] = ms
        for cb in self._on_measured:
            cb(self.space.from_string(arch_s), ms)

    def _check_incumbent(self, after: int) -> None:
        """Measure the incumbent until one is measured or the measurements are spent."""
        while self.incumbent_check and self.measure is not None and len(self.measured) < self.verify:
            best = incumbent(self._trials, self.limit_ms, self.measured, self.qualify_ms, self.reward)
            if best is None or best.arch in self.measured:
                return
            ms = float(self.measure(self.space.from_string(best.arch)))
            self.journal.add_measurement(best.arch, after, ms)
            self._apply(best.arch, ms)
            # its reward at the measured latency (the journal's too); a trial's number is its index
            self._trials[best.number] = replace(best, reward=self.reward(best.accuracy, ms))
            self.journal.set_reward(best.number, self._trials[best.number].reward)

    def _replay(self) -> None:
        """The journal's trials through the strategy: it re-proposes what it proposed, told the same."""
        by_trial: dict[int, list[tuple[str, float]]] = {}
        for arch_s, after, ms in self.journal.measurements():
            by_trial.setdefault(after, []).append((arch_s, ms))
        for t in self.journal.trials():
            if t.accuracy is None:
                raise HwnasError(f"{self.journal.path}: trial {t.number} has no accuracy (a damaged journal)")
            arch = self.strategy.ask()
            if self.space.to_string(arch) != t.arch:
                raise HwnasError(f"cannot resume {self.journal.path}: trial {t.number} was {t.arch}, the strategy now "
                                 f"proposes {self.space.to_string(arch)} (different code or settings)")
            for arch_s, ms in by_trial.get(t.number, []):
                self._apply(arch_s, ms)
            self._trials.append(t)
            self.strategy.tell(arch, self._told(t.accuracy, self.measured.get(t.arch, t.latency_ms)))
