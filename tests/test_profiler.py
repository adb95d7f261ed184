"""Orchestration tests. ``FailingOrtBackend`` is a deterministic fake that refuses some op types,
named as such; it is used only to test that failures are recorded, never to claim a number."""

from __future__ import annotations

import dataclasses

import pytest

from hwnas.errors import HwnasError
from hwnas.profilers import OpConfig, OpType, Profiler, build_onnx, op_set
from hwnas.profilers._backends import OrtBackend


class FailingOrtBackend(OrtBackend):
    def prepare_op(self, cfg, device):  # noqa: ANN001, ANN201
        if cfg.op is OpType.SE:
            raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : fake refusal of SE")
        return super().prepare_op(cfg, device)


def test_runtime_failure_is_recorded_and_profiling_continues(registry, store, fast_policy) -> None:
    p = Profiler(registry.get("cpu-ort"), fast_policy, store, backend=FailingOrtBackend())
    run = p.profile_ops(op_set("micro"))
    assert len(run.measured) == len(op_set("micro"))
    (bad,) = run.unsupported
    assert bad.config.op is OpType.SE and "NOT_IMPLEMENTED" in bad.reason and bad.stats is None
    assert sum(m.status == "ok" for m in run.measured) == len(op_set("micro")) - 1
    # a rerun does not retry the recorded failure (use force=True for that)
    assert len(p.profile_ops(op_set("micro")).skipped) == len(op_set("micro"))


def test_device_batch_size_applies(registry, fast_policy) -> None:
    device = registry.get("cpu-ort").replace(
        options=__import__("dataclasses").replace(registry.get("cpu-ort").options, batch_size=4)
    )
    m = Profiler(device, fast_policy).profile_op(OpConfig.parse("conv_i4_o8_r8_k3_s1_g1_arelu"))
    assert m.config.batch == 4 and str(m.config).endswith("_b4") and m.status == "ok"


def test_whole_model_is_stored_with_breakdown(registry, store, fast_policy) -> None:
    model = build_onnx(OpConfig.parse("mbconv_i8_o8_r8_k3_s1_e3_arelu6_res"))
    m = Profiler(registry.get("cpu-ort"), fast_policy, store).profile_model(model, name="block")
    df = store.model_measurements()
    assert df["model_name"].tolist() == ["block"] and df["latency_ms"].iloc[0] == m.latency_ms
    assert len(m.model_sha256) == 64 and m.breakdown
    assert m.stats.p10_ms <= m.latency_ms <= m.stats.p90_ms and m.stats.n_rounds == 2


def test_a_re_export_with_other_weights_is_not_measured_again(registry, store, fast_policy) -> None:
    """Latency does not depend on the weights' values: the store reuses a measurement of the same
    network (structure hash) even when the file's bytes differ; another structure is measured."""
    import sqlite3

    from hwnas.profilers import measure_models
    from hwnas.profilers._onnx import graph_sha256

    cfg = OpConfig.parse("mbconv_i8_o8_r8_k3_s1_e3_arelu6_res")
    a, b = build_onnx(cfg, seed=0), build_onnx(cfg, seed=1)
    other = build_onnx(OpConfig.parse("mbconv_i8_o8_r8_k5_s1_e3_arelu6_res"), seed=0)
    assert a.SerializeToString() != b.SerializeToString() and graph_sha256(a) == graph_sha256(b)
    assert graph_sha256(other) != graph_sha256(a)
    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    first = measure_models(p, [("a", a)])
    again = measure_models(p, [("b", b), ("other", other)])
    assert again[0].latency_ms == first[0].latency_ms  # reused, not measured
    assert store.model_measurements()["model_name"].tolist() == ["a", "other"]
    assert store.model_measurements()["model_graph_sha256"].tolist() == [graph_sha256(a), graph_sha256(other)]
    # a store written before the column existed gains it when opened (its rows match by file hash only)
    from hwnas.profilers import ProfileStore
    from hwnas.profilers._store import _SCHEMA, SCHEMA_VERSION

    old = store.path.parent / "old.sqlite"
    con = sqlite3.connect(old)
    con.executescript(_SCHEMA)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "hwnas"), ("schema_version", str(SCHEMA_VERSION))])
    con.commit()
    con.close()
    with ProfileStore(old) as s:
        assert "model_graph_sha256" in s.model_measurements().columns


def test_measure_models_in_passes_keeps_each_models_fastest(registry, store, fast_policy) -> None:
    """Passes go over every model before the next pass (spread in time); the fastest pass is kept
    and every pass is stored. Orchestration on a scripted fake timing: each real measurement of
    the profiler is replaced by the next scripted value."""
    from hwnas.profilers import measure_models

    a = build_onnx(OpConfig.parse("act_i8_r8_arelu"), seed=0)
    b = build_onnx(OpConfig.parse("act_i8_r8_arelu6"), seed=0)
    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    scripted = iter([3.0, 5.0, 1.0, 6.0, 2.0, 4.0])  # a, b, a, b, a, b
    order = []
    real = p.profile_model

    def fake(model, name=None, breakdown_runs=10, record=True):  # noqa: ANN001, ANN202
        m = real(model, name=name, breakdown_runs=0, record=False)
        m = dataclasses.replace(m, stats=dataclasses.replace(m.stats, latency_ms=next(scripted)))
        store.record_model(m)
        order.append(name)
        return m

    p.profile_model = fake
    done = []
    out = measure_models(p, [("a", a), ("b", b)], lambda n, ms: done.append((n, ms)), passes=3)
    assert order == ["a", "b"] * 3 and len(done) == 6
    assert [m.latency_ms for m in out] == [1.0, 4.0]
    assert len(store.model_measurements()) == 6
    # a rerun reuses the fastest stored pass; force measures again
    again = measure_models(p, [("a", a), ("b", b)])
    assert [m.latency_ms for m in again] == [1.0, 4.0] and order == ["a", "b"] * 3
    with pytest.raises(HwnasError, match="passes must be >= 1"):
        measure_models(p, [("a", a)], passes=0)


def test_ops_get_the_runtimes_own_kernel_time_and_old_records_are_completed(registry, store, fast_policy) -> None:
    """ONNX Runtime reports per-node times: each op gets its kernels' own time (layout reorders and
    the session call left out: below the end-to-end time). A record stored without one (an older
    hwnas) is completed by the next profile run, which measures only that."""
    from hwnas.latency_models import training_data

    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    cfgs = [OpConfig.parse("conv_i8_o16_r16_k3_s1_g1_arelu"), OpConfig.parse("maxpool_i16_r16_k3_s2")]
    run = p.profile_ops(cfgs)
    for m in run.measured:
        assert m.status == "ok" and 0 < m.kernel_ms < m.latency_ms
        assert store.get_op(p.fingerprint.id, m.config).kernel_ms == m.kernel_ms
    store.set_kernel_ms(p.fingerprint.id, cfgs[0], None)  # as an older hwnas stored it
    with pytest.raises(HwnasError, match="1 of 2 op measurements .* have no kernel time"):
        training_data(store, p.fingerprint, "kernel")
    e2e_before = store.get_op(p.fingerprint.id, cfgs[0]).latency_ms
    again = p.profile_ops(cfgs)
    assert not again.measured and [m.config for m in again.completed] == [cfgs[0]] and again.skipped == cfgs
    done = store.get_op(p.fingerprint.id, cfgs[0])
    assert done.kernel_ms > 0 and done.latency_ms == e2e_before  # the end-to-end measurement is kept
    _, y = training_data(store, p.fingerprint, "kernel")
    assert len(y) == 2 and (y > 0).all()
    with pytest.raises(HwnasError, match="unknown op time .wall.; known: e2e, kernel, mean"):
        training_data(store, p.fingerprint, "wall")
    # a runtime without per-node times records none, and is not asked again
    assert not Profiler(registry.get("cpu-ort"), fast_policy, kernel_times=False).profile_op(cfgs[0]).kernel_ms


def test_recheck_measures_stored_ops_again_and_keeps_the_pairs(registry, store, fast_policy) -> None:
    """Real ONNX Runtime: stored ops measured again; the stored measurements stay as they were."""
    p = Profiler(registry.get("cpu-ort"), fast_policy, store, backend=FailingOrtBackend())
    p.profile_ops(op_set("micro"))  # SE is recorded unsupported: never drawn for a re-measurement
    before = store.op_measurements(p.fingerprint.id).set_index("config_key")["latency_ms"]
    seen = []
    check = p.recheck(4, on_done=lambda k, a, b: seen.append(k))
    assert check.n == 4 and len(set(check.config_keys)) == 4 and seen == list(check.config_keys)
    assert all(not k.startswith("se_") for k in check.config_keys)
    assert check.stored_ms == tuple(float(before[k]) for k in check.config_keys)
    assert all(ms > 0 for ms in check.again_ms)
    assert 0 <= check.within_5 <= check.within_10 <= 1 and check.median_abs_diff_rel >= 0
    after = store.op_measurements(p.fingerprint.id).set_index("config_key")["latency_ms"]
    assert after.equals(before)
    rows = store.repeat_checks(p.fingerprint.id)
    assert list(rows["config_key"]) == list(check.config_keys)
    assert list(rows["again_ms"]) == list(check.again_ms)
    assert p.recheck(4).config_keys == check.config_keys  # seeded: the same ops again
    assert p.recheck(100).n == len(op_set("micro")) - 1  # at most every measured op
    d = check.to_dict()
    assert d["n"] == 4 and len(d["ops"]) == 4 and d["ok"] == check.ok


def test_recheck_needs_a_store_with_measured_ops(registry, store, fast_policy) -> None:
    with pytest.raises(HwnasError, match="needs a store"):
        Profiler(registry.get("cpu-ort"), fast_policy).recheck(3)
    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    with pytest.raises(HwnasError, match="no measured ops of device 'cpu-ort'"):
        p.recheck(3)
    with pytest.raises(HwnasError, match="n >= 1"):
        p.recheck(0)


def test_repeat_check_figures_and_warning() -> None:
    from hwnas.profilers import RepeatCheck

    steady = RepeatCheck(("a", "b", "c", "d"), (1.0, 2.0, 3.0, 4.0), (1.01, 1.92, 3.2, 4.0))
    assert steady.within_5 == 0.75 and steady.within_10 == 1.0 and steady.ok and steady.warning() is None
    assert steady.median_abs_diff_rel == pytest.approx((0.01 + 0.04) / 2)
    noisy = RepeatCheck(("a", "b", "c", "d"), (1.0, 1.0, 1.0, 1.0), (1.5, 1.3, 1.0, 0.7))
    assert noisy.within_10 == 0.25 and not noisy.ok
    assert "1 of 4 stored ops measured again within +-10%" in noisy.warning()
    assert "hwnas profile --force" in noisy.warning()


def test_op_passes_keep_each_ops_fastest_measurement(registry, store, fast_policy) -> None:
    """Real ONNX Runtime, three passes over the ops: the stored record is each op's fastest."""
    raw: dict[str, list[float]] = {}

    class Recording(Profiler):
        def profile_op(self, cfg):  # noqa: ANN001, ANN201
            m = super().profile_op(cfg)
            raw.setdefault(str(m.config), []).append(m.latency_ms)
            return m

    ops = [c for c in op_set("micro") if c.op is not OpType.SE]
    p = Recording(registry.get("cpu-ort"), fast_policy, store, backend=FailingOrtBackend())
    calls = []
    run = p.profile_ops(op_set("micro"), passes=3, on_start=lambda todo, skipped: calls.append(todo),
                        on_done=lambda m: calls.append(m))
    assert calls[0] == 3 * len(op_set("micro")) and len(calls) - 1 == calls[0]  # progress: every pass counted
    assert run.passes == 3 and len(run.measured) == len(op_set("micro"))
    assert all(len(raw[str(c)]) == 3 for c in ops)
    assert len(raw[str(next(c for c in op_set("micro") if c.op is OpType.SE))]) == 1  # unsupported: not retried
    stored = store.op_measurements(p.fingerprint.id).set_index("config_key")["latency_ms"]
    for c in ops:
        assert stored[str(c)] == min(raw[str(c)])
    assert {str(m.config): m.latency_ms for m in run.measured if m.status == "ok"} == {str(c): min(raw[str(c)]) for c in ops}
    with pytest.raises(HwnasError, match="passes must be >= 1"):
        p.profile_ops(ops, passes=0)


def test_op_passes_under_the_drift_guard(registry, store, fast_policy) -> None:
    from hwnas.profilers import DriftPolicy

    p = Profiler(registry.get("cpu-ort"), fast_policy, store, drift=DriftPolicy(every=4, tolerance=0.99, retries=0))
    ops = op_set("micro")[:6]
    run = p.profile_ops(ops, passes=2)
    assert run.passes == 2 and len(run.measured) == 6 and all(m.status == "ok" for m in run.measured)
    assert len(store.op_measurements(p.fingerprint.id)) == 6  # one record per op


def test_a_model_measured_again_by_the_drift_guard_keeps_the_value_a_rerun_reuses(registry, store, fast_policy) -> None:
    """A drifted chunk measured again inside a run keeps its faster value, the one a later run
    reusing the store takes (the fastest stored), so both runs calibrate on the same latency.
    ``RepeatingGuard`` is a deterministic fake guard that measures every chunk twice; the timings
    are scripted (orchestration only)."""
    from hwnas.profilers import measure_models

    class RepeatingGuard:
        class policy:  # noqa: N801
            every_model = 1

        def run(self, items, measure, context, on_chunk=None, every=None):  # noqa: ANN001, ANN201
            return [measure(x) for x in items for _ in range(2)]  # the second: "after a drift"

    a = build_onnx(OpConfig.parse("act_i8_r8_arelu"), seed=0)
    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    scripted = iter([2.0, 3.0])  # first 2.0, measured again slower: 3.0
    real = p.profile_model

    def fake(model, name=None, breakdown_runs=10, record=True):  # noqa: ANN001, ANN202
        m = real(model, name=name, breakdown_runs=0, record=False)
        m = dataclasses.replace(m, stats=dataclasses.replace(m.stats, latency_ms=next(scripted)))
        store.record_model(m)
        return m

    p.profile_model, p.guard = fake, RepeatingGuard()
    (first,) = measure_models(p, [("a", a)])
    (reused,) = measure_models(p, [("a", a)])
    assert first.latency_ms == reused.latency_ms == 2.0


def test_an_op_that_ran_out_of_memory_is_not_stored_as_unsupported(registry, store, fast_policy, monkeypatch) -> None:
    """Out of memory is a failure of the moment: one line, nothing stored (a rerun measures it);
    another runtime failure is still recorded as unsupported."""
    from contextlib import contextmanager

    import pytest

    from hwnas.errors import HwnasError
    from hwnas.profilers import OpConfig, Profiler

    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    cfg = OpConfig.parse("dwconv_i8_r8_k3_s1_arelu")

    def failing(message: str):  # noqa: ANN202
        @contextmanager
        def prepared(self, c):  # noqa: ANN001, ANN202
            raise RuntimeError(message)
            yield

        return prepared

    monkeypatch.setattr(Profiler, "_prepared", failing("onnxruntime: Failed to allocate memory for requested buffer"))
    with pytest.raises(HwnasError, match="ran out of memory"):
        p.profile_ops([cfg])
    assert store.op_measurements(p.fingerprint.id).empty
    monkeypatch.setattr(Profiler, "_prepared", failing("NOT_IMPLEMENTED: no kernel"))
    run = p.profile_ops([cfg])
    assert [m.status for m in run.measured] == ["unsupported"]
