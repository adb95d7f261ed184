"""Bayesian optimisation strategies: ``bo`` (a Gaussian process, EI/UCB) and ``tpe`` (Optuna).
The shared strategy checks (contract, determinism, feasibility, replay) run over the registry in
test_search.py; here: batches of pending proposals, learning from rewards, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.errors import ArgumentError, UnknownNameError
from hwnas.search import create_space, create_strategy
from hwnas.testing import deterministic_feasibility


def _reward(arch) -> float:  # noqa: ANN001
    """A smooth toy reward with one optimum: closeness to a fixed cell (orchestration only)."""
    best = (3, 1, 4, 1, 0, 2)
    return float(np.mean(np.array(arch.choices) == np.array(best)))


@pytest.mark.parametrize("name", ["bo", "tpe"])
def test_a_batch_of_pending_proposals_is_distinct_and_new(name) -> None:
    space = create_space("nb201")
    s = create_strategy(name, space, seed=1, feasible=deterministic_feasibility(space), initial=4)
    first = [s.ask() for _ in range(4)]
    for a in first:
        s.tell(a, _reward(a))
    batch = [s.ask() for _ in range(6)]  # six workers, none told: the model must spread them
    assert len(set(batch)) == 6 and not set(batch) & set(first)
    s.fail(batch[0])  # a failed evaluation is forgotten as pending, never proposed again
    for a in batch[1:]:
        s.tell(a, _reward(a))
    assert s.ask() not in set(first) | set(batch)


@pytest.mark.parametrize("name", ["bo", "tpe"])
def test_model_based_strategies_beat_random_on_a_toy_reward(name) -> None:
    space = create_space("nb201")

    def best_found(strategy: str, seed: int, **kw) -> float:
        s = create_strategy(strategy, space, seed=seed, **kw)
        found = 0.0
        for _ in range(40):
            a = s.ask()
            r = _reward(a)
            s.tell(a, r)
            found = max(found, r)
        return found

    model = np.mean([best_found(name, seed, initial=8) for seed in range(3)])
    rand = np.mean([best_found("random", seed) for seed in range(3)])
    assert model > rand, (model, rand)


def test_bo_ucb_and_bad_parameters() -> None:
    space = create_space("nb201")
    s = create_strategy("bo", space, seed=0, acquisition="ucb", kappa=1.0, initial=3)
    for _ in range(5):
        a = s.ask()
        s.tell(a, _reward(a))
    with pytest.raises(UnknownNameError, match="ei, ucb"):
        create_strategy("bo", space, acquisition="pi")
    with pytest.raises(ArgumentError, match="initial"):
        create_strategy("bo", space, initial=1)
    with pytest.raises(ArgumentError, match="tries"):
        create_strategy("tpe", space, tries=0)
    with pytest.raises(ArgumentError, match="no parameter 'population_size'"):
        create_strategy("tpe", space, population_size=4)
    with pytest.raises(ArgumentError, match="prior_weight"):
        create_strategy("tpe", space, prior_weight=-1.0)
    with pytest.raises(UnknownNameError, match="neighbour, resample"):
        create_strategy("tpe", space, on_repeat="mutate")
    with pytest.raises(UnknownNameError, match="constraint, neighbour"):
        create_strategy("tpe", space, on_infeasible="penalty")


def test_tpe_replaces_a_repeat_by_an_unseen_feasible_neighbour() -> None:
    """Once TPE's posterior is peaked it proposes its incumbent again; the default answers a repeat
    with a new single mutation of it, where ``resample`` asks the sampler again (many more trials)."""
    space = create_space("nb201")
    feasible = deterministic_feasibility(space)
    trials = {}
    for mode in ("neighbour", "resample"):
        s = create_strategy("tpe", space, seed=0, feasible=feasible, initial=5, on_repeat=mode, on_infeasible="constraint")
        seen = []
        for _ in range(40):
            a = s.ask()
            assert feasible(a) and a not in seen
            seen.append(a)
            s.tell(a, 1.0 if a.choices[:4] == (3, 1, 4, 1) else _reward(a))
        trials[mode] = len(s._study.trials)
    assert trials["neighbour"] < trials["resample"]


@pytest.mark.parametrize("strategy, param, known", [("bo", "acquisition=pi", "ei, ucb"),
                                                     ("tpe", "on_infeasible=penalty", "constraint, neighbour"),
                                                     ("tpe", "on_repeat=mutate", "neighbour, resample")])
def test_bad_bo_parameter_on_the_command_line_is_one_line(tmp_path, strategy, param, known) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hwnas", "search", "--space", "nb201", "--strategy", strategy,
                        "--strategy-param", param, "--budget", "2", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert known in (r.stderr + r.stdout)
    assert not (tmp_path / "r" / "journal.sqlite").exists()
