"""MnasNet's factorised hierarchical space on a MobileNetV2 skeleton of 7 blocks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwnas.devices._device import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.profilers._onnx import GraphBuilder
from hwnas.profilers._ops import OpConfig, OpType
from hwnas.search.spaces._base import Arch, Decision, SearchSpace, check_act, check_setting

__all__ = ["MnasNetSpace", "MNAS_SKELETON"]

#: MobileNetV2's 7 blocks: (channels, layers, first stride)
MNAS_SKELETON = ((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))
OPS = ("conv", "dwsep", "mb1", "mb3", "mb6")
KERNELS = (3, 5)
SE = (0.0, 0.25)
SKIPS = ("none", "id")
LAYERS = (-1, 0, 1)
FILTERS = (0.75, 1.0, 1.25)
RESOLUTIONS = (96, 128, 160, 192, 224)
WIDTHS = (0.5, 0.75, 1.0)
_FIELDS = ("op", "k", "se", "skip", "layers", "filters")


class _Residual(nn.Module):
    """Ops with an identity skip around them (for conv / depthwise-separable layers)."""

    #: output = input + branch (weight inheritance starts a new one as the identity)
    residual = True

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for m in self.ops:
            y = m(y)
        return x + y

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        y = x
        for m in self.ops:
            y = m.emit_onnx(g, y)
        return g.node("Add", [x, y])


class MnasNetSpace(SearchSpace):
    """String: ``r<res>_w<width>`` then per block ``<op>_k<k>_se<ratio>_<skip>_n<delta>_f<filters>``,
    joined by ``|``; e.g. ``r224_w1.0|mb6_k3_se0.25_id_n+0_f1.0|...``."""

    name = "mnasnet"

    def __init__(self, classes: int = 1000, act: str = "relu", allowed: Any = None) -> None:
        check_setting("mnasnet", "classes", classes, int, 2, 100_000)
        self.classes, self.act = classes, check_act("mnasnet", act)
        super().__init__(allowed)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        per_block = (("op", OPS), ("k", KERNELS), ("se", SE), ("skip", SKIPS), ("layers", LAYERS), ("filters", FILTERS))
        return (Decision("resolution", RESOLUTIONS), Decision("width", WIDTHS),
                *(Decision(f"b{b}_{n}", opts) for b in range(len(MNAS_SKELETON)) for n, opts in per_block))

    def canonical(self, arch: Arch) -> Arch:
        """Blocks of one layer in the skeleton cannot lose it: ``layers -1`` becomes ``0``."""
        ch = list(arch.choices)
        for b, (_, n, _) in enumerate(MNAS_SKELETON):
            i = 2 + 6 * b + _FIELDS.index("layers")
            if n == 1 and ch[i] == LAYERS.index(-1) and LAYERS.index(0) in self.allowed[i]:
                ch[i] = LAYERS.index(0)
        return Arch(arch.space, tuple(ch))

    def _blocks(self, arch: Arch) -> tuple[int, float, list[dict[str, Any]]]:
        v = list(self.values(arch).values())
        blocks = [dict(zip(_FIELDS, v[2 + 6 * b: 8 + 6 * b])) for b in range(len(MNAS_SKELETON))]
        return int(v[0]), float(v[1]), blocks

    def to_string(self, arch: Arch) -> str:
        res, width, blocks = self._blocks(arch)
        parts = [f"r{res}_w{width}"]
        for b in blocks:
            parts.append(f"{b['op']}_k{b['k']}_se{b['se']:g}_{b['skip']}_n{b['layers']:+d}_f{b['filters']}")
        return "|".join(parts)

    def from_string(self, text: str) -> Arch:
        parts = text.strip().split("|")
        if len(parts) != 1 + len(MNAS_SKELETON):
            raise HwnasError(f"a mnasnet architecture has 1 + {len(MNAS_SKELETON)} '|'-separated parts, got {text!r}")
        try:
            r, w = parts[0].split("_")
            choices = [RESOLUTIONS.index(int(r[1:])), WIDTHS.index(float(w[1:]))]
            for p in parts[1:]:
                op, k, se, skip, n, f = p.split("_")
                choices += [OPS.index(op), KERNELS.index(int(k[1:])), SE.index(float(se[2:])), SKIPS.index(skip),
                            LAYERS.index(int(n[1:])), FILTERS.index(float(f[1:]))]
        except ValueError:
            raise HwnasError(f"cannot parse mnasnet architecture {text!r}; expected e.g. "
                             "'r224_w1.0|mb6_k3_se0.25_id_n+0_f1.0|...' with options "
                             f"op {OPS}, k {KERNELS}, se {SE}, skip {SKIPS}, n {LAYERS}, f {FILTERS}, "
                             f"r {RESOLUTIONS}, w {WIDTHS}") from None
        return self.make(choices)

    @staticmethod
    def _ch(c: float) -> int:
        return max(8, int(c + 4) // 8 * 8)

    def _layers(self, arch: Arch) -> tuple[list[list[OpConfig]], list[bool], int]:
        """Per layer: its op configs, and whether an identity skip wraps them (non-MBConv)."""
        res, width, blocks = self._blocks(arch)
        act = self.act
        stem = OpConfig(OpType.CONV, 3, self._ch(32 * width), res, res, kernel=3, stride=2, act=act)
        layers, skips = [[stem]], [False]
        r, cin = stem.out_hw[0], stem.cout
        for (c, n, s), b in zip(MNAS_SKELETON, blocks):
            cout = self._ch(c * b["filters"] * width)
            for i in range(max(1, n + b["layers"])):
                st = s if i == 0 else 1
                can_skip = b["skip"] == "id" and st == 1 and cin == cout
                k, se = b["k"], b["se"]
                if b["op"].startswith("mb"):
                    cfg = OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=k, stride=st, expand=int(b["op"][2:]),
                                   se=se, act=act, residual=can_skip)
                    ops, ho = [cfg], cfg.out_hw[0]
                    layers.append(ops)
                    skips.append(False)
                else:
                    if b["op"] == "conv":
                        first = OpConfig(OpType.CONV, cin, cout, r, r, kernel=k, stride=st, act=act)
                        ops = [first]
                        mid = cout
                    else:
                        first = OpConfig(OpType.DWCONV, cin, h=r, w=r, kernel=k, stride=st, act=act)
                        ops = [first]
                        mid = cin
                    ho = first.out_hw[0]
                    if se:
                        ops.append(OpConfig(OpType.SE, mid, h=ho, w=ho, se=se))
                    if b["op"] == "dwsep":
                        ops.append(OpConfig(OpType.PWCONV, cin, cout, ho, ho))
                    layers.append(ops)
                    skips.append(can_skip)
                r, cin = ho, cout
        head = [OpConfig(OpType.PWCONV, cin, 1280, r, r, act=act), OpConfig(OpType.GAP, 1280, h=r, w=r),
                OpConfig(OpType.LINEAR, 1280, self.classes)]
        layers += [[h] for h in head]
        skips += [False] * 3
        return layers, skips, res

    def block_keys(self, arch: Arch) -> list[str]:
        """``stem``, ``<block>.<layer>`` (a layer added to a block does not move the later blocks'
        keys), ``head.<i>``: one per top-level block of :meth:`build_module`."""
        _, _, blocks = self._blocks(arch)
        keys = ["stem"]
        for b, ((_, n, _), blk) in enumerate(zip(MNAS_SKELETON, blocks)):
            keys += [f"{b}.{i}" for i in range(max(1, n + blk["layers"]))]
        return keys + ["head.0", "head.1", "head.2"]

    def op_configs(self, arch: Arch) -> list[OpConfig]:
        layers, skips, _ = self._layers(arch)
        out = []
        for ops, skip in zip(layers, skips):
            out += ops
            if skip:
                last = ops[-1]
                out.append(OpConfig(OpType.ADD, last.cout, h=last.out_hw[0], w=last.out_hw[1]))
        return out

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        res, _, _ = self._blocks(arch)
        return (1, 3, res, res)

    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module:
        from hwnas.profilers._blocks import ChainModel, OpBlock

        space = MnasNetSpace(classes, self.act.value, self.allowed)
        layers, skips, res = space._layers(arch)
        if resolution is not None and resolution != res:
            raise HwnasError(f"this mnasnet architecture's input resolution is {res} (a searched decision)")
        blocks: list[nn.Module] = [(_Residual([OpBlock(c) for c in ops]) if skip else
                                    (OpBlock(ops[0]) if len(ops) == 1 else
                                     ChainModel([OpBlock(c) for c in ops], ops[0].input_shapes()[0], ops[-1].output_shape())))
                                   for ops, skip in zip(layers, skips)]
        first, last = layers[0][0], layers[-1][-1]
        return ChainModel(blocks, first.input_shapes()[0], last.output_shape())

    def option_allowed(self, decision: Decision, option: Any, constraints: DeviceConstraints) -> bool:
        field = decision.name.split("_", 1)[-1]
        allowed = constraints.allowed_op_types
        if decision.name == "resolution":
            return constraints.max_input_resolution is None or option <= constraints.max_input_resolution
        if field == "k":
            return constraints.allowed_kernel_sizes is None or option in constraints.allowed_kernel_sizes
        if allowed is None:
            return True
        if field == "op":
            need = {"conv": {"conv"}, "dwsep": {"dwconv", "pwconv"}}.get(option, {"mbconv"})
            return need <= set(allowed)
        if field == "se" and option:
            return "se" in allowed or "mbconv" in allowed
        return True

