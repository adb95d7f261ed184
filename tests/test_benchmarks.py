"""The NAS-Bench-201 search benchmark's interface, on a synthetic table in its CSV format (a
deterministic stand-in: no number from it is reported anywhere)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwnas.search.spaces import create_space

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    space = create_space("nb201")
    archs = list(space.enumerate())
    ops = np.array([a.choices for a in archs])
    rng = np.random.default_rng(0)
    convs = (ops == 3).sum(1) * 1.0 + (ops == 2).sum(1) * 0.3  # 3x3 convs cost most, then 1x1
    strings = [space.to_string(a) for a in archs]
    lat = pd.DataFrame({"index": range(len(archs)), "arch_str": strings,
                        "fake_gpu": 1 + convs * 0.2 + rng.normal(0, 0.01, len(archs)),
                        "fake_cpu": 2 + convs * 0.5 + (ops == 4).sum(1) * 0.1 + rng.normal(0, 0.02, len(archs)),
                        "fake_phone": 5 + convs * 1.1 + rng.normal(0, 0.05, len(archs))})
    acc = pd.DataFrame({"index": range(len(archs)), "arch_str": strings,
                        "top1": 80 + convs * 2 - (ops == 0).sum(1) + rng.normal(0, 0.3, len(archs))})
    d = tmp_path_factory.mktemp("nb201")
    lat.to_csv(d / "lat.csv", index=False)
    acc.to_csv(d / "acc.csv", index=False)
    return d / "lat.csv", d / "acc.csv"


@pytest.mark.slow
def test_nb201_search_prints_and_writes_its_interface(tables, tmp_path, capsys) -> None:
    lat, acc = tables
    bench = _module("nb201_search")
    out = tmp_path / "r.json"
    args = ["--latency-csv", str(lat), "--accuracy-csv", str(acc), "--accuracy-column", "top1", "--device", "fake_cpu",
            "--target-ms", "median", "--strategy", "guided-evolution", "--budget", "40", "--latency-samples", "30",
            "--seeds", "2", "--json", str(out)]
    assert bench.main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"regret=\d+\.\d+ violations=\d+\.\d+", last), last
    res = json.loads(out.read_text())
    for key in ("regret_mean", "regret_median", "violation_rate", "oracle_acc", "found_acc_mean", "best_so_far_curve"):
        assert key in res
    assert res["found_acc_mean"] <= res["oracle_acc"] and len(res["best_so_far_curve"]) == 40
    assert all(r["measurements"] <= 30 for r in res["per_seed"])  # the device budget holds
    assert f"regret={res['regret_mean']:.4f}" in last
    # the diagnostic: exact latency, no measurements, never a violation
    assert bench.main([*args, "--oracle-latency"]) == 0
    res = json.loads(out.read_text())
    assert res["violation_rate"] == 0 and all(r["measurements"] == 0 for r in res["per_seed"])


def test_nb201_search_bad_input_exits_2(tables, capsys) -> None:
    lat, acc = tables
    bench = _module("nb201_search")
    base = ["--latency-csv", str(lat), "--accuracy-csv", str(acc), "--accuracy-column", "top1", "--target-ms", "median",
            "--strategy", "evolution", "--budget", "10", "--seeds", "1"]
    assert bench.main([*base, "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'tpu'" in err and "fake_gpu, fake_cpu, fake_phone" in err
    assert bench.main([*base, "--device", "fake_gpu", "--accuracy-column", "top5"]) == 2
    assert "top1" in capsys.readouterr().err
    assert bench.main([*base, "--device", "fake_gpu", "--target-ms", "0.001"]) == 2
    assert "smallest" in capsys.readouterr().err
    assert bench.main([*base, "--device", "fake_gpu", "--verify-samples", "99"]) == 2
    assert "--verify-samples" in capsys.readouterr().err
    for bad, says in (("p100", "percentile in (0, 100)"), ("fast", "milliseconds, median or p<percentile>")):
        assert bench.main([*base, "--device", "fake_gpu", "--target-ms", bad]) == 2
        assert says in capsys.readouterr().err


@pytest.mark.slow
def test_nb201_search_compare_runs_workers_and_matches_the_single_run(tables, tmp_path, capsys) -> None:
    """Spawned single-thread workers (--jobs 2) give the figures of nb201_search run alone."""
    import subprocess

    lat, acc = tables
    out = tmp_path / "c.json"
    common = ["--latency-csv", str(lat), "--accuracy-csv", str(acc), "--accuracy-column", "top1",
              "--budget", "20", "--seeds", "1"]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nb201_search_compare.py"), *common,
                        "--devices", "fake_gpu", "fake_cpu", "--strategies", "random", "--jobs", "2",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())["results"]
    single = tmp_path / "s.json"
    assert _module("nb201_search").main([*common, "--device", "fake_cpu", "--target-ms", "median",
                                         "--strategy", "random", "--json", str(single)]) == 0
    assert res["fake_cpu"]["random"]["regret_median"] == json.loads(single.read_text())["regret_median"]
    assert set(res) == {"fake_gpu", "fake_cpu"}


@pytest.mark.slow
def test_nb201_search_qualify_band(tables, tmp_path, capsys) -> None:
    """Architectures predicted just over T may be proposed and are measured before they count."""
    bench = _module("nb201_search")
    dev = bench.DeviceLatency(np.zeros((4, 1)), np.zeros((4, 1)), np.array([0.9, 1.05, 1.2, 1.0]), 1.0, 50.0, band=0.1)
    dev.pred, dev.margin = np.array([0.9, 1.05, 1.2, 1.08]), 0.0
    dev.measured = {3: 1.0}
    assert [dev.borderline(i) for i in range(4)] == [False, True, False, False]  # 3 is measured: it is decided
    assert [dev.feasible(i) for i in range(4)] == [True, False, False, True]
    # the adaptive band: within T when corrected by a low percentile of the under-prediction
    dev = bench.DeviceLatency(np.zeros((4, 1)), np.zeros((4, 1)), np.ones(4), 1.0, 50.0, qualify_percentile=10.0)
    dev.pred, dev.margin, dev.qualify_margin = np.array([0.9, 1.05, 1.2, 1.1]), 0.0, -0.1
    assert [dev.borderline(i) for i in range(4)] == [False, True, False, True]
    lat, acc = tables
    out = tmp_path / "q.json"
    args = ["--latency-csv", str(lat), "--accuracy-csv", str(acc), "--accuracy-column", "top1", "--device", "fake_phone",
            "--target-ms", "median", "--strategy", "evolution", "--budget", "40", "--latency-samples", "30",
            "--seeds", "2", "--json", str(out)]
    assert bench.main([*args, "--qualify-band", "0.2"]) == 0
    res = json.loads(out.read_text())
    assert res["qualify_band"] == 0.2 and all(r["measurements"] <= 30 for r in res["per_seed"])
    for r in res["per_seed"]:  # what is returned is within T by measurement or by prediction, never borderline
        assert r["found_measured"] or r["found_pred_latency_ms"] * (1 + r["margin"]) <= res["target_ms"]
        assert 0 <= r["qualified"] <= r["verifications"]
    capsys.readouterr()
    assert bench.main([*args, "--qualify-band", "1.5"]) == 2
    assert "--qualify-band" in capsys.readouterr().err
    assert bench.main([*args, "--qualify-percentile", "60"]) == 2
    assert "--qualify-percentile must be in [0, --margin-percentile)" in capsys.readouterr().err
    assert bench.main([*args, "--qualify-percentile", "10"]) == 0
    res = json.loads(out.read_text())
    # the defaults: 60% of the measurements verify, a 5% band
    assert res["qualify_percentile"] == 10 and res["qualify_band"] == 0.05 and res["verify_samples"] == 18


@pytest.mark.slow
def test_nb201_search_compare_passes_benchmark_options_after_an_at(tables) -> None:
    import argparse

    lat, acc = tables
    compare = _module("nb201_search_compare")
    a = argparse.Namespace(latency_csv=str(lat), accuracy_csv=str(acc), accuracy_column="top1", budget=20, seeds=1,
                           oracle_latency=False, target="p50")
    res = compare.one(("fake_cpu", "evolution:tournament_size=5@qualify-band=0.2,verify-samples=10", a))
    assert res["qualify_band"] == 0.2 and res["verify_samples"] == 10 and res["strategy"] == "evolution"
    import pandas as pd

    lat_ms = pd.read_csv(lat)["fake_cpu"]
    assert res["target_ms"] == pytest.approx(float(lat_ms[lat_ms > 0].median()))  # p50 is the median


def test_nb201_search_compare_counts_how_far_the_seeds_move_the_count() -> None:
    compare = _module("nb201_search_compare")
    sure = {"regrets": [0.0] * 10, "violations": [False] * 10}  # within 0.3 whatever the seeds
    never = {"regrets": [1.0] * 10, "violations": [False] * 10}
    unsafe = {"regrets": [0.0] * 10, "violations": [True] * 10}  # regret 0, but over the limit
    coin = {"regrets": [0.0] * 5 + [1.0] * 5, "violations": [False] * 10}  # the median turns on the seeds
    assert compare.seed_interval([sure, sure, never, unsafe]) == (2, 2)
    lo, hi = compare.seed_interval([sure, coin, coin, coin])
    assert lo <= 2 and hi >= 3 and 1 <= lo <= hi <= 4


def test_nb201_surrogate_interface_and_bad_input(tables, tmp_path, capsys) -> None:
    _, acc = tables
    bench = _module("nb201_surrogate")
    out = tmp_path / "s.json"
    assert bench.main(["--accuracy-csv", str(acc), "--columns", "top1", "--samples", "60", "--seeds", "2",
                       "--json", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"spearman_onehot=[-0-9.]+ spearman_features=[-0-9.]+", last)
    r = json.loads(out.read_text())["top1"]["60"]
    # the synthetic accuracy is a function of the op counts: the features rank it better than the one-hot
    assert r["features"]["spearman_mean"] > r["onehot"]["spearman_mean"] and len(r["features"]["spearman"]) == 2
    assert bench.main(["--accuracy-csv", str(acc), "--columns", "top5"]) == 2
    err = capsys.readouterr().err
    assert "unknown accuracy column 'top5'" in err and "top1" in err
    assert bench.main(["--accuracy-csv", str(tmp_path / "missing.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_op_model_accuracy_interface_and_bad_input(tmp_path, capsys) -> None:
    """On a small real store (ONNX Runtime on tiny ops): both scores per model, and exit 2 on bad input."""
    from hwnas.devices import default_registry
    from hwnas.latency_models import sample_configs
    from hwnas.profilers import OpConfig, Profiler, ProfileStore
    from hwnas.testing import FAST_POLICY

    db = tmp_path / "ops.sqlite"
    configs = [c for c in sample_configs(300, seed=5) if c.macs() < 1_000_000][:24]
    configs += [OpConfig.parse(f"pwconv_i{c}_o{c}_r8_arelu") for c in range(8, 104, 8)]  # 12 of one type
    with ProfileStore(db) as store:
        Profiler(default_registry().get("cpu-ort"), FAST_POLICY, store, kernel_times=False).profile_ops(configs)
    bench = _module("op_model_accuracy")
    out = tmp_path / "o.json"
    assert bench.main(["--db", str(db), "--op-time", "e2e", "--models", "lightgbm", "lightgbm:base=none",
                       "--json", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"cv_acc10=[0-9.]+ extrap_acc10=[0-9.]+", last)
    r = json.loads(out.read_text())
    assert r["n_ops"] == len(configs) and set(r["results"]) == {"lightgbm", "lightgbm:base=none"}
    for v in r["results"].values():
        assert v["cv5"]["n"] == len(configs) and 0 < v["extrapolation"]["n"] < len(configs)
    assert bench.main(["--db", str(tmp_path / "missing.sqlite")]) == 2
    assert "no profile store" in capsys.readouterr().err
    few = tmp_path / "few.sqlite"
    with ProfileStore(few) as store:
        Profiler(default_registry().get("cpu-ort"), FAST_POLICY, store, kernel_times=False).profile_ops(configs[:5])
    assert bench.main(["--db", str(few), "--op-time", "e2e"]) == 2
    assert "at least 10 stored configurations" in capsys.readouterr().err
    assert bench.main(["--db", str(db), "--models", "forest"]) == 2
    err = capsys.readouterr().err
    assert "forest" in err and "lightgbm" in err
    assert bench.main(["--db", str(db), "--models", "lightgbm:trees=5"]) == 2
    assert "bad parameter in --models 'lightgbm:trees=5'" in capsys.readouterr().err
    assert bench.main(["--db", str(db), "--op-time", "e2e", "--models", "lightgbm:n_estimators=20"]) == 0
    assert json.loads(out.read_text())["n_ops"] == len(configs)  # (the earlier run's file, untouched)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--db", str(db), "--holdout", "2"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_nb201_transfer_ceiling_interface_and_bad_input(tables, tmp_path, capsys) -> None:
    bench = _module("nb201_transfer_ceiling")
    lat, _ = tables
    out = tmp_path / "c.json"
    assert bench.main(["--latency-csv", str(lat), "--train", "2000", "--json", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    r = json.loads(out.read_text())
    assert last == f"spearman={r['mean']['spearman']:.4f} acc10={r['mean']['acc10']:.4f}"
    assert set(r["devices"]) == {"fake_gpu", "fake_cpu", "fake_phone"}
    assert r["mean"]["spearman"] > 0.8  # the fake devices are a few ops' costs plus noise: learnable
    assert bench.main(["--latency-csv", str(tmp_path / "missing.csv")]) == 2
    assert bench.main(["--latency-csv", str(lat), "--train", "999999"]) == 2
    assert "--train must be between 1 and" in capsys.readouterr().err


def test_activation_in_model_interface_and_bad_input(tmp_path, capsys) -> None:
    """Real ONNX Runtime: an op alone and inside a chain of 8, per op and activation; exit 2 on bad input."""
    bench = _module("activation_in_model")
    out = tmp_path / "a.json"
    assert bench.main(["--acts", "relu", "hardswish", "--runs", "5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["op"], r["act"]) for r in rows] == [(op, a) for op in bench.OPS for a in ("relu", "hardswish")]
    assert all(r["alone_ms"] > 0 and r["ratio"] == pytest.approx(r["in_chain_ms"] / r["alone_ms"]) for r in rows)
    assert len(capsys.readouterr().out.strip().splitlines()) == len(rows)
    for bad, message in ((["--acts", "gelu"], "unknown activation(s) gelu; known: "), (["--runs", "0"], "--runs")):
        with pytest.raises(SystemExit) as exc:
            bench.main(bad)
        assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_nb201_pareto_interface_and_bad_input(tables, tmp_path, capsys) -> None:
    lat, acc = tables
    bench = _module("nb201_pareto")
    out = tmp_path / "p.json"
    base = ["--latency-csv", str(lat), "--accuracy-csv", str(acc), "--accuracy-column", "top1"]
    assert bench.main([*base, "--devices", "fake_cpu", "fake_phone", "--strategies", "random", "nsga2",
                       "--budget", "40", "--latency-samples", "20", "--seeds", "2", "--json", str(out),
                       "--png", str(tmp_path / "p.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"nsga2: hv_regret=\d\.\d{4} reported_front=\d\.\d{4} below_random=[012]", lines[-1])
    r = json.loads(out.read_text())
    for dev in r["results"]:
        for s in ("random", "nsga2"):
            m = dev["strategies"][s]
            assert 0 <= m["hv_regret_median"] <= 1 and len(m["per_seed"]) == 2
    assert (tmp_path / "p.png").stat().st_size > 0
    assert bench.main([*base, "--strategies", "evolution"]) == 2
    assert "strategy 'evolution' takes one reward; multi-objective strategies: grid, nsga2, random" in capsys.readouterr().err
    assert bench.main([*base, "--devices", "fake_tpu"]) == 2
    assert "unknown device(s) fake_tpu; devices in" in capsys.readouterr().err


@pytest.mark.slow
def test_space_predictor_check_interface_and_bad_input(trained, tmp_path, capsys) -> None:
    """Real cpu-ort measurements of two nb201 networks against a real (small) predictor."""
    bench = _module("space_predictor_check")
    out = tmp_path / "c.json"
    assert bench.main(["--space", "nb201", "--n", "2", "--predictor", str(trained / "predictor"),
                       "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"onnx: MAPE \d+\.\d%, within \+-10% \d+%, worst [+-]\d+%", lines[-1])
    r = json.loads(out.read_text())
    assert len(r["rows"]) == 2 and all(x["measured_ms"] > 0 and x["predicted_op_configs_ms"] > 0 for x in r["rows"])
    assert r["rows"][0]["mflops"] < r["rows"][1]["mflops"]
    assert bench.main(["--space", "nasnet", "--predictor", str(trained / "predictor")]) == 2
    assert "Known search spaces: cell, mlp, mnasnet, nb201, proxyless" in capsys.readouterr().err


def test_predictor_accuracy_reports_how_far_whole_model_passes_agree(tmp_path) -> None:
    """Every pass of a whole model is stored; the benchmark reads them back to say how far they
    agree (the ceiling of any prediction's agreement) and, by ``--model-statistic p10``, scores the
    fastest pass's 10th percentile instead of its median."""
    from hwnas.devices import default_registry
    from hwnas.profilers import OpConfig, Profiler, ProfileStore, build_sequence_onnx, measure_models
    from hwnas.testing import FAST_POLICY

    pa = _module("predictor_accuracy")
    models = [(f"m{c}", build_sequence_onnx([OpConfig.parse(f"pwconv_i{c}_o{c}_r8_arelu")], name=f"m{c}")[1])
              for c in (8, 16)]
    with ProfileStore(tmp_path / "p.sqlite") as store:
        prof = Profiler(default_registry().get("cpu-ort"), FAST_POLICY, store)
        kept = measure_models(prof, models, passes=3)
        names = [n for n, _ in models]
        med = pa.pass_statistics(store, prof.fingerprint.id, names, "median")
        p10 = pa.pass_statistics(store, prof.fingerprint.id, names, "p10")
        df = store.model_measurements(prof.fingerprint.id)
    assert med["passes"] == {"m8": 3, "m16": 3}
    for m in kept:  # the median statistic is what measure_models kept: the fastest pass
        assert med["fastest_ms"][m.name] == pytest.approx(m.latency_ms)
        rows = df[df["model_name"] == m.name]
        assert p10["fastest_ms"][m.name] == pytest.approx(rows["p10_ms"].min())
        assert med["spread"][m.name] == pytest.approx(rows["latency_ms"].max() / rows["latency_ms"].min() - 1)
    rep = pa.repeatability(med, names)
    assert rep["n"] == 2 and 0 <= rep["within_5"] <= rep["within_10"] <= 1
    assert rep["median_spread"] == pytest.approx(np.median(list(med["spread"].values())))
    swapped = pa.with_statistic(kept, p10)
    assert [m.latency_ms for m in swapped] == [p10["fastest_ms"][m.name] for m in kept]
    assert pa.repeatability({"spread": {"a": 0.0}, "passes": {"a": 1}}, ["a"]) == {"n": 0}


@pytest.mark.slow
def test_machine_noise_interface_and_bad_input(tmp_path, capsys) -> None:
    mod = _module("machine_noise")
    out = tmp_path / "noise.json"
    assert mod.main(["--devices", "cpu-ort", "--repeats", "2", "--resolution", "32", "--json", str(out)]) == 0
    d = json.loads(out.read_text())["devices"]["cpu-ort"]
    assert len(d) == len(mod.MODELS)
    for r in d.values():
        assert len(r["ms"]) == 2 and r["spread"] == pytest.approx(max(r["ms"]) / min(r["ms"]) - 1)
        assert 0.5 <= r["within_5"] <= r["within_10"] <= 1  # the fastest is always within
    assert "spread" in capsys.readouterr().out
    assert mod.spread([1.0, 1.08, 1.2]) == pytest.approx({"spread": 0.2, "within_10": 2 / 3, "within_5": 1 / 3})
    assert mod.main(["--devices", "cpu-ort", "--repeats", "2", "--resolution", "32", "--with-reference",
                     "--json", str(out)]) == 0
    d = json.loads(out.read_text())["devices"]["cpu-ort"]
    assert len(d.pop("rounds_correlation")) == 3
    for r in d.values():
        c = r["reference"]
        assert len(c["ref_ms"]) == 2 and -1 <= c["correlation"] <= 1 and c["normalised_spread"] >= 0
    c = mod.reference_check([1.0, 1.2], [0.1, 0.12])  # a reference that tracks the model exactly
    assert c["correlation"] == pytest.approx(1.0) and c["normalised_spread"] == pytest.approx(0.0)
    assert mod.main(["--devices", "no-such-device"]) == 2
    assert "Known devices" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        mod.main(["--repeats", "1"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_constrained_derivation_interface_and_bad_input(trained, tmp_path, capsys) -> None:
    """The exact derivation against the relaxation on a real (small) predictor's table: never
    less likely, always within the limit."""
    bench = _module("constrained_derivation")
    out = tmp_path / "d.json"
    assert bench.main(["--predictor", str(trained / "predictor"), "--cases", "3", "--fractions", "0.6", "0.9",
                       "--resolution", "32", "--width", "0.35", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert len(r["rows"]) == 6 and r["summary"]["never_worse"] and r["summary"]["all_within"]
    assert all(x["exact_ll"] >= x["relaxed_ll"] - 1e-9 for x in r["rows"])
    assert '"summary"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        bench.main(["--predictor", str(trained / "predictor"), "--fractions", "1.5"])
    assert exc.value.code == 2
    assert bench.main(["--predictor", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err


def test_adapt_by_family_groups_the_errors_by_family() -> None:
    mod = _module("adapt_by_family")
    rows = [{"family": "squeezenet", "measured_ms": 1.0, "predicted_ms": 1.5},
            {"family": "squeezenet", "measured_ms": 2.0, "predicted_ms": 3.0},
            {"family": "random", "measured_ms": 4.0, "predicted_ms": 3.0}]
    got = mod.by_family(rows)
    assert got == {"squeezenet": [pytest.approx(0.5), pytest.approx(0.5)], "random": [pytest.approx(-0.25)]}
    m = mod.medians(got, {"squeezenet": [0.1, 0.0, 0.05]})
    assert m["squeezenet"] == {"n": 2, "adapted_median": pytest.approx(0.5), "scratch_median": pytest.approx(0.05)}
    assert m["random"]["scratch_median"] is None


def test_adapt_pools_compares_the_zoo_pool_with_the_mixed_default() -> None:
    mod = _module("adapt_pools")
    zoo, mixed = mod.POOLS["zoo"](), mod.POOLS["zoo+mixed"]()
    assert {c.family for c in zoo} == {"random", "mobilenetv2", "resnet"}
    assert {c.family for c in mixed} - {c.family for c in zoo} == {"mixed"}
    assert len(mixed) == len(zoo) + 20
    rows = [{"family": "mixed", "measured_ms": 1.0, "predicted_ms": 1.2}] * 3
    assert mod.family_medians(rows) == {"mixed": pytest.approx(0.2)}


def test_inherit_compare_counts_epochs_within_images() -> None:
    mod = _module("inherit_compare")
    pair = {"scratch_acc": 0.99, "inherited_curve": [0.95, 0.9872, 0.99], "ratio": 0.375}
    assert mod.ratio_within(pair, 0, 359, 8) == 0.375
    assert mod.ratio_within(pair, 1, 359, 8) == 0.25  # 0.9872 is within one image (0.0028) of 0.99
    never = {"scratch_acc": 0.99, "inherited_curve": [0.9] * 8, "ratio": None}
    assert mod.ratio_within(never, 2, 359, 8) == 1.0
    there = {**pair, "untrained_acc": 0.9872}  # before any training, within one image
    assert mod.ratio_within(there, 0, 359, 8) == 0.375 and mod.ratio_within(there, 1, 359, 8) == 0.0
    s = mod.summary([pair, never], 359, 8)
    assert s["mean_ratio_within_0"] == pytest.approx(0.688, abs=1e-3) and s["never_reached"] == 1
    lo, hi = s["mean_ratio_90pct_pairs_resampled"]  # the pairs resampled: 0.375 or 1.0 each
    assert 0.375 <= lo <= 0.688 <= hi <= 1.0


def test_inherit_compare_refuses_sets_of_other_pairs_and_leaves_them_as_they_were(tmp_path, capsys) -> None:
    import hashlib
    import json

    mod = _module("inherit_compare")
    pair = {"parent": "p", "child": "c", "scratch_acc": 0.9, "inherited_curve": [0.9], "ratio": 0.125}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"settings": {"epochs": "8"}, "pairs": [pair]}))
    b.write_text(json.dumps({"settings": {"epochs": "8"}, "pairs": [{**pair, "child": "other"}]}))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)}
    with pytest.raises(SystemExit) as exc:
        mod.main(["--before", str(a), "--after", str(b), "--json", str(tmp_path / "out.json")])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "not the same pairs (1 and 1 pairs, 1 differing" in err[0]
    assert not (tmp_path / "out.json").exists()
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)}
    assert mod.main(["--before", str(a), "--after", str(a), "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["after"]["mean_ratio_within_0"] == 0.125


def test_adapt_pools_finds_the_runs_scratch_predictors(tmp_path, capsys) -> None:
    mod = _module("adapt_pools")
    for dev in ("cpu-ort", "cpu-torch"):
        (tmp_path / dev / "scratch").mkdir(parents=True)
        (tmp_path / dev / "scratch" / "model.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--from-run", str(tmp_path), "--targets", "cpu-tvm", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "has scratch predictors for cpu-ort, cpu-torch; need one for each target (cpu-tvm)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("script, args, message", [
    ("predictor_accuracy", ["--model-statistic", "p50"], "invalid choice"),
    ("inherit_proxy", ["--inherit-schedule", "warm"], "invalid choice"),
    ("inherit_proxy", ["--first-seed", "-1"], "--first-seed must be >= 0"),
    ("adapt_by_family", ["--out", "no-such-run", "--targets", "cpu-ort"], "no adapted predictor at no-such-run/cpu-ort/adapt-20"),
    ("inherit_compare", ["--before", "no-such.json", "--after", "no-such.json"], "no such file: no-such.json"),
    ("inherit_compare", ["--before", "a.json", "--after", "a.json", "--val-images", "0"], "--val-images must be >= 1; got 0"),
    ("adapt_pools", ["--from-run", "no-such-run", "--targets", "cpu-ort", "--out", "x"],
     "no-such-run has scratch predictors for no device; need one for each target (cpu-ort)"),
])
def test_a_bad_choice_in_the_benchmarks_is_one_error_line_and_writes_nothing(tmp_path, script, args, message) -> None:
    import subprocess

    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args, "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 2 and len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and list(tmp_path.iterdir()) == []
