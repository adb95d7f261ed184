"""hwnas: hardware-aware latency benchmarking and neural architecture search.

The main job from Python (names load on first use, so ``import hwnas`` stays light):

>>> import hwnas
>>> hwnas.get_device("cpu-ort").runtime
'onnxruntime'
>>> "cpu-ort" in hwnas.list_devices()
True
>>> sorted(set(hwnas.__all__) & {"create_search", "export", "quickstart", "train_predictor"})
['create_search', 'export', 'quickstart', 'train_predictor']

Subpackages: :mod:`hwnas.devices` (targets), :mod:`hwnas.profilers` (measurement and the profile
store), :mod:`hwnas.latency_models` (predictors), :mod:`hwnas.search` (spaces, strategies, the
:class:`~hwnas.search.Search`), :mod:`hwnas.deploy` (export), :mod:`hwnas.jobs` (the CLI's
commands as functions).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("hwnas")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

#: public name -> the module that defines it
_NAMES = {
    "get_device": "hwnas.jobs", "list_devices": "hwnas.jobs", "train_predictor": "hwnas.jobs",
    "load_predictor": "hwnas.jobs", "evaluate_predictor": "hwnas.jobs", "create_search": "hwnas.jobs",
    "export": "hwnas.jobs", "quickstart": "hwnas.jobs", "measure_front": "hwnas.jobs", "write_search": "hwnas.jobs",
    "profile_ops": "hwnas.jobs", "profile_model": "hwnas.jobs", "predictor_info": "hwnas.jobs",
    "adapt_predictor": "hwnas.jobs", "tuned_device": "hwnas.jobs", "check_device": "hwnas.jobs", "profile_devices": "hwnas.jobs", "write_report": "hwnas.report",
    "Search": "hwnas.search", "Trial": "hwnas.search", "SearchSpace": "hwnas.search", "Arch": "hwnas.search",
    "create_space": "hwnas.search", "list_spaces": "hwnas.search", "register_space": "hwnas.search",
    "create_strategy": "hwnas.search", "list_strategies": "hwnas.search", "register_strategy": "hwnas.search",
    "create_evaluator": "hwnas.search", "list_evaluators": "hwnas.search", "register_evaluator": "hwnas.search",
    "RunDir": "hwnas.search", "create_executor": "hwnas.search", "list_executors": "hwnas.search",
    "register_executor": "hwnas.search", "LatencyPredictor": "hwnas.latency_models", "AdaptedPredictor": "hwnas.latency_models",
    "Device": "hwnas.devices",
    "Profiler": "hwnas.profilers", "ProfileStore": "hwnas.profilers", "fingerprint": "hwnas.profilers",
    "ModelCard": "hwnas.deploy", "ArchSpec": "hwnas.deploy", "HwnasError": "hwnas.errors",
}

__all__ = ["__version__", *_NAMES]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
