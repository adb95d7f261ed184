"""Parallel search: wall time of a proxy-training search at 1 and 2 workers, side by side in one
run, on the local executor (worker processes) and on Ray (a local Ray cluster started here);
each run's distinct architectures; a run stopped with Ctrl-C and resumed; a Ray worker process
killed mid-trial.

    python benchmarks/parallel_search.py --predictor DIR [--budget 8] [--epochs 2] \\
        [--out benchmarks/out/parallel] [--json benchmarks/results/parallel_search.json]

Every run is the CLI (``hwnas search --space nb201 --strategy random --trial-cpus 1``), timed from
the command's start to its exit (start-up, Ray's start and worker spawn included).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path


def search_cmd(args: argparse.Namespace, out: Path, workers: int, executor: str | None, budget: int,
               resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "hwnas", "search", "--space", "nb201", "--strategy", "random", "--budget",
           str(budget), "--workers", str(workers), "--trial-cpus", "1", "--epochs", str(args.epochs), "--verify",
           str(args.verify), "--predictor", str(args.predictor), "--target-ms", str(args.target_ms), "--seed",
           str(args.seed), "--out", str(out), "--json"]
    if executor:
        cmd += ["--executor", executor]
    if args.ray_address and executor == "ray":
        cmd += ["--ray-address", args.ray_address]
    return cmd + (["--resume"] if resume else [])


def journal_state(out: Path) -> dict:
    con = sqlite3.connect(out / "journal.sqlite")
    rows = con.execute("SELECT arch, state FROM trials").fetchall()
    con.close()
    done = [a for a, s in rows if (s or "complete") == "complete"]
    return {"complete": len(done), "distinct_complete": len(set(done)), "pending": sum(s == "pending" for _, s in rows),
            "failed": sum(s == "failed" for _, s in rows)}


def timed_run(args: argparse.Namespace, name: str, workers: int, executor: str | None, kill=None) -> dict:
    out = args.out / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = search_cmd(args, out, workers, executor, args.budget)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Thread(target=kill, args=(p,), daemon=True) if kill else None
    if killer:
        killer.start()
    _, err = p.communicate()
    wall = time.perf_counter() - t0
    rec = {"run": name, "workers": workers, "executor": executor or ("inline" if workers == 1 else "local"),
           "rc": p.returncode, "wall_s": round(wall, 2), **journal_state(out)}
    if p.returncode:
        rec["stderr_tail"] = err.strip().splitlines()[-3:]
    print(json.dumps(rec), flush=True)
    return rec


def kill_a_ray_worker(p: subprocess.Popen) -> None:
    """SIGKILL the first Ray worker process seen running a trial (``ray::evaluate_trial``)."""
    import psutil

    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 300:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if cmdline.startswith("ray::evaluate_trial"):
                time.sleep(2.0)  # mid-trial
                proc.kill()
                print(json.dumps({"killed_ray_worker": proc.info["pid"], "after_s": round(time.time() - t0, 1)}),
                      flush=True)
                return
        time.sleep(0.2)


def interrupted_and_resumed(args: argparse.Namespace) -> dict:
    """--workers 2 stopped with Ctrl-C (SIGINT) mid-run, then --resume to the full budget."""
    out = args.out / "interrupted"
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen(search_cmd(args, out, 2, None, args.budget), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(args.interrupt_after_s)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate()
    before = journal_state(out)
    r = subprocess.run(search_cmd(args, out, 2, None, args.budget, resume=True), capture_output=True, text=True)
    rec = {"run": "interrupted+resumed", "interrupt_rc": p.returncode, "after_interrupt": before,
           "resume_rc": r.returncode, "after_resume": journal_state(out)}
    print(json.dumps(rec), flush=True)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", type=Path, required=True)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--verify", type=int, default=0)
    ap.add_argument("--target-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--interrupt-after-s", type=float, default=25.0)
    ap.add_argument("--ray-address", default=None, help="default: a local Ray cluster started here (2 CPUs)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["local", "ray", "interrupt", "kill"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/parallel"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    if "local" not in args.skip:
        results += [timed_run(args, "local-w1", 1, None), timed_run(args, "local-w2", 2, None)]
    if "interrupt" not in args.skip:
        results.append(interrupted_and_resumed(args))
    cluster = None
    if {"ray", "kill"} - set(args.skip):
        if args.ray_address is None:
            from hwnas.testing import LocalRayCluster

            cluster = LocalRayCluster(head_cpus=2)
            args.ray_address = cluster.address
        try:
            if "ray" not in args.skip:
                results += [timed_run(args, "ray-w1", 1, "ray"), timed_run(args, "ray-w2", 2, "ray")]
            if "kill" not in args.skip:
                results.append(timed_run(args, "ray-w2-killed-worker", 2, "ray", kill=kill_a_ray_worker))
        finally:
            if cluster is not None:
                cluster.close()
    by = {r["run"]: r for r in results}
    ratios = {f"{e}: w2/w1": round(by[f"{e}-w2"]["wall_s"] / by[f"{e}-w1"]["wall_s"], 3)
              for e in ("local", "ray") if f"{e}-w1" in by and f"{e}-w2" in by}
    print(json.dumps({"wall_time_ratios": ratios}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "runs": results,
                                         "wall_time_ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
