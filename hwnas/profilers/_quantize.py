"""Reduced-precision ONNX models with ONNX Runtime's own tools: static int8 quantization
(``onnxruntime.quantization``) and fp16 conversion (``onnxruntime.transformers.float16``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from hwnas.errors import HwnasError

__all__ = ["INT8_RECIPE", "is_quantized", "quantize_int8", "to_fp16", "calibration_feeds", "dataset_feeds", "onnx_accuracy"]

#: how int8 models are made (part of an int8 device's fingerprint): static quantization in the QDQ
#: format, uint8 activations and int8 weights per output channel, min-max calibration, ORT's
#: pre-processing (shape inference, graph optimisation) first
INT8_RECIPE = "int8 static qdq u8s8 per-channel minmax"

_QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                        "MatMulInteger", "DynamicQuantizeLinear"})


def is_quantized(model: onnx.ModelProto) -> bool:
    """Whether the graph already holds quantized operators or Q/DQ pairs."""
    return any(n.op_type in _QUANT_OPS for n in model.graph.node)


def calibration_feeds(model: onnx.ModelProto, batches: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random standard-normal inputs for calibration where no data is given (an op's or a
    synthetic model's activations: their ranges, not their meaning, set the scales)."""
    from hwnas.profilers._runtime import random_inputs

    return [random_inputs(model, 1, seed=seed + i) for i in range(batches)]


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._it = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - called by some calibrators only
        pass


def quantize_int8(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]] | None = None) -> onnx.ModelProto:
    """``model`` quantized to int8 by :data:`INT8_RECIPE`, calibrated on ``feeds`` (random inputs
    when None). A model that is quantized already is returned as it is."""
    if is_quantized(model):
        return model
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = feeds if feeds is not None else calibration_feeds(model)
    if not feeds:
        raise HwnasError("int8 quantization needs calibration data; got none")
    with tempfile.TemporaryDirectory(prefix="hwnas-int8-") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))  # from a file: given a ModelProto, the pre-processing moves its weights out
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        q = onnx.load(str(out))
    q.graph.name = model.graph.name
    return q


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with fp16 weights and arithmetic, fp32 inputs and outputs kept (casts at the
    edges), as ONNX Runtime's converter makes it."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def dataset_feeds(model: onnx.ModelProto, x: np.ndarray, limit: int = 64) -> list[dict[str, np.ndarray]]:
    """Calibration feeds from data ``x`` (N, ...): up to ``limit`` samples, one per feed at the
    model's batch size of 1 (its single input)."""
    name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    x = np.asarray(x, dtype=np.float32)
    return [{name: x[i: i + 1]} for i in range(min(limit, len(x)))]


def onnx_accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a classifier ``model`` on ``x`` (N, ...) and labels ``y``, run one sample
    at a time by ONNX Runtime on the CPU (as a batch-1 deployment runs it)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.asarray(x, dtype=np.float32)
    hits = sum(int(np.argmax(sess.run(None, {name: x[i: i + 1]})[0]) == int(y[i])) for i in range(len(x)))
    return hits / max(1, len(x))
