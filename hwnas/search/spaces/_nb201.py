"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 ops per edge (15,625 architectures)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.devices._device import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.profilers._ops import Act, OpConfig, OpType
from hwnas.search.spaces._base import Arch, Decision, SearchSpace, check_setting

__all__ = ["NB201Space", "NB201_OPS", "NB201_EDGES"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), in arch_str order


class _ReLUConvBN(nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, 1, k // 2, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def _edge(op: str, c: int) -> nn.Module:
    return {"none": lambda: _Zero(), "skip_connect": lambda: nn.Identity(),
            "nor_conv_1x1": lambda: _ReLUConvBN(c, 1), "nor_conv_3x3": lambda: _ReLUConvBN(c, 3),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)}[op]()


class _Cell(nn.Module):
    def __init__(self, ops: tuple[str, ...], c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_edge(o, c) for o in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            nodes.append(sum(self.edges[e](nodes[i]) for e, (t, i) in enumerate(NB201_EDGES) if t == j))
        return nodes[3]


class _Reduction(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout))
        self.b = nn.Sequential(nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.short(x)


_DECISIONS = tuple(Decision(f"edge{t}{f}", NB201_OPS) for t, f in NB201_EDGES)


class NB201Space(SearchSpace):
    """NAS-Bench-201 cells; strings as in NAS-Bench-201, e.g.
    ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.

    ``channels``/``cells_per_stage`` set the network (NAS-Bench-201: 16 and 5).
    """

    name = "nb201"

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, resolution: int = 32,
                 allowed: Any = None) -> None:
        check_setting("nb201", "channels", channels, int, 1, 4096)
        check_setting("nb201", "cells_per_stage", cells_per_stage, int, 1, 100)
        check_setting("nb201", "resolution", resolution, int, 4, 1024)
        self.channels, self.cells_per_stage, self.resolution = channels, cells_per_stage, resolution
        super().__init__(allowed)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return _DECISIONS

    def to_string(self, arch: Arch) -> str:
        ops = self.ops(arch)
        return ("|" + ops[0] + "~0|+|" + ops[1] + "~0|" + ops[2] + "~1|+|"
                + ops[3] + "~0|" + ops[4] + "~1|" + ops[5] + "~2|")

    def from_string(self, text: str) -> Arch:
        try:
            nodes = text.strip().strip("|").split("|+|")
            items = [it for node in nodes for it in node.strip("|").split("|")]
            parsed = [(op, int(src)) for op, src in (it.split("~") for it in items)]
        except ValueError:
            raise HwnasError(f"not a NAS-Bench-201 architecture string: {text!r}") from None
        if [s for _, s in parsed] != [f for _, f in NB201_EDGES] or len(nodes) != 3:
            raise HwnasError(f"not a NAS-Bench-201 architecture string (edges out of order): {text!r}")
        bad = [op for op, _ in parsed if op not in NB201_OPS]
        if bad:
            raise HwnasError(f"unknown NAS-Bench-201 op {bad[0]!r}; known: {', '.join(NB201_OPS)}")
        return self.make([NB201_OPS.index(op) for op, _ in parsed])

    def features(self, arch: Arch) -> np.ndarray:
        """One-hot of the 6 edges' ops, the op counts and the convolutions on the longest live
        path: with these a LightGBM surrogate fitted on 100 random cells ranks all 15,625 by CIFAR-100
        accuracy at Spearman 0.83, against 0.67 on the one-hot alone (BENCHMARKS.md)."""
        from hwnas.latency_models._transfer import encode_nb201

        return encode_nb201(self.to_string(arch))

    def ops(self, arch: Arch) -> tuple[str, ...]:
        self.validate(arch)
        return tuple(NB201_OPS[i] for i in arch.choices)

    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module:
        ops, c = self.ops(arch), self.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage:
                layers.append(_Reduction(c, 2 * c))
                c *= 2
            layers += [_Cell(ops, c) for _ in range(self.cells_per_stage)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
        return nn.Sequential(*layers)

    def switched_ops(self, child: Arch, parent: Arch) -> list[str]:
        """Every cell's edges whose operation changed, except a 1x1 convolution widened to 3x3 (its
        kernel inherited in the centre computes the same)."""
        kept = {("nor_conv_1x1", "nor_conv_3x3")}
        edges = [e for e, (p, c) in enumerate(zip(self.ops(parent), self.ops(child))) if p != c and (p, c) not in kept]
        if not edges:
            return []
        cells = [n for n, m in self.build_module(child).named_modules() if isinstance(m, _Cell)]
        return [f"{n}.edges.{e}" for n in cells for e in edges]

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        return (1, 3, self.resolution, self.resolution)

    def op_configs(self, arch: Arch) -> list[OpConfig]:
        ops, c, r = self.ops(arch), self.channels, self.resolution
        out = [OpConfig(OpType.CONV, 3, c, r, r, kernel=3)]
        for stage in range(3):
            if stage:
                out += [OpConfig(OpType.ACT, c, h=r, w=r, act=Act.RELU),
                        OpConfig(OpType.CONV, c, 2 * c, r, r, kernel=3, stride=2, act=Act.RELU),
                        OpConfig(OpType.CONV, 2 * c, 2 * c, r // 2, r // 2, kernel=3),
                        OpConfig(OpType.AVGPOOL, c, h=r, w=r, kernel=2, stride=2),
                        OpConfig(OpType.PWCONV, c, 2 * c, r // 2, r // 2),
                        OpConfig(OpType.ADD, 2 * c, h=r // 2, w=r // 2)]
                c, r = 2 * c, r // 2
            for _ in range(self.cells_per_stage):
                for j in (1, 2, 3):
                    incoming = [ops[e] for e, (t, _) in enumerate(NB201_EDGES) if t == j and ops[e] != "none"]
                    for op in incoming:
                        if op.startswith("nor_conv"):
                            out += [OpConfig(OpType.ACT, c, h=r, w=r, act=Act.RELU),
                                    OpConfig(OpType.CONV, c, c, r, r, kernel=int(op[-1]))]
                        elif op == "avg_pool_3x3":
                            out.append(OpConfig(OpType.AVGPOOL, c, h=r, w=r, kernel=3, stride=1))
                    if len(incoming) >= 2:
                        out.append(OpConfig(OpType.ADD, c, h=r, w=r, n_inputs=len(incoming)))
        out += [OpConfig(OpType.ACT, c, h=r, w=r, act=Act.RELU), OpConfig(OpType.GAP, c, h=r, w=r),
                OpConfig(OpType.LINEAR, c, 10)]
        return out

    def option_allowed(self, decision: Decision, option: Any, constraints: DeviceConstraints) -> bool:
        allowed = constraints.allowed_op_types
        if allowed is None:
            return True
        need = {"nor_conv_1x1": "conv", "nor_conv_3x3": "conv", "avg_pool_3x3": "avgpool"}.get(option)
        k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(option)
        if k is not None and constraints.allowed_kernel_sizes is not None and k not in constraints.allowed_kernel_sizes:
            return False
        return need is None or need in allowed
