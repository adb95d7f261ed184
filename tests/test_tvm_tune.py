"""Tuned TVM devices: MetaSchedule tuning before compiling, its database reused, tuned and untuned
measurements never mixed (real MetaSchedule with a few trials on tiny ops)."""

from __future__ import annotations

import json

import pytest

from hwnas.cli import main
from hwnas.devices import Device, RuntimeOptions, default_registry
from hwnas.errors import HwnasError
from hwnas.jobs import tuned_device

tvm = pytest.importorskip("tvm")
pytestmark = [pytest.mark.tvm]


def test_tuned_device_is_its_own_fingerprint(tmp_path) -> None:
    from hwnas.profilers import fingerprint

    base = default_registry().get("cpu-tvm")
    assert tuned_device(base, None) is base
    dev = tuned_device(base, 8, tmp_path / "s.sqlite")
    assert dev.options.tune_trials == 8 and dev.options.tune_database == str(tmp_path / "tvm-tuning" / "cpu-tvm-8trials")
    fp, fp0 = fingerprint(dev), fingerprint(base)
    assert fp.id != fp0.id and "meta_schedule 8 trials/task" in fp.runtime_version
    dev16 = tuned_device(base, 16, tmp_path / "s.sqlite")
    assert fingerprint(dev16).id != fp.id and dev16.options.tune_database != dev.options.tune_database
    assert Device.from_dict(dev.to_dict()) == dev


def test_tuning_refuses_what_it_cannot_do(tmp_path, capsys) -> None:
    with pytest.raises(HwnasError, match="tunes TVM devices"):
        tuned_device(default_registry().get("cpu-ort"), 8)
    with pytest.raises(ValueError, match="tune_trials must be a count"):
        RuntimeOptions(tune_trials=-1)
    with pytest.raises(ValueError, match="tune_trials tunes TVM devices"):
        Device("x", "onnxruntime", RuntimeOptions(tune_trials=4))
    rc = main(["profile", "--device", "cpu-ort", "--tune-trials", "4", "--db", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert rc == 2 and "tunes TVM devices" in err and "Traceback" not in err


def test_meta_schedule_sets_up_its_logs_beside_a_handler_without_a_name(tmp_path) -> None:
    """MetaSchedule lists its logger's handlers by name; one without (pytest >= 9.2 attaches its
    capture handler so to every logger that does not propagate) failed every tuning after the first
    in a process. It is set aside while MetaSchedule sets up, and back on the logger after."""
    import logging

    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir

    from hwnas.profilers._tvm_tune import _unnamed_handlers_set_aside

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = logging.NullHandler()
    logger.addHandler(unnamed)
    try:
        with pytest.raises(AttributeError):  # MetaSchedule's own set-up, unguarded
            get_loggers_from_work_dir(str(tmp_path / "a"), ["t"])
        logger.addHandler(unnamed)
        with _unnamed_handlers_set_aside("tvm.s_tir.meta_schedule"):
            loggers = get_loggers_from_work_dir(str(tmp_path / "b"), ["t"])
        assert loggers and unnamed in logger.handlers
    finally:
        logger.removeHandler(unnamed)


@pytest.mark.slow
def test_tuning_is_recorded_and_reused(tmp_path) -> None:
    pytest.importorskip("xgboost", reason="MetaSchedule's cost model: pip install xgboost-cpu")
    from hwnas.profilers import OpConfig, build_onnx, get_backend
    from hwnas.profilers._tvm_tune import STATS, tuning_dir

    dev = tuned_device(default_registry().get("cpu-tvm"), 2, tmp_path / "s.sqlite")
    backend = get_backend("tvm")
    model = build_onnx(OpConfig.parse("conv_i8_o8_r8_k3_s1_g1_arelu"))
    before = STATS.as_dict()
    p = backend.prepare(model, dev)
    times = p.sample(3)
    p.close()
    tuned = STATS.tuned_tasks - before["tuned_tasks"]
    assert tuned >= 1 and all(t > 0 for t in times)
    records = (tuning_dir(dev) / "database_tuning_record.json").read_text().splitlines()
    assert len(records) >= 1 and json.loads(records[0])
    p = backend.prepare(model, dev)  # the same workload: found in the database, not tuned again
    p.close()
    assert STATS.tuned_tasks - before["tuned_tasks"] == tuned
    assert STATS.reused_tasks - before["reused_tasks"] >= tuned


@pytest.mark.slow
def test_a_predictor_trains_on_a_tuned_device(tmp_path) -> None:
    pytest.importorskip("xgboost", reason="MetaSchedule's cost model: pip install xgboost-cpu")
    from hwnas.profilers import OpConfig

    dev = tuned_device(default_registry().get("cpu-tvm"), 1, tmp_path / "s.sqlite")
    from hwnas.jobs import train_predictor

    pred = train_predictor(dev, store=tmp_path / "s.sqlite", samples=10, adaptive=0, calibrate=False, quick=True,
                           max_time_per_op=0.03, drift_check=False, recheck=0, model_passes=1,
                           out=tmp_path / "pred")
    assert (tmp_path / "tvm-tuning" / "cpu-tvm-1trials" / "database_tuning_record.json").exists()
    assert "meta_schedule 1 trials/task" in json.dumps(pred.fingerprint)
    assert pred.predict_architecture([OpConfig.parse("conv_i8_o16_r16_k3_s1_g1_arelu")]) > 0
