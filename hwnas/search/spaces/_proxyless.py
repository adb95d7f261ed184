"""The ProxylessNAS space: per layer an MBConv of kernel {3,5,7} x expand {3,6}, or zero (skip)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from hwnas.devices._device import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.profilers._ops import OpConfig, OpType
from hwnas.search.spaces._base import Arch, Decision, SearchSpace, check_act, check_setting

__all__ = ["ProxylessSpace", "PROXYLESS_STAGES"]

#: (channels, layers, first stride) of the ProxylessNAS mobile skeleton after the stem and first MBConv
PROXYLESS_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
MB_OPTIONS = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")


class ProxylessSpace(SearchSpace):
    """21 searchable layers (at depth 1); the first layer of each stage cannot be skipped. ``depth`` multiplies
    every stage's layer count (rounded up; EfficientNet's depth coefficient), ``width`` every
    channel count, so compound scaling moves through spaces of this kind.

    String: the layers' choices joined by ``-``, e.g. ``k3e3-k5e6-zero-...``.
    """

    name = "proxyless"

    def __init__(self, resolution: int = 224, width: float = 1.0, classes: int = 1000, act: str = "relu6",
                 allowed: Any = None, depth: float = 1.0) -> None:
        check_setting("proxyless", "resolution", resolution, int, 8, 1024)
        check_setting("proxyless", "width", width, float, 0.05, 4.0)
        check_setting("proxyless", "depth", depth, float, 0.25, 8.0)
        self.depth = float(depth)
        check_setting("proxyless", "classes", classes, int, 2, 100_000)
        self.resolution, self.width, self.classes, self.act = resolution, width, classes, check_act("proxyless", act)
        super().__init__(allowed)

    def _ch(self, c: int) -> int:
        return max(8, int(c * self.width + 4) // 8 * 8)

    def stage_layers(self) -> list[int]:
        """Searchable layers per stage: the skeleton's counts times ``depth``, rounded up."""
        return [max(1, math.ceil(n * self.depth - 1e-9)) for _, n, _ in PROXYLESS_STAGES]

    @property
    def decisions(self) -> tuple[Decision, ...]:
        out = []
        for s, n in enumerate(self.stage_layers()):
            for i in range(n):
                out.append(Decision(f"s{s}l{i}", MB_OPTIONS + (("zero",) if i > 0 else ())))
        return tuple(out)

    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        return "-".join(d.options[i] for d, i in zip(self.decisions, arch.choices))

    def from_string(self, text: str) -> Arch:
        parts = text.strip().split("-")
        if len(parts) != len(self.decisions):
            raise HwnasError(f"a proxyless architecture has {len(self.decisions)} layers, {text!r} has {len(parts)}")
        choices = []
        for d, p in zip(self.decisions, parts):
            if p not in d.options:
                raise HwnasError(f"{p!r} is not an option of layer {d.name} (options: {', '.join(d.options)})")
            choices.append(d.options.index(p))
        return self.make(choices)

    def layer_options(self) -> list[list[list[OpConfig]]]:
        """For every searchable layer, the op configurations of each option (``[]`` for zero).

        Layers see a fixed input shape whatever is chosen before them, so this table gives the
        latency of every architecture (``LatencyPredictor.layer_table``).
        """
        r = self.resolution
        stem = OpConfig(OpType.CONV, 3, self._ch(32), r, r, kernel=3, stride=2, act=self.act)
        r = stem.out_hw[0]
        first = OpConfig(OpType.MBCONV, self._ch(32), self._ch(16), r, r, kernel=3, expand=1, act=self.act)
        cin = self._ch(16)
        table: list[list[list[OpConfig]]] = [[[stem]], [[first]]]
        for (c, _, s), n in zip(PROXYLESS_STAGES, self.stage_layers()):
            cout = self._ch(c)
            for i in range(n):
                stride = s if i == 0 else 1
                opts = []
                for o in MB_OPTIONS:
                    k, e = int(o[1]), int(o[3])
                    opts.append([OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=k, stride=stride, expand=e,
                                          act=self.act, residual=stride == 1 and cin == cout)])
                if i > 0:
                    opts.append([])
                table.append(opts)
                r = (r + 2 - 3) // stride + 1 if stride == 2 else r
                cin = cout
        last = max(1280, self._ch(1280)) if self.width > 1 else 1280
        table.append([[OpConfig(OpType.PWCONV, cin, last, r, r, act=self.act)]])
        table.append([[OpConfig(OpType.GAP, last, h=r, w=r)]])
        table.append([[OpConfig(OpType.LINEAR, last, self.classes)]])
        return table

    def layer_indices(self, arch: Arch) -> list[int]:
        """Row of option indices into ``layer_options()`` (fixed layers take option 0)."""
        self.validate(arch)
        return [0, 0, *arch.choices, 0, 0, 0]

    def block_keys(self, arch: Arch) -> list[str]:
        """``<row>.<op>``: the row of ``layer_options()`` and the op within the chosen option (a
        skipped layer has no block, so the blocks after it keep their keys)."""
        table = self.layer_options()
        return [f"{t}.{c}" for t, (layer, j) in enumerate(zip(table, self.layer_indices(arch)))
                for c in range(len(layer[j]))]

    def op_configs(self, arch: Arch) -> list[OpConfig]:
        table = self.layer_options()
        return [c for layer, j in zip(table, self.layer_indices(arch)) for c in layer[j]]

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        return (1, 3, self.resolution, self.resolution)

    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module:
        from hwnas.profilers._blocks import chain_of_ops

        space = self if (resolution in (None, self.resolution) and classes == self.classes) else \
            ProxylessSpace(resolution or self.resolution, self.width, classes, self.act.value, self.allowed,
                           depth=self.depth)
        return chain_of_ops(space.op_configs(arch))

    def option_allowed(self, decision: Decision, option: Any, constraints: DeviceConstraints) -> bool:
        if option == "zero":
            return True
        if constraints.allowed_op_types is not None and "mbconv" not in constraints.allowed_op_types:
            return False
        if constraints.allowed_kernel_sizes is not None and int(option[1]) not in constraints.allowed_kernel_sizes:
            return False
        return True
