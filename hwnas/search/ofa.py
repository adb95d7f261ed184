"""Once-for-all search (Cai et al. 2020) in its single-path form (SPOS, Guo et al. 2020).

One weight-sharing supernet over the ``proxyless`` chain space (:class:`~hwnas.search.proxyless.Supernet`,
every candidate a slice of its layer's shared weights) is trained once, each step on one path
drawn uniformly from what the device allows. A subnetwork's accuracy is then read off the supernet
without training: its path fixed, its batch-norm statistics recomputed on a few training batches
(SPOS's recalibration), its accuracy on the validation split. For each device a strategy (by
default evolution) searches for the most accurate subnetwork predicted within that device's target;
a second device costs one more search, not another supernet.

With ``accuracy_samples`` > 0 the search is OFA's: that many subnetworks drawn uniformly are scored
on the supernet once (device-independent, saved beside the supernet), an ensemble of small MLPs on
the architecture's one-hot encoding is fitted to them (OFA's accuracy predictor), each device's
evolution runs on the predicted accuracy (``predicted_evaluations``, milliseconds each), and only
its ``verify_top`` best are scored on the supernet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.search.proxyless import WEIGHT_SHARING, Supernet
from hwnas.search.spaces._base import Arch, check_config_fields
from hwnas.search.spaces._proxyless import ProxylessSpace

__all__ = ["OFAConfig", "OnceForAll", "DeviceSearchResult"]


@dataclass(frozen=True)
class OFAConfig:
    """Supernet training and per-device search settings."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    bn_batches: int = 4  # training batches that recompute a subnetwork's batch-norm statistics
    evaluations: int = 300  # subnetworks scored per device
    strategy: str = "evolution"
    population_size: int = 30
    weight_sharing: str = "all"
    accuracy_samples: int = 200  # OFA's accuracy predictor fitted to this many subnetworks; 0: none (SPOS)
    predicted_evaluations: int = 1000  # with the predictor: subnetworks the evolution scores by it
    verify_top: int = 5  # with the predictor: the best predicted, scored on the supernet
    seed: int = 0

    def __post_init__(self) -> None:
        from hwnas.errors import UnknownNameError

        counts = ("epochs", "batch_size", "bn_batches", "evaluations", "population_size", "predicted_evaluations",
                  "verify_top")
        check_config_fields("once-for-all", self, {**dict.fromkeys(counts, 1), "accuracy_samples": 0}, ("lr",))
        if 0 < self.accuracy_samples < 8:
            raise HwnasError(f"once-for-all accuracy_samples: 0 (no predictor) or at least 8 to fit one, "
                             f"got {self.accuracy_samples}")
        if self.weight_sharing not in WEIGHT_SHARING:
            raise UnknownNameError("weight sharing", self.weight_sharing, WEIGHT_SHARING)


#: the settings a saved supernet must share with the config that continues or reuses it
_TRAINING_FIELDS = ("epochs", "batch_size", "lr", "weight_sharing", "seed")


@dataclass(frozen=True)
class DeviceSearchResult:
    """One device's subnetwork: its string, supernet accuracy, predicted latency, and the search's
    evaluations and seconds."""

    device: str
    arch: str
    supernet_acc: float
    latency_ms: float
    target_ms: float
    evaluations: int
    search_s: float

    @property
    def meets_target(self) -> bool:
        return self.latency_ms <= self.target_ms


class OnceForAll:
    """A supernet over ``space`` trained on ``data`` = (x_train, y_train, x_val, y_val, classes);
    :meth:`train` (resumable per epoch through a checkpoint), :meth:`accuracy` of a subnetwork,
    :meth:`search` for one device."""

    def __init__(self, space: ProxylessSpace, data: tuple, config: OFAConfig, device: str = "cpu") -> None:
        self.space, self.cfg, self.device = space, config, device
        xt, yt, xv, yv, _ = data
        self.train_data, self.val_data = (xt, yt), (xv, yv)
        self.net = self._make_net(data[4]).to(device)
        for a in self.net.arch_parameters():
            a.requires_grad_(False)  # alpha stays 0: paths are drawn uniformly among the allowed ones
        self.opt = torch.optim.SGD(self.net.weight_parameters(), lr=config.lr, momentum=0.9, weight_decay=4e-5,
                                   nesterov=True)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=config.epochs)
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.epoch = 0
        self.losses: list[float] = []
        self.train_s = 0.0

    def _make_net(self, classes: int) -> nn.Module:
        """The shared network: ``set_mode("single", g)`` draws a path, ``set_mode("fixed", arch=a)`` runs ``a``."""
        return Supernet(self.space, self.cfg.seed, self.cfg.weight_sharing)

    # ---- training --------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One epoch of single-path steps; the mean training cross-entropy."""
        start = time.perf_counter()
        self.net.train()
        xt, yt = self.train_data
        perm = torch.randperm(len(yt), generator=self.gen)
        losses = []
        for i in range(0, len(yt), self.cfg.batch_size):
            idx = perm[i: i + self.cfg.batch_size]
            self.net.set_mode("single", self.gen)
            loss = nn.functional.cross_entropy(self.net(xt[idx].to(self.device)), yt[idx].to(self.device))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        self.sched.step()
        self.epoch += 1
        self.losses.append(float(np.mean(losses)))
        self.train_s += time.perf_counter() - start
        return self.losses[-1]

    def train(self, checkpoint: str | Path | None = None, on_epoch: Callable[[int, float], None] | None = None) -> None:
        """Train up to ``config.epochs``, continuing from ``checkpoint`` when it exists and saving
        it after every epoch (a killed run loses at most the epoch in progress)."""
        if checkpoint is not None and Path(checkpoint).exists():
            self.load(checkpoint)
        while self.epoch < self.cfg.epochs:
            loss = self.train_epoch()
            if checkpoint is not None:
                self.save(checkpoint)
            if on_epoch:
                on_epoch(self.epoch, loss)

    @property
    def trained(self) -> bool:
        return self.epoch >= self.cfg.epochs

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                    "gen": self.gen.get_state(), "epoch": self.epoch, "losses": self.losses,
                    "train_s": self.train_s, "config": self.cfg.__dict__,
                    "space": {"allowed": self.space.allowed, "decisions": len(self.space.decisions)}}, tmp)
        tmp.replace(path)  # atomic: a kill leaves the previous epoch's checkpoint

    def load(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=False)
        trained_with = {k: state["config"][k] for k in _TRAINING_FIELDS}
        if trained_with != {k: getattr(self.cfg, k) for k in _TRAINING_FIELDS}:
            raise HwnasError(f"{path}: the supernet was trained with {trained_with}; give the same settings or "
                             "another run directory")
        if state["space"]["allowed"] != self.space.allowed:
            raise HwnasError(f"{path}: the supernet was trained on another space or device restriction; "
                             "give another run directory or the same space, device and --space-arg settings")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])
        self.epoch, self.losses, self.train_s = state["epoch"], list(state["losses"]), state["train_s"]

    # ---- subnetworks ---------------------------------------------------------------------------
    @torch.no_grad()
    def accuracy(self, arch: Arch) -> float:
        """Validation accuracy of ``arch`` with the supernet's weights, its batch-norm statistics
        recomputed on ``bn_batches`` training batches first."""
        self.net.set_mode("fixed", arch=arch)
        bns = [m for m in self.net.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the recalibration batches
        self.net.train()
        xt, _ = self.train_data
        g = torch.Generator().manual_seed(self.cfg.seed)
        idx = torch.randperm(len(xt), generator=g)[: self.cfg.bn_batches * self.cfg.batch_size]
        for i in range(0, len(idx), self.cfg.batch_size):
            self.net(xt[idx[i: i + self.cfg.batch_size]].to(self.device))
        self.net.eval()
        xv, yv = self.val_data
        pred = torch.cat([self.net(xv[i: i + 256].to(self.device)).argmax(1).cpu() for i in range(0, len(yv), 256)])
        for m, (mom, mean, var, n) in zip(bns, saved):  # the supernet's own statistics back
            m.momentum = mom
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)
        return float((pred == yv).float().mean())

    def search(self, device: str, space: ProxylessSpace, latency_ms: Callable[[Arch], float], target_ms: float,
               on_eval: Callable[[int, int], None] | None = None,
               predicted_accuracy: Callable[[Arch], float] | None = None) -> DeviceSearchResult:
        """The most accurate subnetwork (by :meth:`accuracy`) among ``evaluations`` that the
        config's strategy proposes in ``space`` (the supernet's space as the device restricts it;
        the same decisions), each predicted within ``target_ms`` by ``latency_ms``. With
        ``predicted_accuracy`` (:meth:`accuracy_predictor`) the strategy scores
        ``predicted_evaluations`` by it and the ``verify_top`` best within the target are scored by
        :meth:`accuracy`. With none within the target, :class:`~hwnas.search.spaces.InfeasibleError`."""
        if len(space.decisions) != len(self.space.decisions) or any(
                not set(a) <= set(b) for a, b in zip(space.allowed, self.space.allowed)):
            raise HwnasError(f"{device}: its space allows options the supernet was not trained with")
        start = time.perf_counter()
        cache: dict[Arch, float] = {}

        def lat(a: Arch) -> float:
            if a not in cache:
                cache[a] = float(latency_ms(a))
            return cache[a]

        score = predicted_accuracy or self.accuracy
        budget = self.cfg.predicted_evaluations if predicted_accuracy else self.cfg.evaluations
        scored, n = self._evolve(space, lambda a: lat(a) <= target_ms, score, budget, on_eval)
        feasible = sorted(((acc, a) for a, acc in scored.items() if lat(a) <= target_ms), key=lambda t: -t[0])
        if not feasible:
            from hwnas.search.spaces import InfeasibleError

            raise InfeasibleError(f"{device}: no subnetwork found within {target_ms} ms")
        if predicted_accuracy is not None:  # the predictor's best, scored on the supernet
            feasible = sorted(((self.accuracy(a), a) for _, a in feasible[: self.cfg.verify_top]), key=lambda t: -t[0])
        acc, arch = feasible[0]
        return DeviceSearchResult(device, space.to_string(arch), acc, lat(arch), target_ms, n,
                                  time.perf_counter() - start)

    def _evolve(self, space: ProxylessSpace, feasible: Callable[[Arch], bool], score: Callable[[Arch], float],
                budget: int, on_eval: Callable[[int, int], None] | None) -> tuple[dict[Arch, float], int]:
        """Every architecture the config's strategy proposed (up to ``budget``) and its score."""
        from hwnas.search.strategies import SearchExhausted, create_strategy

        pop = self.cfg.population_size  # SPOS: a population of 50 and the best 10 as parents
        params = ({"population_size": pop, "tournament_size": max(1, min(pop, pop // 3 or 1))}
                  if self.cfg.strategy == "evolution" else {})
        strategy = create_strategy(self.cfg.strategy, space, seed=self.cfg.seed, feasible=feasible, **params)
        scored: dict[Arch, float] = {}
        n = 0
        for n in range(1, budget + 1):
            try:
                arch = strategy.ask()
            except SearchExhausted:
                n -= 1
                break
            scored[arch] = score(arch)
            strategy.tell(arch, scored[arch])
            if on_eval:
                on_eval(n, budget)
        return scored, n

    # ---- OFA's accuracy predictor ----------------------------------------------------------------
    def accuracy_table(self, path: str | Path | None = None,
                       on_sample: Callable[[int, int], None] | None = None) -> list[tuple[Arch, float]]:
        """``accuracy_samples`` subnetworks drawn uniformly (seeded) from the supernet's space with
        their :meth:`accuracy`: device-independent, measured once; with ``path`` saved as they are
        measured (a killed run continues; a table measured on another state of the supernet is
        measured again)."""
        import json

        rng = np.random.default_rng(self.cfg.seed + 7)
        archs = [self.space.sample(rng) for _ in range(self.cfg.accuracy_samples)]
        key = {"epoch": self.epoch, "train_s": round(self.train_s, 3)}
        done: dict[str, float] = {}
        if path is not None and Path(path).exists():
            saved = json.loads(Path(path).read_text())
            done = saved["accuracy"] if saved.get("supernet") == key else {}
        for i, a in enumerate(archs):
            s = self.space.to_string(a)
            if s not in done:
                done[s] = self.accuracy(a)
                if path is not None and (len(done) % 10 == 0 or i == len(archs) - 1):
                    tmp = Path(str(path) + ".tmp")
                    tmp.write_text(json.dumps({"supernet": key, "accuracy": done}))
                    tmp.replace(path)
            if on_sample:
                on_sample(i + 1, len(archs))
        return [(a, done[self.space.to_string(a)]) for a in archs]

    def accuracy_predictor(self, table: list[tuple[Arch, float]], members: int = 3) -> Callable[[Arch], float]:
        """An ensemble of ``members`` small MLPs (scikit-learn) on the one-hot encoding, fitted to
        ``table`` (:meth:`accuracy_table`): a subnetwork's predicted supernet accuracy."""
        from sklearn.neural_network import MLPRegressor

        x = np.stack([self.space.encode(a) for a, _ in table])
        y = np.array([acc for _, acc in table])
        models = [MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=2000,
                               random_state=self.cfg.seed + m).fit(x, y) for m in range(members)]

        def predict(arch: Arch) -> float:
            e = self.space.encode(arch)[None]
            return float(np.mean([m.predict(e)[0] for m in models]))

        return predict
