"""Build ONNX graphs (opset 17) directly with onnx.helper, from the torch blocks' own weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwnas.errors import InvalidModelError

__all__ = ["OPSET", "GraphBuilder", "load_onnx", "module_to_onnx"]

OPSET = 17


class GraphBuilder:
    """Collects nodes and initialisers; each method returns the name of its output tensor."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}

    def _name(self, prefix: str) -> str:
        n = self._count.get(prefix, 0)
        self._count[prefix] = n + 1
        return f"{prefix}_{n}"

    def const(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        name = self._name(op_type.lower())
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def model(
        self,
        inputs: list[tuple[str, tuple[int, ...]]],
        output: str,
        output_shape: tuple[int, ...],
        name: str = "hwnas",
        dynamic_batch: bool = False,
    ) -> onnx.ModelProto:
        def vi(n: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
            dims: list[int | str] = list(shape)
            if dynamic_batch:
                dims[0] = "batch"
            return helper.make_tensor_value_info(n, TensorProto.FLOAT, dims)

        graph = helper.make_graph(
            self.nodes,
            name,
            [vi(n, s) for n, s in inputs],
            [vi(output, output_shape)],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hwnas"
        )
        model.ir_version = min(model.ir_version, 9)
        onnx.checker.check_model(model)
        return model


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; bad input raises :class:`InvalidModelError`."""
    path = Path(path)
    if not path.exists():
        raise InvalidModelError(f"model file not found: {path}")
    if path.is_dir():
        raise InvalidModelError(f"{path} is a directory, not an ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... on garbage
        raise InvalidModelError(f"{path} is not an ONNX model: {exc}") from None
    if not model.graph.node:
        raise InvalidModelError(f"{path} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidModelError(f"{path} is not a valid ONNX model: {first}") from None
    _check_runnable(model, path)
    return model


#: operator domains the runtimes hwnas drives implement
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def _check_runnable(model: onnx.ModelProto, path: Path) -> None:
    """Refuse what would give a wrong answer or a crash later: operators of a custom domain, and
    inputs whose sizes other than the batch are symbolic (latency depends on them)."""
    custom = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in KNOWN_DOMAINS})
    if custom:
        raise InvalidModelError(f"{path} uses operators of a custom domain ({', '.join(custom[:3])}); hwnas runs "
                                f"the standard ONNX domains only ({', '.join(d or 'ai.onnx' for d in KNOWN_DOMAINS[1:])})")
    init = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        loose = [i for i, d in enumerate(dims) if i > 0 and not (d.HasField("dim_value") and d.dim_value > 0)]
        if loose:
            shape = ["?" if not (d.HasField("dim_value") and d.dim_value > 0) else str(d.dim_value) for d in dims]
            raise InvalidModelError(f"{path}: input {inp.name!r} has symbolic size(s) ({'x'.join(shape)}); hwnas "
                                    "needs fixed sizes except the batch: export the model with a fixed input shape")


def graph_sha256(model: onnx.ModelProto) -> str:
    """SHA-256 of the model with its floating-point weights' values left out (names, shapes and
    types kept; integer tensors such as Reshape's shapes kept whole): two exports of the same
    network with other weights, which run the same kernels in the same time, hash alike."""
    import hashlib

    m = onnx.ModelProto()
    m.CopyFrom(model)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    for t in m.graph.initializer:
        if t.data_type in floats:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("double_data")
            t.ClearField("int32_data")  # float16 / bfloat16 values live here
    m.ClearField("producer_version")
    m.graph.name = ""
    return hashlib.sha256(m.SerializeToString()).hexdigest()


def module_to_onnx(module: Any, input_shape: tuple[int, ...], dynamic_batch: bool = False,
                   name: str = "hwnas_model") -> onnx.ModelProto:
    """A torch module as an ONNX graph (opset :data:`OPSET`): the module's own graph builder where
    it has one (``to_onnx``: batch norms folded), else ``torch.onnx.export`` (input ``input``,
    output ``output``; a dynamic batch axis with ``dynamic_batch``)."""
    import io
    import warnings

    import torch

    if hasattr(module, "to_onnx"):
        return module.to_onnx(name, dynamic_batch=dynamic_batch)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(*input_shape), buf, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None)
    return onnx.load_from_string(buf.getvalue())
