"""Torch modules for every op type. Each can emit the same computation, with the same weights,
as ONNX nodes (``emit_onnx``), so the torch and ONNX versions of an op agree numerically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from torch import nn

from hwnas.profilers._onnx import GraphBuilder
from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["build_module", "build_onnx", "build_sequence_onnx", "OpModule", "OpBlock", "ChainModel", "chain_of_ops"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


class ActModule(nn.Module):
    def __init__(self, act: Act) -> None:
        super().__init__()
        self.act = Act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act
        if a is Act.NONE:
            return x
        if a is Act.RELU:
            return torch.relu(x)
        if a is Act.RELU6:
            return torch.clamp(x, 0.0, 6.0)
        if a is Act.HARDSWISH:
            return nn.functional.hardswish(x)
        if a is Act.SIGMOID:
            return torch.sigmoid(x)
        return x * torch.sigmoid(x)  # silu

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        a = self.act
        if a is Act.NONE:
            return x
        if a is Act.RELU:
            return g.node("Relu", [x])
        if a is Act.RELU6:
            lo = g.const(np.array(0.0, dtype=np.float32), "clip_min")
            hi = g.const(np.array(6.0, dtype=np.float32), "clip_max")
            return g.node("Clip", [x, lo, hi])
        if a is Act.HARDSWISH:
            return g.node("HardSwish", [x])
        if a is Act.SIGMOID:
            return g.node("Sigmoid", [x])
        return g.node("Mul", [x, g.node("Sigmoid", [x])])


class ConvAct(nn.Module):
    """Conv, batch norm, activation. The ONNX graph folds the batch norm (its running statistics)
    into the conv's weight and bias, as deployed models and runtimes do."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: Act = Act.NONE) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        self.act = ActModule(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight and bias of the conv with the batch norm (eval mode) folded in."""
        bn, c = self.bn, self.conv
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        w = c.weight.detach() * scale[:, None, None, None]
        b = (c.bias.detach() - bn.running_mean) * scale + bn.bias.detach()
        return _np(w), _np(b)

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        c = self.conv
        k, p = c.kernel_size[0], c.padding[0]
        w, b = self.folded()
        y = g.node(
            "Conv",
            [x, g.const(w), g.const(b, "b")],
            kernel_shape=[k, k],
            strides=list(c.stride),
            pads=[p, p, p, p],
            group=c.groups,
        )
        return self.act.emit_onnx(g, y)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        return x * s

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        s = g.node("GlobalAveragePool", [x])
        for conv, act in ((self.reduce, "Relu"), (self.expand, "Sigmoid")):
            s = g.node("Conv", [s, g.const(_np(conv.weight)), g.const(_np(conv.bias), "b")], kernel_shape=[1, 1])
            s = g.node(act, [s])
        return g.node("Mul", [x, s])


class MBConv(nn.Module):
    def __init__(self, cfg: OpConfig) -> None:
        super().__init__()
        mid = cfg.mid_channels
        self.expand = ConvAct(cfg.cin, mid, 1, 1, 1, cfg.act) if mid != cfg.cin else None
        self.dw = ConvAct(mid, mid, cfg.kernel, cfg.stride, mid, cfg.act)
        self.se = SqueezeExcite(mid, cfg.se_channels) if cfg.se else None
        self.project = ConvAct(mid, cfg.cout, 1, 1, 1, Act.NONE)
        self.residual = cfg.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        y = self.expand.emit_onnx(g, x) if self.expand is not None else x
        y = self.dw.emit_onnx(g, y)
        if self.se is not None:
            y = self.se.emit_onnx(g, y)
        y = self.project.emit_onnx(g, y)
        return g.node("Add", [x, y]) if self.residual else y


class Pool(nn.Module):
    def __init__(self, kind: OpType, k: int, s: int) -> None:
        super().__init__()
        self.kind, self.k, self.s = kind, k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind is OpType.GAP:
            return x.mean((2, 3), keepdim=True)
        fn = nn.functional.max_pool2d if self.kind is OpType.MAXPOOL else nn.functional.avg_pool2d
        kw = {} if self.kind is OpType.MAXPOOL else {"count_include_pad": False}
        return fn(x, self.k, self.s, self.k // 2, **kw)

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        if self.kind is OpType.GAP:
            return g.node("GlobalAveragePool", [x])
        p = self.k // 2
        op = "MaxPool" if self.kind is OpType.MAXPOOL else "AveragePool"
        return g.node(op, [x], kernel_shape=[self.k, self.k], strides=[self.s, self.s], pads=[p, p, p, p])


class Linear(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        x = g.node("Flatten", [x], axis=1)
        return g.node("Gemm", [x, g.const(_np(self.fc.weight)), g.const(_np(self.fc.bias), "b")], transB=1)


class MultiInput(nn.Module):
    def __init__(self, kind: OpType) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.kind is OpType.ADD:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        return torch.cat(xs, dim=1)

    def emit_onnx_multi(self, g: GraphBuilder, xs: Sequence[str]) -> str:
        if self.kind is OpType.CONCAT:
            return g.node("Concat", list(xs), axis=1)
        out = xs[0]
        for x in xs[1:]:
            out = g.node("Add", [out, x])
        return out


class OpModule(nn.Module):
    """The torch module of one :class:`OpConfig`."""

    def __init__(self, cfg: OpConfig) -> None:
        super().__init__()
        self.cfg = cfg
        op = cfg.op
        if op in (OpType.CONV, OpType.DWCONV, OpType.PWCONV):
            self.body: nn.Module = ConvAct(cfg.cin, cfg.cout, cfg.kernel, cfg.stride, cfg.groups, cfg.act)
        elif op is OpType.MBCONV:
            self.body = MBConv(cfg)
        elif op is OpType.SE:
            self.body = SqueezeExcite(cfg.cin, cfg.se_channels)
        elif op in (OpType.MAXPOOL, OpType.AVGPOOL, OpType.GAP):
            self.body = Pool(op, cfg.kernel, cfg.stride)
        elif op is OpType.LINEAR:
            self.body = Linear(cfg.cin, cfg.cout)
        elif op in (OpType.ADD, OpType.CONCAT):
            self.body = MultiInput(op)
        elif op is OpType.ACT:
            self.body = ActModule(cfg.act)
        else:  # pragma: no cover - every OpType is handled above
            raise AssertionError(op)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.body(*xs)

    def emit_onnx(self, g: GraphBuilder, xs: Sequence[str]) -> str:
        if isinstance(self.body, MultiInput):
            return self.body.emit_onnx_multi(g, xs)
        return self.body.emit_onnx(g, xs[0])  # type: ignore[operator]


class OpBlock(nn.Module):
    """One op configuration as a single-input block of a :class:`ChainModel`."""

    def __init__(self, cfg: OpConfig) -> None:
        super().__init__()
        self.m = OpModule(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        return self.m.emit_onnx(g, [x])


class ChainModel(nn.Module):
    """Blocks (each with ``emit_onnx``) run one after the other: a whole model, or a block of one."""

    def __init__(self, blocks: Sequence[nn.Module], input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x

    def emit_onnx(self, g: GraphBuilder, x: str) -> str:
        for b in self.blocks:
            x = b.emit_onnx(g, x)
        return x

    def to_onnx(self, name: str = "model", dynamic_batch: bool = False) -> onnx.ModelProto:
        g = GraphBuilder()
        out = self.emit_onnx(g, "input")
        return g.model([("input", self.input_shape)], out, self.output_shape, name=name, dynamic_batch=dynamic_batch)


def chain_of_ops(configs: Sequence[OpConfig]) -> ChainModel:
    """A chain of single-input ops, each feeding the next (shapes checked)."""
    for a, b in zip(configs, configs[1:]):
        if a.output_shape() != b.input_shapes()[0] and not (
            b.op is OpType.LINEAR and a.output_shape()[:2] == (b.batch, b.cin) and a.out_hw == (1, 1)
        ):
            raise ValueError(f"{a} outputs {a.output_shape()} but {b} expects {b.input_shapes()[0]}")
        if b.op in (OpType.ADD, OpType.CONCAT):
            raise ValueError(f"{b.op.value} needs several inputs; it cannot be chained")
    return ChainModel([OpBlock(c) for c in configs], configs[0].input_shapes()[0], configs[-1].output_shape())


def build_module(cfg: OpConfig, seed: int = 0) -> OpModule:
    """A torch module for ``cfg`` with weights drawn from ``seed`` (eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OpModule(cfg).eval()


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every conv's batch norm into the conv (eval statistics), in place, as the ONNX graphs
    and deployed models do: the torch runtime then times the kernels an exported model runs (with
    the batch norm left in, an op on cuda-torch paid one more kernel launch per conv than the same
    layer in a whole model)."""
    for m in module.modules():
        if isinstance(m, ConvAct) and isinstance(m.bn, nn.BatchNorm2d):
            w, b = m.folded()
            with torch.no_grad():
                m.conv.weight.copy_(torch.from_numpy(w))
                m.conv.bias.copy_(torch.from_numpy(b))
            m.bn = nn.Identity()
    return module


def build_onnx(cfg: OpConfig, seed: int = 0, module: OpModule | None = None) -> onnx.ModelProto:
    """The ONNX model (opset 17) of one op configuration, with the weights of ``build_module``."""
    module = module or build_module(cfg, seed)
    g = GraphBuilder()
    inputs = [(f"x{i}", s) for i, s in enumerate(cfg.input_shapes())]
    out = module.emit_onnx(g, [n for n, _ in inputs])
    return g.model(inputs, out, cfg.output_shape(), name=str(cfg))


def build_sequence_onnx(
    configs: Sequence[OpConfig], seed: int = 0, name: str = "model", dynamic_batch: bool = False
) -> tuple[ChainModel, onnx.ModelProto]:
    """A whole model from a chain of ops: the torch module and its ONNX graph."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = chain_of_ops(configs).eval()
    return module, module.to_onnx(name, dynamic_batch)
