"""Grid, random search, regularised evolution and surrogate-guided evolution."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

__all__ = ["GridSearch", "RandomSearch", "RegularizedEvolution", "GuidedEvolution"]


def surrogate_regressor(seed: int) -> Any:
    """The small LightGBM regressor that screens children in surrogate-guided evolution (input:
    the space's ``features``; fits in milliseconds on a few hundred rewards)."""
    import lightgbm as lgb

    return lgb.LGBMRegressor(n_estimators=50, learning_rate=0.15, num_leaves=8, min_child_samples=3, subsample=0.8,
                             subsample_freq=1, random_state=seed, n_jobs=1, deterministic=True, verbose=-1)


class GridSearch(Strategy):
    """Every feasible architecture of a finite space, in a seeded random order (without repeats)."""

    name = "grid"
    multi_objective = True  # ignores rewards

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 shuffle: bool = True) -> None:
        super().__init__(space, seed, feasible)
        self._all = list(space.enumerate())
        if shuffle:
            self.rng.shuffle(self._all)
        self._next = 0

    def ask(self) -> Arch:
        while self._next < len(self._all):
            arch = self._all[self._next]
            self._next += 1
            if self.feasible(arch):
                return arch
        raise SearchExhausted(f"the grid over {self.space.name!r} is exhausted")


class RandomSearch(Strategy):
    """Uniform samples of feasible architectures, without repeats."""

    name = "random"
    multi_objective = True  # ignores rewards

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed, feasible)
        self._seen: set[Arch] = set()

    def ask(self) -> Arch:
        arch = self._sample_new(self._seen)
        if arch is None:
            raise SearchExhausted(f"random search found no new feasible architecture of {self.space.name!r}")
        return arch


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019): a population of the ``population_size`` newest
    architectures; each child comes from the best of ``tournament_size`` random members, crossed
    over with a second tournament winner with probability ``crossover_prob``, then mutated. The
    oldest member dies when a child joins. Children are feasible and new; a parent whose every
    neighbour was seen gets one more mutation per 100 failed tries.

    The defaults select hard (the tournament is the whole population, no crossover), for the small
    budgets of hardware-aware search (BENCHMARKS.md). Aging still retires the best member, which
    keeps the search from sitting on one optimum.

    ``candidates`` > 1 screens children with a surrogate (predictor-guided evolution, as NPENAS,
    Wei et al. 2020): once the population is full, ``candidates`` distinct feasible children are
    bred, a small LightGBM regressor fitted on every (encoding, reward) told so far ranks them, and
    only the best is proposed, so an evaluation (minutes of proxy training) is spent on the child
    most likely to pay off; the fit costs milliseconds. ``explore`` > 0 (with ``candidates`` > 1)
    adds that many random feasible, unevaluated architectures to the children the surrogate
    screens, so that its pick may lie anywhere in the space, not only one mutation from the
    population's best (NPENAS and BANANAS screen random samples the same way). ``kappa`` > 0 ranks
    the screened architectures by ``mean + kappa * std`` over an ensemble of ``ENSEMBLE`` surrogates
    (bagged with different seeds: BANANAS's optimism where its ensemble disagrees) instead of one
    surrogate's prediction. ``candidates=1``
    (the default) is plain aging evolution; ``guided-evolution`` is this strategy with
    ``candidates=20, explore=100``."""

    name = "evolution"
    param_ranges = {"population_size": (int, 1, None), "tournament_size": (int, 1, None),
                    "crossover_prob": (float, 0, 1), "mutations": (int, 1, None), "candidates": (int, 1, None),
                    "explore": (int, 0, None), "kappa": (float, 0, None)}
    #: random samples per feasible newcomer at most (see ``explore``)
    NEWCOMER_TRIES = 100
    #: surrogates in the ensemble when ``kappa`` > 0
    ENSEMBLE = 5

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 population_size: int = 20, tournament_size: int = 20, crossover_prob: float = 0.0,
                 mutations: int = 1, candidates: int = 1, explore: int = 0, kappa: float = 0.0) -> None:
        super().__init__(space, seed, feasible)
        if not 1 <= tournament_size <= population_size:
            raise ValueError("need 1 <= tournament_size <= population_size")
        if candidates < 1:
            raise ValueError("need candidates >= 1")
        if explore < 0:
            raise ValueError("need explore >= 0")
        if kappa < 0:
            raise ValueError("need kappa >= 0")
        self.kappa = kappa
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_prob = crossover_prob
        self.mutations = mutations
        self.candidates = candidates
        self.explore = explore
        self.population: deque[tuple[Arch, float]] = deque()
        self._seen: set[Arch] = set()
        self._told_x: list[np.ndarray] = []
        self._told_y: list[float] = []
        self._bred: dict[Arch, Arch] = {}  # this ask's children -> the parent each was bred from
        self._parent: dict[Arch, Arch] = {}  # proposed children -> parent (weight inheritance)

    def _tournament(self) -> Arch:
        pool = self.population
        idx = self.rng.choice(len(pool), size=min(self.tournament_size, len(pool)), replace=False)
        return max((pool[int(i)] for i in idx), key=lambda p: p[1])[0]

    def _children(self, k: int) -> list[Arch]:
        """Up to ``k`` distinct new feasible children, in at most 1000 failed tries."""
        children: list[Arch] = []
        failures = 0
        while len(children) < k and failures < 1000:
            child = parent = self._tournament()
            if self.crossover_prob and self.rng.random() < self.crossover_prob:
                child = self.space.crossover(child, self._tournament(), self.rng)
            # a parent whose every neighbour was seen (an elitist population converges there) gets
            # one more mutation per 100 failed tries: the search widens instead of stalling
            for _ in range(self.mutations + failures // 100):
                child = self.space.mutate(child, self.rng)
            if child not in self._seen and child not in children and self.feasible(child):
                children.append(child)
                self._bred[child] = parent
            else:
                failures += 1
        return children

    def _surrogate_best(self, children: list[Arch]) -> Arch:
        X, y = np.stack(self._told_x), np.asarray(self._told_y)
        F = np.stack([self.space.features(c) for c in children])
        # kappa > 0: an ensemble (bagged LightGBMs), optimism in the face of its disagreement;
        # kappa = 0: one surrogate (its std is 0)
        n = self.ENSEMBLE if self.kappa else 1
        preds = np.stack([surrogate_regressor(self.seed + k).fit(X, y).predict(F) for k in range(n)])
        return children[int(np.argmax(preds.mean(0) + self.kappa * preds.std(0)))]

    def _newcomers(self, children: list[Arch]) -> list[Arch]:
        """Random architectures to screen beside the children: ``explore`` feasible draws (the new
        ones among them), in at most ``NEWCOMER_TRIES`` samples per draw, so that a space where
        little is feasible costs bounded time and never fails here."""
        out: list[Arch] = []
        draws = tries = 0
        while draws < self.explore and tries < self.NEWCOMER_TRIES * self.explore:
            arch = self.space.sample(self.rng)
            tries += 1
            if not self.feasible(arch):
                continue
            draws += 1
            if arch not in self._seen and arch not in children and arch not in out:
                out.append(arch)
        return out

    def ask(self) -> Arch:
        if len(self.population) < self.population_size and (arch := self._sample_new(self._seen)) is not None:
            return arch
        children = self._children(self.candidates)
        if self.candidates > 1:
            children += self._newcomers(children)
        if not children:
            raise SearchExhausted("evolution found no new feasible child in 1000 tries")
        child = children[0] if len(children) == 1 else self._surrogate_best(children)
        self._seen.add(child)
        if child in self._bred:
            self._parent[child] = self._bred[child]
        self._bred.clear()
        return child

    def parent_of(self, arch: Arch) -> Arch | None:
        return self._parent.get(arch)

    def tell(self, arch: Arch, reward: float) -> None:
        self._seen.add(arch)
        self.population.append((arch, reward))
        if len(self.population) > self.population_size:
            self.population.popleft()
        if self.candidates > 1:
            self._told_x.append(self.space.features(arch))
            self._told_y.append(float(reward))


class GuidedEvolution(RegularizedEvolution):
    """Aging evolution whose children are screened by a surrogate: ``evolution`` with
    ``candidates=20``, ``explore=100`` and ``kappa=1`` (see :class:`RegularizedEvolution`): 100
    random feasible newcomers join the 20 children in the screen, ranked by an ensemble's mean + one
    standard deviation. Why these defaults, with figures: BENCHMARKS.md, "Constrained search on
    NAS-Bench-201"."""

    name = "guided-evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 population_size: int = 20, tournament_size: int = 20, crossover_prob: float = 0.0,
                 mutations: int = 1, candidates: int = 20, explore: int = 100, kappa: float = 1.0) -> None:
        super().__init__(space, seed, feasible, population_size, tournament_size, crossover_prob, mutations,
                         candidates, explore, kappa)
