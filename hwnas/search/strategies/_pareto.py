"""Multi-objective evolution: NSGA-II's selection on the space's mutation and crossover."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

__all__ = ["ParetoEvolution", "non_dominated_ranks", "crowding_distance"]


def non_dominated_ranks(values: np.ndarray) -> np.ndarray:
    """Rank 0 for the points no other point dominates (every value maximised), rank 1 for those
    only rank-0 points dominate, and so on (NSGA-II's fast non-dominated sort)."""
    v = np.asarray(values, float)
    n = len(v)
    ge = (v[:, None, :] >= v[None, :, :]).all(-1)
    gt = (v[:, None, :] > v[None, :, :]).any(-1)
    dominates = ge & gt  # dominates[i, j]: i dominates j
    count = dominates.sum(0)  # how many dominate j
    ranks = np.full(n, -1)
    front = np.flatnonzero(count == 0)
    r = 0
    while len(front):
        ranks[front] = r
        count = count - dominates[front].sum(0)
        count[ranks >= 0] = -1
        front = np.flatnonzero(count == 0)
        r += 1
    return ranks


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance within one front: the normalised side lengths of the box
    between each point's neighbours, summed over the objectives; the extremes get infinity."""
    v = np.asarray(values, float)
    n, m = v.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(v[:, k], kind="stable")
        span = v[order[-1], k] - v[order[0], k]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (v[order[2:], k] - v[order[:-2], k]) / span
    return d


class ParetoEvolution(Strategy):
    """NSGA-II (Deb et al. 2002), steady state, over the space's own mutation and crossover: the
    multi-objective strategy of ``hwnas search --objective pareto``.

    Told a tuple of values to maximise (``(accuracy, -latency_ms)`` in the Pareto mode), it keeps
    as parents the ``population_size`` best of everything told, ordered by non-dominated rank and
    then crowding distance (the spread along the front), and breeds each child from binary
    tournaments on that order: crossed over with a second parent with probability
    ``crossover_prob``, then mutated; children are feasible and new. Until ``population_size``
    values are told it proposes random feasible architectures. Told a plain number, it is an
    elitist evolution on that number (one objective: the rank is the order).

    How its front compares with random search's, and why no crossover by default: BENCHMARKS.md,
    "Multi-objective search on NAS-Bench-201".

    Written here rather than taken from Optuna's ``NSGAIISampler`` or pymoo: those breed flat
    parameter vectors, re-propose duplicates and know nothing of the hard limits, while the
    space's mutation and crossover already keep architectures valid and restricted to the device,
    and ``feasible`` keeps them within the limits."""

    name = "nsga2"
    param_ranges = {"population_size": (int, 2, None), "crossover_prob": (float, 0, 1), "mutations": (int, 1, None)}
    multi_objective = True

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 population_size: int = 20, crossover_prob: float = 0.0, mutations: int = 1) -> None:
        super().__init__(space, seed, feasible)
        if population_size < 2:
            raise ValueError("need population_size >= 2")
        if not 0 <= crossover_prob <= 1:
            raise ValueError("need 0 <= crossover_prob <= 1")
        if mutations < 1:
            raise ValueError("need mutations >= 1")
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.mutations = mutations
        self._archs: list[Arch] = []
        self._values: list[tuple[float, ...]] = []
        self._parents: list[int] = []  # indices into the told, best first
        self._seen: set[Arch] = set()

    def _select(self) -> None:
        """The parents: the best ``population_size`` told, by (rank, -crowding)."""
        v = np.asarray(self._values)
        ranks = non_dominated_ranks(v)
        crowd = np.zeros(len(v))
        for r in np.unique(ranks):
            idx = np.flatnonzero(ranks == r)
            crowd[idx] = crowding_distance(v[idx])
        order = np.lexsort((np.arange(len(v)), -crowd, ranks))  # ties: the earlier told first
        self._parents = [int(i) for i in order[: self.population_size]]

    def _tournament(self) -> Arch:
        a, b = self.rng.choice(len(self._parents), size=2, replace=False)
        return self._archs[self._parents[min(int(a), int(b))]]  # the parents are ordered best first

    def ask(self) -> Arch:
        if len(self._values) < self.population_size:
            arch = self._sample_new(self._seen)
            if arch is None:
                raise SearchExhausted(f"nsga2 found no new feasible architecture of {self.space.name!r}")
            return arch
        for failures in range(1000):
            child = self._tournament()
            if self.crossover_prob and self.rng.random() < self.crossover_prob:
                child = self.space.crossover(child, self._tournament(), self.rng)
            for _ in range(self.mutations + failures // 100):  # widen where every neighbour was seen
                child = self.space.mutate(child, self.rng)
            if child not in self._seen and self.feasible(child):
                self._seen.add(child)
                return child
        raise SearchExhausted("nsga2 found no new feasible child in 1000 tries")

    def tell(self, arch: Arch, reward: float | Sequence[float]) -> None:  # type: ignore[override]
        values = tuple(float(x) for x in np.atleast_1d(np.asarray(reward, float)))
        if self._values and len(values) != len(self._values[0]):
            raise ValueError(f"nsga2 was told {len(self._values[0])} values per architecture before, now {len(values)}")
        if not all(np.isfinite(values)):
            raise ValueError(f"nsga2 needs finite values, got {values}")
        self._seen.add(arch)
        self._archs.append(arch)
        self._values.append(values)
        if len(self._values) >= self.population_size:
            self._select()
