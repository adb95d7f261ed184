from __future__ import annotations

import json

import onnx
import pytest

from hwnas import zoo
from hwnas.cli import main
from hwnas.errors import HwnasError


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_train_writes_a_calibrated_predictor(trained, capsys) -> None:
    meta = json.loads((trained / "predictor" / "model.json").read_text())
    assert meta["model"] == "lightgbm" and meta["fingerprint"]["device_name"] == "cpu-ort"
    assert meta["training_summary"]["n_configs"] >= 40 and meta["validation"]["op_level_5fold"]["n"] >= 40
    # ONNX Runtime reports kernel times: the default op model learns the mean of them and the ops' own time
    assert meta["training_summary"]["op_time"] == "mean"
    # the repeat check after profiling (default 10 stored ops measured again) is kept with the predictor
    rep = meta["training_summary"]["repeat_check"]
    assert rep["n"] == 10 and 0 <= rep["within_10"] <= 1 and "ops" not in rep
    cal = json.loads((trained / "predictor" / "predictor.json").read_text())["calibration"]
    assert cal["n_models"] == 5
    rc, out, _ = run(capsys, "predictor", "show", str(trained / "predictor"))
    assert rc == 0 and json.loads(out)["calibration"]["n_models"] == 5


@pytest.mark.slow
def test_rerun_reuses_the_profile(trained, capsys) -> None:
    rc, out, err = run(capsys, "predictor", "train", "--db", str(trained / "p.sqlite"), "--out",
                       str(trained / "again"), "--samples", "40", "--adaptive", "0", "--quick", "--op-time", "e2e",
                       "--json", "--recheck", "3")
    r = json.loads(out)
    assert rc == 0 and r["op_configs"] >= 40 and r["op_time"] == "e2e" and r["recheck"]["n"] == 3
    assert json.loads((trained / "again" / "model.json").read_text())["training_summary"]["op_time"] == "e2e"


@pytest.mark.slow
def test_predict_json_and_table(trained, tmp_path, capsys) -> None:
    path = tmp_path / "mnas.onnx"
    onnx.save(zoo.create("mnasnet", 0.35, 64).onnx, str(path))
    rc, out, _ = run(capsys, "predict", str(path), "--predictor", str(trained / "predictor"), "--json")
    r = json.loads(out)
    assert rc == 0 and r["latency_ms"] > 0 and r["calibrated"] and r["kernels"]
    assert {"label", "kind", "latency_ms", "fallback", "note"} <= set(r["kernels"][0])
    rc, out, _ = run(capsys, "predict", str(path), "--predictor", str(trained / "predictor"), "--top", "3")
    assert rc == 0 and "predicted latency" in out


@pytest.mark.slow
def test_eval_quick_with_plot(trained, tmp_path, capsys) -> None:
    png = tmp_path / "eval.png"
    rc, out, _ = run(capsys, "predictor", "eval", "--predictor", str(trained / "predictor"), "--db",
                     str(trained / "p.sqlite"), "--quick", "--plot", str(png), "--json")
    r = json.loads(out)
    assert rc == 0 and r["metrics"]["n"] == 5 and 0 <= r["metrics"]["acc10"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_predictor_bad_input(trained, tmp_path, capsys) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(zoo.create("resnet", 0.25, 32).onnx, str(model))
    rc, _, err = run(capsys, "predictor", "eval", "--model-passes", "0", "--db", str(tmp_path / "x.sqlite"))
    assert rc == 2 and "--model-passes" in err  # refused before anything is measured
    rc, _, err = run(capsys, "predict", str(model), "--predictor", str(tmp_path / "nothing"))
    assert rc == 2 and "no predictor at" in err and "hwnas predictor train" in err
    # trained on cpu-ort (1 thread): refused for cpu-ort-mt, whose fingerprint differs
    rc, _, err = run(capsys, "predict", str(model), "--device", "cpu-ort-mt", "--predictor", str(trained / "predictor"))
    assert rc == 2 and "another fingerprint" in " ".join(err.split()) and "intra_op_threads" in err
    rc, _, err = run(capsys, "predict", str(model), "--device", "cpu-ort-mt", "--predictor",
                     str(trained / "predictor"), "--allow-fingerprint-mismatch", "--json")
    assert rc == 0
    rc, _, err = run(capsys, "predictor", "train", "--model", "xgboost", "--db", str(tmp_path / "x.sqlite"))
    assert rc == 2 and "Known latency models: flops, lightgbm, lut" in err
    rc, _, err = run(capsys, "predictor", "train", "--op-time", "wall", "--db", str(tmp_path / "x.sqlite"))
    assert rc == 2 and "unknown op time 'wall'. Known op times: auto, e2e, kernel, mean" in err
    rc, _, err = run(capsys, "predictor", "train", "--op-time", "auto", "--quick", "--db", str(tmp_path / "x.sqlite"))
    assert rc == 2 and "--op-time auto compares the op times on the calibration models" in err
    assert not (tmp_path / "x.sqlite").exists()  # refused before anything is measured
    rc, _, err = run(capsys, "predict", str(tmp_path / "missing.onnx"), "--predictor", str(trained / "predictor"))
    assert rc == 2 and "model file not found" in err


@pytest.mark.slow
def test_train_passes_reach_the_profiler(tmp_path, capsys, monkeypatch) -> None:
    """``--passes K`` measures the ops in K passes (each op's fastest kept); quickstart's --op-passes too."""
    from hwnas.profilers import Profiler

    seen: list[int] = []
    real = Profiler.profile_ops

    def spy(self, configs, *a, passes: int = 1, **kw):  # noqa: ANN001, ANN202
        seen.append(passes)
        return real(self, configs, *a, passes=passes, **kw)

    monkeypatch.setattr(Profiler, "profile_ops", spy)
    rc, out, _ = run(capsys, "predictor", "train", "--db", str(tmp_path / "p.sqlite"), "--out", str(tmp_path / "pr"),
                     "--samples", "12", "--adaptive", "0", "--no-calibrate", "--recheck", "0", "--passes", "2",
                     "--max-time-per-op", "0.02", "--json")
    assert rc == 0 and seen and set(seen) == {2}
    assert json.loads(out)["op_configs"] >= 12
    rc, _, err = run(capsys, "predictor", "train", "--db", str(tmp_path / "p.sqlite"), "--passes", "0")
    assert rc == 2 and "--passes" in err
    rc, _, err = run(capsys, "quickstart", "--out", str(tmp_path / "qs"), "--op-passes", "0")
    assert rc == 2 and "--op-passes" in err and not (tmp_path / "qs").exists()


@pytest.mark.slow
def test_train_for_a_space_calibrates_on_its_models_and_search_uses_it(tmp_path, capsys, monkeypatch) -> None:
    """`predictor train --space nb201`: calibrated on nb201 networks measured on cpu-ort (real
    ONNX Runtime), saved beside the device's predictor under the space's name; loading a predictor
    for nb201 finds it, for another space (or settings) the device's own."""
    import pytest

    from hwnas.jobs import load_predictor, space_key as _space_key

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc, out, err = run(capsys, "predictor", "train", "--device", "cpu-ort", "--db", str(tmp_path / "p.sqlite"),
                       "--space", "nb201", "--space-models", "6", "--samples", "30", "--adaptive", "5",
                       "--max-time-per-op", "0.03", "--model-passes", "1", "--recheck", "0", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["predictor"].endswith("-nb201") and r["calibration_models"] == 6
    assert str(load_predictor("cpu-ort", space="nb201").path_) == r["predictor"]
    # no predictor for proxyless was trained, and the device's own is missing too
    with pytest.raises(HwnasError, match="no predictor at") as info:
        load_predictor("cpu-ort", space="proxyless", space_args={"resolution": 32})
    assert not str(info.value).split("no predictor at ")[1].startswith(r["predictor"])
    assert _space_key("proxyless", {"width": 0.35, "resolution": 32}) == _space_key("proxyless", {"resolution": 32,
                                                                                                  "width": 0.35})
    rc, _, err = run(capsys, "predictor", "train", "--space", "nasnet", "--db", str(tmp_path / "p.sqlite"))
    assert rc == 2 and "Known search spaces" in err
    rc, _, err = run(capsys, "predictor", "train", "--space", "nb201", "--no-calibrate", "--db", str(tmp_path / "q.sqlite"))
    assert rc == 2 and "--space calibrates on the space's models: it needs --calibrate" in err
