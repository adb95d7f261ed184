"""Latency-constrained architecture search: spaces, strategies (ask/tell), the MNAS reward, a
journaled and resumable run loop, and accuracy evaluators.

>>> from hwnas.search import reward_preset
>>> reward_preset("soft", 10.0)(0.9, 10.0)
0.9
"""

from hwnas.search._objective import MnasReward, pareto_front, reward_preset
from hwnas.search._run import (Journal, Limits, Trial, best_and_front, check_budget_feasible, run_search,
                              strategy_reward)
from hwnas.search.spaces import Arch, SearchSpace, create_space, space_names
from hwnas.search.strategies import Strategy, create_strategy, strategy_names

__all__ = ["MnasReward", "pareto_front", "reward_preset", "Journal", "Limits", "Trial", "best_and_front",
           "check_budget_feasible", "run_search", "strategy_reward", "Arch", "SearchSpace", "create_space",
           "space_names", "Strategy", "create_strategy", "strategy_names"]
