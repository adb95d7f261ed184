"""Model families built from hwnas blocks: whole CNNs as torch modules and ONNX graphs.

Used to measure whole-model latency (predictor evaluation) and as reference architectures.

>>> from hwnas import zoo
>>> m = zoo.create("resnet", width=0.25, resolution=64)
>>> m.onnx.graph.input[0].name, m.family
('input', 'resnet')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas._registry import Registry
from hwnas.profilers._blocks import ChainModel, ConvAct, OpBlock, chain_of_ops
from hwnas.profilers._onnx import GraphBuilder
from hwnas.profilers._opsets import mobilenetv2_layers
from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["ZooModel", "create", "family_names", "list_families", "register_family", "random_model", "random_mixed_model", "ResBasic", "Fire", "ChainModel", "OpBlock"]


def _ch(c: float, width: float, divisor: int = 8) -> int:
    return max(divisor, int(c * width + divisor / 2) // divisor * divisor)


class ResBasic(nn.Module):
    """ResNet basic block: conv3x3-relu, conv3x3, (1x1 stride-s projection) + add, relu."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = ConvAct(cin, cout, 3, stride, 1, Act.RELU)
        self.c2 = ConvAct(cout, cout, 3, 1, 1, Act.NONE)
        self.proj = ConvAct(cin, cout, 1, stride, 1, Act.NONE) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.proj(x) if self.proj is not None else x
        return torch.relu(self.c2(self.c1(x)) + skip)

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        y = self.c2.emit_onnx(g, self.c1.emit_onnx(g, x))
        skip = self.proj.emit_onnx(g, x) if self.proj is not None else x
        return g.node("Relu", [g.node("Add", [y, skip])])


class Fire(nn.Module):
    """SqueezeNet fire module: squeeze 1x1, then expand 1x1 and 3x3 in parallel, concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.s = ConvAct(cin, squeeze, 1, 1, 1, Act.RELU)
        self.e1 = ConvAct(squeeze, expand, 1, 1, 1, Act.RELU)
        self.e3 = ConvAct(squeeze, expand, 3, 1, 1, Act.RELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.s(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        s = self.s.emit_onnx(g, x)
        return g.node("Concat", [self.e1.emit_onnx(g, s), self.e3.emit_onnx(g, s)], axis=1)


@dataclass(frozen=True)
class ZooModel:
    name: str
    family: str
    width: float
    resolution: int
    module: ChainModel
    onnx: onnx.ModelProto


def _head(layers: list[OpConfig], cin: int, r: int, last: int, classes: int, act: Act) -> list[OpConfig]:
    layers.append(OpConfig(OpType.PWCONV, cin, last, r, r, act=act))
    layers.append(OpConfig(OpType.GAP, last, h=r, w=r))
    layers.append(OpConfig(OpType.LINEAR, last, classes))
    return layers


def _mb_stack(table: list[tuple[int, int, int, int, int, float]], width: float, resolution: int, act: Act,
              stem: int, classes: int, last: int) -> list[OpConfig]:
    """Rows of (expand, kernel, channels, repeats, stride, se)."""
    r = resolution
    c0 = _ch(stem, width)
    layers = [OpConfig(OpType.CONV, 3, c0, r, r, kernel=3, stride=2, act=act)]
    r, cin = layers[-1].out_hw[0], c0
    for e, k, c, n, s, se in table:
        cout = _ch(c, width)
        for i in range(n):
            st = s if i == 0 else 1
            cfg = OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=k, stride=st, expand=e, se=se, act=act,
                           residual=st == 1 and cin == cout)
            layers.append(cfg)
            r, cin = cfg.out_hw[0], cout
    return _head(layers, cin, r, max(last, _ch(last, width)) if width > 1 else last, classes, act)


_FAMILIES: Registry[Callable[[float, int, int], ChainModel]] = Registry("model family")


@_FAMILIES.decorator("mobilenetv2")
def _mobilenetv2(width: float, resolution: int, classes: int) -> ChainModel:
    return chain_of_ops(mobilenetv2_layers(resolution, width, classes))


@_FAMILIES.decorator("mnasnet")
def _mnasnet(width: float, resolution: int, classes: int) -> ChainModel:
    # MnasNet-A1 (Tan et al. 2019): SepConv, then MBConv stages with k3/k5, e3/e6 and SE in some.
    table = [(1, 3, 16, 1, 1, 0.0), (6, 3, 24, 2, 2, 0.0), (3, 5, 40, 3, 2, 0.25), (6, 3, 80, 4, 2, 0.0),
             (6, 3, 112, 2, 1, 0.25), (6, 5, 160, 3, 2, 0.25), (6, 3, 320, 1, 1, 0.0)]
    return chain_of_ops(_mb_stack(table, width, resolution, Act.RELU, 32, classes, 1280))


@_FAMILIES.decorator("efficientnet")
def _efficientnet(width: float, resolution: int, classes: int) -> ChainModel:
    # EfficientNet-B0 (Tan & Le 2019): MBConv with SE 0.25 everywhere and SiLU.
    table = [(1, 3, 16, 1, 1, 0.25), (6, 3, 24, 2, 2, 0.25), (6, 5, 40, 2, 2, 0.25), (6, 3, 80, 3, 2, 0.25),
             (6, 5, 112, 3, 1, 0.25), (6, 5, 192, 4, 2, 0.25), (6, 3, 320, 1, 1, 0.25)]
    return chain_of_ops(_mb_stack(table, width, resolution, Act.SILU, 32, classes, 1280))


@_FAMILIES.decorator("resnet")
def _resnet(width: float, resolution: int, classes: int) -> ChainModel:
    # ResNet-18-like: 7x7/2 stem, 3x3/2 max pool, 4 stages of 2 basic blocks.
    r = resolution
    c0 = _ch(64, width)
    stem = OpConfig(OpType.CONV, 3, c0, r, r, kernel=7, stride=2, act=Act.RELU)
    pool = OpConfig(OpType.MAXPOOL, c0, h=stem.out_hw[0], w=stem.out_hw[1], kernel=3, stride=2)
    blocks: list[nn.Module] = [OpBlock(stem), OpBlock(pool)]
    r, cin = pool.out_hw[0], c0
    for i, c in enumerate((64, 128, 256, 512)):
        cout = _ch(c, width)
        for j in range(2):
            s = 2 if (i > 0 and j == 0) else 1
            blocks.append(ResBasic(cin, cout, s))
            r, cin = (r + 2 - 3) // s + 1, cout
    gap, fc = OpConfig(OpType.GAP, cin, h=r, w=r), OpConfig(OpType.LINEAR, cin, classes)
    blocks += [OpBlock(gap), OpBlock(fc)]
    return ChainModel(blocks, (1, 3, resolution, resolution), (1, classes))


@_FAMILIES.decorator("squeezenet")
def _squeezenet(width: float, resolution: int, classes: int) -> ChainModel:
    # SqueezeNet 1.1-like: conv 3x3/2, fire modules between 3x3/2 max pools, 1x1 conv classifier.
    r = resolution
    c0 = _ch(64, width)
    stem = OpConfig(OpType.CONV, 3, c0, r, r, kernel=3, stride=2, act=Act.RELU)
    blocks: list[nn.Module] = [OpBlock(stem)]
    r, cin = stem.out_hw[0], c0
    for stage in ((16, 64), (32, 128), (48, 192, 64, 256)):
        pool = OpConfig(OpType.MAXPOOL, cin, h=r, w=r, kernel=3, stride=2)
        blocks.append(OpBlock(pool))
        r = pool.out_hw[0]
        pairs = [(stage[0], stage[1])] * 2 if len(stage) == 2 else [(stage[0], stage[1]), (stage[0], stage[1]), (stage[2], stage[3]), (stage[2], stage[3])]
        for sq, ex in pairs:
            sq_c, ex_c = _ch(sq, width), _ch(ex, width)
            blocks.append(Fire(cin, sq_c, ex_c))
            cin = 2 * ex_c
    head = OpConfig(OpType.PWCONV, cin, classes, r, r, act=Act.RELU)
    gap = OpConfig(OpType.GAP, classes, h=r, w=r)
    blocks += [OpBlock(head), OpBlock(gap)]
    return ChainModel(blocks, (1, 3, resolution, resolution), (1, classes, 1, 1))


def register_family(name: str, build: Callable[[float, int, int], ChainModel], *,
                    replace: bool = False) -> Callable[[float, int, int], ChainModel]:
    """Register ``build(width, resolution, classes) -> ChainModel`` as the model family ``name``."""
    return _FAMILIES.register(name, build, replace=replace)


def list_families(pattern: str = "*") -> list[str]:
    return _FAMILIES.names(pattern)


family_names = list_families


def create(family: str, width: float = 1.0, resolution: int = 224, classes: int = 1000, seed: int = 0) -> ZooModel:
    """A model of a registered family at a width multiplier and input resolution."""
    builder = _FAMILIES.get(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = builder(width, resolution, classes).eval()
    name = f"{family}-w{width:g}-r{resolution}"
    return ZooModel(name, family, width, resolution, module, module.to_onnx(name))


def random_model(seed: int, resolution: int | None = None, classes: int = 1000) -> ZooModel:
    """A random MBConv/conv network (the kind a search samples): random depth, widths, kernels,
    expansions, SE, activations and strides."""
    rng = np.random.default_rng(seed)
    r = int(resolution or rng.choice([96, 128, 160, 192, 224]))
    act = Act(rng.choice(["relu", "relu6", "hardswish", "silu"]))
    c = int(rng.choice([16, 24, 32]))
    layers = [OpConfig(OpType.CONV, 3, c, r, r, kernel=3, stride=2, act=act)]
    r, cin = layers[-1].out_hw[0], c
    for stage in range(int(rng.integers(4, 7))):
        cout = _ch(cin * rng.uniform(1.2, 2.0), 1.0)
        stride = 2 if stage < 4 else 1
        for i in range(int(rng.integers(1, 4))):
            st = stride if i == 0 else 1
            kind = rng.choice(["mbconv", "mbconv", "mbconv", "conv"])
            if kind == "conv":
                cfg = OpConfig(OpType.CONV, cin, cout, r, r, kernel=3, stride=st, act=act)
            else:
                se = float(rng.choice([0.0, 0.25]))
                cfg = OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=int(rng.choice([3, 5, 7])), stride=st,
                               expand=float(rng.choice([1, 3, 4, 6])), se=se, act=act,
                               residual=st == 1 and cin == cout and bool(rng.random() < 0.8))
            layers.append(cfg)
            r, cin = cfg.out_hw[0], cout
    layers = _head(layers, cin, r, int(rng.choice([512, 1024, 1280])), classes, act)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = chain_of_ops(layers).eval()
    name = f"random-{seed}-r{layers[0].h}"
    return ZooModel(name, "random", 1.0, layers[0].h, module, module.to_onnx(name))


def _mixed_stage(kind: str, cin: int, cout: int, r: int, stride: int, repeats: int, act: Act,
                 rng: np.random.Generator) -> tuple[list[nn.Module], int, int]:
    """One stage of :func:`random_mixed_model`: its blocks, output channels and resolution."""
    blocks: list[nn.Module] = []
    for i in range(repeats):
        st = stride if i == 0 else 1
        if kind == "resnet":
            blocks.append(ResBasic(cin, cout, st))
            r, cin = (r + 2 - 3) // st + 1, cout
        elif kind == "fire":  # no stride of its own: the stage starts with a max pool
            ex = _ch(cout / 2, 1.0)
            blocks.append(Fire(cin, _ch(cout / 8, 1.0), ex))
            cin = 2 * ex
        else:
            if kind == "conv":
                cfg = OpConfig(OpType.CONV, cin, cout, r, r, kernel=int(rng.choice([1, 3, 5])), stride=st, act=act)
            else:
                cfg = OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=int(rng.choice([3, 5, 7])), stride=st,
                               expand=float(rng.choice([1, 3, 4, 6])), se=float(rng.choice([0.0, 0.25])), act=act,
                               residual=st == 1 and cin == cout)
            blocks.append(OpBlock(cfg))
            r, cin = cfg.out_hw[0], cout
    return blocks, cin, r


def random_mixed_model(seed: int, resolution: int | None = None, classes: int = 1000) -> ZooModel:
    """A random network whose stages draw from every kind of block in the zoo: MBConv (with or
    without squeeze-excite), plain convolutions, ResNet basic blocks (residual adds) and SqueezeNet
    fire modules (concatenations), each stage downsampling by a stride or a 3x3/2 max pool.
    Measurements that must cover the kinds of op a device runs, not one family's, draw from it
    (few-shot adaptation's candidates); :func:`random_model` stays the search-like MBConv network."""
    with torch.random.fork_rng(devices=[]):  # the weights from ``seed``, the global generator untouched
        torch.manual_seed(seed)
        module, res = _mixed_chain(np.random.default_rng(seed), resolution, classes)
    name = f"mixed-{seed}-r{res}"
    return ZooModel(name, "mixed", 1.0, res, module, module.to_onnx(name))


def _mixed_chain(rng: np.random.Generator, resolution: int | None, classes: int) -> tuple[ChainModel, int]:
    """:func:`random_mixed_model`'s network (eval mode) and its input resolution."""
    r = int(resolution or rng.choice([96, 128, 160, 192, 224]))
    act = Act(rng.choice(["relu", "relu6", "hardswish", "silu"]))
    stem = OpConfig(OpType.CONV, 3, int(rng.choice([16, 24, 32, 48, 64])), r, r, kernel=3, stride=2, act=Act.RELU)
    blocks: list[nn.Module] = [OpBlock(stem)]
    r, cin = stem.out_hw[0], stem.cout
    for stage in range(int(rng.integers(3, 6))):
        kind = str(rng.choice(["mbconv", "conv", "resnet", "fire"]))
        cout = _ch(cin * rng.uniform(1.2, 2.0), 1.0)
        stride = 2 if stage < 4 and r >= 8 else 1
        if stride == 2 and (kind == "fire" or rng.random() < 0.25):
            pool = OpConfig(OpType.MAXPOOL, cin, h=r, w=r, kernel=3, stride=2)
            blocks.append(OpBlock(pool))
            r, stride = pool.out_hw[0], 1
        more, cin, r = _mixed_stage(kind, cin, cout, r, stride, int(rng.integers(1, 4)), act, rng)
        blocks += more
    blocks += map(OpBlock, _head([], cin, r, int(rng.choice([512, 1024, 1280])), classes, act))
    return ChainModel(blocks, (1, 3, stem.h, stem.h), (1, classes)).eval(), stem.h
