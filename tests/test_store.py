from __future__ import annotations

import dataclasses
import sqlite3

import pandas as pd
import pytest

from hwnas.profilers import fingerprint
from hwnas.errors import FingerprintMismatchError, StoreError
from hwnas.profilers import SCHEMA_VERSION, OpMeasurement, Profiler, ProfileStore, op_set


def _measure(registry, store, fast_policy, n=3):
    p = Profiler(registry.get("cpu-ort"), fast_policy, store)
    return p, p.profile_ops(op_set("micro")[:n])


def test_round_trip_and_dataframe(registry, store, fast_policy) -> None:
    p, run = _measure(registry, store, fast_policy)
    assert len(run.measured) == 3 and not run.skipped
    df = store.op_measurements(p.fingerprint.id)
    assert len(df) == 3 and set(df["status"]) == {"ok"}
    assert {"latency_ms", "p10_ms", "p90_ms", "mad_ms", "n_runs", "op_type", "cin", "kernel"} <= set(df.columns)
    assert (df["p10_ms"] <= df["latency_ms"]).all() and (df["latency_ms"] <= df["p90_ms"]).all()
    got = store.get_op(p.fingerprint.id, run.measured[0].config)
    assert got.stats == run.measured[0].stats and len(got.samples_ms) == got.stats.n_runs
    assert store.fingerprints() == [p.fingerprint]


def test_resume_skips_and_force_remeasures(registry, store, fast_policy) -> None:
    p, _ = _measure(registry, store, fast_policy, n=2)
    run = p.profile_ops(op_set("micro")[:4])
    assert len(run.skipped) == 2 and len(run.measured) == 2
    forced = p.profile_ops(op_set("micro")[:4], force=True)
    assert len(forced.measured) == 4 and not forced.skipped
    assert len(store.op_measurements()) == 4  # replaced, not duplicated


def test_duplicate_insert_is_refused(registry, store, fast_policy) -> None:
    _, run = _measure(registry, store, fast_policy, n=1)
    with pytest.raises(StoreError, match="already measured"):
        store.record_op(run.measured[0])


def test_not_a_database_is_refused_and_untouched(tmp_path) -> None:
    f = tmp_path / "notes.sqlite"
    payload = b"these are my notes, not a database\n" * 10
    f.write_bytes(payload)
    with pytest.raises(StoreError, match="not an SQLite database"):
        ProfileStore(f)
    assert f.read_bytes() == payload


def test_foreign_database_is_refused(tmp_path) -> None:
    f = tmp_path / "other.db"
    con = sqlite3.connect(f)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    before = f.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        ProfileStore(f)
    assert f.read_bytes() == before


def test_unknown_schema_version_is_refused(tmp_path) -> None:
    f = tmp_path / "p.sqlite"
    ProfileStore(f).close()
    con = sqlite3.connect(f)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        ProfileStore(f)


def test_truncated_database_is_refused(registry, tmp_path, fast_policy) -> None:
    f = tmp_path / "p.sqlite"
    with ProfileStore(f) as s:
        Profiler(registry.get("cpu-ort"), fast_policy, s).profile_ops(op_set("micro"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] + b"\x00" * 100)
    (tmp_path / "p.sqlite-wal").unlink(missing_ok=True)
    damaged = f.read_bytes()
    with pytest.raises(StoreError):
        s = ProfileStore(f)
        s.op_measurements()
    assert f.read_bytes() == damaged


def test_empty_file_is_initialised(tmp_path) -> None:
    f = tmp_path / "empty.sqlite"
    f.touch()
    with ProfileStore(f) as s:
        assert s.schema_version == SCHEMA_VERSION


def test_fingerprint_mismatch_is_not_mixed(registry, store, fast_policy) -> None:
    p, _ = _measure(registry, store, fast_policy)
    store.check_fingerprint(p.fingerprint)  # same machine: fine
    upgraded = dataclasses.replace(p.fingerprint, runtime_version="99.0")
    with pytest.raises(FingerprintMismatchError, match="runtime_version: stored .* vs now '99.0'"):
        store.check_fingerprint(upgraded)
    assert store.done_keys(upgraded.id) == set()  # nothing would be skipped for the new runtime
    assert store.op_measurements(fingerprint_id=upgraded.id).empty


def test_export_parquet_and_csv(registry, store, fast_policy, tmp_path) -> None:
    p, _ = _measure(registry, store, fast_policy)
    p.profile_model(__import__("hwnas.profilers", fromlist=["build_onnx"]).build_onnx(op_set("micro")[0]))
    for fmt in ("parquet", "csv"):
        paths = store.export(tmp_path / fmt, fmt)
        frames = {path.stem: pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path) for path in paths}
        assert len(frames["op_measurements"]) == 3
        assert len(frames["model_measurements"]) == 1
        assert frames["fingerprints"]["id"].tolist() == [p.fingerprint.id]
    with pytest.raises(StoreError, match="known formats"):
        store.export(tmp_path, "xlsx")


def test_unsupported_is_recorded(registry, store, fast_policy) -> None:
    device = registry.get("cpu-ort").replace(
        constraints=dataclasses.replace(registry.get("cpu-ort").constraints, allowed_op_types=("conv",))
    )
    run = Profiler(device, fast_policy, store).profile_ops(op_set("micro")[:3])
    statuses = {str(m.config): m.status for m in run.measured}
    assert statuses["conv_i8_o16_r16_k3_s1_g1_arelu"] == "ok"
    assert statuses["dwconv_i16_r16_k3_s1_arelu6"] == "unsupported"
    df = store.op_measurements()
    assert "allowed_op_types" in df.loc[df.status == "unsupported", "reason"].iloc[0]
    assert df.loc[df.status == "unsupported", "latency_ms"].isna().all()
    assert isinstance(run.unsupported[0], OpMeasurement)
    assert fingerprint(device).id == fingerprint(registry.get("cpu-ort")).id
