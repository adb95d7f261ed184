"""DARTS on the ``cell`` space with a differentiable latency term.

Every edge of a cell (each earlier node into each block's node) is a softmax-weighted sum of all
:data:`~hwnas.search.spaces.CELL_OPS` (ops the device cannot run are masked out); the weights and
the architecture parameters (one matrix for the normal cells, one for the reduction cells) are
optimised alternately on two halves of the training data, first order (the architecture gradient
at the current weights) or second order (at one unrolled weight step, the Hessian-vector product
by finite differences, as in the DARTS paper). The architecture loss adds the expected latency of
the derived network under the softmaxes, from the device's predictor (FBNet's form; the forms of
:func:`hwnas.search.proxyless.latency_term`). The derivation keeps, for each node, the two inputs
whose strongest op (``none`` excluded) weighs most, and, with a target, gives up the choices that
cost least likelihood per millisecond saved until the predicted latency is within it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, UnknownNameError
from hwnas.search.proxyless import LATENCY_LOSSES, latency_term
from hwnas.search.spaces import CELL_OPS, Arch, CellSpace
from hwnas.search.spaces._base import check_config_fields
from hwnas.search.spaces._cell import _cell_ops, _op_configs, _preprocess, _ReLUConvBN, make_cell_op

__all__ = ["DartsConfig", "DartsSearch", "DartsEpoch", "cell_paths"]

_KINDS = ("normal", "reduce")


@dataclass(frozen=True)
class DartsConfig:
    """Settings of one DARTS search (the paper's, scaled down for small data)."""

    target_ms: float | None = None  # None: no latency term
    latency_loss: str = "additive"
    lam: float = 0.1
    beta: float = 0.6
    epochs: int = 10
    order: int = 1  # 1: first-order DARTS; 2: second order (unrolled step)
    batch_size: int = 64
    weight_lr: float = 0.025
    arch_lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_loss not in LATENCY_LOSSES:
            raise UnknownNameError("latency loss", self.latency_loss, LATENCY_LOSSES)
        if self.order not in (1, 2):
            raise HwnasError(f"DARTS order is 1 (first order) or 2 (second order), got {self.order}")
        if self.target_ms is not None and not self.target_ms > 0:
            raise HwnasError(f"the latency target must be > 0 ms, got {self.target_ms}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise HwnasError(f"DARTS epochs must be an integer >= 1, got {self.epochs}")
        check_config_fields("darts", self, {"batch_size": 1}, ("weight_lr", "arch_lr"))


def _edges(blocks: int) -> list[tuple[int, int]]:
    """(node, input) of every edge of a cell: node ``j`` reads the ``j + 2`` states before it."""
    return [(j, i) for j in range(blocks) for i in range(j + 2)]


class _SearchCell(nn.Module):
    def __init__(self, blocks: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = _ReLUConvBN(c_pp, c, 1, 2) if reduction_prev else _ReLUConvBN(c_pp, c, 1)
        self.pre1 = _ReLUConvBN(c_p, c, 1)
        self.blocks = blocks
        self.edges = nn.ModuleList(nn.ModuleList(make_cell_op(op, c, 2 if reduction and i < 2 else 1) for op in CELL_OPS)
                                   for _, i in _edges(blocks))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, active: list[int],
                path: tuple[tuple[int, int, int, int], ...] | None = None) -> torch.Tensor:
        if path is not None:
            return self._forward_path(s0, s1, path)
        states, e = [self.pre0(s0), self.pre1(s1)], 0
        for _ in range(self.blocks):
            out = 0
            for h in states:
                out = out + sum(weights[e, k] * self.edges[e][k](h) for k in active)
                e += 1
            states.append(out)
        return torch.cat(states[2:], dim=1)

    def _forward_path(self, s0: torch.Tensor, s1: torch.Tensor, path: tuple[tuple[int, int, int, int], ...]) -> torch.Tensor:
        """One path (ENAS's shared weights): block ``j`` = op ``o1`` on input ``i1`` + op ``o2`` on ``i2``."""
        states = [self.pre0(s0), self.pre1(s1)]
        for j, (i1, o1, i2, o2) in enumerate(path):
            first = j * (j + 3) // 2  # edges into the nodes before j: sum of (j' + 2) for j' < j
            states.append(self.edges[first + i1][o1](states[i1]) + self.edges[first + i2][o2](states[i2]))
        return torch.cat(states[2:], dim=1)


class _SearchNetwork(nn.Module):
    """DARTS's search network on ``space``'s skeleton with architecture parameters ``alpha``."""

    def __init__(self, space: CellSpace, classes: int, masks: dict[str, np.ndarray], seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c, b = space.channels, space.blocks
        c_stem = space.stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, reduction_prev = c_stem, c_stem, False
        self.kinds, self.cells = [], nn.ModuleList()
        for i in range(space.layers):
            reduction = i in space.reduction_layers()
            c = 2 * c if reduction else c
            self.cells.append(_SearchCell(b, c_pp, c_p, c, reduction, reduction_prev))
            self.kinds.append("reduce" if reduction else "normal")
            c_pp, c_p, reduction_prev = c_p, b * c, reduction
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_p, classes))
        n = len(_edges(b))
        self.alpha = nn.ParameterDict({k: nn.Parameter(1e-3 * torch.randn(n, len(CELL_OPS))) for k in _KINDS})
        for k in _KINDS:
            self.register_buffer(f"mask_{k}", torch.as_tensor(np.where(masks[k], 0.0, -math.inf), dtype=torch.float32))
        self.active = {k: [int(j) for j in np.flatnonzero(masks[k])] for k in _KINDS}
        self.path: dict[str, tuple] | None = None

    def set_path(self, space: CellSpace, arch: Arch | None) -> None:
        """Run ``arch``'s cells alone on the shared edges (None: the softmax-weighted sum of all ops)."""
        self.path = None if arch is None else cell_paths(space, arch)

    def probs(self, kind: str) -> torch.Tensor:
        return torch.softmax(self.alpha[kind] + getattr(self, f"mask_{kind}"), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = {k: self.probs(k) for k in _KINDS}
        s0 = s1 = self.stem(x)
        for cell, kind in zip(self.cells, self.kinds):
            s0, s1 = s1, cell(s0, s1, w[kind], self.active[kind], None if self.path is None else self.path[kind])
        return self.head(s1)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("alpha.")]


class CellLatency:
    """The predictor's latency of every op on every edge of every cell, the fixed part (stem,
    cell preprocessing, additions and concatenation, head), and the expected latency under the
    softmaxes: an edge into node ``j`` counts ``2 / (j + 2)`` of its ops' expectation (the derived
    node keeps two of its ``j + 2`` inputs)."""

    def __init__(self, predictor: Any, space: CellSpace) -> None:
        import warnings

        c, r, b = space.channels, space.resolution, space.blocks
        c_stem = space.stem_multiplier * c
        rows, self.kind_of_row, fixed = [], [], [_stem(c_stem, r)]
        c_pp, c_p, r_pp, reduction_prev = c_stem, c_stem, r, False
        for i in range(space.layers):
            reduction = i in space.reduction_layers()
            c = 2 * c if reduction else c
            ro = (r + 1) // 2 if reduction else r
            fixed += _preprocess(c_pp, c, r_pp, reduction_prev) + _preprocess(c_p, c, r, False)
            fixed += _cell_ops(tuple((0, "skip_connect", 1, "skip_connect") for _ in range(b)), c, ro, False)  # adds, concat
            for _, inp in _edges(b):
                strided = reduction and inp < 2
                rows.append([_op_configs(op, c, r if strided or not reduction else ro, 2 if strided else 1)
                             for op in CELL_OPS])
                self.kind_of_row.append("reduce" if reduction else "normal")
            c_pp, c_p, r_pp, r, reduction_prev = c_p, b * c, r, ro, reduction
        from hwnas.profilers._ops import OpConfig, OpType

        fixed += [OpConfig(OpType.GAP, c_p, h=r, w=r), OpConfig(OpType.LINEAR, c_p, 10)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.table = predictor.layer_table([[fixed], *rows])
        share = [2.0 / (j + 2) for j, _ in _edges(b)]
        self.share = torch.tensor(share * space.layers, dtype=torch.float64)
        self.edge_index = [e % len(share) for e in range(len(rows))]
        self.terms = {n: torch.as_tensor(getattr(self.table, n)[1:], dtype=torch.float64) for n in self.table.TERMS}
        self.fixed = {n: float(getattr(self.table, n)[0, 0]) for n in self.table.TERMS}

    def edge_ms(self, kind: str) -> np.ndarray:
        """Uncalibrated ms of each op on each edge, summed over the cells of ``kind``."""
        ms = self.terms["ms"].numpy()
        n = max(self.edge_index) + 1
        out = np.zeros((n, len(CELL_OPS)))
        for row, (k, e) in enumerate(zip(self.kind_of_row, self.edge_index)):
            if k == kind:
                out[e] += ms[row, : len(CELL_OPS)]
        return out

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        p = torch.stack([probs[k][e] for k, e in zip(self.kind_of_row, self.edge_index)]).double()
        sums = [self.fixed[n] + (self.share[:, None] * p * self.terms[n][:, : p.shape[1]]).sum()
                for n in self.table.TERMS]
        return self.table.calibration.apply(*sums)


def cell_paths(space: CellSpace, arch: Arch) -> dict[str, tuple[tuple[int, int, int, int], ...]]:
    """Each cell kind's blocks as (input 1, op index 1, input 2, op index 2), ops indexing :data:`CELL_OPS`."""
    c, b = arch.choices, space.blocks
    return {k: tuple(tuple(c[4 * (n * b + j): 4 * (n * b + j) + 4]) for j in range(b)) for n, k in enumerate(_KINDS)}


def _stem(c_stem: int, r: int) -> Any:
    from hwnas.profilers._ops import OpConfig, OpType

    return OpConfig(OpType.CONV, 3, c_stem, r, r, kernel=3)


@dataclass(frozen=True)
class DartsEpoch:
    epoch: int
    train_loss: float
    arch_ce: float
    expected_latency_ms: float
    derived_arch: str
    derived_latency_ms: float


class DartsSearch:
    """One DARTS search: ``run`` trains ``config.epochs`` (checkpointed per epoch when given a
    path) and returns the derived architecture (:meth:`derive`)."""

    def __init__(self, space: CellSpace, predictor: Any, config: DartsConfig, data: tuple, device: str = "cpu") -> None:
        self.space, self.cfg, self.device, self.predictor = space, config, device, predictor
        xt, yt, _, _, classes = data
        g = torch.Generator().manual_seed(config.seed)
        perm = torch.randperm(len(yt), generator=g)
        half = len(yt) // 2
        self.w_data, self.a_data = (xt[perm[:half]], yt[perm[:half]]), (xt[perm[half:]], yt[perm[half:]])
        self.masks = {k: np.array([i in space.allowed[_op_decision(space, k)] for i in range(len(CELL_OPS))])
                      for k in _KINDS}
        self.net = _SearchNetwork(space, classes, self.masks, config.seed).to(device)
        self.latency = CellLatency(predictor, space) if config.target_ms is not None else None
        self.w_opt = torch.optim.SGD(self.net.weight_parameters(), lr=config.weight_lr, momentum=0.9, weight_decay=3e-4)
        self.a_opt = torch.optim.Adam(self.net.alpha.values(), lr=config.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.epoch, self.records = 0, []

    # ---- losses and steps ------------------------------------------------------------------------
    def _arch_loss(self, x: torch.Tensor, y: torch.Tensor, params: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x) if params is None else torch.func.functional_call(self.net, params, (x,))
        ce = nn.functional.cross_entropy(logits, y)
        if self.latency is None:
            return ce, ce
        expected = self.latency.expected({k: self.net.probs(k) for k in _KINDS}).float()
        return latency_term(self.cfg, ce, expected), ce

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.w_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.weight_parameters(), 5.0)
        self.w_opt.step()
        return float(loss.detach())

    def arch_step(self, xw: torch.Tensor, yw: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor) -> float:
        self.net.train()
        self.a_opt.zero_grad()
        if self.cfg.order == 1:
            loss, ce = self._arch_loss(xa, ya)
            loss.backward()
        else:
            ce = self._second_order(xw, yw, xa, ya)
        self.a_opt.step()
        self.w_opt.zero_grad()
        return float(ce.detach())

    def _second_order(self, xw: torch.Tensor, yw: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor) -> torch.Tensor:
        """grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / 2 eps,
        w' = w - xi grad_w L_train(w, alpha), w+- = w +- eps grad_w' L_val(w', alpha)."""
        names = [n for n, _ in self.net.named_parameters() if not n.startswith("alpha.")]
        weights = self.net.weight_parameters()
        alphas = list(self.net.alpha.values())
        xi = self.cfg.weight_lr
        train_grads = torch.autograd.grad(nn.functional.cross_entropy(self.net(xw), yw), weights)
        unrolled = {n: (w - xi * g).detach().requires_grad_() for n, w, g in zip(names, weights, train_grads)}
        loss, ce = self._arch_loss(xa, ya, unrolled)
        grads = torch.autograd.grad(loss, [*unrolled.values(), *alphas])
        dw, dalpha = grads[: len(names)], grads[len(names):]
        eps = 0.01 / (torch.sqrt(sum((g * g).sum() for g in dw)) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            shifted = {n: (w + sign * eps * g).detach() for n, w, g in zip(names, weights, dw)}
            out = torch.func.functional_call(self.net, shifted, (xw,))
            hessian.append(torch.autograd.grad(nn.functional.cross_entropy(out, yw), alphas))
        for a, da, hp, hm in zip(alphas, dalpha, *hessian):
            a.grad = da - xi * (hp - hm) / (2 * eps)
        return ce

    # ---- derivation -----------------------------------------------------------------------------
    def log_probs(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: torch.log(self.net.probs(k).clamp_min(1e-30)).cpu().numpy() for k in _KINDS}

    def derive(self) -> Arch:
        """The strongest two inputs per node, each with its strongest op other than ``none``; with a
        target, cheaper ops (``none`` included) while the architecture is predicted over it."""
        lp = self.log_probs()
        choice = {k: _strongest(lp[k], self.space.blocks, self.masks[k]) for k in _KINDS}
        arch = _to_arch(self.space, choice)
        if self.cfg.target_ms is None:
            return arch
        ms = {k: self.latency.edge_ms(k) for k in _KINDS} if self.latency else None
        while self.predicted(arch) > self.cfg.target_ms:
            change = _cheapest_loss(choice, lp, ms, self.masks)
            if change is None:
                break  # the fastest choice on every kept edge: the caller reports it over the target
            kind, node, half, op = change
            (i, _) = choice[kind][node][half]
            choice[kind][node][half] = (i, op)
            arch = _to_arch(self.space, choice)
        return arch

    def predicted(self, arch: Arch) -> float:
        return float(self.predictor.predict_architecture(self.space.op_configs(arch)))

    # ---- loop -----------------------------------------------------------------------------------
    def run_epoch(self) -> DartsEpoch:
        xt, yt = self.w_data
        xa, ya = self.a_data
        perm = torch.randperm(len(yt), generator=self.gen)
        bs, losses, ces = self.cfg.batch_size, [], []
        for start in range(0, len(yt), bs):
            idx = perm[start: start + bs]
            xw, yw = xt[idx].to(self.device), yt[idx].to(self.device)
            a = slice(start % len(ya), start % len(ya) + bs)
            ces.append(self.arch_step(xw, yw, xa[a].to(self.device), ya[a].to(self.device)))
            losses.append(self.weight_step(xw, yw))
        arch = self.derive()
        with torch.no_grad():
            expected = float(self.latency.expected({k: self.net.probs(k) for k in _KINDS})) if self.latency else math.nan
        rec = DartsEpoch(self.epoch, float(np.mean(losses)), float(np.mean(ces)), expected,
                         self.space.to_string(arch), self.predicted(arch))
        self.records.append(rec)
        self.epoch += 1
        return rec

    def run(self, checkpoint: str | Path | None = None, on_epoch: Callable[[DartsEpoch], None] | None = None) -> Arch:
        if checkpoint is not None and Path(checkpoint).exists():
            self.load_checkpoint(checkpoint)
        while self.epoch < self.cfg.epochs:
            rec = self.run_epoch()
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(rec)
        return self.derive()

    def _settings(self) -> dict[str, Any]:
        sp = self.space
        return {**asdict(self.cfg), "epochs": None, "space": [sp.blocks, sp.channels, sp.layers, sp.resolution,
                                                               sp.stem_multiplier, [list(a) for a in sp.allowed]]}

    def save_checkpoint(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        torch.save({"net": self.net.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                    "gen": self.gen.get_state(), "epoch": self.epoch, "records": self.records,
                    "settings": self._settings()}, tmp)
        tmp.replace(path)  # atomic: a kill leaves the previous epoch's checkpoint

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=False)
        if state.get("settings") != self._settings():
            raise HwnasError(f"{path} was trained with other settings ({state.get('settings')}); use another --out "
                             "or remove it")
        self.net.load_state_dict(state["net"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.gen.set_state(state["gen"])
        self.epoch, self.records = state["epoch"], list(state["records"])


def _op_decision(space: CellSpace, kind: str) -> int:
    """Index of the first op decision of ``kind``'s cell (all its op decisions allow the same ops)."""
    return [d.name for d in space.decisions].index(f"{kind[0]}0_op1")


def _strongest(lp: np.ndarray, blocks: int, mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Per node, its two (input, op) pairs: inputs ranked by their best op's weight, ``none`` excluded."""
    none = CELL_OPS.index("none")
    usable = mask.copy()
    usable[none] = False
    out, e = [], 0
    for j in range(blocks):
        cands = []
        for i in range(j + 2):
            row = np.where(usable, lp[e], -np.inf) if usable.any() else lp[e]
            k = int(np.argmax(row))
            cands.append((row[k], i, k))
            e += 1
        top = sorted(cands, reverse=True)[:2]
        out.append([(i, k) for _, i, k in sorted(top, key=lambda t: t[1])])
    return out


def _cheapest_loss(choice: dict, lp: dict, ms: dict, masks: dict) -> tuple[str, int, int, int] | None:
    """The op change on a kept edge that loses least log-probability per ms it saves."""
    best, best_rate = None, math.inf
    for kind in _KINDS:
        for j, halves in enumerate(choice[kind]):
            for h, (i, k) in enumerate(halves):
                e = j * (j + 3) // 2 + i  # edges before node j: sum_{n<j} (n + 2)
                for alt in np.flatnonzero(masks[kind]):
                    saved = ms[kind][e, k] - ms[kind][e, alt]
                    if saved <= 1e-9:
                        continue
                    rate = (lp[kind][e, k] - lp[kind][e, alt]) / saved
                    if rate < best_rate:
                        best, best_rate = (kind, j, h, int(alt)), rate
    return best


def _to_arch(space: CellSpace, choice: dict) -> Arch:
    choices = []
    for kind in _KINDS:
        for (i1, k1), (i2, k2) in choice[kind]:
            choices += [i1, k1, i2, k2]
    return space.make(choices)
