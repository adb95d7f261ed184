"""Search strategies (ask/tell), registered by name: ``grid``, ``random``, ``evolution``,
``guided-evolution``, ``reinforce``, ``ppo``, and the multi-objective ``nsga2``."""

from __future__ import annotations

from typing import Any

from hwnas._registry import Registry
from hwnas.search.strategies._base import SearchExhausted, Strategy
from hwnas.search.strategies._controllers import PPOController, ReinforceController
from hwnas.search.strategies._pareto import ParetoEvolution
from hwnas.search.strategies._simple import GridSearch, GuidedEvolution, RandomSearch, RegularizedEvolution

__all__ = ["Strategy", "SearchExhausted", "GridSearch", "RandomSearch", "RegularizedEvolution", "GuidedEvolution",
           "ReinforceController", "PPOController", "ParetoEvolution",
           "create_strategy", "strategy_class", "strategy_names"]

_STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (GridSearch, RandomSearch, RegularizedEvolution, GuidedEvolution, ReinforceController, PPOController,
             ParetoEvolution):
    _STRATEGIES.register(_cls.name, _cls)


def create_strategy(name: str, space: Any, seed: int = 0, feasible: Any = None, **params: Any) -> Strategy:
    return _STRATEGIES.get(name)(space, seed=seed, feasible=feasible, **params)


def strategy_class(name: str) -> type[Strategy]:
    return _STRATEGIES.get(name)


def strategy_names() -> list[str]:
    return _STRATEGIES.names()
