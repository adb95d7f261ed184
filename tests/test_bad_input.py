"""Bad input, table-driven: every case exits 2 with one line naming the problem, no traceback, and
leaves the files it involves byte-identical (hashes before and after)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwnas.cli import main


def _sha(path: Path) -> dict[str, str | None]:
    """Every file under ``path`` (or the file itself) -> its sha256; None where nothing exists."""
    if not path.exists():
        return {str(path): None}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _onnx(path: Path, dims: list, domain: str = "") -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    node = helper.make_node("MyOp" if domain else "Relu", ["x"], ["y"], domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets), str(path))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """User files and damaged artefacts the cases point at."""
    d = tmp_path
    (d / "garbage.bin").write_bytes(b"\x00not what it claims to be\xff" * 10)
    (d / "adir").mkdir()
    (d / "adir.onnx").mkdir()
    c = sqlite3.connect(d / "foreign.sqlite")
    c.execute("CREATE TABLE meta (id INTEGER, payload BLOB)")
    c.execute("INSERT INTO meta VALUES (1, x'00')")
    c.commit()
    c.close()
    _onnx(d / "symbolic.onnx", ["N", "C", "H", "W"])
    _onnx(d / "custom.onnx", [1, 3, 8, 8], domain="com.example")
    (d / "ops.txt").write_text("dwconv_i8_r8_k3_s1_arelu\n")
    (d / "arch.json").write_text(json.dumps({"space": "mlp", "arch": "64-32"}))
    (d / "noarch.json").write_text(json.dumps({"space": "mlp"}))
    (d / "bad.json").write_text("{not json")
    user = d / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes\n")
    (user / "trials.csv").write_text("my,own,table\n")
    (d / "page.html").write_text("<html>my page</html>\n")
    run = d / "run"  # a run directory whose files are damaged in different ways
    run.mkdir()
    (run / "best.json").write_text("{\"settings\": 3}")
    halfrun = d / "halfrun"
    halfrun.mkdir()
    (halfrun / "best.json").write_text(json.dumps({"settings": {"space": "mlp", "strategy": "random"}, "best": None}))
    colrun = d / "colrun"
    colrun.mkdir()
    (colrun / "best.json").write_text(json.dumps({"settings": {"space": "mlp", "strategy": "random"}, "best": None}))
    (colrun / "trials.csv").write_text("number,arch\n0,x\n")
    rungrun = d / "rungrun"  # a multi-fidelity run whose rungs.csv is damaged
    rungrun.mkdir()
    (rungrun / "best.json").write_text(json.dumps({"settings": {"space": "mlp", "strategy": "hyperband"}, "best": None}))
    (rungrun / "trials.csv").write_text("number,accuracy,latency_ms\n0,0.9,1.0\n")
    (rungrun / "rungs.csv").write_text("bracket,arch\n0,x\n")
    qs = d / "qs"  # a quickstart folder with other settings
    qs.mkdir()
    (qs / "quickstart.json").write_text(json.dumps({"device": "cpu-ort", "search_budget": 99}))
    pred = d / "pred"  # an existing predictor
    pred.mkdir()
    (pred / "model.json").write_text(json.dumps({"format_version": 1, "model": "lightgbm"}))
    (d / "brokenpred").mkdir()
    (d / "brokenpred" / "model.json").write_text("[1, 2")
    (d / "profiles.sqlite").write_bytes(b"")  # nothing: not a store yet
    (d / "profiles.sqlite").unlink()
    return d


# (id, argv with {d} for the files folder, expected message (regex), paths whose bytes must not change)
CASES = [
    ("target-zero", ["search", "--target-ms", "0"], r"--target-ms takes a latency > 0", []),
    ("target-negative", ["search", "--target-ms", "-1"], r"--target-ms takes a latency > 0", []),
    ("target-nan", ["search", "--target-ms", "nan"], r"--target-ms takes a latency > 0", []),
    ("budget-zero", ["search", "--budget", "0"], r"--budget takes a count >= 1", []),
    ("budget-negative", ["search", "--budget", "-3"], r"--budget takes a count >= 1", []),
    ("epochs-zero", ["search", "--epochs", "0"], r"--epochs takes a count >= 1", []),
    ("epochs-negative", ["search", "--epochs", "-1"], r"--epochs takes a count >= 1", []),
    ("space-arg-negative", ["search", "--space", "proxyless", "--space-arg", "width=-1"], r"--space-arg width takes a number", []),
    ("space-arg-not-a-number", ["search", "--space", "proxyless", "--space-arg", "resolution=abc"],
     r"--space-arg resolution takes an integer", []),
    ("space-arg-huge", ["search", "--space", "proxyless", "--space-arg", "resolution=4096"], r"resolution takes an integer \[8, 1024\]", []),
    ("space-arg-activation", ["search", "--space", "proxyless", "--space-arg", "act=swish"], r"unknown proxyless activation 'swish'", []),
    ("space-arg-unknown", ["search", "--space-arg", "depth=3"], r"has no setting 'depth'", []),
    ("space-arg-malformed", ["search", "--space-arg", "width"], r"--space-arg takes NAME=VALUE", []),
    ("strategy-param-negative", ["search", "--strategy", "evolution", "--strategy-param", "population_size=-5"],
     r"--strategy-param population_size takes a count|--strategy-param population_size takes an integer >= 1", []),
    ("strategy-param-range", ["search", "--strategy", "evolution", "--strategy-param", "crossover_prob=2"],
     r"--strategy-param crossover_prob takes a number \[0, 1\]", []),
    ("strategy-param-unknown", ["search", "--strategy-param", "swarm=3"], r"has no parameter 'swarm'", []),
    ("resolution-zero", ["search", "--resolution", "0"], r"--resolution takes a finite number > 0", []),
    ("resolution-huge", ["search", "--resolution", "4096"], r"--resolution takes at most 1024", []),
    ("verify-negative", ["search", "--verify", "-1"], r"--verify takes a count >= 0", []),
    ("qualify-band", ["search", "--qualify-band", "1.5"], r"--qualify-band takes a fraction in \[0, 1\]", []),
    ("pareto-single", ["search", "--objective", "pareto", "--strategy", "evolution"], r"needs a multi-objective strategy", []),
    ("unknown-strategy", ["search", "--strategy", "annealing"], r"Known strategies", []),
    ("unknown-objective", ["search", "--objective", "best"], r"Known objectives", []),
    ("unknown-space", ["search", "--space", "nasnet"], r"Known search spaces", []),
    ("unknown-device", ["search", "--device", "cpu-orrt"], r"Known devices", []),
    ("devices-file-dir", ["devices", "list", "--devices-file", "{d}/adir"], r"is a directory", ["{d}/adir"]),
    ("devices-file-missing", ["devices", "list", "--devices-file", "{d}/none.toml"], r"not found", []),
    ("max-time-zero", ["profile", "--max-time-per-op", "0", "--db", "{d}/p.sqlite"], r"--max-time-per-op takes a finite number > 0",
     ["{d}/p.sqlite"]),
    ("max-time-negative", ["profile", "--max-time-per-op", "-1", "--db", "{d}/p.sqlite"], r"--max-time-per-op takes", ["{d}/p.sqlite"]),
    ("passes-zero", ["profile", "--passes", "0", "--db", "{d}/p.sqlite"], r"--passes", ["{d}/p.sqlite"]),
    ("unknown-op-set", ["profile", "--space", "nosuchset", "--db", "{d}/p.sqlite"], r"Known op sets", ["{d}/p.sqlite"]),
    ("ops-missing", ["profile", "--ops", "{d}/none.txt", "--db", "{d}/p.sqlite"], r"not found|does not exist", ["{d}/p.sqlite"]),
    ("ops-dir", ["profile", "--ops", "{d}/adir", "--db", "{d}/p.sqlite"], r"directory", ["{d}/p.sqlite"]),
    ("db-dir", ["profile", "--space", "micro", "--db", "{d}/adir"], r"is a directory", ["{d}/adir"]),
    ("db-garbage", ["profile", "--space", "micro", "--db", "{d}/garbage.bin"], r"not an SQLite database", ["{d}/garbage.bin"]),
    ("db-foreign-meta", ["store", "info", "--db", "{d}/foreign.sqlite"], r"not an hwnas profile store", ["{d}/foreign.sqlite"]),
    ("ops-and-space", ["profile", "--ops", "{d}/ops.txt", "--space", "micro", "--db", "{d}/p.sqlite"], r"give one of",
     ["{d}/p.sqlite", "{d}/ops.txt"]),
    ("store-info-typo", ["store", "info", "--db", "{d}/typo.sqlite"], r"no profile store at", ["{d}/typo.sqlite"]),
    ("store-export-typo", ["store", "export", "--db", "{d}/typo.sqlite", "-o", "{d}/exp"], r"no profile store at",
     ["{d}/typo.sqlite", "{d}/exp"]),
    ("store-export-format", ["store", "export", "-o", "{d}/exp", "--format", "xlsx"], r"known formats: csv, parquet", ["{d}/exp"]),
    ("model-missing", ["profile-model", "{d}/none.onnx", "--no-store"], r"not found", []),
    ("model-garbage", ["profile-model", "{d}/garbage.bin", "--no-store"], r"not an ONNX model", ["{d}/garbage.bin"]),
    ("model-symbolic", ["profile-model", "{d}/symbolic.onnx", "--no-store"], r"symbolic size", ["{d}/symbolic.onnx"]),
    ("model-custom-op", ["profile-model", "{d}/custom.onnx", "--no-store"], r"custom domain|not a valid ONNX", ["{d}/custom.onnx"]),
    ("predict-symbolic", ["predict", "{d}/symbolic.onnx"], r"symbolic size", ["{d}/symbolic.onnx"]),
    ("predict-custom-op", ["predict", "{d}/custom.onnx"], r"custom domain|not a valid ONNX", ["{d}/custom.onnx"]),
    ("predict-broken-predictor", ["predict", "{d}/symbolic.onnx", "--predictor", "{d}/brokenpred"], r"symbolic size",
     ["{d}/brokenpred"]),
    ("export-not-onnx", ["export", "--arch", "{d}/arch.json", "-o", "{d}/model.txt", "--no-train"], r"must be an .onnx file",
     ["{d}/arch.json", "{d}/model.txt"]),
    ("export-dir", ["export", "--arch", "{d}/arch.json", "-o", "{d}/adir.onnx", "--no-train"], r"is a directory", ["{d}/adir.onnx"]),
    ("export-epochs-negative", ["export", "--arch", "{d}/arch.json", "-o", "{d}/m/model.onnx", "--epochs", "-2"],
     r"--epochs takes a count >= 1", ["{d}/m"]),
    ("export-budget-negative", ["export", "--arch", "{d}/arch.json", "-o", "{d}/m/model.onnx", "--budget-ms", "-1"],
     r"--budget-ms takes a finite number > 0", ["{d}/m"]),
    ("export-budget-nan", ["export", "--arch", "{d}/arch.json", "-o", "{d}/m/model.onnx", "--budget-ms", "nan"],
     r"--budget-ms takes a finite number > 0", ["{d}/m"]),
    ("export-run-missing", ["export", "--run", "{d}/none", "-o", "{d}/m/model.onnx"], r"not a search run directory|not found",
     ["{d}/m"]),
    ("export-run-and-arch", ["export", "--run", "{d}/run", "--arch", "{d}/arch.json", "-o", "{d}/m/model.onnx"],
     r"exactly one of --run DIR or --arch", ["{d}/run"]),
    ("export-arch-bad-json", ["export", "--arch", "{d}/bad.json", "-o", "{d}/m/model.onnx"], r"cannot be read as JSON",
     ["{d}/bad.json", "{d}/m"]),
    ("export-arch-incomplete", ["export", "--arch", "{d}/noarch.json", "-o", "{d}/m/model.onnx"], r"needs 'space' and 'arch'",
     ["{d}/noarch.json", "{d}/m"]),
    ("export-run-damaged", ["export", "--run", "{d}/run", "-o", "{d}/m/model.onnx"], r"not a run's best.json", ["{d}/run", "{d}/m"]),
    ("report-missing", ["report", "{d}/none"], r"not a search run directory", []),
    ("report-damaged-best", ["report", "{d}/run"], r"not a run's best.json", ["{d}/run"]),
    ("report-no-trials", ["report", "{d}/halfrun"], r"no trials.csv", ["{d}/halfrun"]),
    ("report-bad-trials", ["report", "{d}/colrun"], r"lacks the column", ["{d}/colrun"]),
    ("report-bad-rungs", ["report", "{d}/rungrun"], r"rungs.csv lacks the column\(s\) rung, epochs, accuracy",
     ["{d}/rungrun"]),
    ("report-over-best-json", ["report", "{d}/colrun", "-o", "{d}/colrun/best.json"], r"give an .html path", ["{d}/colrun"]),
    ("report-to-dir", ["report", "{d}/colrun", "-o", "{d}/adir"], r"is a directory", ["{d}/colrun", "{d}/adir"]),
    ("quickstart-out-file", ["quickstart", "--smoke", "--out", "{d}/garbage.bin"], r"is a file", ["{d}/garbage.bin"]),
    ("quickstart-user-folder", ["quickstart", "--smoke", "--out", "{d}/mine"], r"non-empty folder that holds no hwnas quickstart",
     ["{d}/mine"]),
    ("quickstart-other-settings", ["quickstart", "--smoke", "--out", "{d}/qs"], r"quickstart with other settings", ["{d}/qs"]),
    ("train-over-predictor", ["predictor", "train", "--out", "{d}/pred", "--db", "{d}/p.sqlite"], r"holds a predictor",
     ["{d}/pred", "{d}/p.sqlite"]),
    ("train-samples-negative", ["predictor", "train", "--samples", "-1", "--db", "{d}/p.sqlite"], r"--samples takes a count",
     ["{d}/p.sqlite"]),
    ("train-space-models", ["predictor", "train", "--space", "nb201", "--space-models", "3", "--db", "{d}/p.sqlite"],
     r"--space-models", ["{d}/p.sqlite"]),
    ("train-op-time", ["predictor", "train", "--op-time", "fastest", "--db", "{d}/p.sqlite"], r"Known op times", ["{d}/p.sqlite"]),
    ("train-unknown-model", ["predictor", "train", "--model", "xgboost", "--db", "{d}/p.sqlite"], r"Known latency models",
     ["{d}/p.sqlite"]),
    ("show-no-predictor", ["predictor", "show", "{d}/adir"], r"no predictor at", ["{d}/adir"]),
    ("show-broken-predictor", ["predictor", "show", "{d}/brokenpred"], r"cannot be read as JSON", ["{d}/brokenpred"]),
]


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def _check(files: Path, capsys, argv: list[str], pattern: str, keep: list[str]) -> None:
    argv = [a.replace("{d}", str(files)) for a in argv]
    paths = [Path(k.replace("{d}", str(files))) for k in keep]
    before = [_sha(p) for p in paths]
    rc, err = _run(capsys, argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (argv, rc, err)
    assert "Traceback" not in err, err
    assert re.search(pattern, " ".join(err.split())), (pattern, err)
    assert len(lines) == 1 or (lines and lines[0].startswith(("Usage:", "╭"))), err  # typer's usage box for usage errors
    assert [_sha(p) for p in paths] == before, f"{argv} changed {keep}"


@pytest.mark.parametrize(("argv", "pattern", "keep"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(files, capsys, monkeypatch, argv, pattern, keep) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(files / "cache"))  # no predictor of the user's is found
    monkeypatch.setenv("XDG_CONFIG_HOME", str(files / "config"))
    _check(files, capsys, argv, pattern, keep)


@pytest.fixture
def artefacts(trained, files: Path) -> Path:
    """A real predictor (copied), a finished table-evaluator run and an exported model beside the
    bad files: what the damaged-artefact cases start from."""
    from hwnas.search import create_space

    shutil.copytree(trained / "predictor", files / "predictor")
    space = create_space("nb201")
    rows = ["index,arch_str,acc"] + [f"{i},{space.to_string(a)},{50 + (i % 40)}" for i, a in enumerate(space.enumerate())]
    (files / "acc.csv").write_text("\n".join(rows) + "\n")
    assert main(["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", str(files / "acc.csv"),
                 "--accuracy-column", "acc", "--strategy", "random", "--budget", "4", "--target-ms", "1000", "--verify",
                 "0", "--predictor", str(files / "predictor"), "--out", str(files / "goodrun"), "--json"]) == 0
    assert main(["export", "--arch", str(files / "arch.json"), "-o", str(files / "model" / "model.onnx"), "--no-train",
                 "--predictor", str(files / "predictor"), "--json"]) == 0
    for name, x, y in (("short", np.zeros((10, 8, 8)), np.arange(7) % 2), ("oneclass", np.zeros((20, 8, 8)), np.zeros(20, int)),
                       ("nan", np.full((20, 8, 8), np.nan), np.arange(20) % 2)):
        np.savez(files / f"{name}.npz", x=x, y=y)
    damaged = files / "damaged"  # a truncated booster
    shutil.copytree(files / "predictor", damaged)
    booster = sorted(damaged.glob("lightgbm_*.txt"))[0]
    booster.write_bytes(booster.read_bytes()[: len(booster.read_bytes()) // 3])
    nofp = files / "nofp"  # a model.json without its fingerprint
    shutil.copytree(files / "predictor", nofp)
    meta = json.loads((nofp / "model.json").read_text())
    meta.pop("fingerprint")
    (nofp / "model.json").write_text(json.dumps(meta))
    badcoef = files / "badcoef"  # the fallback's coefficients damaged (read even where no op needs them)
    shutil.copytree(files / "predictor", badcoef)
    meta = json.loads((badcoef / "model.json").read_text())
    meta["fallback_coef"] = "x"
    (badcoef / "model.json").write_text(json.dumps(meta))
    c = sqlite3.connect(files / "goodrun" / "journal.sqlite")  # a copy of the run with a NULL accuracy
    c.close()
    shutil.copytree(files / "goodrun", files / "nullrun")
    c = sqlite3.connect(files / "nullrun" / "journal.sqlite")
    c.execute("UPDATE trials SET accuracy = NULL WHERE number = 1")
    c.commit()
    c.close()
    (files / "foreignrun").mkdir()
    c = sqlite3.connect(files / "foreignrun" / "journal.sqlite")
    c.execute("CREATE TABLE users (name TEXT)")
    c.commit()
    c.close()
    return files


SEARCH = ["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", "{d}/acc.csv", "--accuracy-column", "acc",
          "--strategy", "random", "--budget", "4", "--target-ms", "1000", "--verify", "0", "--predictor", "{d}/predictor"]
SLOW_CASES = [
    ("resume-missing", [*SEARCH, "--out", "{d}/none", "--resume"], r"holds no search journal to resume", ["{d}/none"]),
    ("search-user-folder", [*SEARCH, "--out", "{d}/mine"], r"non-empty folder that holds no hwnas search", ["{d}/mine"]),
    ("search-out-file", [*SEARCH, "--out", "{d}/garbage.bin"], r"is a file", ["{d}/garbage.bin"]),
    ("search-existing-run", [*SEARCH, "--out", "{d}/goodrun"], r"pass --resume", ["{d}/goodrun"]),
    ("search-resume-other-settings", [*(a if a != "1000" else "900" for a in SEARCH), "--out", "{d}/goodrun", "--resume"],
     r"the settings differ", ["{d}/goodrun"]),
    ("search-foreign-journal", [*SEARCH, "--out", "{d}/foreignrun", "--resume"], r"not an hwnas search journal", ["{d}/foreignrun"]),
    ("search-null-accuracy", [*SEARCH, "--out", "{d}/nullrun", "--resume"], r"has no accuracy", ["{d}/nullrun"]),
    ("csv-dir", [*SEARCH[:6], "{d}/adir", *SEARCH[7:], "--out", "{d}/r1"], r"is a directory", ["{d}/adir", "{d}/r1"]),
    ("dataset-short", ["search", "--space", "mlp", "--predictor", "{d}/predictor", "--target-ms", "1000", "--dataset",
                       "{d}/short.npz", "--out", "{d}/r2"], r"10 inputs but 7 labels", ["{d}/short.npz", "{d}/r2"]),
    ("dataset-one-class", ["search", "--space", "mlp", "--predictor", "{d}/predictor", "--target-ms", "1000", "--dataset",
                           "{d}/oneclass.npz", "--out", "{d}/r3"], r"one class only", ["{d}/oneclass.npz", "{d}/r3"]),
    ("dataset-nan", ["search", "--space", "mlp", "--predictor", "{d}/predictor", "--target-ms", "1000", "--dataset",
                     "{d}/nan.npz", "--out", "{d}/r4"], r"NaN", ["{d}/nan.npz", "{d}/r4"]),
    ("predict-truncated-booster", ["predict", "{d}/model/model.onnx", "--predictor", "{d}/damaged"], r"damaged|not a complete",
     ["{d}/damaged"]),
    ("predict-no-fingerprint", ["predict", "{d}/model/model.onnx", "--predictor", "{d}/nofp"], r"records no device fingerprint",
     ["{d}/nofp"]),
    ("predict-damaged-fallback", ["predict", "{d}/model/model.onnx", "--predictor", "{d}/badcoef"],
     r"damaged fallback_coef \(x; 3 finite numbers", ["{d}/badcoef"]),
    ("export-over-model", ["export", "--arch", "{d}/arch.json", "-o", "{d}/model/model.onnx", "--no-train"], r"--overwrite",
     ["{d}/model"]),
    ("export-second-into-folder", ["export", "--arch", "{d}/arch.json", "-o", "{d}/model/other.onnx", "--no-train"],
     r"another model's card", ["{d}/model"]),
    ("report-over-user-page", ["report", "{d}/goodrun", "-o", "{d}/page.html"], r"not an hwnas report", ["{d}/page.html"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "pattern", "keep"), [c[1:] for c in SLOW_CASES], ids=[c[0] for c in SLOW_CASES])
def test_damaged_artefacts_and_overwrites_exit_2_and_change_nothing(artefacts, capsys, argv, pattern, keep) -> None:
    _check(artefacts, capsys, argv, pattern, keep)


def test_at_least_sixty_cases() -> None:
    assert len(CASES) + len(SLOW_CASES) >= 60


@pytest.mark.slow
def test_a_second_process_on_one_run_exits_2(artefacts, capsys) -> None:
    """Two searches on one run directory: the second is refused with one line while the first
    holds it (no IntegrityError, no lost row)."""
    from hwnas.search._run import _lock_file

    held = _lock_file(artefacts / "goodrun" / "journal.sqlite")
    try:
        _check(artefacts, capsys, [*SEARCH, "--out", "{d}/goodrun", "--resume"], r"is in use by process",
               ["{d}/goodrun/journal.sqlite", "{d}/goodrun/best.json", "{d}/goodrun/trials.csv"])
    finally:
        held.close()


@pytest.mark.slow
def test_sigint_says_what_is_kept_and_exits_130(tmp_path) -> None:
    """Ctrl-C during a profile: the "interrupted; what was measured is stored" line and exit 130;
    the rerun resumes (the store holds what was measured)."""
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "p.sqlite"
    cmd = [sys.executable, "-m", "hwnas", "profile", "--space", "stability", "--db", str(db), "--max-time-per-op", "1.0", "--no-drift-check",
           "--recheck", "0"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as f:
        # the default Ctrl-C handling in the child: a shell that runs pytest in the background
        # (``cmd &``) starts it with SIGINT ignored, which the child would inherit
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120  # Ctrl-C a few seconds into profiling (start-up is slow on a busy machine)
        while time.monotonic() < deadline and p.poll() is None and "profiling on" not in log.read_text():
            time.sleep(0.2)
        time.sleep(0.5)  # the "0/36" line is written as profiling starts; the 36 ops take >= 5 s after it
        assert p.poll() is None, "the profile ended before it could be interrupted"
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=120)
    err = log.read_text()
    assert p.returncode == 130, err
    assert "interrupted; what was measured is stored" in err and "Traceback" not in err
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["measured"] + json.loads(rerun.stdout)["skipped"] == 36

