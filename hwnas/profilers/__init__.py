"""Profilers: op configurations and whole ONNX models timed on real runtimes, into a store.

>>> from hwnas.profilers import OpConfig
>>> str(OpConfig.parse("dwconv_i32_r28_k3_s1_arelu6").output_shape())
'(1, 32, 28, 28)'
"""

from hwnas.profilers._backends import (Backend, NodeTiming, Prepared, backend_names, get_backend, list_backends,
                                      random_inputs, register_backend)
from hwnas.profilers._blocks import ChainModel, build_module, build_onnx, build_sequence_onnx, chain_of_ops
from hwnas.profilers._drift import DriftEvent, DriftGuard, DriftPolicy, SpeedDriftWarning, default_reference
from hwnas.profilers._onnx import OPSET, load_onnx, module_to_onnx
from hwnas.profilers._onnx_torch import onnx_to_torch
from hwnas.profilers._quantize import INT8_RECIPE, dataset_feeds, onnx_accuracy, quantize_int8, to_fp16
from hwnas.profilers._opsets import (list_op_sets, mobilenetv2_layers, op_set, op_set_doc, op_set_names, read_ops_file,
                                     register_op_set)
from hwnas.profilers._ops import Act, OpConfig, OpType
from hwnas.profilers._profiler import Profiler, ProfileRun
from hwnas.profilers._fingerprint import fingerprint
from hwnas.profilers._models import measure_models
from hwnas.profilers._records import MeasuredModel, ModelMeasurement, OpMeasurement, RepeatCheck
from hwnas.profilers._store import SCHEMA_VERSION, ProfileStore, default_db_path
from hwnas.profilers._system import cpu_governors, governor_warning
from hwnas.profilers._timing import LatencyStats, TimingPolicy, measure

__all__ = [
    "Act", "OpConfig", "OpType", "OPSET",
    "Backend", "Prepared", "NodeTiming", "get_backend", "backend_names", "list_backends", "register_backend",
    "random_inputs", "list_op_sets", "register_op_set", "op_set_doc",
    "build_module", "build_onnx", "build_sequence_onnx", "load_onnx", "module_to_onnx", "chain_of_ops", "ChainModel",
    "op_set", "op_set_names", "read_ops_file", "mobilenetv2_layers",
    "Profiler", "ProfileRun", "DriftPolicy", "DriftGuard", "DriftEvent", "SpeedDriftWarning", "default_reference", "OpMeasurement", "ModelMeasurement", "RepeatCheck",
    "MeasuredModel", "measure_models", "fingerprint", "onnx_to_torch",
    "INT8_RECIPE", "quantize_int8", "to_fp16", "dataset_feeds", "onnx_accuracy",
    "ProfileStore", "SCHEMA_VERSION", "default_db_path",
    "LatencyStats", "TimingPolicy", "measure", "cpu_governors", "governor_warning",
]
