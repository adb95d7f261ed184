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
    its predicted latency), journalled at once; ``tell(trial, accuracy)`` completes it: the MNAS
    ``reward`` at its latency is journalled, the incumbent (the best trial within ``limit_ms``) is
    measured on the device (``measure``, up to ``verify`` measurements; a measurement over the limit
    disqualifies it, see :func:`hwnas.search.incumbent`) and the strategy learns the trial's reward
    (:func:`hwnas.search.strategy_reward`; ``(accuracy, -latency_ms)`` with ``objective="pareto"``).
    ``fail(trial, error)`` records a trial whose evaluation failed for good. Several trials may be
    pending at once (told in any order): ``optimize(budget, workers=N)`` keeps N evaluations in
    flight (:func:`hwnas.search.run_trials`). A ``Search`` on a journal that holds trials replays
    the journal's asks, tells and failures through the strategy in the order they happened (asks
    are deterministic given the seed and the tells), so the same script rerun after a crash
    finishes the same search; the trials it left pending are :attr:`pending_trials`, evaluated
    first by ``optimize``.

    ``incumbent_check`` (default: when ``measure`` is given) turns the incumbent check on;
    :meth:`measure_now` measures any trial. ``on_measured(arch, ms)`` callbacks see every device
    measurement (replayed ones too).
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, latency: Callable[[Arch], float], reward: MnasReward,
                 journal: Journal, *, evaluator: Callable[[Arch], float] | None = None, limit_ms: float | None = None,
                 measure: Callable[[Arch], float] | None = None, verify: int = 0, qualify_ms: float | None = None,
                 incumbent_check: bool | None = None,
                 objective: str = "mnas", on_measured: Sequence[Callable[[Arch, float], None]] = (),
                 settings: dict[str, Any] | None = None, run_options: dict[str, Any] | None = None) -> None:
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
        #: where :meth:`optimize` evaluates by default: ``executor`` (a name), ``address``,
        #: ``trial_cpus``, ``trial_gpus`` (see :func:`~hwnas.search.create_executor`)
        self.run_options = dict(run_options or {})
        self._on_measured = list(on_measured)
        self.measured: dict[str, float] = {}
        self._trials: dict[int, Trial] = {}  # the completed ones
        self._failed: dict[int, Trial] = {}
        self._pending: dict[int, tuple[Trial, Arch, float]] = {}
        self._last_told = -1
        self._replay()

    # ---- state -------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """The completed trials, by number, with their measured latency where measured."""
        return [self._view(self._trials[n]) for n in sorted(self._trials)]

    @property
    def pending_trials(self) -> list[Trial]:
        """Trials asked and not told yet (after a resume: those the interrupted run left)."""
        return [self._pending[n][0] for n in sorted(self._pending)]

    @property
    def failed_trials(self) -> list[Trial]:
        """Trials whose evaluation failed for good (:meth:`fail`), with the error."""
        return [self._failed[n] for n in sorted(self._failed)]

    @property
    def best_trial(self) -> Trial | None:
        """The most accurate trial within the latency limit (best MNAS reward; measured latency
        where measured), or None."""
        return best_and_front(self.trials, self.limit_ms, self.measured)[0]

    @property
    def best_trials(self) -> list[Trial]:
        """The accuracy-latency Pareto front of the trials (predicted latencies), fastest first."""
        return best_and_front(self.trials, self.limit_ms, self.measured)[1]

    def arch_of(self, trial: Trial) -> Arch:
        """The architecture value of a pending trial."""
        return self._pending_entry(trial)[1]

    # ---- ask / tell --------------------------------------------------------------------------
    def ask(self) -> Trial:
        """A pending trial: the strategy's next (feasible) architecture, journalled. Raises
        :class:`~hwnas.search.strategies.SearchExhausted` when the strategy has none left."""
        arch = self.strategy.ask()
        number = 1 + max([*self._trials, *self._failed, *self._pending], default=-1)
        t = Trial(number, self.space.to_string(arch), None, float(self.latency(arch)), None,
                  self.space.params(arch), self.space.flops(arch), 0.0, state="pending", settings=self.settings)
        self.journal.add_pending(t)
        self._pending[number] = (t, arch, time.perf_counter())
        return t

    def tell(self, trial: Trial, accuracy: float, *, eval_seconds: float | None = None,
             check_incumbent: bool = True) -> Trial:
        """Complete the pending ``trial`` with its ``accuracy`` (``eval_seconds``: the evaluation's
        time where it ran elsewhere; default: since the ask); returns the completed trial. With
        ``check_incumbent=False`` the incumbent is measured later, by :meth:`check_incumbent`."""
        _, arch, t0 = self._pending_entry(trial)
        del self._pending[trial.number]
        acc, lat = float(accuracy), float(self.latency(arch))
        secs = time.perf_counter() - t0 if eval_seconds is None else float(eval_seconds)
        t = Trial(trial.number, trial.arch, acc, lat, self.reward(acc, lat), trial.params, trial.flops, secs)
        self.journal.complete(t)
        self._trials[t.number] = t
        self._last_told = t.number
        if check_incumbent:
            self.check_incumbent()
        self.strategy.tell(arch, self._told(acc, self.measured.get(t.arch, lat)))
        return self._view(self._trials[t.number])

    def fail(self, trial: Trial, error: str) -> Trial:
        """Record that the pending ``trial``'s evaluation failed for good (journalled with
        ``error``; the strategy does not propose it again)."""
        _, arch, _ = self._pending_entry(trial)
        del self._pending[trial.number]
        self.journal.fail(trial.number, error)
        self.strategy.fail(arch)
        self._failed[trial.number] = replace(trial, state="failed", error=error)
        return self._failed[trial.number]

    def optimize(self, budget: int, callbacks: Iterable[Callable[[Search, Trial], None]] = (), *, workers: int = 1,
                 executor: Any = None, retries: int = 2) -> list[Trial]:
        """Evaluate until the search holds ``budget`` completed trials (or the strategy is
        exhausted), ``workers`` at a time, on ``executor`` (a :class:`~hwnas.search.Executor` or
        its registered name; default: :attr:`run_options`'s, else this process for one worker and
        ``local`` worker processes for more); ``callback(search, trial)`` after each. Each evaluation is tried ``retries``
        more times before the trial is recorded as failed. Returns the completed trials."""
        from hwnas.search._parallel import create_executor, run_trials

        if self.evaluator is None:
            raise HwnasError("optimize needs an evaluator (arch -> accuracy); or drive the search with ask/tell")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ArgumentError("budget", "takes a count >= 1", budget)
        if workers > 1 and getattr(self.evaluator, "parent_of", None) is not None:
            raise ArgumentError("workers", "is 1 with weight inheritance (a child waits for its parent's weights)",
                                workers)
        opts = dict(self.run_options)
        name = executor if executor is not None else opts.pop("executor", None)
        if isinstance(name, str) or (name is None and (workers > 1 or opts)):
            name = create_executor(name or ("inline" if workers == 1 else "local"), workers=workers, **opts)
        run_trials(self, budget, list(callbacks), workers=workers, executor=name, retries=retries)
        return self.trials

    def incumbent_due(self) -> bool:
        """Would :meth:`check_incumbent` measure now?"""
        if not (self.incumbent_check and self.measure is not None and len(self.measured) < self.verify):
            return False
        best = incumbent(list(self._trials.values()), self.limit_ms, self.measured, self.qualify_ms, self.reward)
        return best is not None and best.arch not in self.measured

    def measure_now(self, arch: str) -> float:
        """Measure a trial's architecture on the device now (journalled; a resumed search does
        not measure it again); returns the latency in ms."""
        if self.measure is None:
            raise HwnasError("this search has no device measurement (verify=0)")
        if arch in self.measured:
            return self.measured[arch]
        ms = float(self.measure(self.space.from_string(arch)))
        self.journal.add_measurement(arch, self._last_told, ms)
        self._apply(arch, ms)
        return ms

    def close(self) -> None:
        """Close the journal."""
        self.journal.close()

    def check_incumbent(self) -> None:
        """Measure the incumbent until one is measured or the measurements are spent."""
        while self.incumbent_due():
            best = incumbent(list(self._trials.values()), self.limit_ms, self.measured, self.qualify_ms, self.reward)
            ms = float(self.measure(self.space.from_string(best.arch)))  # type: ignore[misc,union-attr]
            self.journal.add_measurement(best.arch, self._last_told, ms)
            self._apply(best.arch, ms)
            # its reward at the measured latency (the journal's too)
            self._trials[best.number] = replace(best, reward=self.reward(best.accuracy, ms))
            self.journal.set_reward(best.number, self._trials[best.number].reward)

    # ---- internals ---------------------------------------------------------------------------
    def _pending_entry(self, trial: Trial) -> tuple[Trial, Arch, float]:
        if trial.number not in self._pending:
            raise HwnasError(f"trial {trial.number} is not a pending trial of this search")
        return self._pending[trial.number]

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

    def _replay(self) -> None:
        """The journal's asks, tells and failures through the strategy, in their order: it
        re-proposes what it proposed, told the same; measurements where they were taken."""
        by_trial: dict[int, list[tuple[str, float]]] = {}
        for arch_s, after, ms in self.journal.measurements():
            by_trial.setdefault(after, []).append((arch_s, ms))
        stored = {t.number: t for t in self.journal.trials()}
        for arch_s, ms in by_trial.get(-1, []):  # measured before any trial was told
            self._apply(arch_s, ms)
        for kind, number in self.journal.events():
            t = stored[number]
            if kind == "ask":
                self._replay_ask(t)
            elif kind == "fail":
                self._replay_fail(t)
            else:
                self._replay_tell(t, by_trial.get(number, []))

    def _replay_ask(self, t: Trial) -> None:
        arch = self.strategy.ask()
        if self.space.to_string(arch) != t.arch:
            raise HwnasError(f"cannot resume {self.journal.path}: trial {t.number} was {t.arch}, the strategy now "
                             f"proposes {self.space.to_string(arch)} (different code or settings)")
        self._pending[t.number] = (replace(t, accuracy=None, reward=None, state="pending", error=None,
                                           settings=self.settings), arch, time.perf_counter())

    def _replay_tell(self, t: Trial, measurements: list[tuple[str, float]]) -> None:
        if t.accuracy is None:
            raise HwnasError(f"{self.journal.path}: trial {t.number} has no accuracy (a damaged journal)")
        _, arch, _ = self._pending.pop(t.number)
        for arch_s, ms in measurements:
            self._apply(arch_s, ms)
        self._trials[t.number] = replace(t, state="complete", error=None)
        self._last_told = t.number
        self.strategy.tell(arch, self._told(t.accuracy, self.measured.get(t.arch, t.latency_ms)))

    def _replay_fail(self, t: Trial) -> None:
        _, arch, _ = self._pending.pop(t.number)
        self.strategy.fail(arch)
        self._failed[t.number] = replace(t, state="failed")
