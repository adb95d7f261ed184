"""Latency-constrained architecture search: spaces, strategies (ask/tell), the MNAS reward, a
journaled and resumable :class:`Search`, accuracy evaluators, and run directories.

>>> from hwnas.search import reward_preset
>>> reward_preset("soft", 10.0)(0.9, 10.0)
0.9
"""

from hwnas.search._evaluators import (ProxyTrainingEvaluator, TableEvaluator, create_evaluator, dataset_classes,
                                      list_evaluators, load_dataset, register_evaluator)
from hwnas.search._inherit import InheritingEvaluator, InheritStats, block_correspondence, inherit_weights
from hwnas.search._parallel import (EvaluationFailed, Executor, InlineExecutor, ProcessExecutor, RayExecutor,
                                    create_executor, evaluate_trial, list_executors, register_executor, run_trials)
from hwnas.search._multifidelity import (MULTI_FIDELITY, MultiFidelitySearch, Rung, RungJournal, RungResult,
                                         hyperband_schedule, successive_halving_schedule)
from hwnas.search._objective import MnasReward, pareto_front, reward_preset
from hwnas.search._run import (OBJECTIVES, Journal, Limits, Trial, best_and_front, check_budget_feasible, feasibility,
                               incumbent, strategy_reward)
from hwnas.search._rundir import RunDir, atomic_write_text, write_json
from hwnas.search._search import Feasibility, LatencyCache, Search
from hwnas.search.spaces import (Arch, SearchSpace, create_space, list_spaces, register_space, space_names,
                                 space_settings)
from hwnas.search.strategies import (SearchExhausted, Strategy, check_strategy_params, create_strategy, list_strategies,
                                     register_strategy,
                                     strategy_class, strategy_names)

__all__ = ["inherit_weights", "block_correspondence", "InheritStats", "InheritingEvaluator", "MnasReward", "pareto_front", "reward_preset", "OBJECTIVES", "Journal", "Limits", "Trial",
           "best_and_front", "check_budget_feasible", "feasibility", "incumbent", "strategy_reward", "RunDir",
           "atomic_write_text", "write_json", "Search", "LatencyCache", "Feasibility", "Arch", "SearchSpace",
           "create_space", "register_space", "list_spaces", "space_settings", "space_names", "Strategy",
           "SearchExhausted", "check_strategy_params", "create_strategy", "register_strategy", "list_strategies", "strategy_class",
           "strategy_names", "ProxyTrainingEvaluator", "TableEvaluator", "create_evaluator", "register_evaluator",
           "list_evaluators", "load_dataset", "dataset_classes", "Executor", "InlineExecutor", "ProcessExecutor",
           "RayExecutor", "EvaluationFailed", "create_executor", "evaluate_trial", "list_executors", "register_executor",
           "run_trials", "MULTI_FIDELITY", "MultiFidelitySearch", "Rung", "RungJournal", "RungResult",
           "hyperband_schedule", "successive_halving_schedule"]
