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
    """Latency of one op configuration on one device (``stats`` is None when unsupported)."""

    config: OpConfig
    device_name: str
    fingerprint_id: str
    status: Status
    stats: LatencyStats | None = None
    reason: str = ""
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

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
