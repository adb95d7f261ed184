"""hwnas: hardware-aware latency benchmarking and neural architecture search.

Subpackages: :mod:`hwnas.devices` (targets), :mod:`hwnas.profilers` (measurement and the profile
store), :mod:`hwnas.latency_models` (predictors), :mod:`hwnas.search` (constrained search).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwnas")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
