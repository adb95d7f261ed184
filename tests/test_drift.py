"""Speed-drift guard: real reference readings on ONNX Runtime, and a scripted fake device speed
(named as such) to test the re-measure / keep logic deterministically."""

from __future__ import annotations

import warnings

import pytest

from hwnas.devices import default_registry
from hwnas.errors import HwnasError
from hwnas.profilers import DriftPolicy, OpConfig, Profiler, ProfileStore, SpeedDriftWarning, TimingPolicy

FAST = TimingPolicy(warmup_s=0.0, min_time_s=0.01, max_time_s=0.05)


class _FakeSpeedProfiler:
    """A deterministic fake: the reference op's latency follows a script (fake device, never a claim)."""

    def __init__(self, profiler: Profiler, script: list[float]) -> None:
        self.inner = profiler
        self.script = list(script)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)

    def profile_op(self, cfg: OpConfig):  # noqa: ANN201
        from dataclasses import replace

        m = self.inner.profile_op(cfg)
        ms = self.script.pop(0) if self.script else 1.0
        return replace(m, stats=replace(m.stats, latency_ms=ms))


def _guard(tmp_path, script, **kw):
    from hwnas.profilers import DriftGuard

    store = ProfileStore(tmp_path / "p.sqlite")
    prof = Profiler(default_registry().get("cpu-ort"), FAST, store)
    return DriftGuard(_FakeSpeedProfiler(prof, script), DriftPolicy(wait_s=0.0, **kw)), store


def test_steady_device_measures_each_chunk_once(tmp_path) -> None:
    guard, store = _guard(tmp_path, [1.0] * 20, every=2)
    calls = []
    out = guard.run(list(range(5)), lambda x: calls.append(x) or x * 10, "test")
    assert out == [0, 10, 20, 30, 40] and calls == [0, 1, 2, 3, 4]
    assert guard.events == []
    assert len(store.speed_readings(guard.profiler.fingerprint.id, guard.reference)) == 4  # 1 + one per chunk


def test_drifted_chunk_is_measured_again_then_accepted(tmp_path) -> None:
    # baseline 1.0; the first chunk ends at 1.5 (drift), the retry is back at 1.0
    guard, _ = _guard(tmp_path, [1.0, 1.5, 1.0, 1.0, 1.0, 1.0], every=3, retries=2)
    calls = []
    guard.run(list(range(3)), calls.append, "test")
    assert calls == [0, 1, 2, 0, 1, 2]
    assert len(guard.events) == 1 and not guard.events[0].kept and guard.events[0].factor_after == pytest.approx(1.5)


def test_persistent_drift_is_kept_with_a_warning(tmp_path) -> None:
    guard, _ = _guard(tmp_path, [1.0] + [1.6] * 10, every=2, retries=1)
    with pytest.warns(SpeedDriftWarning, match="1.60x its baseline"):
        out = guard.run([1, 2], lambda x: x, "test")
    assert out == [1, 2]
    assert [e.kept for e in guard.events] == [False, True]
    assert guard.summary()["kept_drifted_chunks"] == 1


def test_baseline_comes_from_the_store_across_sessions(tmp_path) -> None:
    guard, store = _guard(tmp_path, [2.0] * 6, every=1)
    guard.run([0], lambda x: x, "first session")
    store.close()
    guard2, _ = _guard(tmp_path, [3.0] * 6, every=1, retries=0)
    with pytest.warns(SpeedDriftWarning):
        guard2.run([0], lambda x: x, "second session")
    assert guard2.baseline_ms == pytest.approx(2.0)
    assert guard2.factor(3.0) == pytest.approx(1.5)


def test_real_reference_readings_and_guarded_profiling(tmp_path) -> None:
    """Real ONNX Runtime: the guarded profile stores every op once plus the reference readings."""
    with ProfileStore(tmp_path / "p.sqlite") as store:
        prof = Profiler(default_registry().get("cpu-ort"), FAST, store, drift=DriftPolicy(every=2, tolerance=0.9))
        ops = [OpConfig.parse(s) for s in ("act_i8_r8_arelu", "add_i8_r8", "act_i8_r8_arelu6")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpeedDriftWarning)
            run = prof.profile_ops(ops)
        assert len(run.measured) == 3 and len(store.done_keys(prof.fingerprint.id)) == 3
        checks = store.speed_checks(prof.fingerprint.id)
        assert len(checks) >= 3 and (checks["latency_ms"] > 0).all()
        assert prof.guard is not None and prof.guard.summary()["readings"] == len(checks)


def test_bad_policy_is_refused() -> None:
    with pytest.raises(HwnasError):
        DriftPolicy(tolerance=0)
    with pytest.raises(Exception):
        DriftPolicy(reference="nonsense")


def test_the_reference_is_sized_to_the_device_kind(tmp_path) -> None:
    """A GPU device's reference is a kernel long enough to read its speed through the launch
    jitter (the CPU's is a microsecond kernel on a GPU); a policy naming one overrides both."""
    from hwnas.profilers import DriftGuard, default_reference

    reg = default_registry()
    cpu, gpu = (OpConfig.parse(default_reference(reg.get(n))) for n in ("cpu-ort", "cuda-torch"))
    assert gpu.macs() >= 1000 * cpu.macs()
    assert {default_reference(reg.get(n)) for n in ("cuda-torch-fp16", "cuda-torch-eager", "cuda-ort")} == {str(gpu)}
    guard, store = _guard(tmp_path, [1.0] * 4)
    assert guard.reference == str(cpu) and guard.summary()["reference"] == str(cpu)
    guard.run([1], lambda x: x, "test")
    assert len(store.speed_readings(guard.profiler.fingerprint.id, str(cpu))) == 2
    own = "conv_i8_o8_r8_k1_s1_g1_arelu"
    assert DriftGuard(guard.profiler, DriftPolicy(reference=own)).reference == own


def test_auto_pin_chooses_among_the_allowed_cpus() -> None:
    import os

    prof = Profiler(default_registry().get("cpu-ort"), FAST, auto_pin=True)
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        assert prof.pinned is None  # nothing to choose: stated, not guessed
    else:
        assert prof.pinned is not None and len(prof.pinned) == 1 and set(prof.pinned) <= allowed
        assert set(prof.cpu_speeds_ms) == allowed and all(v > 0 for v in prof.cpu_speeds_ms.values())
        best = min(prof.cpu_speeds_ms, key=prof.cpu_speeds_ms.__getitem__)
        assert prof.pinned == (best,)
    assert os.sched_getaffinity(0) == allowed  # the process's affinity is restored
    m = prof.profile_op(OpConfig.parse("act_i8_r8_arelu"))
    assert m.status == "ok" and os.sched_getaffinity(0) == allowed


def test_a_device_that_stays_off_is_not_waited_for_chunk_after_chunk(tmp_path) -> None:
    # baseline 1.0, then 1.6 for 7 readings (chunk 1: 3 attempts; chunks 2-3 kept at once), then back
    # at 1.0 after chunk 4 (which started slow: kept at once too): the retries are re-armed, and chunk
    # 5's drift is measured again
    script = [1.0] + [1.6] * 7 + [1.0, 1.5, 1.0, 1.0]
    guard, _ = _guard(tmp_path, script, every=1, retries=2)
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard.run([1, 2, 3, 4, 5], calls.append, "test")
    assert calls == [1, 1, 1, 2, 3, 4, 5, 5]
    assert [(e.attempts, e.kept) for e in guard.events] == [(1, False), (2, False), (3, True), (1, True), (1, True),
                                                             (1, True), (1, False)]
    assert sum(issubclass(w.category, SpeedDriftWarning) for w in caught) == 1  # one warning, not one per chunk


def test_the_warning_names_the_reading_that_failed(tmp_path) -> None:
    """The retry starts slow (the reading before it, 1.6x) and ends back within the
    tolerance: the kept chunk's warning gives the reading that failed, not the good one after it."""
    guard, _ = _guard(tmp_path, [1.0, 1.6, 1.6, 1.0], every=2, retries=1)
    with pytest.warns(SpeedDriftWarning, match="1.60x its baseline"):
        guard.run([1, 2], lambda x: x, "test")
    kept = guard.events[-1]
    assert kept.kept and kept.factor_before == pytest.approx(1.6) and kept.factor_after == pytest.approx(1.0)
