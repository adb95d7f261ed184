"""Ask/tell search strategies. The run loop, journal, resume and progress bar live outside them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from hwnas.search.spaces._base import Arch, InfeasibleError, SearchSpace

__all__ = ["Strategy", "SearchExhausted"]


class SearchExhausted(Exception):
    """The strategy has no new architecture to propose (e.g. a finished grid)."""


class Strategy(ABC):
    """Proposes architectures (``ask``) and learns from their rewards (``tell``; higher is better).

    Only feasible architectures are proposed: ``feasible(arch)`` checks the hard limits. A strategy
    is deterministic given its seed and the sequence of tells, which is how runs resume (the run
    loop replays the journal through ask/tell).
    """

    name: str = ""
    #: can be told a tuple of values to maximise (``hwnas search --objective pareto`` tells
    #: ``(accuracy, -latency_ms)``); strategies that ignore rewards (grid, random) can too
    multi_objective: bool = False
    #: the allowed range of each hyper-parameter: ``name -> (type, low, high or None)``, checked
    #: by :meth:`check_params` (``create_strategy`` and the CLI's ``--strategy-param`` alike)
    param_ranges: dict[str, tuple[type, float, float | None]] = {}

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Raise :class:`~hwnas.errors.ArgumentError` for a value outside its declared range."""
        from hwnas.search.spaces._base import check_setting

        for name, value in params.items():
            if name in cls.param_ranges:
                kind, low, high = cls.param_ranges[name]
                check_setting(cls.name, name, value, kind, low, high, what="parameter")

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.feasible = feasible or (lambda arch: True)

    @abstractmethod
    def ask(self) -> Arch: ...

    def tell(self, arch: Arch, reward: float) -> None:
        """Record the reward of an asked architecture (no-op by default)."""

    def fail(self, arch: Arch) -> None:
        """An asked architecture that will never be told (its evaluation failed): forget it as
        pending, never propose it again (no-op by default: strategies remember what they asked)."""

    def parent_of(self, arch: Arch) -> Arch | None:
        """The evaluated architecture ``arch`` was bred from (weight inheritance: it may start from
        that one's trained weights), or None (a random sample; strategies that do not breed)."""
        return None

    def _sample_new(self, seen: set[Arch], tries: int = 1000) -> Arch | None:
        """A random feasible architecture not in ``seen`` (added to it), or ``None`` after
        ``tries`` draws."""
        for _ in range(tries):
            arch = self._sample_feasible()
            if arch not in seen:
                seen.add(arch)
                return arch
        return None

    def _sample_feasible(self, tries: int = 10_000) -> Arch:
        for _ in range(tries):
            arch = self.space.sample(self.rng)
            if self.feasible(arch):
                return arch
        raise InfeasibleError(f"no feasible architecture in {tries} random samples of {self.space.name!r}")
