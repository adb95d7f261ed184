"""ProxylessNAS (Cai et al. 2019): a supernet over the ``proxyless`` space trained with binary
gates, and a differentiable latency loss from the device predictor.

* Every searchable layer is a :class:`MixedLayer` holding all candidate ops (MBConv k3/5/7 x e3/6,
  and ``zero``, which skips the layer) and architecture parameters ``alpha``.
* Weight step: each layer samples one path from ``softmax(alpha)``; only it runs and is trained
  (the memory of one path).
* Architecture step: each layer samples two paths; the binary gate of the active one is 1, the
  other 0, and the gradient reaches ``alpha`` BinaryConnect-style, ``dL/dalpha_i = sum_j dL/dg_j
  p_j (delta_ij - p_i)`` over the two paths (a straight-through gate), after which the two alphas
  are shifted so the other paths' probabilities are unchanged (the published rescaling).
* Latency loss: ``E[LAT]`` = the calibrated sum over layers of ``sum_j p(op_j) * LAT(op_j)``, with
  ``LAT`` a table built from the predictor before the search (:class:`LatencyTable`), differentiable
  in ``alpha``; ``additive``: ``CE + lambda * E[LAT] / T``, ``multiplicative``:
  ``CE * (log E[LAT] / log T) ** beta`` (latencies in microseconds inside the logarithms, so that
  both stay positive for sub-millisecond targets). Both only push latency down, harder the further
  above T; ``absolute`` (TuNAS, Bender et al. 2020): ``CE + lambda * |E[LAT] / T - 1|`` pulls the
  expected latency to T from either side, for a model that uses the budget rather than undercuts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, UnknownNameError
from hwnas.profilers._ops import OpConfig
from hwnas.search.spaces._base import Arch, check_config_fields
from hwnas.search.spaces._proxyless import ProxylessSpace

__all__ = ["MixedLayer", "Supernet", "LatencyTable", "ProxylessConfig", "ProxylessSearch", "EpochRecord",
           "LATENCY_LOSSES", "RELAXATIONS", "subnet_state"]

LATENCY_LOSSES = ("additive", "multiplicative", "absolute", "none")
#: how the final architecture is read from alpha: ``factorised`` (default) decides per layer first
#: whether to keep it (``p(zero)`` against the sum of the MBConv options) and then which MBConv, the
#: best-scored such architecture within the target; ``constrained`` the most likely architecture
#: (joint probability) within the target; ``argmax`` the most likely op per layer (ProxylessNAS)
DERIVATIONS = ("factorised", "constrained", "argmax")
#: how the supernet is made differentiable: ``binary-gates`` (ProxylessNAS: one path per weight step,
#: two per architecture step) or ``softmax`` (DARTS, first order: every allowed op weighted by
#: ``softmax(alpha)`` in both steps, FBNet's expected-latency term)
RELAXATIONS = ("binary-gates", "softmax")


class SharedMBConvWeights(nn.Module):
    """The convolution weights of the largest MBConv of a layer (expand 6, kernel 7); every
    candidate (k, e) uses a slice: the first ``cin * e`` expanded channels and the centre k x k of
    the depthwise kernel (Single-Path NAS's superkernel, shared within one layer only)."""

    def __init__(self, cfgs: list[OpConfig]) -> None:
        super().__init__()
        c0 = cfgs[0]
        mid = max(c.mid_channels for c in cfgs)
        k = max(c.kernel for c in cfgs)
        self.expand = nn.Parameter(torch.empty(mid, c0.cin, 1, 1))
        self.dw = nn.Parameter(torch.empty(mid, 1, k, k))
        self.project = nn.Parameter(torch.empty(c0.cout, mid, 1, 1))
        for w in (self.expand, self.dw, self.project):
            nn.init.kaiming_normal_(w, mode="fan_out")


class SharedMBConv(nn.Module):
    """One candidate MBConv of a weight-sharing layer: a slice of the shared weights, its own batch
    norms (statistics differ per candidate)."""

    def __init__(self, cfg: OpConfig, shared: SharedMBConvWeights) -> None:
        super().__init__()
        from hwnas.profilers._blocks import ActModule

        if cfg.se:
            raise HwnasError("weight-sharing MBConv candidates have no squeeze-excite (the proxyless space has none)")
        self.cfg, self.shared = cfg, shared
        mid = cfg.mid_channels
        self.bn_expand = nn.BatchNorm2d(mid) if mid != cfg.cin else None
        self.bn_dw, self.bn_project = nn.BatchNorm2d(mid), nn.BatchNorm2d(cfg.cout)
        if cfg.residual:  # starts as the identity: deep random paths train (measured, BENCHMARKS.md)
            nn.init.zeros_(self.bn_project.weight)
        self.act = ActModule(cfg.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, w = self.cfg, self.shared
        mid = c.mid_channels
        y = x
        if self.bn_expand is not None:
            y = self.act(self.bn_expand(nn.functional.conv2d(x, w.expand[:mid])))
        full = w.dw.shape[-1]
        lo = (full - c.kernel) // 2
        dw = w.dw[:mid, :, lo: lo + c.kernel, lo: lo + c.kernel]
        y = self.act(self.bn_dw(nn.functional.conv2d(y, dw, stride=c.stride, padding=c.kernel // 2, groups=mid)))
        y = self.bn_project(nn.functional.conv2d(y, w.project[:, :mid]))
        return x + y if c.residual else y


#: which mixed layers share one set of weights among their MBConv candidates
WEIGHT_SHARING = ("all", "transitions", "none")


class MixedLayer(nn.Module):
    """All candidate ops of one layer, ``alpha`` over them, and the gates of the current step."""

    def __init__(self, candidates: list[nn.Module | None], allowed: tuple[int, ...]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(op if op is not None else nn.Identity() for op in candidates)
        self.alpha = nn.Parameter(torch.zeros(len(candidates)))
        mask = torch.full((len(candidates),), float("-inf"))
        mask[list(allowed)] = 0.0
        self.register_buffer("mask", mask)
        self.allowed = [int(i) for i in allowed]
        # "single": one sampled path; "two": binary gates over two; "softmax": DARTS's weighted sum of
        # every allowed op; "fixed": argmax
        self.mode = "single"
        self.fixed: int | None = None  # in "fixed" mode: this option instead of the argmax
        self.active = 0
        self.pair: tuple[int, int] = (0, 0)
        self.gates: torch.Tensor | None = None

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha + self.mask, 0)

    def argmax(self) -> int:
        return int(torch.argmax(self.alpha.detach() + self.mask))

    def sample_single(self, g: torch.Generator) -> None:
        self.mode = "single"
        self.active = int(torch.multinomial(self.probs().detach().cpu(), 1, generator=g))

    def sample_two(self, g: torch.Generator) -> None:
        """Two distinct paths from softmax(alpha) (one if only one is allowed), the active one
        chosen in proportion to their renormalised probabilities."""
        p = self.probs().detach().cpu()
        k = min(2, int((p > 0).sum()))
        pair = torch.multinomial(p, k, replacement=False, generator=g).tolist()
        if k == 1:
            pair = pair * 2
        self.pair = (pair[0], pair[1])
        sub = torch.softmax(self.alpha.detach().cpu()[pair], 0)
        self.active = pair[int(torch.multinomial(sub, 1, generator=g))] if k == 2 else pair[0]
        self.mode = "two"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed":
            return self.ops[self.argmax() if self.fixed is None else self.fixed](x)
        if self.mode == "single":
            return self.ops[self.active](x)
        if self.mode == "softmax":
            p = self.probs()
            return sum(p[k] * self.ops[k](x) for k in self.allowed)
        i, j = self.pair
        if i == j:
            return self.ops[i](x)
        # straight-through binary gates: value one-hot, gradient that of the two paths' softmax
        p2 = torch.softmax(self.alpha[[i, j]], 0)
        onehot = torch.tensor([1.0 if i == self.active else 0.0, 1.0 if j == self.active else 0.0],
                              device=self.alpha.device)
        self.gates = onehot + p2 - p2.detach()
        out_active = self.ops[self.active](x)
        other = j if i == self.active else i
        with torch.no_grad():
            out_other = self.ops[other](x)
        ga, go = (self.gates[0], self.gates[1]) if i == self.active else (self.gates[1], self.gates[0])
        # value: the active path (g = 1, 0); d out / d g_k = o_k, as the binary gates need
        return ga * out_active + go * out_other

    def rescale_after_step(self, before: torch.Tensor) -> None:
        """Shift the two sampled alphas so that ``sum exp`` over them is what it was before the
        step: the paths not sampled keep their probabilities (ProxylessNAS's rescaling)."""
        i, j = self.pair
        if i == j:
            return
        idx = [i, j]
        with torch.no_grad():
            offset = torch.logsumexp(before[idx], 0) - torch.logsumexp(self.alpha[idx], 0)
            self.alpha[idx] += offset


class Supernet(nn.Module):
    """The ``proxyless`` space with every searchable layer a :class:`MixedLayer`."""

    def __init__(self, space: ProxylessSpace, seed: int = 0, weight_sharing: str = "all") -> None:
        """``weight_sharing``: ``all`` (default) gives every mixed layer one set of weights sliced by
        its MBConv candidates (residual candidates start as the identity); ``transitions`` only the
        first layer of each stage; ``none`` keeps separate weights per candidate as ProxylessNAS
        does. Measured on digits (BENCHMARKS.md): with ``none`` or ``transitions`` the supernet's
        random-path training CE stayed at 2.4 after 300 steps, with ``all`` it fell to 0.25."""
        super().__init__()
        from hwnas.profilers._blocks import OpBlock

        if weight_sharing not in WEIGHT_SHARING:
            raise UnknownNameError("weight sharing", weight_sharing, WEIGHT_SHARING)

        self.space = space
        table = space.layer_options()
        n_search = len(space.decisions)
        blocks: list[nn.Module] = []
        self.mixed = nn.ModuleList()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for li, layer in enumerate(table):
                if 2 <= li < 2 + n_search:
                    mb = [c[0] for c in layer if c]
                    share = weight_sharing == "all" or (weight_sharing == "transitions" and not mb[0].residual)
                    if share:
                        w = SharedMBConvWeights(mb)
                        cands = [SharedMBConv(c[0], w) if c else None for c in layer]
                    else:
                        cands = [OpBlock(c[0]) if c else None for c in layer]
                    m = MixedLayer(cands, space.allowed[li - 2])
                    self.mixed.append(m)
                    blocks.append(m)
                else:
                    blocks.extend(OpBlock(c) for c in layer[0])
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.endswith(".alpha")]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [m.alpha for m in self.mixed]

    def set_mode(self, mode: str, g: torch.Generator | None = None, arch: Arch | None = None) -> None:
        """``single`` / ``two`` sample paths with ``g``; ``softmax`` runs every allowed op weighted by
        ``softmax(alpha)`` (DARTS); ``fixed`` runs ``arch`` (default: the argmax)."""
        for i, m in enumerate(self.mixed):
            if mode == "single":
                m.sample_single(g)  # type: ignore[arg-type]
            elif mode == "two":
                m.sample_two(g)  # type: ignore[arg-type]
            elif mode == "softmax":
                m.mode = "softmax"
            else:
                m.mode = "fixed"
                m.fixed = None if arch is None else arch.choices[i]

    def derive(self) -> Arch:
        """The architecture of the most likely op per layer."""
        return self.space.make([m.argmax() for m in self.mixed])

    def probs(self) -> list[list[float]]:
        return [m.probs().detach().tolist() for m in self.mixed]


def subnet_state(net: Supernet, arch: Arch) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of ``net.space.build_module(arch)`` (the stand-alone, deployable chain) holding
    the supernet's weights for ``arch``: shared MBConv weights sliced as the path runs them (its convs'
    biases zero), each block's batch norms (parameters and statistics) as they are in the supernet.
    Loaded into that module, it computes what the supernet computes on ``arch``'s path."""
    module = net.space.build_module(arch, classes=net.space.classes)
    dst, choices = iter(module.blocks), iter(arch.choices)
    with torch.no_grad():
        for block in net.blocks:
            op = block.ops[next(choices)] if isinstance(block, MixedLayer) else block
            if isinstance(op, nn.Identity):
                continue  # a skipped layer: the stand-alone chain has no block for it
            target = next(dst)
            if isinstance(op, SharedMBConv):
                _copy_shared(op, target.m.body)
            else:
                target.load_state_dict(op.state_dict())
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _copy_shared(op: SharedMBConv, mb: nn.Module) -> None:
    c, w, mid = op.cfg, op.shared, op.cfg.mid_channels
    lo = (w.dw.shape[-1] - c.kernel) // 2
    parts = [(mb.dw, w.dw[:mid, :, lo: lo + c.kernel, lo: lo + c.kernel], op.bn_dw),
             (mb.project, w.project[:, :mid], op.bn_project)]
    if mb.expand is not None:
        parts.append((mb.expand, w.expand[:mid], op.bn_expand))
    for conv_act, weight, bn in parts:
        conv_act.conv.weight.copy_(weight)
        conv_act.conv.bias.zero_()
        conv_act.bn.load_state_dict(bn.state_dict())


class LatencyTable:
    """Predicted latency of every option of every layer, and the expected latency under the
    architecture distribution: ``calibration(sum_l sum_j p_lj * t_lj)`` (the calibration is linear
    in the table's sums, so this is the expectation of the calibrated latency, up to its floor)."""

    def __init__(self, predictor: Any, space: ProxylessSpace) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.table = predictor.layer_table(space.layer_options())
        n_search = len(space.decisions)
        rows = slice(2, 2 + n_search)
        fixed = [i for i in range(self.table.ms.shape[0]) if not 2 <= i < 2 + n_search]
        self.calibration = self.table.calibration
        self.terms = {}
        self.fixed = {}
        for name in self.table.TERMS:
            arr = getattr(self.table, name)
            self.terms[name] = torch.as_tensor(arr[rows], dtype=torch.float64)
            self.fixed[name] = float(arr[fixed, 0].sum())

    def layer_ms(self) -> np.ndarray:
        """Uncalibrated predicted ms of each option of each searchable layer."""
        return self.terms["ms"].numpy()

    def expected(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """Differentiable expected latency (ms) under per-layer probabilities."""
        sums = {}
        for name, t in self.terms.items():
            t = t.to(probs[0].device)
            sums[name] = self.fixed[name] + sum((p.double() * t[i, : len(p)]).sum() for i, p in enumerate(probs))
        return self.calibration.apply(*(sums[name] for name in self.table.TERMS))

    def of(self, space: ProxylessSpace, arch: Arch) -> float:
        return float(self.table.predict(np.array([space.layer_indices(arch)]))[0])

    def layer_costs(self) -> tuple[np.ndarray, float, np.ndarray, float]:
        """The calibrated latency split into additive parts: per option of each searchable layer
        its share of the calibration's linear part, and the fixed layers' share plus the offset;
        then the same for the raw op sum that the calibration's floor (``MIN_FRACTION``) applies
        to. An architecture's latency is ``max(linear, MIN_FRACTION * raw)`` (``linear`` alone when
        the predictor is not calibrated)."""
        cal = self.calibration
        weights = {"ms": cal.scale, "units": cal.per_unit_ms, "io_mb": cal.per_mb_ms,
                   "weight_mb": cal.per_weight_mb_ms, "silu": cal.per_silu_ms, "hardswish_ms": cal.hardswish_scale}
        lin = sum(w * self.terms[n].numpy() for n, w in weights.items())
        fixed = sum(w * self.fixed[n] for n, w in weights.items()) + cal.offset_ms
        return lin, float(fixed), self.terms["ms"].numpy(), float(self.fixed["ms"])

    def constrained_argmax(self, space: ProxylessSpace, log_probs: list[np.ndarray], target_ms: float) -> Arch:
        """The most likely architecture (sum of per-layer log-probabilities) whose predicted latency
        is <= ``target_ms``; the argmax itself when it is within the target. When not even the
        fastest options meet the target, the fastest architecture (the caller reports it as over
        the target).

        Exact: a branch and bound over the layers (a multiple-choice knapsack), started from the
        Lagrangian relaxation's answer (:meth:`relaxed_argmax`) and pruned by the relaxation's dual
        bound; the latency is the calibrated one, split into additive parts (:meth:`layer_costs`).
        """
        best = self.relaxed_argmax(space, log_probs, target_ms)
        if self.of(space, best) > target_ms:
            return best  # nothing meets the target: the fastest
        lp = [np.asarray(v, dtype=float) for v in log_probs]
        floor = self.calibration.MIN_FRACTION if self.calibration.fitted else 0.0
        choice = _KnapsackArgmax(lp, *self.layer_costs(), floor, target_ms).solve(list(best.choices))
        arch = space.make(choice)
        return arch if self.of(space, arch) <= target_ms else best  # a rounding step over the target

    def relaxed_argmax(self, space: ProxylessSpace, log_probs: list[np.ndarray], target_ms: float) -> Arch:
        """Lagrangian relaxation: per layer ``argmax(log p - mu * ms)``, with ``mu`` bisected to the
        smallest value whose architecture is within the target (latency falls as ``mu`` grows), then
        greedy single-layer changes that raise the likelihood and stay within the target; the
        fastest architecture when nothing meets the target. A good answer, not always the best."""
        ms = self.layer_ms()
        lp = [np.asarray(v, dtype=float) for v in log_probs]
        allowed = [np.isfinite(v) for v in lp]

        def pick(mu: float) -> Arch:
            return space.make([int(np.argmax(np.where(a, v - mu * ms[i, : len(v)], -np.inf)))
                               for i, (v, a) in enumerate(zip(lp, allowed))])

        best = pick(0.0)
        if self.of(space, best) <= target_ms:
            return best
        hi = 1.0
        while self.of(space, pick(hi)) > target_ms and hi < 1e12:
            hi *= 4
        best = pick(hi)
        if self.of(space, best) > target_ms:
            return best
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.of(space, pick(mid)) <= target_ms:
                hi = mid
            else:
                lo = mid
        best = pick(hi)
        choices = list(best.choices)
        improved = True
        while improved:
            improved = False
            gains = sorted(((lp[i][j] - lp[i][choices[i]], i, j) for i in range(len(lp)) for j in range(len(lp[i]))
                            if allowed[i][j] and lp[i][j] > lp[i][choices[i]]), reverse=True)
            for _, i, j in gains:
                trial = choices.copy()
                trial[i] = j
                if self.of(space, space.make(trial)) <= target_ms:
                    choices, improved = trial, True
                    break
        return space.make(choices)


class _KnapsackArgmax:
    """Depth-first branch and bound for :meth:`LatencyTable.constrained_argmax`: choose one allowed
    option per layer to maximise the summed log-probability subject to ``fixed + sum(lin) <= T``
    and ``floor * (raw_fixed + sum(raw)) <= T`` (``floor``: the calibration's ``MIN_FRACTION``, 0
    for an uncalibrated predictor). A branch is cut
    when its likelihood plus the best the remaining layers could add (the smaller of their
    per-layer maxima and the Lagrangian dual bound at the root's best multiplier) cannot beat the
    incumbent, or when even the cheapest remaining options break a limit."""

    EPS = 1e-12

    def __init__(self, lp: list[np.ndarray], lin: np.ndarray, fixed: float, raw: np.ndarray, raw_fixed: float,
                 floor: float, target_ms: float) -> None:
        self.lp = lp
        self.allowed = [np.flatnonzero(np.isfinite(v)) for v in lp]
        self.lin = [lin[i, : len(v)] for i, v in enumerate(lp)]
        self.raw = [raw[i, : len(v)] for i, v in enumerate(lp)]
        self.budget = target_ms - fixed
        self.raw_budget = (target_ms / floor - raw_fixed) if floor > 0 else math.inf
        # suffix bounds: the best likelihood and the cheapest costs of layers i..n-1
        self.max_lp = np.append(np.cumsum([v[a].max() for v, a in zip(lp, self.allowed)][::-1])[::-1], 0.0)
        self.min_lin = np.append(np.cumsum([c[a].min() for c, a in zip(self.lin, self.allowed)][::-1])[::-1], 0.0)
        self.min_raw = np.append(np.cumsum([c[a].min() for c, a in zip(self.raw, self.allowed)][::-1])[::-1], 0.0)
        self.mu, self.dual = self._multiplier()
        self.order = [a[np.argsort(-lp[i][a], kind="stable")] for i, a in enumerate(self.allowed)]

    def _dual_suffix(self, mu: float) -> np.ndarray:
        per = [float((v[a] - mu * c[a]).max()) for v, c, a in zip(self.lp, self.lin, self.allowed)]
        return np.append(np.cumsum(per[::-1])[::-1], 0.0)

    def _multiplier(self) -> tuple[float, np.ndarray]:
        """The multiplier (on the linear latency) whose dual bound at the root is the smallest."""
        best_mu, best_val = 0.0, float(self.max_lp[0])
        for mu in np.geomspace(1e-4, 1e6, 121):
            val = float(self._dual_suffix(mu)[0] + mu * self.budget)
            if val < best_val:
                best_mu, best_val = float(mu), val
        return best_mu, self._dual_suffix(best_mu)

    def _value(self, choice: list[int]) -> float:
        return float(sum(v[j] for v, j in zip(self.lp, choice)))

    def solve(self, incumbent: list[int]) -> list[int]:
        best = list(incumbent)
        best_val = self._value(best)
        n = len(self.lp)
        current = [0] * n

        def visit(i: int, val: float, lin: float, raw: float) -> None:
            nonlocal best, best_val
            if i == n:
                if val > best_val + self.EPS:
                    best, best_val = list(current), val
                return
            for j in self.order[i]:
                v, c, r = val + self.lp[i][j], lin + self.lin[i][j], raw + self.raw[i][j]
                if c + self.min_lin[i + 1] > self.budget + self.EPS or r + self.min_raw[i + 1] > self.raw_budget + self.EPS:
                    continue
                bound = v + min(self.max_lp[i + 1], self.dual[i + 1] + self.mu * (self.budget - c))
                if bound <= best_val + self.EPS:
                    continue  # options come in falling likelihood, but costs differ: keep looking
                current[i] = int(j)
                visit(i + 1, v, c, r)

        visit(0, 0.0, 0.0, 0.0)
        return best


def factorised_scores(space: ProxylessSpace, log_probs: list[np.ndarray]) -> list[np.ndarray]:
    """Per-option scores of the two-stage reading of a layer's distribution: keep the layer or
    not, then which MBConv. ``zero`` scores ``log p(zero)``; MBConv ``j`` scores
    ``log(1 - p(zero)) + log(p_j / max_k p_k)`` (the keep decision plus how far ``j`` is below
    the layer's most likely MBConv). Their per-layer argmax keeps a layer when ``p(zero) < 1/2``
    and takes its most likely MBConv.

    Why: the joint argmax lets ``zero`` win a layer with, e.g., 30% of the mass when the six
    MBConv options split the rest, so at a tight target the argmax architecture has far more
    skipped layers, and is far faster, than the distribution's expected latency says
    (BENCHMARKS.md: 11 of 20 layers skipped, 31% under T)."""
    out = []
    for d, v in zip(space.decisions, log_probs):
        v = np.asarray(v, dtype=float)
        zero = d.options.index("zero") if "zero" in d.options else None
        mb = np.array([j != zero and np.isfinite(v[j]) for j in range(len(v))])
        score = np.full(len(v), -np.inf)
        if mb.any():
            mb_lp = np.where(mb, v, -np.inf)
            p_keep = float(np.exp(mb_lp[mb]).sum())
            score[mb] = np.log(max(p_keep, 1e-300)) + (mb_lp[mb] - mb_lp[mb].max())
        if zero is not None and np.isfinite(v[zero]):
            score[zero] = v[zero]
        out.append(score)
    return out


@dataclass(frozen=True)
class ProxylessConfig:
    """Settings of one supernet search (the published defaults scaled down for small data)."""

    target_ms: float | None = None  # None = no latency loss (T = infinity)
    latency_loss: str = "multiplicative"
    lam: float = 0.1  # additive weight
    beta: float = 0.6  # multiplicative exponent
    epochs: int = 20
    warmup_epochs: int = 5
    batch_size: int = 64
    weight_lr: float = 0.05
    arch_lr: float = 0.02
    arch_every: int = 1  # weight steps per architecture step
    derive: str = "factorised"  # or "constrained", "argmax" (ProxylessNAS's); see DERIVATIONS
    weight_sharing: str = "all"  # see Supernet and WEIGHT_SHARING
    relaxation: str = "binary-gates"  # or "softmax" (DARTS, first order); see RELAXATIONS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.relaxation not in RELAXATIONS:
            raise UnknownNameError("relaxation", self.relaxation, RELAXATIONS)
        if self.latency_loss not in LATENCY_LOSSES:
            raise UnknownNameError("latency loss", self.latency_loss, LATENCY_LOSSES)
        if self.weight_sharing not in WEIGHT_SHARING:
            raise UnknownNameError("weight sharing", self.weight_sharing, WEIGHT_SHARING)
        if self.derive not in DERIVATIONS:
            raise UnknownNameError("derivation", self.derive, DERIVATIONS)
        if self.target_ms is not None and not self.target_ms > 0:
            raise HwnasError(f"the latency target must be > 0 ms, got {self.target_ms}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise HwnasError(f"need 0 <= warmup epochs ({self.warmup_epochs}) < epochs ({self.epochs})")
        check_config_fields(f"{self.relaxation} supernet", self, {"batch_size": 1, "arch_every": 1},
                            ("weight_lr", "arch_lr"))


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    arch_ce: float
    expected_latency_ms: float
    derived_arch: str
    derived_latency_ms: float
    supernet_val_acc: float
    alphas: list[list[float]] = field(repr=False)


def latency_term(cfg: ProxylessConfig, ce: torch.Tensor, expected_ms: torch.Tensor) -> torch.Tensor:
    """The published latency losses.

    >>> c = ProxylessConfig(target_ms=2.0, latency_loss="additive", lam=0.5)
    >>> float(latency_term(c, torch.tensor(1.0), torch.tensor(4.0)))
    2.0
    >>> c = ProxylessConfig(target_ms=2.0, latency_loss="absolute", lam=0.5)
    >>> float(latency_term(c, torch.tensor(1.0), torch.tensor(1.0)))
    1.25
    >>> c = ProxylessConfig(target_ms=1.0, latency_loss="multiplicative", beta=1.0)
    >>> round(float(latency_term(c, torch.tensor(1.0), torch.tensor(1.0))), 6)
    1.0
    """
    if cfg.target_ms is None or cfg.latency_loss == "none":
        return ce
    if cfg.latency_loss == "additive":
        return ce + cfg.lam * expected_ms / cfg.target_ms
    if cfg.latency_loss == "absolute":
        return ce + cfg.lam * torch.abs(expected_ms / cfg.target_ms - 1.0)
    us = expected_ms * 1000.0
    return ce * (torch.log(us) / math.log(cfg.target_ms * 1000.0)) ** cfg.beta


class ProxylessSearch:
    """Alternate weight steps (one path; with ``relaxation="softmax"`` every op weighted, as DARTS) and
    architecture steps (two paths, binary gates, or every op weighted; plus the latency loss) on a train/validation split of the training data; ``run`` returns per-epoch
    records and the derived architecture. ``checkpoint`` (a path) makes it resumable per epoch."""

    def __init__(self, space: ProxylessSpace, predictor: Any, config: ProxylessConfig,
                 data: tuple, train_space: ProxylessSpace | None = None, device: str = "cpu") -> None:
        self.space, self.cfg, self.device = space, config, device
        self.train_space = train_space or space
        xt, yt, xv, yv, classes = data
        g = torch.Generator().manual_seed(config.seed)
        perm = torch.randperm(len(yt), generator=g)
        n_arch = max(1, len(yt) // 5)
        self.w_data = (xt[perm[n_arch:]], yt[perm[n_arch:]])
        self.a_data = (xt[perm[:n_arch]], yt[perm[:n_arch]])
        self.v_data = (xv, yv)
        self.latency = LatencyTable(predictor, space)
        self.net = Supernet(self.train_space, config.seed, config.weight_sharing).to(device)
        self.w_opt = torch.optim.SGD(self.net.weight_parameters(), lr=config.weight_lr, momentum=0.9,
                                     weight_decay=4e-5, nesterov=True)
        self.a_opt = torch.optim.Adam(self.net.arch_parameters(), lr=config.arch_lr, betas=(0.0, 0.999), eps=1e-8)
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.epoch = 0
        self.records: list[EpochRecord] = []

    # ---- pieces ------------------------------------------------------------------------------
    def expected_latency(self) -> torch.Tensor:
        return self.latency.expected([m.probs() for m in self.net.mixed])

    def derive(self, how: str | None = None) -> Arch:
        """The final architecture read the config's way, or ``how`` (see ``DERIVATIONS``): the argmax per layer; with
        ``derive="constrained"`` and a target the most likely architecture predicted within it; with
        ``derive="factorised"`` (default) the same search over factorised scores (:func:`factorised_scores`),
        whose unconstrained best keeps a layer when ``p(zero) < 1/2``."""
        how = how or self.cfg.derive
        if how not in DERIVATIONS:
            raise UnknownNameError("derivation", how, DERIVATIONS)
        if how == "argmax":
            return self.net.derive()
        with torch.no_grad():
            lp = [torch.log_softmax(m.alpha + m.mask, 0).cpu().numpy() for m in self.net.mixed]
        if how == "factorised":
            lp = factorised_scores(self.space, lp)
        if self.cfg.target_ms is None:
            return self.space.make([int(np.argmax(v)) for v in lp])
        return self.latency.constrained_argmax(self.space, lp, self.cfg.target_ms)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        self.net.set_mode("single" if self.cfg.relaxation == "binary-gates" else "softmax", self.gen)
        loss = nn.functional.cross_entropy(self.net(x.to(self.device)), y.to(self.device))
        self.w_opt.zero_grad()
        loss.backward()
        self.w_opt.step()
        return float(loss.detach())

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        gates = self.cfg.relaxation == "binary-gates"
        self.net.set_mode("two" if gates else "softmax", self.gen)
        before = [m.alpha.detach().clone() for m in self.net.mixed]
        ce = nn.functional.cross_entropy(self.net(x.to(self.device)), y.to(self.device))
        loss = latency_term(self.cfg, ce, self.expected_latency().float())
        self.a_opt.zero_grad()
        self.w_opt.zero_grad()
        loss.backward()
        self.a_opt.step()
        self.w_opt.zero_grad()  # the architecture step trains no weight
        for m, b in zip(self.net.mixed, before if gates else []):
            m.rescale_after_step(b)
        return float(ce.detach())

    @torch.no_grad()
    def supernet_accuracy(self, arch: Arch | None = None) -> float:
        """Validation accuracy of the supernet with the path of ``arch`` (default: the argmax)."""
        self.net.eval()
        self.net.set_mode("fixed", arch=arch)
        xv, yv = self.v_data
        pred = torch.cat([self.net(xv[i: i + 256].to(self.device)).argmax(1).cpu() for i in range(0, len(yv), 256)])
        return float((pred == yv).float().mean())

    # ---- loop ----------------------------------------------------------------------------------
    def run_epoch(self) -> EpochRecord:
        cfg = self.cfg
        xt, yt = self.w_data
        xa, ya = self.a_data
        perm = torch.randperm(len(yt), generator=self.gen)
        search = self.epoch >= cfg.warmup_epochs
        losses, ces = [], []
        a_pos = 0
        for step, i in enumerate(range(0, len(yt), cfg.batch_size)):
            idx = perm[i: i + cfg.batch_size]
            losses.append(self.weight_step(xt[idx], yt[idx]))
            if search and (step + 1) % cfg.arch_every == 0:
                if a_pos >= len(ya):
                    a_pos = 0
                ces.append(self.arch_step(xa[a_pos: a_pos + cfg.batch_size], ya[a_pos: a_pos + cfg.batch_size]))
                a_pos += cfg.batch_size
        arch = self.derive()
        rec = EpochRecord(self.epoch, float(np.mean(losses)), float(np.mean(ces)) if ces else float("nan"),
                          float(self.expected_latency().detach()), self.space.to_string(arch),
                          self.latency.of(self.space, arch), self.supernet_accuracy(arch),
                          [m.alpha.detach().tolist() for m in self.net.mixed])
        self.records.append(rec)
        self.epoch += 1
        return rec

    def run(self, checkpoint: str | Path | None = None,
            on_epoch: Callable[[EpochRecord], None] | None = None) -> Arch:
        if checkpoint is not None and Path(checkpoint).exists():
            self.load_checkpoint(checkpoint)
        while self.epoch < self.cfg.epochs:
            rec = self.run_epoch()
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch:
                on_epoch(rec)
        return self.derive()

    def save_checkpoint(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        torch.save({"net": self.net.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                    "gen": self.gen.get_state(), "epoch": self.epoch, "records": self.records}, tmp)
        tmp.replace(path)  # atomic: a kill leaves the previous epoch's checkpoint

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=False)
        self.net.load_state_dict(state["net"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.gen.set_state(state["gen"])
        self.epoch, self.records = state["epoch"], list(state["records"])


def run_proxyless(out: Path, space: ProxylessSpace, predictor: Any, config: ProxylessConfig, settings: dict[str, Any],
                  dataset: str = "digits", resolution: int = 16, final_epochs: int = 5, device: str = "cpu",
                  resume: bool = False, on_epoch: Callable[[EpochRecord], None] | None = None) -> dict[str, Any]:
    """A whole supernet search in a run directory: ``journal.sqlite`` (settings, every epoch's
    alphas and expected latency, the derived architecture's trial), ``supernet.pt`` (the per-epoch
    checkpoint ``--resume`` continues from), ``epochs.csv``, ``proxyless.png``; the derived
    architecture is trained from scratch for ``final_epochs`` to give its accuracy. Returns the
    summary the caller writes as ``best.json``."""
    import json
    import time

    from hwnas.search._evaluators import ProxyTrainingEvaluator, load_dataset
    from hwnas.search._run import Journal, Trial

    journal = Journal(out / "journal.sqlite", settings, resume)
    journal.conn.execute("CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY, train_loss REAL, "
                         "arch_ce REAL, expected_latency_ms REAL, derived_arch TEXT, derived_latency_ms REAL, "
                         "supernet_val_acc REAL, alphas TEXT)")
    if not resume and (out / "supernet.pt").exists():
        (out / "supernet.pt").unlink()
    train_space = ProxylessSpace(resolution, space.width, space.classes, space.act.value, space.allowed, depth=space.depth)
    data = load_dataset(dataset, resolution, config.seed)
    if data[4] != space.classes:
        train_space = ProxylessSpace(resolution, space.width, data[4], space.act.value, space.allowed, depth=space.depth)
    search = ProxylessSearch(space, predictor, config, data, train_space, device)

    def record(rec: EpochRecord) -> None:
        with journal.conn:
            journal.conn.execute("INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (rec.epoch, rec.train_loss, rec.arch_ce, rec.expected_latency_ms, rec.derived_arch,
                                  rec.derived_latency_ms, rec.supernet_val_acc, json.dumps(rec.alphas)))
        if on_epoch:
            on_epoch(rec)

    arch = search.run(out / "supernet.pt", record)
    trials = journal.trials()
    if not trials:  # train the derived architecture from scratch: its accuracy
        t0 = time.perf_counter()
        evaluator = ProxyTrainingEvaluator(space, dataset, final_epochs, resolution, device=device, seed=config.seed)
        acc = evaluator(arch)
        lat = search.latency.of(space, arch)
        journal.add(Trial(0, space.to_string(arch), acc, lat, acc, space.params(arch), space.flops(arch),
                          time.perf_counter() - t0))
        trials = journal.trials()
    journal.close()
    _plot_epochs(out, search.records, config.target_ms)
    import pandas as pd

    pd.DataFrame([{k: v for k, v in r.__dict__.items() if k != "alphas"} for r in search.records]).to_csv(
        out / "epochs.csv", index=False)
    return {"trials": trials, "records": search.records, "arch": arch}


def _plot_epochs(out: Path, records: list[EpochRecord], target_ms: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r.epoch for r in records]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r.expected_latency_ms for r in records], "b.-", label="expected latency E[LAT]")
    a1.plot(ep, [r.derived_latency_ms for r in records], "g.-", label="derived architecture")
    if target_ms is not None:
        a1.axhline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms} ms")
    a1.set(xlabel="epoch", ylabel="predicted latency (ms)", title="latency")
    a1.legend(fontsize=8)
    a2.plot(ep, [r.train_loss for r in records], "b.-", label="weight step CE")
    a2.plot(ep, [r.arch_ce for r in records], "r.-", label="architecture step CE")
    a2b = a2.twinx()
    a2b.plot(ep, [r.supernet_val_acc for r in records], "g.--", label="supernet val. accuracy")
    a2.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    a2.legend(fontsize=8, loc="upper left")
    a2b.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "proxyless.png", dpi=110)
    plt.close(fig)
