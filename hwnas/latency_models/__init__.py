"""Latency predictors trained from device profiles.

Op-level models (estimator API: ``fit`` / ``predict`` / ``get_params``), registered by name:
``lightgbm`` (:class:`LightGBMLatencyModel`, one booster per op type), ``lut``
(:class:`LookupTableModel`) and ``flops`` (:class:`FlopsLinearModel`). A :class:`LatencyPredictor`
adds the calibration that turns op sums into whole-model latency, decomposes ONNX graphs into the
kernels a runtime executes, and predicts many architectures at once.

>>> from hwnas.latency_models import latency_model_names
>>> latency_model_names()
['flops', 'lightgbm', 'lut']
"""

from hwnas.latency_models._decompose import Kernel, decompose_onnx, expand_kernels
from hwnas.latency_models._features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, feature_matrix, op_features
from hwnas.latency_models._metrics import latency_metrics
from hwnas.latency_models._models import (
    FlopsLinearModel,
    LatencyModel,
    LightGBMLatencyModel,
    LookupTableModel,
    OpPrediction,
    create_latency_model,
    latency_model_names,
    list_latency_models,
    load_latency_model,
    register_latency_model,
)
from hwnas.latency_models._predictor import (
    Calibration,
    FallbackWarning,
    KernelPrediction,
    LatencyPredictor,
    LayerTable,
    ModelPrediction,
)
from hwnas.latency_models._sampling import perturb, sample_configs
from hwnas.latency_models._training import (
    HELDOUT_SETS,
    OP_TIME_CHOICES,
    OP_TIMES,
    OpTimeChoice,
    adaptive_configs,
    calibrate_on,
    calibration_models,
    default_op_time,
    evaluate,
    evaluation_models,
    fit_model,
    kernel_units,
    op_time_candidates,
    out_of_fold,
    adaptive_round,
    select_op_time,
    training_data,
)
from hwnas.latency_models._transfer import TransferLatencyModel, encode_nb201
from hwnas.latency_models._adapt import AdaptedPredictor, load_any_predictor, network_features, transfer_inputs

__all__ = [
    "Kernel", "decompose_onnx", "expand_kernels", "FEATURE_NAMES", "FEATURE_SCHEMA_VERSION", "feature_matrix", "op_features",
    "latency_metrics", "LatencyModel", "LightGBMLatencyModel", "LookupTableModel", "FlopsLinearModel",
    "OpPrediction", "create_latency_model", "latency_model_names", "load_latency_model",
    "Calibration", "FallbackWarning", "KernelPrediction", "LatencyPredictor", "LayerTable", "ModelPrediction",
    "perturb", "sample_configs", "TransferLatencyModel", "encode_nb201", "AdaptedPredictor", "load_any_predictor", "network_features",
    "transfer_inputs", "register_latency_model",
    "list_latency_models", "HELDOUT_SETS", "OP_TIME_CHOICES", "OP_TIMES", "OpTimeChoice", "adaptive_configs",
    "calibrate_on", "calibration_models", "default_op_time", "evaluate", "evaluation_models", "fit_model",
    "kernel_units", "op_time_candidates", "out_of_fold", "adaptive_round", "select_op_time", "training_data",
]
