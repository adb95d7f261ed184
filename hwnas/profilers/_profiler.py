"""Profiling orchestration: op configurations and whole models on a device, into the store."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from hwnas.devices._device import Device
from hwnas.devices._fingerprint import Fingerprint, fingerprint
from hwnas.profilers._backends import Backend, get_backend
from hwnas.profilers._drift import DriftGuard, DriftPolicy
from hwnas.profilers._onnx import load_onnx
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._records import ModelMeasurement, OpMeasurement
from hwnas.profilers._store import ProfileStore
from hwnas.profilers._system import cpu_affinity
from hwnas.profilers._timing import TimingPolicy, measure

__all__ = ["Profiler", "ProfileRun"]


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


@dataclass
class ProfileRun:
    """What one ``profile_ops`` call did."""

    measured: list[OpMeasurement] = field(default_factory=list)
    skipped: list[OpConfig] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def unsupported(self) -> list[OpMeasurement]:
        return [m for m in self.measured if m.status == "unsupported"]

    @property
    def ops_per_minute(self) -> float:
        return 60 * len(self.measured) / self.elapsed_s if self.elapsed_s else 0.0


class Profiler:
    """Measures op configurations and ONNX models on one device.

    >>> from hwnas.devices import default_registry
    >>> from hwnas.profilers import OpConfig, Profiler
    >>> p = Profiler(default_registry().get("cpu-ort"))
    >>> m = p.profile_op(OpConfig.parse("act_i8_r8_arelu"))
    >>> m.status, m.stats.latency_ms > 0
    ('ok', True)
    """

    def __init__(self, device: Device, policy: TimingPolicy | None = None, store: ProfileStore | None = None,
                 backend: Backend | None = None, drift: DriftPolicy | None = None) -> None:
        self.device = device
        self.policy = policy or TimingPolicy()
        self.store = store
        self.backend = backend or get_backend(device.runtime)
        self.backend.require(device)
        self.fingerprint: Fingerprint = fingerprint(device)
        if store is not None:
            store.add_fingerprint(self.fingerprint)
        #: with a drift policy, measurements run in chunks between readings of a reference op
        self.guard: DriftGuard | None = DriftGuard(self, drift) if drift is not None else None

    # ---- ops ------------------------------------------------------------------------------
    def _unsupported_reason(self, cfg: OpConfig) -> str | None:
        allowed = self.device.constraints.allowed_op_types
        if allowed is not None and cfg.op.value not in allowed:
            return f"op type {cfg.op.value!r} is not in device {self.device.name!r}'s allowed_op_types"
        return None

    def profile_op(self, cfg: OpConfig) -> OpMeasurement:
        """Measure one op. A runtime failure gives an ``unsupported`` record with the reason."""
        cfg = cfg.with_batch(self.device.options.batch_size)
        fp = self.fingerprint
        reason = self._unsupported_reason(cfg)
        if reason:
            return OpMeasurement(cfg, self.device.name, fp.id, "unsupported", reason=reason)
        prepared = None
        try:
            with cpu_affinity(self.device.options.cpu_affinity):
                prepared = self.backend.prepare_op(cfg, self.device)
                stats, samples = measure(prepared.sample, self.policy)
        except Exception as exc:  # the runtime could not build or run it: record and move on
            return OpMeasurement(cfg, self.device.name, fp.id, "unsupported", reason=_reason(exc))
        finally:
            if prepared is not None:
                prepared.close()
        return OpMeasurement(cfg, self.device.name, fp.id, "ok", stats, samples_ms=tuple(samples.tolist()))

    def profile_ops(
        self,
        configs: Iterable[OpConfig],
        force: bool = False,
        on_start: Callable[[int, int], None] | None = None,
        on_done: Callable[[OpMeasurement], None] | None = None,
    ) -> ProfileRun:
        """Measure many ops; with a store, skip those already stored and commit each one."""
        batch = self.device.options.batch_size
        cfgs = list(dict.fromkeys(c.with_batch(batch) for c in configs))
        run = ProfileRun()
        if self.store is not None and not force:
            done = self.store.done_keys(self.fingerprint.id)
            run.skipped = [c for c in cfgs if str(c) in done]
            cfgs = [c for c in cfgs if str(c) not in done]
        if on_start:
            on_start(len(cfgs), len(run.skipped))
        t0 = time.perf_counter()
        if self.guard is None:
            for cfg in cfgs:
                m = self.profile_op(cfg)
                if self.store is not None:
                    self.store.record_op(m, replace=force)
                run.measured.append(m)
                if on_done:
                    on_done(m)
        else:  # a drifted chunk is measured again: its records are replaced

            def one(cfg: OpConfig) -> OpMeasurement:
                m = self.profile_op(cfg)
                if self.store is not None:
                    self.store.record_op(m, replace=True)
                return m

            def chunk_done(ms: list[OpMeasurement]) -> None:
                run.measured.extend(ms)
                for m in ms:
                    if on_done:
                        on_done(m)

            self.guard.run(cfgs, one, "profile ops", chunk_done)
        run.elapsed_s = time.perf_counter() - t0
        return run

    # ---- whole models -----------------------------------------------------------------------
    def profile_model(
        self, model: onnx.ModelProto | str | Path, name: str | None = None, breakdown_runs: int = 10
    ) -> ModelMeasurement:
        """End-to-end latency of an ONNX model, plus the runtime's per-kernel breakdown."""
        if not isinstance(model, onnx.ModelProto):
            name = name or Path(model).name
            model = load_onnx(model)
        name = name or model.graph.name or "model"
        sha = hashlib.sha256(model.SerializeToString()).hexdigest()
        with cpu_affinity(self.device.options.cpu_affinity):
            prepared = self.backend.prepare(model, self.device)
            try:
                stats, samples = measure(prepared.sample, self.policy)
                nodes = prepared.breakdown(breakdown_runs) if breakdown_runs > 0 else None
            finally:
                prepared.close()
        m = ModelMeasurement(name, sha, self.device.name, self.fingerprint.id, stats,
                             tuple(nodes or ()), tuple(samples.tolist()))
        if self.store is not None:
            self.store.record_model(m)
        return m
