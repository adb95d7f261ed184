"""Search strategies (ask/tell), registered by name: ``grid``, ``random``, ``evolution``,
``guided-evolution``, ``reinforce``, ``ppo``, Bayesian optimisation ``bo`` (a Gaussian process) and
``tpe`` (Optuna's TPE), and the multi-objective ``nsga2``."""

from __future__ import annotations

from typing import Any

from hwnas._registry import Registry
from hwnas.search.strategies._base import SearchExhausted, Strategy
from hwnas.search.strategies._bayes import GaussianProcessBO, TPESearch
from hwnas.search.strategies._controllers import PPOController, ReinforceController
from hwnas.search.strategies._pareto import ParetoEvolution
from hwnas.search.strategies._simple import GridSearch, GuidedEvolution, RandomSearch, RegularizedEvolution, surrogate_regressor

__all__ = ["Strategy", "SearchExhausted", "GridSearch", "RandomSearch", "RegularizedEvolution", "GuidedEvolution",
           "ReinforceController", "PPOController", "ParetoEvolution", "GaussianProcessBO", "TPESearch", "surrogate_regressor",
           "create_strategy", "check_strategy_params", "register_strategy", "list_strategies", "strategy_class", "strategy_names"]

_STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (GridSearch, RandomSearch, RegularizedEvolution, GuidedEvolution, ReinforceController, PPOController,
             ParetoEvolution, GaussianProcessBO, TPESearch):
    _STRATEGIES.register(_cls.name, _cls)


def register_strategy(cls: type[Strategy], *, replace: bool = False) -> type[Strategy]:
    """Register a :class:`Strategy` subclass under its ``name`` (usable as a decorator); the shared
    check suite (:func:`hwnas.testing.check_strategy`) runs over every registered strategy."""
    return _STRATEGIES.register(cls.name, cls, replace=replace)


def check_strategy_params(name: str, params: dict[str, Any]) -> type[Strategy]:
    """The strategy class ``name``, once ``params`` are checked: unknown names list the known ones,
    values outside the strategy's declared ranges name the range (``ArgumentError``)."""
    import inspect

    from hwnas.errors import ArgumentError

    cls = _STRATEGIES.get(name)
    known = [p for p in inspect.signature(cls).parameters if p not in ("space", "seed", "feasible")]
    bad = [k for k in params if k not in known]
    if bad:
        raise ArgumentError("strategy_params", f"for {name} has no parameter {bad[0]!r}; its parameters: "
                            f"{', '.join(known)}")
    cls.check_params(params)
    return cls


def create_strategy(name: str, space: Any, seed: int = 0, feasible: Any = None, **params: Any) -> Strategy:
    """The strategy ``name`` over ``space`` (parameters checked by :func:`check_strategy_params`)."""
    return check_strategy_params(name, params)(space, seed=seed, feasible=feasible, **params)


def strategy_class(name: str) -> type[Strategy]:
    return _STRATEGIES.get(name)


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered strategy names matching ``pattern`` (a glob)."""
    return _STRATEGIES.names(pattern)


strategy_names = list_strategies
