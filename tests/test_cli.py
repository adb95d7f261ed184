from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from hwnas.cli import main
from hwnas.profilers import OpConfig, build_onnx, op_set


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_and_devices(capsys) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "profile-model" in out
    rc, out, _ = run(capsys, "devices", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["cpu-ort"]["available"]
    rc, out, _ = run(capsys, "devices", "show", "cpu-ort", "--json")
    assert rc == 0 and json.loads(out)["options"]["intra_op_threads"] == 1
    rc, out, _ = run(capsys, "devices", "detect", "--json")
    det = {d["name"]: d for d in json.loads(out)["devices"]}
    assert rc == 0 and det["cpu-ort"]["fingerprint"]["runtime"] == "onnxruntime"


def test_devices_file_option(capsys, tmp_path) -> None:
    f = tmp_path / "d.toml"
    f.write_text("[devices.edge]\nbase = 'cpu-ort'\n[devices.edge.constraints]\nlatency_budget_ms = 5.0\n")
    rc, out, _ = run(capsys, "devices", "show", "edge", "--devices-file", str(f), "--json")
    assert rc == 0 and json.loads(out)["constraints"]["latency_budget_ms"] == 5.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["devices", "show", "gpu-9000"], "unknown device 'gpu-9000'. Known devices: cpu-ort"),
        (["profile", "--device", "nope"], "Known devices: cpu-ort"),
        (["profile", "--space", "nope"], "unknown op set 'nope'. Known op sets: micro"),
        (["profile", "--ops", "/nonexistent/ops.txt"], "ops file not found"),
        (["profile", "--device", "cuda-torch", "--space", "micro"], "cannot run here"),
        (["profile-model", "/nonexistent/model.onnx"], "model file not found"),
        (["store", "export", "-o", "x", "--format", "xlsx"], "known formats: csv, parquet"),
        (["ops", "show", "nope"], "unknown op set"),
    ],
)
def test_bad_input_exit_2_without_traceback(capsys, tmp_path, args, message) -> None:
    if "cuda-torch" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present: cuda-torch can run here")
    rc, out, err = run(capsys, *args, *(["--db", str(tmp_path / "p.sqlite")] if args[0] in ("profile", "store") else []))
    assert rc == 2, (out, err)
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out


def test_usage_errors_exit_2(capsys) -> None:
    rc, _, err = run(capsys, "profile", "--no-such-flag")
    assert rc == 2 and "No such option" in err


def test_bad_model_files(capsys, tmp_path) -> None:
    txt = tmp_path / "model.onnx"
    txt.write_text("not a model")
    rc, _, err = run(capsys, "profile-model", str(txt), "--no-store")
    assert rc == 2 and "not an ONNX model" in err
    model = build_onnx(OpConfig.parse("act_i4_r4_arelu"))
    model.graph.node[0].input[0] = "missing_tensor"
    bad = tmp_path / "invalid.onnx"
    onnx.save(model, str(bad))
    rc, _, err = run(capsys, "profile-model", str(bad), "--no-store")
    assert rc == 2 and "not a valid ONNX model" in err and "Traceback" not in err


def test_bad_ops_line_and_bad_db(capsys, tmp_path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text("conv_i8_o8_r8_k3_s1_g1_arelu\ntransformer_i8\n")
    rc, _, err = run(capsys, "profile", "--ops", str(ops), "--db", str(tmp_path / "p.sqlite"))
    assert rc == 2 and "ops.txt:2" in err and "unknown op type 'transformer'" in err
    db = tmp_path / "precious.db"
    db.write_bytes(b"precious bytes")
    rc, _, err = run(capsys, "profile", "--db", str(db))
    assert rc == 2 and "not an SQLite database" in err and db.read_bytes() == b"precious bytes"


@pytest.mark.slow
def test_profile_json_and_resume(capsys, tmp_path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text("\n".join(str(c) for c in op_set("micro")[:3]))
    db = str(tmp_path / "p.sqlite")
    rc, out, err = run(capsys, "profile", "--ops", str(ops), "--db", db, "--json", "--max-time-per-op", "0.05")
    first = json.loads(out)
    assert rc == 0 and first["measured"] == 3 and first["skipped"] == 0
    assert all(o["latency_ms"] > 0 for o in first["ops"])
    # the repeat check (default 10 ops, here all 3 stored) measured them again
    assert first["recheck"]["n"] == 3 and {o["config"] for o in first["recheck"]["ops"]} == {o["config"] for o in first["ops"]}
    rc, out, err = run(capsys, "profile", "--ops", str(ops), "--db", db, "--json", "--recheck", "0")
    assert rc == 0 and json.loads(out)["skipped"] == 3 and "resuming" in err and json.loads(out)["recheck"] is None
    rc, out, err = run(capsys, "profile", "--ops", str(ops), "--db", db, "--recheck", "2")
    assert rc == 0 and "repeat check: " in out and "of 2 stored ops measured again" in out
    rc, _, err = run(capsys, "profile", "--ops", str(ops), "--db", db, "--recheck", "-1")
    assert rc == 2 and "--recheck" in err
    rc, out, _ = run(capsys, "profile", "--ops", str(ops), "--db", str(tmp_path / "p2.sqlite"), "--json",
                     "--passes", "2", "--recheck", "0", "--max-time-per-op", "0.05")
    assert rc == 0 and json.loads(out)["passes"] == 2 and json.loads(out)["measured"] == 3
    rc, _, err = run(capsys, "profile", "--ops", str(ops), "--db", db, "--passes", "0")
    assert rc == 2 and "--passes" in err
    rc, out, _ = run(capsys, "store", "info", "--db", db, "--json")
    assert json.loads(out)["op_measurements"] == 3
    rc, out, _ = run(capsys, "store", "export", "--db", db, "-o", str(tmp_path / "exp"), "--format", "csv")
    assert rc == 0 and (tmp_path / "exp" / "op_measurements.csv").exists()
    # --stored: the stored op set; a record made without a kernel time (an older hwnas) is completed
    from hwnas.profilers import ProfileStore

    with ProfileStore(db) as store:
        fp = store.fingerprints()[0].id
        store.set_kernel_ms(fp, op_set("micro")[0], None)
    rc, out, err = run(capsys, "profile", "--stored", "--db", db, "--json")
    r = json.loads(out)
    assert rc == 0 and r["kernel_time_added"] == 1 and r["measured"] == 0 and r["skipped"] == 3
    rc, _, err = run(capsys, "profile", "--stored", "--space", "micro", "--db", db)
    assert rc == 2 and "give one of --ops FILE, --space NAME and --stored" in err
    rc, _, err = run(capsys, "profile", "--stored", "--db", str(tmp_path / "empty.sqlite"))
    assert rc == 2 and "has no op measurements of device 'cpu-ort'" in err


def test_profile_model_json(capsys, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(build_onnx(OpConfig.parse("mbconv_i8_o8_r8_k3_s1_e3_arelu6_res")), str(path))
    rc, out, _ = run(capsys, "profile-model", str(path), "--db", str(tmp_path / "p.sqlite"), "--json",
                     "--top", "3", "--max-time", "0.1")
    s = json.loads(out)
    assert rc == 0 and s["latency_ms"] > 0 and 1 <= len(s["top_nodes"]) <= 3
    assert {"name", "op_type", "fused", "duration_ms", "share"} <= set(s["top_nodes"][0])


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM op_measurements").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_loses_at_most_the_op_in_flight_and_resumes(tmp_path) -> None:
    db = tmp_path / "p.sqlite"
    cmd = [sys.executable, "-m", "hwnas", "profile", "--space", "stability", "--db", str(db),
           "--max-time-per-op", "0.15"]
    total = len(op_set("stability"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while _count(db) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _count(db)
    assert 4 <= done < total, "the kill should land mid-run"
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["skipped"] >= done  # nothing committed was lost
    assert summary["skipped"] + summary["measured"] == total
    con = sqlite3.connect(db)
    rows = con.execute("SELECT config_key, COUNT(*) FROM op_measurements GROUP BY config_key").fetchall()
    assert len(rows) == total and all(n == 1 for _, n in rows)


@pytest.mark.slow
def test_quickstart_smoke_end_to_end_twice_and_report(capsys, tmp_path) -> None:
    """The whole pipeline on a tiny budget; the rerun measures nothing again; the report renders."""
    from pathlib import Path

    rc, out, _ = run(capsys, "quickstart", "--smoke", "--out", str(tmp_path / "qs"))
    assert rc == 0 and "chosen architecture" in out and "predicted / measured" in out
    s = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert s["ops_measured_now"] > 10 and s["measured_latency_ms"] > 0 and s["search_trials"] == 2
    assert all(Path(p).exists() for p in s["paths"].values())
    card = json.loads(Path(s["paths"]["model_card"]).read_text())
    assert card["arch"] == s["best_arch"] and card["device"] == "cpu-ort" and card["parity_max_abs_diff"] < 1e-3
    # the drift guard read the reference while profiling and around the export measurement
    assert s["speed_checks"]["readings"] >= 3 and card["speed_factor"] > 0 and "device speed" in out
    # the calibration models were measured again after the export: the device's state then and now
    assert 0.3 < card["calibration_models_speed_factor"] == s["calibration_models_speed_factor"] < 3
    rc, out, _ = run(capsys, "quickstart", "--smoke", "--out", str(tmp_path / "qs"))
    s2 = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert rc == 0 and s2["ops_measured_now"] == 0 and s2["ops_reused"] == s["ops_profiled"]
    assert s2["best_arch"] == s["best_arch"]  # the finished search is reused
    rc, out, _ = run(capsys, "report", str(tmp_path / "qs" / "run"))
    page = (tmp_path / "qs" / "run" / "report.html").read_text()
    assert rc == 0 and page.count("data:image/png;base64,") >= 4
    for part in ("Pareto front", "Predicted vs measured", "Per-op latency breakdown", "Search progress"):
        assert part in page
    rc, _, err = run(capsys, "report", str(tmp_path))
    assert rc == 2 and "not a search run directory" in err


def test_progress_prints_plain_lines_where_the_console_is_not_a_terminal(monkeypatch) -> None:
    """In a log file rich draws no live bar; the progress prints a throttled plain line with the
    count, elapsed time and ETA, and one when the task completes."""
    import io

    from rich.console import Console

    from hwnas import cli

    clock = iter(range(0, 10_000, 3))  # every update is 3 s after the previous one
    monkeypatch.setattr("time.monotonic", lambda: float(next(clock)))
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=120)
    with cli._Progress(every_s=10.0, console=console) as prog:
        task = prog.add_task("profiling", total=12, current="")
        for i in range(12):
            prog.update(task, advance=1, current=f"op{i}")
    lines = [x for x in buf.getvalue().splitlines() if x.startswith("profiling: ")]
    assert lines[0].startswith("profiling: 1/12") and lines[-1].startswith("profiling: 12/12")
    assert 3 <= len(lines) <= 6  # throttled: not one line per update
    assert "ETA" in lines[1] and "op" in lines[1]


def test_hwnas_warnings_print_as_one_line(capsys, monkeypatch) -> None:
    """A speed-drift warning during a command is one "warning:" line, without Python's file name
    and source line; other warnings keep Python's display."""
    import warnings

    from hwnas import cli
    from hwnas.profilers import SpeedDriftWarning

    def command(**_: object) -> int:
        warnings.warn("whole models: the device's speed is 1.83x its baseline", SpeedDriftWarning, stacklevel=1)
        warnings.warn("a library's own", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "app", command)
    with pytest.warns(RuntimeWarning, match="a library's own") as passed_on:  # to Python's display
        assert cli.main([]) == 0
    assert not any(issubclass(w.category, SpeedDriftWarning) for w in passed_on)
    err = capsys.readouterr().err
    drift = [line for line in err.splitlines() if "1.83x" in line]
    assert drift == ["warning: whole models: the device's speed is 1.83x its baseline"], err
    assert "RuntimeWarning" not in err and "test_cli.py" not in err
    assert warnings.showwarning.__module__ == "warnings"  # Python's display is back after the command


def test_progress_off_a_terminal_is_plain_lines_and_nothing_where_no_task_started() -> None:
    """Off a terminal (a log, CI) the bars are plain lines, first and last at least; a job that stops
    before its first task (bad input) prints nothing, not rich's empty last frame (a blank line)."""
    from io import StringIO

    from rich.console import Console

    from hwnas.console import progress_bar

    buf = StringIO()
    with progress_bar(Console(file=buf, force_terminal=False, width=120)):
        pass
    assert buf.getvalue() == ""
    with progress_bar(Console(file=buf, force_terminal=False, width=120)) as bars:
        for i in range(1, 4):
            bars("profile", i, 3, f"op {i}")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("profile: 1/3, elapsed") and lines[0].endswith("op 1")
    assert lines[1].startswith("profile: 3/3, elapsed") and "ETA" not in lines[1], lines
