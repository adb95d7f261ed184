"""Speed-drift guard: a fixed reference op re-measured between chunks of measurements.

Shared machines, thermal throttling on phones and boards, and frequency scaling change a device's
speed while it is being profiled, and between the profile and a later measurement. A predictor
calibrated in a slow phase then misjudges a model measured in a fast one, and nothing in the
measurements themselves shows it. The guard times a fixed reference op before and after every
chunk of ``every`` measurements; the device's *speed factor* is its latency over the store's
baseline, the fastest reading ever stored for the fingerprint (contention and throttling only
slow a device down, so the fastest reading is the uncontended speed; a baseline taken in a slow
phase would flag every later fast phase). A chunk whose reading after it is slower than the
baseline by more than ``tolerance`` is measured again after a pause (``retries`` times;
an auto-pinned profiler first moves to the CPUs that are fastest at that moment);
if the device stays off, the chunk is kept, a :class:`SpeedDriftWarning` says so with the factor,
and the event is kept in :attr:`DriftGuard.events`. A device that stays off is not waited for
again chunk after chunk: after a kept chunk, later drifted chunks are kept at once (an event each,
no more warnings) until a reading is back within the tolerance, which re-arms the retries (on a
busy 16-vCPU VM whose reference stayed >10% over its fastest reading, every chunk paid the full
5 + 10 + 20 s of pauses before this). Every reading goes to the store's
``speed_checks`` table, so a later export can say how fast the device was compared with when it
was profiled.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hwnas.errors import HwnasError
from hwnas.profilers._ops import OpConfig

class Measurer(Protocol):
    """What the drift guard needs of a profiler: its device, fingerprint and store, and the
    timing of one op configuration (:class:`~hwnas.profilers.Profiler` is one)."""

    device: Any
    fingerprint: Any
    store: Any

    def profile_op(self, config: OpConfig) -> Any: ...

__all__ = ["DriftPolicy", "DriftGuard", "DriftEvent", "SpeedDriftWarning", "default_reference"]

#: ~0.05-0.2 ms on a CPU
CPU_REFERENCE = "conv_i32_o32_r16_k3_s1_g1_arelu"
#: ~30 GMACs: a GPU kernel of a tenth of a millisecond or more, far above the few microseconds of
#: jitter in launching or replaying it (the CPU's reference is a microsecond kernel on a GPU, whose
#: readings scatter by more than the tolerance: BENCHMARKS.md, "GPU paths")
GPU_REFERENCE = "conv_i512_o512_r112_k3_s1_g1_arelu"


def default_reference(device: Any) -> str:
    """The reference op for ``device`` when the policy names none: sized to the device kind."""
    return GPU_REFERENCE if device.options.device_type == "cuda" else CPU_REFERENCE

T = TypeVar("T")
R = TypeVar("R")


class SpeedDriftWarning(UserWarning):
    """The device's speed moved beyond the tolerance while measuring, and stayed there."""


@dataclass(frozen=True)
class DriftPolicy:
    every: int = 8  # op measurements between two reference readings
    every_model: int = 1  # whole-model measurements between two readings (each ~1 s: bracket each)
    tolerance: float = 0.10  # accepted relative change of the reference latency against the baseline
    retries: int = 3  # re-measurements of a drifted chunk
    wait_s: float = 5.0  # pause before the first re-measurement, doubled for each further one
    reference: str | None = None  # an op config; None: the device's (:func:`default_reference`)

    def __post_init__(self) -> None:
        if self.every < 1 or self.every_model < 1 or self.retries < 0 or not 0 < self.tolerance < 1 or self.wait_s < 0:
            raise HwnasError(f"invalid drift policy {self}: need every >= 1, retries >= 0, "
                             "0 < tolerance < 1, wait_s >= 0")
        if self.reference is not None:
            OpConfig.parse(self.reference)


@dataclass(frozen=True)
class DriftEvent:
    context: str
    items: int
    factor_before: float
    factor_after: float
    attempts: int
    kept: bool  # True: the device stayed off and the chunk was kept anyway


@dataclass
class DriftGuard:
    """Wraps measurements of one profiler in reference readings (see the module docstring)."""

    profiler: Measurer
    policy: DriftPolicy = field(default_factory=DriftPolicy)
    events: list[DriftEvent] = field(default_factory=list)
    readings_ms: list[float] = field(default_factory=list)
    _baseline: float | None = None
    _last: float | None = None
    #: True after a kept drifted chunk, until a reading is back within the tolerance
    _settled_off: bool = False

    @property
    def reference(self) -> str:
        """The reference op: the policy's, else the device's (:func:`default_reference`)."""
        return self.policy.reference or default_reference(self.profiler.device)

    def reading(self, context: str) -> float:
        """Time the reference op once (the profiler's timing policy) and store the reading."""
        m = self.profiler.profile_op(OpConfig.parse(self.reference))
        if m.status != "ok" or m.stats is None:
            raise HwnasError(f"the speed reference {self.reference} does not run on "
                             f"{self.profiler.device.name}: {m.reason}")
        ms = m.stats.latency_ms
        self.readings_ms.append(ms)
        store = self.profiler.store
        if store is not None:
            store.record_speed_check(self.profiler.fingerprint.id, self.reference, ms, context)
        self._last = ms
        if self._baseline is not None:
            self._baseline = min(self._baseline, ms)
        return ms

    @property
    def baseline_ms(self) -> float:
        if self._baseline is None:
            known: list[float] = list(self.readings_ms)
            store = self.profiler.store
            if store is not None:
                known += store.speed_readings(self.profiler.fingerprint.id, self.reference)
            self._baseline = min(known) if known else self.reading("baseline")
        return self._baseline

    def factor(self, ms: float | None = None) -> float:
        """Latency of the reference now (or of ``ms``) over the baseline: > 1 means slower."""
        return (self.reading("check") if ms is None else ms) / self.baseline_ms

    def _ok(self, f: float) -> bool:
        return f <= 1.0 + self.policy.tolerance

    def run(self, items: Sequence[T], measure: Callable[[T], R], context: str,
            on_chunk: Callable[[list[R]], None] | None = None, every: int | None = None) -> list[R]:
        """``measure`` every item, in chunks of ``every`` (default: the policy's) between reference
        readings; drifted chunks again."""
        out: list[R] = []
        pol = self.policy
        every = every or pol.every
        for start in range(0, len(items), every):
            chunk = items[start: start + every]
            for attempt in range(1, pol.retries + 2):
                before = self._last if self._last is not None else self.reading(context)
                fb = before / self.baseline_ms
                res = [measure(x) for x in chunk]
                fa = self.reading(context) / self.baseline_ms
                if self._ok(fb) and self._ok(fa):
                    self._settled_off = False
                    break
                last = attempt == pol.retries + 1 or self._settled_off
                self.events.append(DriftEvent(context, len(chunk), fb, fa, attempt, kept=last))
                if last:
                    if not self._settled_off:
                        off = fa if not self._ok(fa) else fb  # the reading that failed the check
                        warnings.warn(
                            f"{context}: the device's speed is {off:.2f}x its baseline (reference "
                            f"{self.reference}, tolerance {pol.tolerance:.0%}) after {attempt} attempts; "
                            f"kept {len(chunk)} measurement(s) taken at that speed; further drifted "
                            "chunks are kept without retries until the speed is back within the tolerance",
                            SpeedDriftWarning, stacklevel=2)
                    self._settled_off = not self._ok(fa)
                    break
                time.sleep(pol.wait_s * 2 ** (attempt - 1))
                repin = getattr(self.profiler, "repin", None)
                if repin is not None:  # an auto-pinned profiler moves to the CPUs that are fastest now
                    repin()
                self._last = None
            out.extend(res)
            if on_chunk:
                on_chunk(res)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "baseline_ms": self.baseline_ms if (self._baseline is not None or self.readings_ms) else None,
            "readings": len(self.readings_ms),
            "factor_min": min(self.readings_ms) / self.baseline_ms if self.readings_ms else None,
            "factor_max": max(self.readings_ms) / self.baseline_ms if self.readings_ms else None,
            "remeasured_chunks": sum(1 for e in self.events if not e.kept),
            "kept_drifted_chunks": sum(1 for e in self.events if e.kept),
        }
