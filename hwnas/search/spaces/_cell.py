"""The NASNet/DARTS/PNAS cell space: a normal and a reduction cell of B blocks each.

A block takes two inputs among the cell's two inputs (the outputs of the two previous cells) and
the earlier blocks, applies one op to each and adds the results; the cell's output concatenates
its blocks' outputs (as DARTS does). The network is DARTS's CIFAR network: a 3x3 stem, ``layers``
cells with reduction cells at 1/3 and 2/3 of the depth, global pooling and a classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.devices._device import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.profilers._ops import Act, OpConfig, OpType
from hwnas.search.spaces._base import Arch, Decision, SearchSpace, check_setting

__all__ = ["CellSpace", "CELL_OPS", "cell_count", "make_cell_op"]

CELL_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3",
            "skip_connect", "none")
_KINDS = ("normal", "reduce")


def cell_count(blocks: int, ops: int = len(CELL_OPS)) -> int:
    """Encodings of one cell of ``blocks`` blocks (PNAS's count): block b (from 0) chooses two inputs
    among b + 2 and two ops, prod_b (b + 2)^2 * ops^2. The space holds ``cell_count(B) ** 2`` (a
    normal and a reduction cell)."""
    return int(np.prod([(b + 2) ** 2 * ops ** 2 for b in range(blocks)], dtype=object))


class _ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1):
        pad = dilation * (k - 1) // 2
        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


def _relu_dw(c: int, k: int, stride: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.ReLU(), nn.Conv2d(c, c, k, stride, dilation * (k - 1) // 2, dilation=dilation, groups=c, bias=False)]


class _SepConv(nn.Sequential):
    """DARTS's separable conv: (ReLU, depthwise k x k, pointwise, BN) twice, the first strided."""

    def __init__(self, c: int, k: int, stride: int):
        super().__init__(*_relu_dw(c, k, stride), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
                         *_relu_dw(c, k, 1), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class _DilConv(nn.Sequential):
    """ReLU, depthwise k x k with dilation 2, pointwise, BN."""

    def __init__(self, c: int, k: int, stride: int):
        super().__init__(*_relu_dw(c, k, stride, 2), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class _Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride] * 0.0


def make_cell_op(op: str, c: int, stride: int) -> nn.Module:
    """The module of one of :data:`CELL_OPS` on ``c`` channels (a strided skip is a ReLU, a strided
    1x1 conv and BN)."""
    k = 5 if op.endswith("5x5") else 3
    if op.startswith("sep_conv"):
        return _SepConv(c, k, stride)
    if op.startswith("dil_conv"):
        return _DilConv(c, k, stride)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else _ReLUConvBN(c, c, 1, stride)
    if op == "none":
        return _Zero(stride)
    raise HwnasError(f"unknown cell op {op!r}; known: {', '.join(CELL_OPS)}")


class _Cell(nn.Module):
    def __init__(self, blocks: tuple[tuple[int, str, int, str], ...], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = _ReLUConvBN(c_pp, c, 1, 2) if reduction_prev else _ReLUConvBN(c_pp, c, 1)
        self.pre1 = _ReLUConvBN(c_p, c, 1)
        self.blocks = blocks
        self.ops = nn.ModuleList(
            make_cell_op(op, c, 2 if reduction and i < 2 else 1) for i1, o1, i2, o2 in blocks for i, op in ((i1, o1), (i2, o2)))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for b, (i1, _, i2, _) in enumerate(self.blocks):
            states.append(self.ops[2 * b](states[i1]) + self.ops[2 * b + 1](states[i2]))
        return torch.cat(states[2:], dim=1)


class _Network(nn.Module):
    def __init__(self, space: CellSpace, cells: dict[str, tuple], classes: int) -> None:
        super().__init__()
        c, b = space.channels, space.blocks
        c_stem = space.stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, reduction_prev = c_stem, c_stem, False
        self.cells = nn.ModuleList()
        for i in range(space.layers):
            reduction = i in space.reduction_layers()
            c = 2 * c if reduction else c
            self.cells.append(_Cell(cells["reduce" if reduction else "normal"], c_pp, c_p, c, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, b * c, reduction
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_p, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)


def _decisions(blocks: int) -> tuple[Decision, ...]:
    out = []
    for kind in _KINDS:
        for b in range(blocks):
            for j in (1, 2):
                out += [Decision(f"{kind[0]}{b}_in{j}", tuple(range(b + 2))), Decision(f"{kind[0]}{b}_op{j}", CELL_OPS)]
    return tuple(out)


class CellSpace(SearchSpace):
    """Normal and reduction cells of ``blocks`` blocks (NASNet/DARTS/PNAS). Strings name each
    cell's blocks as ``op~input+op~input``, inputs 0 and 1 being the cell's inputs and 2.. the
    earlier blocks, e.g. ``normal=sep_conv_3x3~0+skip_connect~1|...;reduce=max_pool_3x3~0+...``.

    Equivalent encodings are made one: a ``none`` op's input is 0, and a block's two (input, op)
    pairs are in order. ``channels`` (of the first cells), ``layers`` (cells in all) and
    ``resolution`` set the network (DARTS's search network: 16, 8, 32).
    """

    name = "cell"

    def __init__(self, blocks: int = 4, channels: int = 16, layers: int = 5, resolution: int = 32,
                 stem_multiplier: int = 3, allowed: Any = None) -> None:
        check_setting("cell", "blocks", blocks, int, 1, 8)
        check_setting("cell", "channels", channels, int, 1, 1024)
        check_setting("cell", "layers", layers, int, 1, 64)
        check_setting("cell", "resolution", resolution, int, 8, 1024)
        check_setting("cell", "stem_multiplier", stem_multiplier, int, 1, 8)
        self.blocks, self.channels, self.layers = blocks, channels, layers
        self.resolution, self.stem_multiplier = resolution, stem_multiplier
        self._decisions = _decisions(blocks)
        super().__init__(allowed)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def reduction_layers(self) -> tuple[int, ...]:
        """Indices of the reduction cells: 1/3 and 2/3 of the depth (none with fewer than 3 cells)."""
        return (self.layers // 3, 2 * self.layers // 3) if self.layers >= 3 else ()

    # ---- cells and their strings ----------------------------------------------------------------
    def cells(self, arch: Arch) -> dict[str, tuple[tuple[int, str, int, str], ...]]:
        """``{"normal": blocks, "reduce": blocks}``, each block ``(input1, op1, input2, op2)``."""
        self.validate(arch)
        c, out = arch.choices, {}
        for k, kind in enumerate(_KINDS):
            base = 4 * self.blocks * k
            out[kind] = tuple((c[base + 4 * b], CELL_OPS[c[base + 4 * b + 1]], c[base + 4 * b + 2],
                               CELL_OPS[c[base + 4 * b + 3]]) for b in range(self.blocks))
        return out

    def canonical(self, arch: Arch) -> Arch:
        none = CELL_OPS.index("none")
        c = list(arch.choices)
        for base in range(0, len(c), 4):
            for j in (base, base + 2):
                if c[j + 1] == none:
                    c[j] = 0
            if (c[base + 2], c[base + 3]) < (c[base], c[base + 1]):
                c[base:base + 4] = c[base + 2:base + 4] + c[base:base + 2]
        return Arch(arch.space, tuple(c))

    def to_string(self, arch: Arch) -> str:
        return ";".join(f"{kind}=" + "|".join(f"{o1}~{i1}+{o2}~{i2}" for i1, o1, i2, o2 in blocks)
                        for kind, blocks in self.cells(arch).items())

    def from_string(self, text: str) -> Arch:
        try:
            parts = dict(p.split("=", 1) for p in text.strip().split(";"))
            choices = []
            for kind in _KINDS:
                blocks = parts[kind].split("|")
                if len(blocks) != self.blocks:
                    raise HwnasError(f"cell: the {kind} cell has {len(blocks)} blocks, the space {self.blocks}: {text!r}")
                for block in blocks:
                    for half in block.split("+", 1) if block.count("+") == 1 else [block, ""]:
                        op, src = half.split("~")
                        if op not in CELL_OPS:
                            raise HwnasError(f"unknown cell op {op!r}; known: {', '.join(CELL_OPS)}")
                        choices += [int(src), CELL_OPS.index(op)]
        except (ValueError, KeyError):
            raise HwnasError(f"not a cell architecture string ('normal=op~input+op~input|...;reduce=...'): "
                             f"{text!r}") from None
        return self.make(choices)

    # ---- models and costs -----------------------------------------------------------------------
    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module:
        return _Network(self, self.cells(arch), classes)

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        return (1, 3, self.resolution, self.resolution)

    def op_configs(self, arch: Arch) -> list[OpConfig]:
        """The ops of the network; BN is folded into the conv before it; a dilated depthwise conv is
        counted as the undilated one (the same MACs; OpConfig has no dilation)."""
        cells, c, r, b = self.cells(arch), self.channels, self.resolution, self.blocks
        c_stem = self.stem_multiplier * c
        out = [OpConfig(OpType.CONV, 3, c_stem, r, r, kernel=3)]
        c_pp, c_p, r_pp, reduction_prev = c_stem, c_stem, r, False
        for i in range(self.layers):
            reduction = i in self.reduction_layers()
            c = 2 * c if reduction else c
            out += _preprocess(c_pp, c, r_pp, reduction_prev) + _preprocess(c_p, c, r, False)
            out += _cell_ops(cells["reduce" if reduction else "normal"], c, r, reduction)
            r_out = (r + 1) // 2 if reduction else r
            c_pp, c_p, r_pp, r, reduction_prev = c_p, b * c, r, r_out, reduction
        return out + [OpConfig(OpType.GAP, c_p, h=r, w=r), OpConfig(OpType.LINEAR, c_p, 10)]

    def option_allowed(self, decision: Decision, option: Any, constraints: DeviceConstraints) -> bool:
        if not isinstance(option, str):
            return True
        k = {"3x3": 3, "5x5": 5}.get(option[-3:])
        if option.endswith("conv_3x3") or option.endswith("conv_5x5"):
            if constraints.allowed_kernel_sizes is not None and k not in constraints.allowed_kernel_sizes:
                return False
        need = {"sep_conv": {"dwconv", "pwconv"}, "dil_conv": {"dwconv", "pwconv"},
                "max_pool": {"maxpool"}, "avg_pool": {"avgpool"}}.get(option[:8], set())
        allowed = constraints.allowed_op_types
        return allowed is None or need <= set(allowed)


def _preprocess(cin: int, c: int, r: int, strided: bool) -> list[OpConfig]:
    conv = (OpConfig(OpType.CONV, cin, c, r, r, kernel=1, stride=2) if strided else OpConfig(OpType.PWCONV, cin, c, r, r))
    return [OpConfig(OpType.ACT, cin, h=r, w=r, act=Act.RELU), conv]


def _op_configs(op: str, c: int, r: int, stride: int) -> list[OpConfig]:
    k = 5 if op.endswith("5x5") else 3
    relu = OpConfig(OpType.ACT, c, h=r, w=r, act=Act.RELU)
    ro = (r + stride - 1) // stride
    if op.startswith("sep_conv"):
        return [relu, OpConfig(OpType.DWCONV, c, h=r, w=r, kernel=k, stride=stride), OpConfig(OpType.PWCONV, c, c, ro, ro),
                OpConfig(OpType.ACT, c, h=ro, w=ro, act=Act.RELU), OpConfig(OpType.DWCONV, c, h=ro, w=ro, kernel=k),
                OpConfig(OpType.PWCONV, c, c, ro, ro)]
    if op.startswith("dil_conv"):
        return [relu, OpConfig(OpType.DWCONV, c, h=r, w=r, kernel=k, stride=stride), OpConfig(OpType.PWCONV, c, c, ro, ro)]
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        kind = OpType.MAXPOOL if op == "max_pool_3x3" else OpType.AVGPOOL
        return [OpConfig(kind, c, h=r, w=r, kernel=3, stride=stride)]
    if op == "skip_connect" and stride == 2:
        return [relu, OpConfig(OpType.CONV, c, c, r, r, kernel=1, stride=2)]
    return []


def _cell_ops(blocks: tuple, c: int, r: int, reduction: bool) -> list[OpConfig]:
    out: list[OpConfig] = []
    ro = (r + 1) // 2 if reduction else r
    for i1, o1, i2, o2 in blocks:
        for i, op in ((i1, o1), (i2, o2)):
            strided = reduction and i < 2
            out += _op_configs(op, c, r if strided or not reduction else ro, 2 if strided else 1)
        if o1 != "none" and o2 != "none":
            out.append(OpConfig(OpType.ADD, c, h=ro, w=ro))
    if len(blocks) >= 2:
        out.append(OpConfig(OpType.CONCAT, c, h=ro, w=ro, n_inputs=len(blocks)))
    return out
