"""Bayesian optimisation: a Gaussian process over the space's features with expected improvement
or UCB (``bo``), and Optuna's tree-structured Parzen estimator driven through ask/tell (``tpe``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

__all__ = ["GaussianProcessBO", "TPESearch"]

ACQUISITIONS = ("ei", "ucb")
ON_REPEAT = ("neighbour", "resample")
ON_INFEASIBLE = ("neighbour", "constraint")


def single_mutations(space: SearchSpace, arch: Arch) -> list[Arch]:
    """Every architecture that differs from ``arch`` in exactly one decision, in decision order."""
    out = []
    for i, allowed in enumerate(space.allowed):
        for o in allowed:
            if o != arch.choices[i]:
                out.append(space.make(arch.choices[:i] + (o,) + arch.choices[i + 1:]))
    return out


def _check_choice(strategy: str, name: str, value: Any, known: tuple[str, ...]) -> None:
    from hwnas.errors import UnknownNameError

    if value not in known:
        raise UnknownNameError(f"{strategy} {name}", str(value), list(known))


def gp_regressor(seed: int, kernel: Any = None) -> Any:
    """A GP for categorical decisions: a Matern-5/2 kernel on standardised features (on the one-hot
    part, a function of the number of decisions two architectures differ in: a Hamming kernel),
    one length scale, a fitted noise level, the targets normalised. ``kernel``: start the
    hyper-parameter fit from an earlier fit's ``kernel_`` (a warm start: one fit per proposal
    stays at milliseconds)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if kernel is None:
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(3.0, (1e-1, 1e3), nu=2.5) + WhiteKernel(1e-2, (1e-6, 1.0))
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0, random_state=seed)


def _fit_quietly(gp: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """Fit; a length scale at its bound (a feature that does not matter) is expected, not news."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(X, y)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float) -> np.ndarray:
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (mean - best - xi) / std
    return (mean - best - xi) * norm.cdf(z) + std * norm.pdf(z)


class GaussianProcessBO(Strategy):
    """GP-based Bayesian optimisation. The first ``initial`` proposals are random feasible
    architectures; after that a GP (:func:`gp_regressor`) fitted on every reward told so far scores
    a pool of ``pool`` random feasible unevaluated architectures plus every feasible single mutation
    of the ``top`` best, and the pool's best by the acquisition is proposed: ``ei`` (expected
    improvement over the best reward, margin ``xi`` in reward units) or ``ucb`` (mean + ``kappa``
    standard deviations). Architectures asked and not yet told (parallel workers) join the fit at
    the GP's own prediction (the kriging believer), so a batch of proposals spreads out instead of
    repeating the best point. Deterministic given the seed and the tells."""

    name = "bo"
    param_ranges = {"initial": (int, 2, None), "pool": (int, 1, None), "top": (int, 0, None),
                    "kappa": (float, 0, None), "xi": (float, 0, None)}

    @classmethod
    def check_params(cls, params: dict) -> None:
        super().check_params(params)
        if "acquisition" in params:
            _check_choice(cls.name, "acquisition", params["acquisition"], ACQUISITIONS)

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 initial: int = 10, pool: int = 500, top: int = 5, acquisition: str = "ei", kappa: float = 2.0,
                 xi: float = 0.0) -> None:
        super().__init__(space, seed, feasible)
        _check_choice(self.name, "acquisition", acquisition, ACQUISITIONS)
        self.initial, self.pool, self.top = initial, pool, top
        self.acquisition, self.kappa, self.xi = acquisition, kappa, xi
        self._seen: set[Arch] = set()
        self._told: dict[Arch, float] = {}
        self._pending: list[Arch] = []
        self._f_cache: dict[Arch, np.ndarray] = {}
        self._kernel: Any = None  # the last fit's, where the next fit starts

    def _features(self, archs: list[Arch]) -> np.ndarray:
        for a in archs:
            if a not in self._f_cache:
                self._f_cache[a] = self.space.features(a)
        return np.stack([self._f_cache[a] for a in archs])

    def _candidates(self) -> list[Arch]:
        out: dict[Arch, None] = {}
        best = sorted(self._told, key=self._told.__getitem__, reverse=True)[:self.top]
        for parent in best:
            for child in single_mutations(self.space, parent):
                if child not in self._seen and self.feasible(child):
                    out[child] = None
        draws = tries = 0
        while draws < self.pool and tries < 100 * self.pool:
            arch = self.space.sample(self.rng)
            tries += 1
            if self.feasible(arch):
                draws += 1
                if arch not in self._seen:
                    out[arch] = None
        return list(out)

    def _fit(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """The GP on the told rewards and the pending architectures at its prediction; the feature
        scaling (mean, std) it was fitted with."""
        archs = list(self._told)
        X = self._features(archs)
        y = np.array([self._told[a] for a in archs])
        mu, sd = X.mean(0), X.std(0) + 1e-9
        gp = _fit_quietly(gp_regressor(self.seed, self._kernel), (X - mu) / sd, y)
        self._kernel = gp.kernel_
        if self._pending:  # at the GP's belief, hyper-parameters kept
            Xp = (self._features(self._pending) - mu) / sd
            yp = gp.predict(Xp)
            gp = gp_regressor(self.seed, gp.kernel_)
            gp.optimizer = None
            gp.fit(np.vstack([(X - mu) / sd, Xp]), np.concatenate([y, yp]))
        return gp, mu, sd

    def ask(self) -> Arch:
        if len(self._told) < self.initial:
            arch = self._sample_new(self._seen)
        else:
            arch = self._acquire()
        if arch is None:
            raise SearchExhausted(f"bo found no new feasible architecture of {self.space.name!r}")
        self._pending.append(arch)
        return arch

    def _acquire(self) -> Arch | None:
        cands = self._candidates()
        if not cands:
            return None
        gp, mu, sd = self._fit()
        mean, std = gp.predict((self._features(cands) - mu) / sd, return_std=True)
        if self.acquisition == "ucb":
            score = mean + self.kappa * std
        else:
            score = expected_improvement(mean, std, max(self._told.values()), self.xi)
        arch = cands[int(np.argmax(score))]
        self._seen.add(arch)
        return arch

    def tell(self, arch: Arch, reward: float) -> None:
        self._seen.add(arch)
        self._told[arch] = float(reward)
        if arch in self._pending:
            self._pending.remove(arch)

    def fail(self, arch: Arch) -> None:
        if arch in self._pending:
            self._pending.remove(arch)


class TPESearch(Strategy):
    """Optuna's TPE sampler (multivariate, with the constant liar for pending trials) driven
    through Optuna's ask/tell, each decision a categorical distribution over its allowed options;
    TPE models the reward of feasible architectures, the limits are checked here. Optuna's trials
    are asked until one is feasible and new (at most ``tries``; else a random feasible new
    architecture). A sample already evaluated (``on_repeat``) or infeasible (``on_infeasible``)
    is told as failed and, with ``"neighbour"`` (the default for both), replaced by a random
    unseen feasible single mutation of it (added to the study when told). Otherwise the sampler
    is asked again: ``on_repeat="resample"`` (a peaked posterior proposes its incumbent over and
    over, each time a sampler call over a study one trial larger), ``on_infeasible="constraint"``
    (told at the worst reward as violating a constraint, ``Trial.set_constraint``: it then sits in
    TPE's "bad" density next to the limit, where the constrained optimum lies, and steers TPE
    away from it).
    ``prior_weight``: the weight of Optuna's uniform prior in each categorical Parzen kernel (Optuna's
    default 1.0 keeps a kernel's own option with probability 0.85 at 20 good trials and 5 options,
    so most candidates copy a good architecture; 3.0 lowers that to 0.67).
    The first ``initial`` proposals are random (the sampler's start-up trials).
    Multi-objective: told tuples, the study maximises each value (MOTPE), so ``--objective pareto``
    works. Deterministic given the seed and the tells."""

    name = "tpe"
    multi_objective = True
    param_ranges = {"initial": (int, 1, None), "tries": (int, 1, None), "candidates": (int, 1, None),
                    "prior_weight": (float, 0, None)}

    @classmethod
    def check_params(cls, params: dict) -> None:
        super().check_params(params)
        if "on_repeat" in params:
            _check_choice(cls.name, "on_repeat", params["on_repeat"], ON_REPEAT)
        if "on_infeasible" in params:
            _check_choice(cls.name, "on_infeasible", params["on_infeasible"], ON_INFEASIBLE)

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 initial: int = 10, tries: int = 100, candidates: int = 24, on_repeat: str = "neighbour",
                 on_infeasible: str = "neighbour", prior_weight: float = 3.0) -> None:
        super().__init__(space, seed, feasible)
        _check_choice(self.name, "on_repeat", on_repeat, ON_REPEAT)
        _check_choice(self.name, "on_infeasible", on_infeasible, ON_INFEASIBLE)
        self.initial, self.tries, self.candidates, self.prior_weight = initial, tries, candidates, prior_weight
        self.on_repeat, self.on_infeasible = on_repeat, on_infeasible
        self._seen: set[Arch] = set()
        self._number: dict[Arch, int] = {}
        self._told: list[tuple[float, ...]] = []
        self._study: Any = None
        self._dists = {f"x{i}": allowed for i, allowed in enumerate(space.allowed)}

    def _make_study(self, n_values: int) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate and constant_liar are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)  # prior_weight: deprecated, kept until Optuna 6
            sampler = optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=0, n_ei_candidates=self.candidates, multivariate=True,
                constant_liar=True, prior_weight=self.prior_weight)
        return optuna.create_study(directions=["maximize"] * n_values, sampler=sampler)

    def _distributions(self) -> dict[str, Any]:
        import optuna

        return {k: optuna.distributions.CategoricalDistribution(list(v)) for k, v in self._dists.items()}

    def ask(self) -> Arch:
        arch = None
        if self._study is not None and len(self._told) >= self.initial:
            arch = self._ask_study()
        if arch is None:
            arch = self._sample_new(self._seen)
        if arch is None:
            raise SearchExhausted(f"tpe found no new feasible architecture of {self.space.name!r}")
        return arch

    def _ask_study(self) -> Arch | None:
        import optuna

        for _ in range(self.tries):
            trial = self._study.ask()
            choices = [trial.suggest_categorical(k, list(v)) for k, v in self._dists.items()]
            arch = self.space.make(choices)
            feasible = self.feasible(arch)
            if feasible and arch not in self._seen:
                trial.set_constraint("infeasible", 0.0)
                self._seen.add(arch)
                self._number[arch] = trial.number
                return arch
            if not feasible and self.on_infeasible == "constraint":
                trial.set_constraint("infeasible", 1.0)
                self._study.tell(trial, list(np.min(np.array(self._told), axis=0)))  # the worst reward told
                continue
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            mode = self.on_repeat if feasible else self.on_infeasible
            if mode == "neighbour" and (child := self._new_neighbour(arch)) is not None:
                return child
        return None

    def _new_neighbour(self, arch: Arch) -> Arch | None:
        """A random unseen feasible single mutation of ``arch`` (marked seen; told to the study
        as an added trial), or None."""
        children = single_mutations(self.space, arch)
        for k in self.rng.permutation(len(children)):
            child = children[int(k)]
            if child not in self._seen and self.feasible(child):
                self._seen.add(child)
                return child
        return None

    def tell(self, arch: Arch, reward: float | tuple[float, ...]) -> None:
        import optuna

        values = tuple(float(v) for v in (reward if isinstance(reward, (tuple, list)) else (reward,)))
        if self._study is None:
            self._study = self._make_study(len(values))
        self._seen.add(arch)
        self._told.append(values)
        number = self._number.pop(arch, None)
        if number is not None:
            self._study.tell(number, list(values))
            return
        params = {k: int(c) for k, c in zip(self._dists, arch.choices)}
        self._study.add_trial(optuna.trial.create_trial(params=params, distributions=self._distributions(),
                                                        values=list(values), constraints={"infeasible": 0.0}))

    def fail(self, arch: Arch) -> None:
        import optuna

        number = self._number.pop(arch, None)
        if number is not None:
            self._study.tell(number, state=optuna.trial.TrialState.FAIL)
