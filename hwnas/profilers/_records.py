"""Typed measurement records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hwnas.profilers._backends import NodeTiming
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._timing import LatencyStats

__all__ = ["OpMeasurement", "ModelMeasurement"]

Status = Literal["ok", "unsupported"]


@dataclass(frozen=True)
class OpMeasurement:
    """Latency of one op configuration on one device (``stats`` is None when unsupported).

    ``stats`` times the op end to end, as a model of one op (session call, layout conversions an op
    alone needs, the kernels). ``kernel_ms`` is the runtime's own time of the op's kernels (its
    profiler's per-node times, median over runs, summed; layout conversions left out): what the op
    costs inside a whole model, where none of the rest is repeated per op. None where the runtime
    reports no per-node times (or the measurement predates them).
    """

    config: OpConfig
    device_name: str
    fingerprint_id: str
    status: Status
    stats: LatencyStats | None = None
    reason: str = ""
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    kernel_ms: float | None = None

    @property
    def latency_ms(self) -> float | None:
        return self.stats.latency_ms if self.stats else None


@dataclass(frozen=True)
class ModelMeasurement:
    """End-to-end latency of a whole model, with the runtime's per-kernel breakdown."""

    model_name: str
    model_sha256: str
    device_name: str
    fingerprint_id: str
    stats: LatencyStats
    breakdown: tuple[NodeTiming, ...] = ()
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    #: the model's structure hash (weights' values left out; see ``graph_sha256``)
    graph_sha256: str = ""

    @property
    def latency_ms(self) -> float:
        return self.stats.latency_ms
