"""Profiling orchestration: op configurations and whole models on a device, into the store."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from hwnas.devices._device import Device
from hwnas.devices._fingerprint import Fingerprint
from hwnas.profilers._fingerprint import fingerprint
from hwnas.profilers._backends import Backend, Prepared, get_backend
from hwnas.profilers._drift import DriftGuard, DriftPolicy, default_reference
from hwnas.profilers._onnx import graph_sha256, load_onnx
from hwnas.profilers._ops import OpConfig
from hwnas.errors import DeviceUnreachableError, HwnasError
from hwnas.profilers._records import ModelMeasurement, OpMeasurement, RepeatCheck
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
    #: of the skipped (already stored), those made without a kernel time, now completed with one
    completed: list[OpMeasurement] = field(default_factory=list)
    #: measurements per op (``profile_ops(passes=...)``); ``measured`` holds each op's fastest
    passes: int = 1

    @property
    def unsupported(self) -> list[OpMeasurement]:
        return [m for m in self.measured if m.status == "unsupported"]

    @property
    def ops_per_minute(self) -> float:
        return 60 * len(self.measured) / self.elapsed_s if self.elapsed_s else 0.0


def fastest_cpus(profiler: Profiler, k: int, reference: str) -> tuple[tuple[int, ...] | None, dict[int, float]]:
    """Time the reference op pinned to each CPU this process may use and return the ``k`` fastest.

    Virtual machines and big.LITTLE phones have CPUs of different effective speed; a
    single-threaded measurement the scheduler moves between them changes speed in steps (on this
    project's 2-vCPU development VM one vCPU runs the reference ~1.6x slower than the other).
    Pinning to the fastest is what phone benchmarks do with big cores. ``None`` when there is
    nothing to choose (one CPU allowed, or no affinity support)."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return None, {}
    allowed = sorted(os.sched_getaffinity(0))
    k = k or len(allowed)  # 0 threads: all cores
    if len(allowed) <= k:
        return None, {}
    quick = TimingPolicy(max_time_s=0.3, min_time_s=0.1)
    cfg = OpConfig.parse(reference).with_batch(profiler.device.options.batch_size)
    speeds: dict[int, float] = {}
    for cpu in allowed:
        with cpu_affinity((cpu,)):
            prepared = profiler.backend.prepare_op(cfg, profiler.device)
            try:
                speeds[cpu] = measure(prepared.sample, quick)[0].latency_ms
            finally:
                prepared.close()
    best = tuple(sorted(sorted(speeds, key=speeds.__getitem__)[:k]))
    return best, speeds


#: profiled runs behind an op's kernel time (``OpMeasurement.kernel_ms``)
KERNEL_RUNS = 30


def _kernel_of(prepared: Prepared) -> float | None:
    """The op's kernel time; None when the runtime's profile fails (the op itself ran: its record
    stays, and a later ``profile_ops`` completes it)."""
    try:
        return prepared.kernel_ms(KERNEL_RUNS)
    except Exception:  # noqa: BLE001 - any runtime error while profiling
        return None


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
                 backend: Backend | None = None, drift: DriftPolicy | None = None, auto_pin: bool = False,
                 kernel_times: bool = True) -> None:
        self.device = device
        self.policy = policy or TimingPolicy()
        self.store = store
        self.backend = backend or get_backend(device.runtime)
        self.backend.require(device)
        self.backend.connect(device)
        self.fingerprint: Fingerprint = fingerprint(device)
        if store is not None:
            store.add_fingerprint(self.fingerprint)
        #: the CPUs measurements are pinned to: the device's ``cpu_affinity``, or with ``auto_pin``
        #: the fastest of the allowed CPUs for the speed reference (see :func:`fastest_cpus`)
        self.pinned: tuple[int, ...] | None = device.options.cpu_affinity
        self.cpu_speeds_ms: dict[int, float] = {}
        self.auto_pin = auto_pin and self.pinned is None and device.options.device_type == "cpu"
        self._reference = (drift or DriftPolicy()).reference or default_reference(device)
        self.repin()
        #: record each op's kernel time too (``OpMeasurement.kernel_ms``) where the runtime reports it
        self.kernel_times = kernel_times and self.backend.reports_kernel_times
        #: with a drift policy, measurements run in chunks between readings of a reference op
        self.guard: DriftGuard | None = DriftGuard(self, drift) if drift is not None else None

    def repin(self) -> None:
        """With ``auto_pin``: choose the fastest CPUs again (the drift guard calls this when the
        device's speed moved: on a shared VM the contended CPU changes over time)."""
        if self.auto_pin:
            self.pinned, self.cpu_speeds_ms = fastest_cpus(self, self.device.options.intra_op_threads,
                                                           self._reference)

    # ---- ops ------------------------------------------------------------------------------
    def _unsupported_reason(self, cfg: OpConfig) -> str | None:
        allowed = self.device.constraints.allowed_op_types
        if allowed is not None and cfg.op.value not in allowed:
            return f"op type {cfg.op.value!r} is not in device {self.device.name!r}'s allowed_op_types"
        return None

    def profile_op(self, cfg: OpConfig) -> OpMeasurement:
        """Measure one op. A runtime failure gives an ``unsupported`` record with the reason."""
        t0 = time.time()
        m = self._profile_op(cfg.with_batch(self.device.options.batch_size))
        return replace(m, started_unix_s=t0, finished_unix_s=time.time())

    def _profile_op(self, cfg: OpConfig) -> OpMeasurement:
        fp = self.fingerprint
        reason = self._unsupported_reason(cfg)
        if reason:
            return OpMeasurement(cfg, self.device.name, fp.id, "unsupported", reason=reason)
        try:
            with self._prepared(cfg) as prepared:
                stats, samples = measure(prepared.sample, self.policy)
                kernel = _kernel_of(prepared) if self.kernel_times else None
        except DeviceUnreachableError:  # the device, not the op: nothing is recorded, a rerun resumes
            raise
        except Exception as exc:  # the runtime could not build or run it: record and move on
            if _transient(exc):  # out of memory now is not "unsupported" for ever: not stored
                raise HwnasError(f"{cfg} ran out of memory on {self.device.name} ({_reason(exc)}); nothing was "
                                 "stored for it: free memory and rerun (what was measured is kept)") from None
            return OpMeasurement(cfg, self.device.name, fp.id, "unsupported", reason=_reason(exc))
        return OpMeasurement(cfg, self.device.name, fp.id, "ok", stats, samples_ms=tuple(samples.tolist()),
                             kernel_ms=kernel)

    @contextmanager
    def _prepared(self, cfg: OpConfig) -> Iterator[Prepared]:
        """The op prepared on the device's runtime, on the pinned CPUs; released afterwards."""
        prepared = None
        try:
            with cpu_affinity(self.pinned):
                prepared = self.backend.prepare_op(cfg, self.device)
                yield prepared
        finally:
            if prepared is not None:
                prepared.close()

    def kernel_time(self, cfg: OpConfig) -> float | None:
        """Only the kernel time of one op (see ``OpMeasurement.kernel_ms``): to complete a stored
        measurement made without it."""
        try:
            with self._prepared(cfg.with_batch(self.device.options.batch_size)) as prepared:
                return _kernel_of(prepared)
        except Exception:  # noqa: BLE001 - it ran before; if it no longer does, it stays without one
            return None

    def profile_ops(
        self,
        configs: Iterable[OpConfig],
        force: bool = False,
        on_start: Callable[[int, int], None] | None = None,
        on_done: Callable[[OpMeasurement], None] | None = None,
        passes: int = 1,
    ) -> ProfileRun:
        """Measure many ops; with a store, skip those already stored and commit each one.

        ``passes`` > 1 measures the ops again in further passes over all of them (a pass over every
        op before the next) and keeps each op's fastest: it helps against contention in phases
        shorter than a pass, not against a slow phase of minutes (BENCHMARKS.md, "Measurement
        repeatability"; ``recheck`` tells which case a profile was in). The store keeps the fastest
        so far after each pass; a killed run keeps what its passes measured, and a rerun skips the
        stored ops. ``on_done`` is called after each measurement of each pass (with the op's record
        so far)."""
        if passes < 1:
            raise HwnasError(f"passes must be >= 1; got {passes}")
        batch = self.device.options.batch_size
        cfgs = list(dict.fromkeys(c.with_batch(batch) for c in configs))
        run = ProfileRun()
        fill: list[OpConfig] = []
        if self.store is not None and not force:
            done = self.store.done_keys(self.fingerprint.id)
            run.skipped = [c for c in cfgs if str(c) in done]
            cfgs = [c for c in cfgs if str(c) not in done]
            if self.kernel_times:  # stored without a kernel time: measure only that
                lacking = self.store.keys_without_kernel_ms(self.fingerprint.id)
                fill = [c for c in run.skipped if str(c) in lacking]
        if on_start:
            on_start(len(cfgs) * passes + len(fill), len(run.skipped) - len(fill))
        t0 = time.perf_counter()
        self._fill_kernel_times(fill, run, on_done)
        best: dict[OpConfig, OpMeasurement] = {}  # each op's record: the fastest of the passes so far

        def take(m: OpMeasurement, first: bool) -> OpMeasurement:
            """Keep ``m`` if it is the op's first record (a drifted chunk's re-measurement in the first
            pass replaces its records) or faster than its record so far; committed at once."""
            prev = best.get(m.config)
            if first:
                best[m.config] = m
                if self.store is not None:
                    self.store.record_op(m, replace=force or self.guard is not None)
            elif m.status == "ok" and prev is not None and prev.latency_ms is not None \
                    and m.latency_ms is not None and m.latency_ms < prev.latency_ms:
                best[m.config] = m
                if self.store is not None:
                    self.store.record_op(m, replace=True)
            return best[m.config]

        def done(ms: list[OpMeasurement]) -> None:
            for m in ms:
                if on_done:
                    on_done(best[m.config])

        for p in range(passes):
            first = p == 0
            todo = cfgs if first else [c for c in cfgs if best[c].status == "ok"]
            if not first:  # an op found unsupported is not tried again; it counts as done
                done([best[c] for c in cfgs if best[c].status != "ok"])
            if self.guard is None:
                for cfg in todo:
                    done([take(self.profile_op(cfg), first)])
            else:  # chunks between readings of the reference; a drifted chunk is measured again
                self.guard.run(todo, lambda cfg, first=first: take(self.profile_op(cfg), first),
                               "profile ops" if passes == 1 else f"profile ops, pass {p + 1}", done)
        run.measured = [best[c] for c in cfgs]
        run.passes = passes
        run.elapsed_s = time.perf_counter() - t0
        return run

    def _fill_kernel_times(self, fill: list[OpConfig], run: ProfileRun,
                           on_done: Callable[[OpMeasurement], None] | None) -> None:
        """Add the kernel time to stored records made without one (only that is measured)."""
        for cfg in fill:
            assert self.store is not None
            self.store.set_kernel_ms(self.fingerprint.id, cfg, self.kernel_time(cfg))
            m = self.store.get_op(self.fingerprint.id, cfg)
            run.completed.append(m)
            if on_done:
                on_done(m)

    def recheck(self, n: int = 10, seed: int = 0,
                on_done: Callable[[str, float, float], None] | None = None) -> RepeatCheck:
        """Measure ``n`` of this device's stored ops again (drawn at random, seeded) and compare
        with their stored latency: a check of how far this device's measurements repeat. The
        stored measurements stay as they are; each pair is kept in the store's ``repeat_checks``.
        ``on_done(config_key, stored_ms, again_ms)`` after each."""
        if self.store is None:
            raise HwnasError("a repeat check compares with stored measurements: the profiler needs a store")
        if n < 1:
            raise HwnasError(f"a repeat check needs n >= 1 ops; got {n}")
        df = self.store.op_measurements(self.fingerprint.id)
        df = df[df["status"] == "ok"] if not df.empty else df
        if df.empty:
            raise HwnasError(f"{self.store.path} has no measured ops of device {self.device.name!r} "
                             f"(fingerprint {self.fingerprint.id}) to measure again")
        import numpy as np

        rows = df.iloc[np.random.default_rng(seed).permutation(len(df))[:n]]
        keys, stored, again = [], [], []
        for key, ms in zip(rows["config_key"], rows["latency_ms"]):
            m = self.profile_op(OpConfig.parse(key))
            if m.status != "ok" or m.latency_ms is None:  # it ran before: a failure now is left out
                continue
            self.store.record_repeat_check(self.fingerprint.id, key, float(ms), m.latency_ms)
            keys.append(key)
            stored.append(float(ms))
            again.append(m.latency_ms)
            if on_done:
                on_done(key, float(ms), m.latency_ms)
        return RepeatCheck(tuple(keys), tuple(stored), tuple(again))

    # ---- whole models -----------------------------------------------------------------------
    def profile_model(
        self, model: onnx.ModelProto | str | Path, name: str | None = None, breakdown_runs: int = 10,
        record: bool = True,
    ) -> ModelMeasurement:
        """End-to-end latency of an ONNX model, plus the runtime's per-kernel breakdown; stored
        when the profiler has a store and ``record`` (a check of the device's state is not)."""
        if not isinstance(model, onnx.ModelProto):
            name = name or Path(model).name
            model = load_onnx(model)
        name = name or model.graph.name or "model"
        sha = hashlib.sha256(model.SerializeToString()).hexdigest()
        with cpu_affinity(self.pinned):
            prepared = self.backend.prepare(model, self.device)
            try:
                stats, samples = measure(prepared.sample, self.policy)
                nodes = prepared.breakdown(breakdown_runs) if breakdown_runs > 0 else None
            finally:
                prepared.close()
        m = ModelMeasurement(name, sha, self.device.name, self.fingerprint.id, stats,
                             tuple(nodes or ()), tuple(samples.tolist()), graph_sha256(model))
        if self.store is not None and record:
            self.store.record_model(m)
        return m


#: what runtimes say when memory runs out (a transient failure, not an unsupported op)
_MEMORY_WORDS = ("out of memory", "failed to allocate", "bad_alloc", "cannot allocate memory", "memoryerror")


def _transient(exc: BaseException) -> bool:
    """A failure of the moment (memory), not of the op."""
    return isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in _MEMORY_WORDS)
