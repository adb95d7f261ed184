"""An ONNX graph as a torch module, for the torch runtime's whole-model measurements.

The torch runtime times a model as PyTorch runs it: every ONNX node becomes the matching
``torch.nn.functional`` call on the graph's own weights. Only the operators CNN latency models use
are known (``SUPPORTED``); a model with others is refused with their names, never run in part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hwnas.errors import RuntimeUnavailableError

__all__ = ["SUPPORTED", "onnx_to_torch", "unsupported_ops"]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict[str, Any], rank: int) -> tuple[int, ...] | str:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise RuntimeUnavailableError(f"auto_pad={a['auto_pad']!r} is not supported by hwnas's ONNX-to-torch runner")
    pads = list(a.get("pads", [0] * 2 * rank))
    begin, end = pads[:rank], pads[rank:]
    if begin != end:
        raise RuntimeUnavailableError(f"asymmetric pads {pads} are not supported by hwnas's ONNX-to-torch runner")
    return tuple(begin)


def _conv(F: Any, x: Any, w: Any, b: Any = None, **a: Any) -> Any:
    rank = w.dim() - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    return conv(x, w, b, stride=tuple(a.get("strides", [1] * rank)), padding=_pads(a, rank),
                dilation=tuple(a.get("dilations", [1] * rank)), groups=int(a.get("group", 1)))


def _pool(F: Any, kind: str, x: Any, **a: Any) -> Any:
    k = tuple(a["kernel_shape"])
    rank = len(k)
    stride = tuple(a.get("strides", [1] * rank))
    pad = _pads(a, rank)
    if kind == "max":
        return (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1](x, k, stride, pad, ceil_mode=bool(a.get("ceil_mode", 0)))
    return (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1](
        x, k, stride, pad, ceil_mode=bool(a.get("ceil_mode", 0)),
        count_include_pad=bool(a.get("count_include_pad", 0)))


def _gemm(torch: Any, x: Any, w: Any, b: Any = None, **a: Any) -> Any:
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = torch.matmul(x, w) * float(a.get("alpha", 1.0))
    return y if b is None else y + b * float(a.get("beta", 1.0))


def _flatten(x: Any, axis: int = 1) -> Any:
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return x.reshape(lead, -1)


def _clip(torch: Any, x: Any, lo: Any = None, hi: Any = None, **a: Any) -> Any:
    lo = float(np.asarray(lo).reshape(-1)[0]) if lo is not None else a.get("min")
    hi = float(np.asarray(hi).reshape(-1)[0]) if hi is not None else a.get("max")
    return torch.clamp(x, min=lo, max=hi)


def _ops(torch: Any) -> dict[str, Callable[..., Any]]:
    F = torch.nn.functional
    return {
        "Conv": lambda x, w, b=None, **a: _conv(F, x, w, b, **a),
        "BatchNormalization": lambda x, s, b, m, v, **a: F.batch_norm(x, m, v, s, b, False, 0.0, float(a.get("epsilon", 1e-5))),
        "Relu": lambda x: F.relu(x),
        "LeakyRelu": lambda x, alpha=0.01: F.leaky_relu(x, float(alpha)),
        "Sigmoid": lambda x: torch.sigmoid(x),
        "Tanh": lambda x: torch.tanh(x),
        "HardSigmoid": lambda x, alpha=0.2, beta=0.5: torch.clamp(x * float(alpha) + float(beta), 0, 1),
        "HardSwish": lambda x: F.hardswish(x),
        "Clip": lambda x, lo=None, hi=None, **a: _clip(torch, x, lo, hi, **a),
        "Add": lambda a, b: a + b,
        "Sub": lambda a, b: a - b,
        "Mul": lambda a, b: a * b,
        "Div": lambda a, b: a / b,
        "MatMul": lambda a, b: torch.matmul(a, b),
        "Gemm": lambda x, w, b=None, **a: _gemm(torch, x, w, b, **a),
        "Concat": lambda *xs, axis: torch.cat(xs, dim=int(axis)),
        "Flatten": lambda x, axis=1: _flatten(x, int(axis)),
        "Reshape": lambda x, shape, **a: x.reshape([int(s) if s != 0 else x.shape[i] for i, s in enumerate(shape.tolist())]),
        "Transpose": lambda x, perm=None: x.permute(*perm) if perm is not None else x.t(),
        "GlobalAveragePool": lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
        "GlobalMaxPool": lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
        "AveragePool": lambda x, **a: _pool(F, "avg", x, **a),
        "MaxPool": lambda x, **a: _pool(F, "max", x, **a),
        "Softmax": lambda x, axis=-1: torch.softmax(x, dim=int(axis)),
        "Identity": lambda x: x,
        "Dropout": lambda x, *rest, **a: x,
    }


#: the ONNX operators (default domain) the torch runtime runs
SUPPORTED = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "Div", "Dropout", "Flatten", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "MatMul",
    "MaxPool", "Mul", "Relu", "Reshape", "Sigmoid", "Softmax", "Sub", "Tanh", "Transpose",
})

#: inputs that are read as Python values, not tensors on the device
_HOST_INPUTS = {"Clip": (1, 2), "Reshape": (1,)}


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """The model's operator types the torch runtime cannot run (sorted; empty when none)."""
    return sorted({n.op_type for n in model.graph.node if n.op_type not in SUPPORTED and n.op_type != "Constant"})


class _Program:
    """The graph's nodes as (function, input names, host-input positions, attributes, output name)."""

    def __init__(self, model: onnx.ModelProto, ops: dict[str, Callable[..., Any]]) -> None:
        self.steps = []
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
                continue
            host = _HOST_INPUTS.get(node.op_type, ())
            self.steps.append((ops[node.op_type], list(node.input), host, _attrs(node), node.output[0]))


def onnx_to_torch(model: onnx.ModelProto) -> Any:
    """A ``torch.nn.Module`` that runs ``model``'s graph (inputs in graph order, first output
    returned). Raises :class:`RuntimeUnavailableError` naming the operators it cannot run."""
    import torch

    missing = unsupported_ops(model)
    if missing:
        raise RuntimeUnavailableError(
            f"the torch runtime cannot run operator(s) {', '.join(missing)} (it runs: "
            f"{', '.join(sorted(SUPPORTED))}); measure this model on an onnxruntime device")
    program = _Program(model, _ops(torch))
    names = [i.name for i in model.graph.input if i.name not in program.constants]
    return _OnnxModule(program, names, model.graph.output[0].name, torch)


def _module_base() -> type:
    import torch

    return torch.nn.Module


class _OnnxModule(_module_base()):  # type: ignore[misc]
    def __init__(self, program: _Program, inputs: list[str], output: str, torch: Any) -> None:
        super().__init__()
        self.program, self.input_names, self.output = program, inputs, output
        self._keys: dict[str, str] = {}
        for i, (name, array) in enumerate(program.constants.items()):
            key = f"c{i}"
            self._keys[name] = key
            self.register_buffer(key, torch.from_numpy(np.array(array)), persistent=False)

    def forward(self, *xs: Any) -> Any:
        env: dict[str, Any] = dict(zip(self.input_names, xs))
        consts = self.program.constants
        for fn, inputs, host, attrs, out in self.program.steps:
            args = []
            for pos, name in enumerate(inputs):
                if not name:
                    args.append(None)
                elif pos in host and name in consts:
                    args.append(consts[name])
                else:
                    args.append(env[name] if name in env else getattr(self, self._keys[name]))
            env[out] = fn(*args, **attrs)
        return env[self.output]
