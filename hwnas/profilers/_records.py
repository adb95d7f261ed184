"""Typed measurement records."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal

from hwnas.profilers._backends import NodeTiming
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._timing import LatencyStats

__all__ = ["OpMeasurement", "ModelMeasurement", "RepeatCheck", "MeasuredModel"]

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
    #: when the measurement began and ended (Unix time, s): measurements on one device never overlap
    started_unix_s: float | None = None
    finished_unix_s: float | None = None

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


@dataclass(frozen=True)
class RepeatCheck:
    """Stored op measurements taken again later on the same device (``Profiler.recheck``).

    How far a measurement on this device repeats bounds what any predictor trained on it can
    reach: on a contended shared machine an op's stored latency is partly the load of the moment it
    was measured (BENCHMARKS.md, "Measurement repeatability").
    """

    config_keys: tuple[str, ...]
    stored_ms: tuple[float, ...]
    again_ms: tuple[float, ...]
    #: ``ok`` is False below this share of ops repeating within +-10%
    MIN_WITHIN_10 = 0.8

    @property
    def n(self) -> int:
        return len(self.config_keys)

    def _rel(self) -> list[float]:
        return [abs(b / a - 1) for a, b in zip(self.stored_ms, self.again_ms)]

    @property
    def median_abs_diff_rel(self) -> float:
        return float(median(self._rel())) if self.n else 0.0

    @property
    def within_5(self) -> float:
        return sum(r <= 0.05 for r in self._rel()) / self.n if self.n else 1.0

    @property
    def within_10(self) -> float:
        return sum(r <= 0.10 for r in self._rel()) / self.n if self.n else 1.0

    @property
    def ok(self) -> bool:
        return self.within_10 >= self.MIN_WITHIN_10

    def summary(self) -> str:
        return (f"{round(self.within_10 * self.n)} of {self.n} stored ops measured again within +-10% "
                f"(median difference {100 * self.median_abs_diff_rel:.1f}%)")

    def warning(self) -> str | None:
        """A warning when the measurements do not repeat (None when they do)."""
        if self.ok:
            return None
        return (f"measurements on this device do not repeat: {self.summary()}. Its speed varies while "
                "profiling (a shared or busy machine, thermal throttling); a predictor trained on these "
                "measurements cannot be more accurate than they repeat. Profile when the machine is quiet "
                "(or on a dedicated one) and re-measure with `hwnas profile --force`.")

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "within_5": self.within_5, "within_10": self.within_10,
                "median_abs_diff_rel": self.median_abs_diff_rel, "ok": self.ok,
                "ops": [{"config": k, "stored_ms": a, "again_ms": b}
                        for k, a, b in zip(self.config_keys, self.stored_ms, self.again_ms)]}


@dataclass(frozen=True)
class MeasuredModel:
    """A whole model and its measured end-to-end latency (the fastest of its passes)."""

    name: str
    onnx: Any  # onnx.ModelProto
    latency_ms: float
