"""Decompose an ONNX graph into the kernels a runtime executes.

Fusion rules (checked against ONNX Runtime's optimised graph, see tests): a Conv absorbs a following
BatchNormalization and activation (Relu, Clip -> relu6, HardSwish, Sigmoid, x*Sigmoid(x) -> silu,
x*HardSigmoid(x) -> hardswish) when it is their only producer-consumer chain; a Conv without an
activation whose only consumer is an Add of two same-shaped tensors absorbs that Add (a residual
connection) and a Relu/Clip after it, as ONNX Runtime's "Conv + Sum" fusion does; Gemm/MatMul(+Add) is
one linear kernel; GlobalAveragePool -> 1x1 Conv -> act -> 1x1 Conv -> Sigmoid -> Mul is one
squeeze-excite kernel; Flatten/Reshape/Squeeze/Unsqueeze/Identity/Dropout are views with no compute.
Anything else becomes an ``unknown`` kernel, predicted by an explicit, reported fallback.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from hwnas.errors import InvalidModelError
from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["Kernel", "decompose_onnx", "VIEW_OPS", "expand_kernels", "se_ratio"]

VIEW_OPS = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
_ACT_OPS = {"Relu": Act.RELU, "HardSwish": Act.HARDSWISH, "Sigmoid": Act.SIGMOID}


@dataclass(frozen=True)
class Kernel:
    """One executed kernel: the ONNX nodes it covers and its op configuration.

    ``kind`` is ``"op"`` (predicted from ``config``), ``"view"`` (no compute, 0 ms by rule) or
    ``"unknown"`` (no op type fits: predicted by fallback from ``elements``).
    """

    nodes: tuple[str, ...]
    onnx_ops: tuple[str, ...]
    kind: str
    config: OpConfig | None = None
    elements: int = 0
    note: str = ""

    @property
    def label(self) -> str:
        return str(self.config) if self.config is not None else "+".join(self.onnx_ops)


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = shape_inference.infer_shapes(model)
        except Exception as exc:  # noqa: BLE001 - onnx raises several types
            raise InvalidModelError(f"ONNX shape inference failed: {exc}") from None
        g = model.graph
        self.nodes = list(g.node)
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
        for name, arr in self.inits.items():
            self.shapes[name] = arr.shape
        for n in self.nodes:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.inits[n.output[0]] = numpy_helper.to_array(a.t)
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
        self.outputs = {o.name for o in g.output}

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        c = self.consumers.get(tensor, [])
        return c[0] if len(c) == 1 and tensor not in self.outputs else None

    def attr(self, node: onnx.NodeProto, name: str, default: object = None) -> object:
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default


def _act_after(g: _Graph, tensor: str) -> tuple[Act, list[onnx.NodeProto], str]:
    """The activation applied to ``tensor`` (fusable into its producer), its nodes, its output."""
    nxt = g.only_consumer(tensor)
    if nxt is None:
        cons = g.consumers.get(tensor, [])
        # x * sigmoid(x): tensor feeds a Sigmoid and a Mul, the Mul also takes the Sigmoid's output
        if len(cons) == 2 and tensor not in g.outputs:
            sig = next((c for c in cons if c.op_type in ("Sigmoid", "HardSigmoid")), None)
            mul = next((c for c in cons if c.op_type == "Mul"), None)
            if sig is not None and mul is not None and sig.output[0] in mul.input and g.only_consumer(sig.output[0]) is mul:
                act = Act.SILU if sig.op_type == "Sigmoid" else Act.HARDSWISH
                return act, [sig, mul], mul.output[0]
        return Act.NONE, [], tensor
    if nxt.op_type in _ACT_OPS:
        return _ACT_OPS[nxt.op_type], [nxt], nxt.output[0]
    if nxt.op_type == "Clip":
        lo = g.inits.get(nxt.input[1]) if len(nxt.input) > 1 and nxt.input[1] else g.attr(nxt, "min", None)
        hi = g.inits.get(nxt.input[2]) if len(nxt.input) > 2 and nxt.input[2] else g.attr(nxt, "max", None)
        lo_a, hi_a = np.asarray(lo, dtype=float).reshape(-1), np.asarray(hi, dtype=float).reshape(-1)
        if lo_a.size == 1 and hi_a.size == 1 and lo_a[0] == 0.0 and hi_a[0] == 6.0:
            return Act.RELU6, [nxt], nxt.output[0]
    return Act.NONE, [], tensor


def _conv_kernel(g: _Graph, n: onnx.NodeProto) -> tuple[OpConfig, list[onnx.NodeProto]]:
    w = g.shapes.get(n.input[1])
    x = g.shapes.get(n.input[0])
    if w is None or x is None or len(x) != 4 or len(w) != 4:
        raise ValueError("Conv without static 2-D shapes")
    groups = int(g.attr(n, "group", 1))
    strides = g.attr(n, "strides", [1, 1]) or [1, 1]
    cout, k = int(w[0]), int(w[2])
    batch, cin, h, wd = (int(v) for v in x)
    covered = [n]
    out = n.output[0]
    bn = g.only_consumer(out)
    if bn is not None and bn.op_type == "BatchNormalization":
        covered.append(bn)
        out = bn.output[0]
    act, act_nodes, out = _act_after(g, out)
    covered += act_nodes
    if act is Act.NONE:
        add = g.only_consumer(out)
        if (add is not None and add.op_type == "Add" and len(add.input) == 2
                and g.shapes.get(add.input[0]) == g.shapes.get(add.input[1])):
            covered.append(add)
            act, act_nodes, out = _act_after(g, add.output[0])
            if act not in (Act.NONE, Act.RELU, Act.RELU6):  # ORT fuses only these after a Sum
                act, act_nodes = Act.NONE, []
            covered += act_nodes
    s = int(strides[0])
    if groups == cin == cout and k > 1:
        cfg = OpConfig(OpType.DWCONV, cin, h=h, w=wd, kernel=k, stride=s, act=act, batch=batch)
    elif k == 1 and s == 1 and groups == 1:
        cfg = OpConfig(OpType.PWCONV, cin, cout, h, wd, act=act, batch=batch)
    else:
        cfg = OpConfig(OpType.CONV, cin, cout, h, wd, kernel=k, stride=s, groups=groups, act=act, batch=batch)
    return cfg, covered


def se_ratio(channels: int, reduced: int) -> float:
    """The ``se`` field of a squeeze-excite kernel on ``channels`` reducing to ``reduced``."""
    return min(1.0, float(f"{(reduced + 0.5) / channels:.6g}"))  # int(channels * se) == reduced


def expand_kernels(configs: list[OpConfig] | tuple[OpConfig, ...]) -> list[OpConfig]:
    """The kernels that blocks run as, the same ones :func:`decompose_onnx` finds in their graphs:
    an MBConv becomes expand 1x1 (if any), depthwise, squeeze-excite (if any) and project 1x1 (which
    absorbs the residual Add); other op configurations are kernels already."""
    out: list[OpConfig] = []
    for c in configs:
        if c.op is not OpType.MBCONV:
            out.append(c)
            continue
        mid = c.mid_channels
        if mid != c.cin:
            out.append(OpConfig(OpType.PWCONV, c.cin, mid, c.h, c.w, act=c.act, batch=c.batch))
        dw = OpConfig(OpType.DWCONV, mid, h=c.h, w=c.w, kernel=c.kernel, stride=c.stride, act=c.act, batch=c.batch)
        out.append(dw)
        ho, wo = dw.out_hw
        if c.se:
            out.append(OpConfig(OpType.SE, mid, h=ho, w=wo, se=se_ratio(mid, c.se_channels), batch=c.batch))
        out.append(OpConfig(OpType.PWCONV, mid, c.cout, ho, wo, batch=c.batch))
    return out


def _se_kernel(g: _Graph, gap: onnx.NodeProto) -> tuple[OpConfig, list[onnx.NodeProto]] | None:
    x = gap.input[0]
    c1 = g.only_consumer(gap.output[0])
    if c1 is None or c1.op_type != "Conv":
        return None
    a1, a1_nodes, t = _act_after(g, c1.output[0])
    c2 = g.only_consumer(t)
    if c2 is None or c2.op_type != "Conv":
        return None
    gate = g.only_consumer(c2.output[0])
    if gate is None or gate.op_type not in ("Sigmoid", "HardSigmoid"):
        return None
    mul = g.only_consumer(gate.output[0])
    if mul is None or mul.op_type != "Mul" or x not in mul.input:
        return None
    b, c, h, w = (int(v) for v in g.shapes[x])
    reduced = int(g.shapes[c1.input[1]][0])
    return OpConfig(OpType.SE, c, h=h, w=w, se=se_ratio(c, reduced), batch=b), [gap, c1, *a1_nodes, c2, gate, mul]


def _elems(shape: tuple[int, ...] | None) -> int:
    return int(np.prod(shape)) if shape else 0


def _as_nchw(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) == 4:
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    if len(shape) == 2:
        return int(shape[0]), int(shape[1]), 1, 1
    n = _elems(shape)
    return 1, max(1, n), 1, 1


def decompose_onnx(model: onnx.ModelProto) -> list[Kernel]:
    """The kernels of ``model`` in execution order."""
    g = _Graph(model)
    done: set[int] = set()
    kernels: list[Kernel] = []

    def add(covered: list[onnx.NodeProto], kind: str, cfg: OpConfig | None = None, elements: int = 0, note: str = "") -> None:
        for c in covered:
            done.add(id(c))
        kernels.append(Kernel(tuple(c.name or c.output[0] for c in covered), tuple(c.op_type for c in covered),
                              kind, cfg, elements, note))

    for n in g.nodes:
        if id(n) in done:
            continue
        op = n.op_type
        out_shape = g.shapes.get(n.output[0]) if n.output else None
        try:
            if op == "Constant":
                done.add(id(n))
                continue
            if op in VIEW_OPS:
                add([n], "view", note="view op: no compute (0 ms by rule)")
            elif op == "Conv":
                cfg, covered = _conv_kernel(g, n)
                add(covered, "op", cfg)
            elif op == "GlobalAveragePool" or (op == "ReduceMean" and len(g.shapes.get(n.input[0], ())) == 4):
                se = _se_kernel(g, n) if op == "GlobalAveragePool" else None
                if se is not None:
                    add(se[1], "op", se[0])
                else:
                    b, c, h, w = _as_nchw(g.shapes[n.input[0]])
                    add([n], "op", OpConfig(OpType.GAP, c, h=h, w=w, batch=b))
            elif op in ("MaxPool", "AveragePool"):
                b, c, h, w = _as_nchw(g.shapes[n.input[0]])
                k = int((g.attr(n, "kernel_shape") or [2])[0])
                s = int((g.attr(n, "strides") or [1])[0])
                kind = OpType.MAXPOOL if op == "MaxPool" else OpType.AVGPOOL
                add([n], "op", OpConfig(kind, c, h=h, w=w, kernel=k, stride=s, batch=b))
            elif op in ("Gemm", "MatMul"):
                x, w_ = g.shapes[n.input[0]], g.shapes[n.input[1]]
                trans_b = op == "Gemm" and int(g.attr(n, "transB", 0)) == 1
                cin = int(x[-1])
                cout = int(w_[0] if trans_b else w_[-1])
                covered = [n]
                nxt = g.only_consumer(n.output[0])
                if op == "MatMul" and nxt is not None and nxt.op_type == "Add":
                    covered.append(nxt)
                batch = int(np.prod(x[:-1])) if len(x) > 1 else 1
                add(covered, "op", OpConfig(OpType.LINEAR, cin, cout, batch=max(1, batch)))
            elif op in ("Add", "Sum") and len(n.input) >= 2 and all(
                g.shapes.get(i) == out_shape for i in n.input) and out_shape and len(out_shape) == 4:
                b, c, h, w = _as_nchw(out_shape)
                add([n], "op", OpConfig(OpType.ADD, c, h=h, w=w, n_inputs=len(n.input), batch=b))
            elif op == "Concat" and out_shape and len(out_shape) == 4 and int(g.attr(n, "axis", 1)) in (1, -3):
                b, c, h, w = _as_nchw(out_shape)
                k = len(n.input)
                note = "" if c % k == 0 else "inputs of unequal channels: modelled as equal ones"
                add([n], "op", OpConfig(OpType.CONCAT, max(1, c // k), h=h, w=w, n_inputs=k, batch=b), note=note)
            elif op in _ACT_OPS or op == "Clip" or (op in ("Sigmoid", "HardSigmoid")):
                act, covered, _ = _act_after(g, n.input[0])
                if act is Act.NONE or n not in covered:
                    act, covered = _ACT_OPS.get(op, Act.RELU6), [n]
                b, c, h, w = _as_nchw(g.shapes[n.input[0]])
                add(covered, "op", OpConfig(OpType.ACT, c, h=h, w=w, act=act, batch=b))
            else:
                raise ValueError(f"no hwnas op type for ONNX {op}")
        except (ValueError, KeyError) as exc:
            if id(n) not in done:
                add([n], "unknown", elements=_elems(out_shape), note=str(exc))
    return kernels
