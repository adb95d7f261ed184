"""ENAS: an LSTM controller (:class:`LSTMPolicy`) and one set of shared weights, trained
alternately each epoch. Macro search on the ``proxyless`` chain (the shared weights are the
once-for-all supernet, :class:`~hwnas.search.ofa.OnceForAll`: each layer's op), micro search on the
``cell`` space (:class:`~hwnas.search.cell_supernet.CellSupernet`: each block's inputs and ops of
the normal and reduction cells). Each epoch: the shared weights on one path per batch sampled from the
controller, then the controller by REINFORCE (moving-average baseline, entropy bonus) on the
MNAS reward of paths scored with the shared weights on a validation batch and the predictor's
latency. The result is the most accurate of ``final_samples`` controller samples (scored on the
whole validation split, batch norm recalibrated) that the predictor puts within the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.search._objective import MnasReward
from hwnas.search.cell_supernet import CellSupernet
from hwnas.search.ofa import OFAConfig, OnceForAll
from hwnas.search.spaces import Arch, CellSpace, InfeasibleError, ProxylessSpace
from hwnas.search.spaces._base import check_config_fields
from hwnas.search.strategies._controllers import LSTMPolicy

__all__ = ["EnasConfig", "EnasSearch"]


@dataclass(frozen=True)
class EnasConfig:
    """ENAS settings (the paper's controller, scaled down for small data)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05  # shared weights (SGD, cosine)
    controller_lr: float = 3.5e-3  # the paper's
    controller_steps: int = 20  # controller updates per epoch
    controller_batch: int = 5  # paths per controller update
    entropy: float = 1e-4
    baseline_decay: float = 0.95
    final_samples: int = 50
    reward_alpha: float = -0.07  # MNAS soft reward exponents
    reward_beta: float = -0.07
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        counts = ("epochs", "batch_size", "controller_steps", "controller_batch", "final_samples", "hidden")
        check_config_fields("enas", self, dict.fromkeys(counts, 1), ("lr", "controller_lr"))


class EnasSearch:
    """One ENAS search over ``space`` for ``target_ms`` with ``latency_ms`` (the device's predictor)."""

    def __init__(self, space: ProxylessSpace | CellSpace, data: tuple, config: EnasConfig,
                 latency_ms: Callable[[Arch], float], target_ms: float, device: str = "cpu") -> None:
        self.space, self.cfg, self.target_ms = space, config, target_ms
        self.reward = MnasReward(target_ms, config.reward_alpha, config.reward_beta)
        self._latency, self._lat_cache = latency_ms, {}
        shared = CellSupernet if isinstance(space, CellSpace) else OnceForAll
        self.shared = shared(space, data, OFAConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                                    seed=config.seed), device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.policy = LSTMPolicy(space, config.hidden)
        self.c_opt = torch.optim.Adam(self.policy.parameters(), lr=config.controller_lr)
        self.gen = torch.Generator().manual_seed(config.seed + 2)
        self.baseline: float | None = None
        self.epoch, self.history, self.train_s = 0, [], 0.0

    def latency(self, arch: Arch) -> float:
        if arch not in self._lat_cache:
            self._lat_cache[arch] = float(self._latency(arch))
        return self._lat_cache[arch]

    def _sample(self, n: int) -> list[Arch]:
        acts, _ = self.policy.sample(n, self.gen)
        return [self.space.make(a) for a in acts]

    # ---- the two phases of an epoch ----------------------------------------------------------
    def train_shared(self) -> float:
        """One epoch of the shared weights, each batch on a path the controller samples."""
        net, (xt, yt), bs = self.shared.net, self.shared.train_data, self.cfg.batch_size
        net.train()
        perm = torch.randperm(len(yt), generator=self.gen)
        losses = []
        for i in range(0, len(yt), bs):
            idx = perm[i: i + bs]
            net.set_mode("fixed", arch=self._sample(1)[0])
            loss = nn.functional.cross_entropy(net(xt[idx].to(self.shared.device)), yt[idx].to(self.shared.device))
            self.shared.opt.zero_grad()
            loss.backward()
            self.shared.opt.step()
            losses.append(float(loss.detach()))
        self.shared.sched.step()
        return float(np.mean(losses))

    @torch.no_grad()
    def _batch_accuracy(self, arch: Arch, x: torch.Tensor, y: torch.Tensor) -> float:
        net = self.shared.net
        net.set_mode("fixed", arch=arch)
        net.train()  # batch statistics, as ENAS scores a path: the running ones mix every path trained
        return float((net(x.to(self.shared.device)).argmax(1).cpu() == y).float().mean())

    def train_controller(self) -> float:
        """``controller_steps`` REINFORCE updates; the mean reward."""
        xv, yv = self.shared.val_data
        rewards_seen = []
        for _ in range(self.cfg.controller_steps):
            acts, _ = self.policy.sample(self.cfg.controller_batch, self.gen)
            idx = torch.randint(len(yv), (self.cfg.batch_size,), generator=self.gen)
            rewards = np.array([self.reward(self._batch_accuracy(a, xv[idx], yv[idx]), self.latency(a))
                                for a in (self.space.make(x) for x in acts)])
            d = self.cfg.baseline_decay
            self.baseline = float(rewards.mean()) if self.baseline is None else d * self.baseline + (1 - d) * float(rewards.mean())
            logp, ent, _ = self.policy.evaluate(acts)
            adv = torch.as_tensor(rewards - self.baseline, dtype=torch.float32)
            loss = -(logp.sum(1) * adv).mean() - self.cfg.entropy * ent.sum(1).mean()
            self.c_opt.zero_grad()
            loss.backward()
            self.c_opt.step()
            rewards_seen.append(float(rewards.mean()))
        return float(np.mean(rewards_seen))

    # ---- loop, result, checkpoint ------------------------------------------------------------
    def run(self, checkpoint: str | Path | None = None, on_epoch: Callable[[int, float, float], None] | None = None) -> None:
        if checkpoint is not None and Path(checkpoint).exists():
            self.load(checkpoint)
        while self.epoch < self.cfg.epochs:
            start = time.perf_counter()
            loss, reward = self.train_shared(), self.train_controller()
            self.epoch += 1
            self.history.append((loss, reward))
            self.train_s += time.perf_counter() - start
            if checkpoint is not None:
                self.save(checkpoint)
            if on_epoch is not None:
                on_epoch(self.epoch, loss, reward)

    def best(self) -> tuple[Arch, float]:
        """The most accurate (shared weights, whole validation split) of ``final_samples`` distinct
        controller samples predicted within the target, and its accuracy."""
        seen: dict[Arch, float] = {}
        for arch in self._sample(self.cfg.final_samples):
            if arch not in seen and self.latency(arch) <= self.target_ms:
                seen[arch] = self.shared.accuracy(arch)
        if not seen:
            raise InfeasibleError(f"none of {self.cfg.final_samples} controller samples is predicted within "
                                  f"{self.target_ms} ms; raise the target or train longer")
        arch = max(seen, key=seen.get)
        return arch, seen[arch]

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        torch.save({"net": self.shared.net.state_dict(), "opt": self.shared.opt.state_dict(),
                    "sched": self.shared.sched.state_dict(), "policy": self.policy.state_dict(),
                    "c_opt": self.c_opt.state_dict(), "gen": self.gen.get_state(), "baseline": self.baseline,
                    "epoch": self.epoch, "history": self.history, "train_s": self.train_s,
                    "settings": self._settings()}, tmp)
        tmp.replace(path)  # atomic: a kill leaves the previous epoch's checkpoint

    def _settings(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "final_samples": None, "target_ms": self.target_ms,
                "allowed": [list(a) for a in self.space.allowed]}

    def load(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=False)
        if state["settings"] != self._settings():
            raise HwnasError(f"{path} was trained with other settings ({state['settings']}); use another --out or "
                             "remove it")
        self.shared.net.load_state_dict(state["net"])
        self.shared.opt.load_state_dict(state["opt"])
        self.shared.sched.load_state_dict(state["sched"])
        self.policy.load_state_dict(state["policy"])
        self.c_opt.load_state_dict(state["c_opt"])
        self.gen.set_state(state["gen"])
        self.baseline, self.epoch = state["baseline"], state["epoch"]
        self.history, self.train_s = list(state["history"]), state["train_s"]
