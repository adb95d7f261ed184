"""A SMASH-style hypernetwork on the ``proxyless`` chain: the weights of every searchable MBConv
are generated from the architecture's one-hot encoding, ``W = W0 + U diag(z) V`` with ``z`` (rank
``rank`` per weight) the output of an MLP on the encoding, so one set of generator parameters
gives weights to every architecture. It is trained on one random architecture per batch; an
architecture is then scored by its validation accuracy with generated weights (batch statistics,
as SMASH), without training it. Kernel sizes and expansions share a superkernel (the centre ``k x
k`` of a 7x7, the first ``cin * e`` channels), as the once-for-all supernet does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hwnas.errors import HwnasError
from hwnas.profilers._blocks import OpBlock
from hwnas.search.spaces import Arch, ProxylessSpace

__all__ = ["HyperConfig", "HyperNet", "HyperTrainer"]


@dataclass(frozen=True)
class HyperConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    rank: int = 8
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "rank", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HwnasError(f"hypernetwork {name} takes an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise HwnasError(f"hypernetwork lr must be > 0, got {self.lr!r}")


class _LowRank(nn.Module):
    """``W0 + U diag(z) V`` of shape ``shape`` (flattened as rows x cols)."""

    def __init__(self, rows: int, cols: int, rank: int, fan_in: int) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.randn(rows, cols) * (2.0 / fan_in) ** 0.5)
        self.u = nn.Parameter(torch.randn(rows, rank) * 0.1)
        self.v = nn.Parameter(torch.randn(rank, cols) * (2.0 / fan_in) ** 0.5 * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.w0 + (self.u * z) @ self.v


class _HyperMBConv(nn.Module):
    """A searchable layer: expand 1x1, depthwise k x k, project 1x1, each generated."""

    def __init__(self, cin: int, cout: int, stride: int, rank: int, zero_allowed: bool) -> None:
        super().__init__()
        mid = cin * 6
        self.cin, self.cout, self.stride, self.zero_allowed = cin, cout, stride, zero_allowed
        self.expand = _LowRank(mid, cin, rank, cin)
        self.dw = _LowRank(mid, 49, rank, 49)
        self.project = _LowRank(cout, mid, rank, mid)
        # batch-norm affines per option (as SPOS keeps them per candidate); the last starts at 0 so a
        # residual layer starts as the identity
        last = torch.zeros(cout) if stride == 1 and cin == cout else torch.ones(cout)
        self.bn = nn.ParameterDict({o: nn.Parameter(torch.cat([torch.ones(2 * mid), torch.zeros(2 * mid), last,
                                                                torch.zeros(cout)]))
                                    for o in ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")})
        self.mid = mid

    def _bn(self, x: torch.Tensor, option: str, i: int, n: int) -> torch.Tensor:
        p, m = self.bn[option], self.mid
        w, b = ((p[:m], p[2 * m:3 * m]), (p[m:2 * m], p[3 * m:4 * m]),
                (p[4 * m:4 * m + self.cout], p[4 * m + self.cout:]))[i]
        return F.batch_norm(x, None, None, w[:n], b[:n], training=True)

    def forward(self, x: torch.Tensor, option: str, z: torch.Tensor) -> torch.Tensor:
        if option == "zero":
            return x
        k, e = int(option[1]), int(option[3])
        mid = self.cin * e
        w = self.expand(z[0])[:mid].reshape(mid, self.cin, 1, 1)
        y = F.relu6(self._bn(F.conv2d(x, w), option, 0, mid))
        c = (7 - k) // 2
        dw = self.dw(z[1])[:mid].reshape(mid, 1, 7, 7)[:, :, c: c + k, c: c + k]
        y = F.relu6(self._bn(F.conv2d(y, dw, stride=self.stride, padding=k // 2, groups=mid), option, 1, mid))
        y = self._bn(F.conv2d(y, self.project(z[2])[:, :mid].reshape(self.cout, mid, 1, 1)), option, 2, self.cout)
        return x + y if self.stride == 1 and self.cin == self.cout else y


class HyperNet(nn.Module):
    """Generator and network: ``forward(x, arch)`` runs ``arch`` with weights generated for it."""

    def __init__(self, space: ProxylessSpace, rank: int, hidden: int) -> None:
        super().__init__()
        self.space = space
        table = space.layer_options()
        n = len(space.decisions)
        self.stem = nn.Sequential(*(OpBlock(c) for layer in table[:2] for c in layer[0]))
        self.layers = nn.ModuleList()
        for d, opts in zip(space.decisions, table[2: 2 + n]):
            cfg = opts[0][0]
            self.layers.append(_HyperMBConv(cfg.cin, cfg.cout, cfg.stride, rank, "zero" in d.options))
        self.head = nn.Sequential(*(OpBlock(c) for layer in table[2 + n:] for c in layer[0]))
        enc = len(space.encode(space.sample(np.random.default_rng(0))))
        self.rank = rank
        self.generator = nn.Sequential(nn.Linear(enc, hidden), nn.ReLU(), nn.Linear(hidden, n * 3 * rank))
        nn.init.zeros_(self.generator[2].weight)  # z = 1 at first: every architecture starts from the same
        nn.init.zeros_(self.generator[2].bias)    # weights, and the generator learns how they differ

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        enc = torch.as_tensor(self.space.encode(arch), dtype=torch.float32, device=x.device)
        z = (1.0 + self.generator(enc)).reshape(len(self.layers), 3, self.rank)
        y = self.stem(x)
        for layer, d, choice, zl in zip(self.layers, self.space.decisions, arch.choices, z):
            y = layer(y, d.options[choice], zl)
        return self.head(y)


class HyperTrainer:
    """Trains a :class:`HyperNet` on ``data`` (one uniformly drawn architecture per batch;
    resumable per epoch through a checkpoint) and scores architectures with generated weights."""

    def __init__(self, space: ProxylessSpace, data: tuple, config: HyperConfig, device: str = "cpu") -> None:
        self.space, self.cfg, self.device = space, config, device
        xt, yt, xv, yv, _ = data
        self.train_data, self.val_data = (xt, yt), (xv, yv)
        torch.manual_seed(config.seed)
        self.net = HyperNet(space, config.rank, config.hidden).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, weight_decay=1e-5)  # as SMASH
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=config.epochs)
        self.rng = np.random.default_rng(config.seed + 1)
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.epoch, self.losses, self.train_s = 0, [], 0.0

    def train_epoch(self) -> float:
        start = time.perf_counter()
        self.net.train()
        xt, yt = self.train_data
        perm = torch.randperm(len(yt), generator=self.gen)
        losses = []
        for i in range(0, len(yt), self.cfg.batch_size):
            idx = perm[i: i + self.cfg.batch_size]
            arch = self.space.sample(self.rng)
            loss = F.cross_entropy(self.net(xt[idx].to(self.device), arch), yt[idx].to(self.device))
            self.opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.opt.step()
            losses.append(float(loss.detach()))
        self.sched.step()
        self.epoch += 1
        self.losses.append(float(np.mean(losses)))
        self.train_s += time.perf_counter() - start
        return self.losses[-1]

    def train(self, checkpoint: str | Path | None = None, on_epoch: Any = None) -> None:
        if checkpoint is not None and Path(checkpoint).exists():
            self.load(checkpoint)
        while self.epoch < self.cfg.epochs:
            loss = self.train_epoch()
            if checkpoint is not None:
                self.save(checkpoint)
            if on_epoch is not None:
                on_epoch(self.epoch, loss)

    @torch.no_grad()
    def accuracy(self, arch: Arch) -> float:
        """Validation accuracy with the weights generated for ``arch`` (batch statistics)."""
        self.space.validate(arch)
        xv, yv = self.val_data
        pred = torch.cat([self.net(xv[i: i + 256].to(self.device), arch).argmax(1).cpu() for i in range(0, len(yv), 256)])
        return float((pred == yv).float().mean())

    def _settings(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "allowed": [list(a) for a in self.space.allowed],
                "space": [self.space.resolution, self.space.width, self.space.depth, self.space.classes]}

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                    "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(), "epoch": self.epoch,
                    "losses": self.losses, "train_s": self.train_s, "settings": self._settings()}, tmp)
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=False)
        if state["settings"] != self._settings():
            raise HwnasError(f"{path} was trained with other settings ({state['settings']}); use another --out or "
                             "remove it")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.epoch, self.losses, self.train_s = state["epoch"], list(state["losses"]), state["train_s"]
