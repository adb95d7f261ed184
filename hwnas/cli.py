"""The ``hwnas`` command line (typer + rich). Bad input: a clear message and exit code 2."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hwnas.errors import HwnasError

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware latency benchmarking and neural architecture search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
devices_app = typer.Typer(help="List, inspect and detect target devices.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect and export the profile store.", no_args_is_help=True)
ops_app = typer.Typer(help="Op configurations and named op sets.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(store_app, name="store")
app.add_typer(ops_app, name="ops")
predictor_app = typer.Typer(help="Train, evaluate and inspect latency predictors.", no_args_is_help=True)
app.add_typer(predictor_app, name="predictor")


# ---- shared options ---------------------------------------------------------------------------
DevicesFile = Annotated[
    list[Path] | None,
    typer.Option("--devices-file", help="TOML file of extra devices (repeatable). "
                 "~/.config/hwnas/devices.toml is read when it exists."),
]
DbOption = Annotated[Path | None, typer.Option("--db", help="Profile store (SQLite). Default: the user cache dir.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _out() -> Console:
    return Console(soft_wrap=True, width=200 if not sys.stdout.isatty() else None)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _registry(files: list[Path] | None):  # noqa: ANN202
    from platformdirs import user_config_dir

    from hwnas.devices import default_registry

    user_file = Path(user_config_dir("hwnas")) / "devices.toml"
    extra = [user_file] if user_file.exists() else []
    return default_registry(*extra, *(files or []))


def _store(db: Path | None):  # noqa: ANN202
    from hwnas.profilers import ProfileStore, default_db_path

    return ProfileStore(db or default_db_path())


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _warn_governor(err: Console) -> str | None:
    from hwnas.profilers import governor_warning

    w = governor_warning()
    if w:
        err.print(f"[yellow]warning:[/] {w}")
    return w


class _Progress(Progress):
    """A rich progress bar that, where its console is not a terminal (a log file, CI, ``nohup``),
    where rich draws nothing until the end, prints a plain line per task at most every
    ``every_s`` seconds and when the task completes: done/total, elapsed, ETA."""

    def __init__(self, *columns: Any, every_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._every_s = every_s
        self._last: dict[Any, float] = {}

    def update(self, task_id: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        if self.disable or self.console.is_terminal:
            return
        import time

        task = self._tasks[task_id]
        now = time.monotonic()
        if not task.finished and now - self._last.get(task_id, -1e9) < self._every_s:
            return
        if task.finished and self._last.get(task_id) == float("inf"):
            return
        self._last[task_id] = float("inf") if task.finished else now
        eta = task.time_remaining
        line = (f"{task.description}: {task.completed:g}/{task.total:g}, elapsed {_hms(task.elapsed or 0)}"
                f"{'' if task.finished or eta is None else f', ETA {_hms(eta)}'}")
        current = task.fields.get("current")
        self.console.print(f"{line}  {current}" if current else line, markup=False, highlight=False)


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


@contextmanager
def _progress(total: int, desc: str, console: Console) -> Iterator[Progress]:
    with _Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"), console=console, transient=False,
    ) as prog:
        prog.add_task(desc, total=total, current="")
        yield prog


# ---- devices ----------------------------------------------------------------------------------
@devices_app.command("list")
def devices_list(devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """List known devices and whether each can run on this machine."""
    from hwnas.profilers import get_backend

    reg = _registry(devices_file)
    rows = []
    for name in reg.names():
        d = reg.get(name)
        problems = get_backend(d.runtime).check(d)
        rows.append({"name": name, "runtime": d.runtime, "available": not problems,
                     "problems": problems, "description": d.description})
    if as_json:
        _print_json(rows)
        return
    t = Table("device", "runtime", "here", "description")
    for r in rows:
        t.add_row(r["name"], r["runtime"], "yes" if r["available"] else "[red]no[/]", r["description"])
    _out().print(t)


@devices_app.command("show")
def devices_show(name: str, devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """Show one device's runtime options, constraints and availability."""
    from hwnas.profilers import get_backend

    d = _registry(devices_file).get(name)
    problems = get_backend(d.runtime).check(d)
    data = {**d.to_dict(), "available": not problems, "problems": problems}
    if as_json:
        _print_json(data)
        return
    out = _out()
    out.print(f"[bold]{d.name}[/]: {d.description}")
    t = Table("field", "value")
    t.add_row("runtime", d.runtime)
    for k, v in d.to_dict()["options"].items():
        t.add_row(f"options.{k}", str(v))
    for k, v in d.to_dict()["constraints"].items():
        t.add_row(f"constraints.{k}", str(v))
    t.add_row("available here", "yes" if not problems else "no: " + "; ".join(problems))
    out.print(t)


@devices_app.command("detect")
def devices_detect(devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """Describe this machine and which devices can be profiled on it (with their fingerprints)."""
    from hwnas.devices import fingerprint
    from hwnas.profilers import cpu_governors, get_backend

    reg = _registry(devices_file)
    result: dict[str, Any] = {"cpu_governors": cpu_governors(), "devices": []}
    for name in reg.names():
        d = reg.get(name)
        problems = get_backend(d.runtime).check(d)
        entry: dict[str, Any] = {"name": name, "available": not problems, "problems": problems}
        if not problems:
            entry["fingerprint"] = fingerprint(d).to_dict()
        result["devices"].append(entry)
    if as_json:
        _print_json(result)
        return
    out = _out()
    avail = [e for e in result["devices"] if e["available"]]
    if avail:
        fp = avail[0]["fingerprint"]
        out.print(f"CPU: {fp['cpu_model']} ({fp['cpu_cores_physical']} physical / {fp['cpu_cores_logical']} logical cores, {fp['machine']}, {fp['os']})")
    out.print(f"CPU frequency governors: {result['cpu_governors'] or 'not exposed by this kernel'}")
    t = Table("device", "status", "runtime version", "fingerprint")
    for e in result["devices"]:
        if e["available"]:
            t.add_row(e["name"], "[green]available[/]", e["fingerprint"]["runtime_version"], e["fingerprint"]["id"])
        else:
            t.add_row(e["name"], "[red]unavailable[/]", "", "; ".join(e["problems"]))
    out.print(t)


# ---- ops --------------------------------------------------------------------------------------
@ops_app.command("sets")
def ops_sets(as_json: JsonFlag = False) -> None:
    """List the named op sets usable with ``hwnas profile --space NAME``."""
    from hwnas.profilers import op_set, op_set_names
    from hwnas.profilers._opsets import op_set_doc

    rows = [{"name": n, "ops": len(op_set(n)), "description": op_set_doc(n)} for n in op_set_names()]
    if as_json:
        _print_json(rows)
        return
    t = Table("op set", "ops", "description")
    for r in rows:
        t.add_row(r["name"], str(r["ops"]), r["description"])
    _out().print(t)


@ops_app.command("show")
def ops_show(name: str, as_json: JsonFlag = False) -> None:
    """Print the op configurations of a named op set, one per line (an --ops file)."""
    from hwnas.profilers import op_set

    cfgs = op_set(name)
    if as_json:
        _print_json([{"config": str(c), "macs": c.macs(), "params": c.params()} for c in cfgs])
        return
    for c in cfgs:
        sys.stdout.write(f"{c}\n")


# ---- profile ----------------------------------------------------------------------------------
def _policy(max_time: float | None):  # noqa: ANN202
    from hwnas.profilers import TimingPolicy

    return TimingPolicy() if max_time is None else TimingPolicy(max_time_s=max_time, min_time_s=min(0.1, max_time))


@dataclass
class _ProfileResult:
    device: str
    fingerprint: str
    db: str
    run: Any
    recheck: Any = None  # a RepeatCheck, or None when none was asked for or nothing was measured


def _profile(device_name: str, ops_file: Path | None, space: str | None, db: Path | None, force: bool,
             max_time: float | None, devices_file: list[Path] | None, as_json: bool,
             drift_check: bool = True, stored: bool = False, recheck: int = 0, passes: int = 1) -> _ProfileResult:
    from hwnas.profilers import DriftPolicy, OpConfig, Profiler, op_set, read_ops_file

    if sum(map(bool, (ops_file, space, stored))) > 1:
        raise HwnasError("give one of --ops FILE, --space NAME and --stored")
    configs = read_ops_file(ops_file) if ops_file else op_set(space or "micro") if not stored else []
    device = _registry(devices_file).get(device_name)
    err = _err()
    _warn_governor(err)
    with _store(db) as store:
        profiler = Profiler(device, _policy(max_time), store, drift=DriftPolicy() if drift_check else None,
                            auto_pin=drift_check)
        if stored:
            configs = [OpConfig.parse(k) for k in sorted(store.done_keys(profiler.fingerprint.id))]
            if not configs:
                raise HwnasError(f"{store.path} has no op measurements of device {device.name!r} "
                                 f"(fingerprint {profiler.fingerprint.id}) to complete or re-measure")
        with _progress(len(configs), f"profiling on {device.name}", err) as prog:
            task = prog.task_ids[0]

            def start(todo: int, skipped: int) -> None:
                if skipped:
                    err.print(f"resuming: {skipped} op configuration(s) already in {store.path} are skipped "
                              "(--force re-measures)")
                prog.update(task, total=todo + skipped, completed=skipped)

            def on_done(m: Any) -> None:
                note = "" if m.status == "ok" else " (unsupported)"
                prog.update(task, advance=1, current=f"{m.config}{note}")

            run = profiler.profile_ops(configs, force=force, on_start=start, on_done=on_done, passes=passes)
        again = _repeat_check(profiler, recheck, err)
        return _ProfileResult(device.name, profiler.fingerprint.id, str(store.path), run, again)


def _repeat_check(profiler: Any, n: int, err: Console) -> Any:
    """``Profiler.recheck`` of up to ``n`` stored ops with a progress bar, warning when the device's
    measurements do not repeat; None when ``n`` is 0 or the store holds no measured op."""
    if n <= 0:
        return None
    df = profiler.store.op_measurements(profiler.fingerprint.id)
    n = min(n, int((df["status"] == "ok").sum()) if not df.empty else 0)
    if n == 0:
        return None
    with _progress(n, "measuring stored ops again (repeat check)", err) as prog:
        again = profiler.recheck(n, on_done=lambda *_: prog.update(prog.task_ids[0], advance=1))
    if again.warning():
        err.print(f"[yellow]warning:[/] {again.warning()}", highlight=False)
    return again


def _summarise_ops(res: _ProfileResult) -> dict[str, Any]:
    run = res.run
    return {
        "device": res.device,
        "fingerprint": res.fingerprint,
        "db": res.db,
        "measured": len(run.measured),
        "skipped": len(run.skipped),
        "kernel_time_added": len(run.completed),
        "passes": run.passes,
        "unsupported": [{"config": str(m.config), "reason": m.reason} for m in run.unsupported],
        "recheck": res.recheck.to_dict() if res.recheck is not None else None,
        "elapsed_s": round(run.elapsed_s, 3),
        "ops_per_minute": round(run.ops_per_minute, 1),
        "ops": [
            {"config": str(m.config), "status": m.status, "latency_ms": m.latency_ms,
             "ci95_rel": m.stats.rel_ci if m.stats else None, "n_runs": m.stats.n_runs if m.stats else 0,
             "converged": m.stats.converged if m.stats else None}
            for m in run.measured
        ],
    }


@app.command()
def profile(
    device: Annotated[str, typer.Option("--device", "-d", help="Device name (hwnas devices list).")] = "cpu-ort",
    ops: Annotated[Path | None, typer.Option("--ops", help="File of op configurations (one per line or a JSON list).")] = None,
    space: Annotated[str | None, typer.Option("--space", help="Named op set (hwnas ops sets). Default: micro.")] = None,
    db: DbOption = None,
    force: Annotated[bool, typer.Option("--force", help="Re-measure ops already in the store.")] = False,
    stored: Annotated[bool, typer.Option("--stored", help="The op configurations already stored for this device: "
                      "adds the kernel time to records made without one (only that is measured); with --force, "
                      "re-measures them all.")] = False,
    max_time: Annotated[float | None, typer.Option("--max-time-per-op", help="Seconds of timing per op at most.")] = None,
    drift_check: Annotated[bool, typer.Option("--drift-check/--no-drift-check", help="Re-time a reference op between chunks; re-measure chunks taken while the device's speed drifted.")] = True,
    passes: Annotated[int, typer.Option("--passes", min=1, help="Measure the ops in this many passes over all of them and keep each op's fastest (contention on a shared machine slows ops in phases of seconds that one measurement falls into; no help against a slow phase of minutes: see --recheck).")] = 1,
    recheck: Annotated[int, typer.Option("--recheck", min=0, help="Afterwards, measure this many stored ops of the device again (at random) and report how far its measurements repeat; warns when fewer than 80% repeat within +-10%. 0: no check.")] = 10,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure op configurations on a device into the profile store (resumes where it stopped)."""
    res = _profile(device, ops, space, db, force, max_time, devices_file, as_json, drift_check, stored, recheck, passes)
    summary = _summarise_ops(res)
    if as_json:
        _print_json(summary)
        return
    out = _out()
    t = Table("op configuration", "median ms", "95% CI", "runs", title=f"{res.device} ({res.fingerprint})")
    for m in res.run.measured:
        if m.stats:
            t.add_row(str(m.config), f"{m.stats.latency_ms:.4f}", f"+-{100 * m.stats.rel_ci:.1f}%", str(m.stats.n_runs))
        else:
            t.add_row(str(m.config), "[red]unsupported[/]", m.reason[:60], "")
    if res.run.measured:
        out.print(t)
    out.print(
        f"measured {summary['measured']} op(s) ({len(summary['unsupported'])} unsupported), skipped "
        f"{summary['skipped']} already stored"
        + (f" (their kernel time added to {summary['kernel_time_added']})" if summary["kernel_time_added"] else "")
        + f", {summary['elapsed_s']:.1f} s ({summary['ops_per_minute']:.0f} ops/min); store: {res.db}"
    )
    if res.recheck is not None:
        out.print(f"repeat check: {res.recheck.summary()}")


def _model_summary(m: Any, top: int) -> dict[str, Any]:
    nodes = sorted(m.breakdown, key=lambda n: -n.duration_ms)
    total = sum(n.duration_ms for n in m.breakdown) or 1.0
    return {
        "model": m.model_name,
        "sha256": m.model_sha256,
        "device": m.device_name,
        "fingerprint": m.fingerprint_id,
        **m.stats.to_dict(),
        "kernels": len(m.breakdown),
        "kernel_sum_ms": sum(n.duration_ms for n in m.breakdown),
        "top_nodes": [{**n.to_dict(), "share": n.duration_ms / total} for n in nodes[:top]],
    }


@app.command("profile-model")
def profile_model(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device name (hwnas devices list).")] = "cpu-ort",
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", help="How many of the slowest kernels to show.")] = 10,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the measurement.")] = False,
    max_time: Annotated[float | None, typer.Option("--max-time", help="Seconds of timing at most.")] = None,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """End-to-end latency of an ONNX model and its slowest kernels (runtime's own profiler)."""
    from hwnas.profilers import Profiler, load_onnx

    onnx_model = load_onnx(model)
    dev = _registry(devices_file).get(device)
    _warn_governor(_err())
    store = None if no_store else _store(db)
    try:
        with _err().status(f"profiling {model.name} on {dev.name}"):
            m = Profiler(dev, _policy(max_time), store).profile_model(onnx_model, name=model.name)
    finally:
        if store is not None:
            store.close()
    s = _model_summary(m, top)
    if as_json:
        _print_json(s)
        return
    out = _out()
    out.print(
        f"[bold]{m.model_name}[/] on {m.device_name}: [bold]{m.stats.latency_ms:.3f} ms[/] median "
        f"(95% CI {m.stats.ci95_low_ms:.3f}-{m.stats.ci95_high_ms:.3f}, p10 {m.stats.p10_ms:.3f}, "
        f"p90 {m.stats.p90_ms:.3f}, {m.stats.n_runs} runs)"
    )
    if s["top_nodes"]:
        t = Table("kernel", "op type", "fused", "ms", "share", title=f"top {len(s['top_nodes'])} of {s['kernels']} kernels")
        for n in s["top_nodes"]:
            t.add_row(n["name"], n["op_type"], "yes" if n["fused"] else "", f"{n['duration_ms']:.4f}", f"{100 * n['share']:.1f}%")
        out.print(t)


# ---- store ------------------------------------------------------------------------------------
@store_app.command("info")
def store_info(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Counts of fingerprints and measurements in the store."""
    with _store(db) as store:
        s = store.summary()
        fps = [f.to_dict() for f in store.fingerprints()]
    if as_json:
        _print_json({**s, "fingerprint_list": fps})
        return
    out = _out()
    for k, v in s.items():
        out.print(f"{k}: {v}")
    for f in fps:
        out.print(f"  {f['id']}  {f['device_name']}  {f['runtime']} {f['runtime_version']}  {f['cpu_model']}")


@store_app.command("export")
def store_export(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    db: DbOption = None,
) -> None:
    """Export every table of the store as Parquet or CSV."""
    with _store(db) as store:
        paths = store.export(out_dir, fmt)
    for p in paths:
        sys.stdout.write(f"{p}\n")


# ---- latency predictors --------------------------------------------------------------------------
PredictorDir = Annotated[Path | None, typer.Option("--predictor", help="Predictor directory. Default: the "
                         "user cache dir's predictor for this device and fingerprint.")]
AllowMismatch = Annotated[bool, typer.Option("--allow-fingerprint-mismatch",
                          help="Use a predictor trained on another machine or runtime version anyway.")]


def _default_predictor_dir(device_name: str, fp_id: str) -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hwnas")) / "predictors" / f"{device_name}-{fp_id}"


def _space_key(space: str, space_args: dict[str, Any] | None) -> str:
    """A search space and its settings as a directory suffix: ``nb201``, ``proxyless-<hash>``.
    ``classes`` is left out: the head is predicted op by op, and the calibration does not depend
    on it."""
    args = {k: v for k, v in (space_args or {}).items() if k != "classes"}
    if not args:
        return space
    import hashlib

    text = ",".join(f"{k}={args[k]}" for k in sorted(args))
    return f"{space}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _load_predictor(device: Any, directory: Path | None, allow_mismatch: bool,  # noqa: ANN202
                    space_key: str | None = None):
    """The predictor in ``directory``; by default the device's, or, for a search space, the one
    ``hwnas predictor train --space`` calibrated on that space's models where there is one."""
    from hwnas.devices import fingerprint
    from hwnas.latency_models import LatencyPredictor
    from hwnas.profilers import get_backend

    get_backend(device.runtime).require(device)
    fp = fingerprint(device)
    d = directory or _default_predictor_dir(device.name, fp.id)
    if directory is None and space_key is not None:
        own = d.with_name(f"{d.name}-{space_key}")
        if (own / "model.json").exists():
            d = own
    if not (d / "model.json").exists():
        raise HwnasError(f"no predictor at {d}; train one with `hwnas predictor train --device {device.name}`"
                         + (f" --out {d}" if directory else ""))
    return LatencyPredictor.load(d, fp, allow_mismatch), d


def _op_progress(profiler: Any, err: Console, passes: int = 1):  # noqa: ANN202
    def run(cfgs: list, what: str) -> None:
        with _progress(len(cfgs), what, err) as prog:
            task = prog.task_ids[0]
            profiler.profile_ops(cfgs, on_start=lambda todo, skipped: prog.update(task, total=todo + skipped,
                                                                                completed=skipped),
                                 on_done=lambda m: prog.update(task, advance=1, current=str(m.config)),
                                 passes=passes)
    return run


@predictor_app.command("train")
def predictor_train(
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    db: DbOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to save the predictor.")] = None,
    model: Annotated[str, typer.Option("--model", help="lightgbm, lut or flops.")] = "lightgbm",
    samples: Annotated[int, typer.Option("--samples", help="Op configurations sampled from the priors.")] = 400,
    adaptive: Annotated[int, typer.Option("--adaptive", help="Extra samples near the worst-predicted ops.")] = 100,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Measure whole models to calibrate.")] = True,
    quick: Annotated[bool, typer.Option("--quick", help="Few calibration models (a smoke run).")] = False,
    max_time: Annotated[float | None, typer.Option("--max-time-per-op")] = None,
    drift_check: Annotated[bool, typer.Option("--drift-check/--no-drift-check", help="Re-time a reference op between chunks; re-measure chunks taken while the device's speed drifted.")] = True,
    model_passes: Annotated[int, typer.Option("--model-passes", min=1, help="Measure each whole model in this many passes over all of them and keep its fastest (contention on a shared machine slows whole models in phases of minutes).")] = 3,
    op_time: Annotated[str | None, typer.Option("--op-time", help="What the op model learns: e2e (each op timed "
                       "alone end to end), kernel (the runtime's own kernel time), mean (their geometric mean), or auto "
                       "(each of them calibrated on the whole models; the one that predicts a left-out model best is "
                       "kept). Default: auto with at least 6 calibration models, else mean where the runtime reports "
                       "kernel times (ONNX Runtime) and e2e elsewhere.")] = None,
    recheck: Annotated[int, typer.Option("--recheck", min=0, help="After profiling, measure this many stored ops again and report how far the measurements repeat (kept in the predictor's training summary); warns when fewer than 80% repeat within +-10%. 0: no check.")] = 10,
    passes: Annotated[int, typer.Option("--passes", min=1, help="Measure the ops in this many passes over all of them and keep each op's fastest (as `hwnas profile --passes`).")] = 1,
    space: Annotated[str | None, typer.Option("--space", help="Calibrate on whole models of this search space "
                     "(--space-models of them, spread over its FLOPs range) instead of the zoo models, and save "
                     "the predictor beside the device's as its predictor for this space: `hwnas search` and "
                     "`hwnas export` with the space use it (the quickstart calibrates the same way).")] = None,
    space_arg: Annotated[list[str] | None, typer.Option("--space-arg", help="With --space: a space setting "
                         "NAME=VALUE (repeatable), as in `hwnas search`.")] = None,
    space_models: Annotated[int, typer.Option("--space-models", min=6, help="With --space: how many of its "
                            "models calibrate.")] = 16,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Profile the device (resumable), fit a latency model, calibrate it on whole models, save it."""
    from hwnas.latency_models import create_latency_model
    from hwnas.latency_models._training import OP_TIME_CHOICES, calibration_models, train_device_predictor
    from hwnas.profilers import DriftPolicy, Profiler

    create_latency_model(model)  # unknown names fail before any profiling
    if op_time is not None and op_time not in OP_TIME_CHOICES:
        from hwnas.errors import UnknownNameError

        raise UnknownNameError("op time", op_time, list(OP_TIME_CHOICES))
    if op_time == "auto" and (not calibrate or quick):
        raise HwnasError("--op-time auto compares the op times on the calibration models: it needs --calibrate "
                         "without --quick (or give e2e, kernel or mean)")
    dev = _registry(devices_file).get(device)
    err = _err()
    _warn_governor(err)
    with _store(db) as store:
        profiler = Profiler(dev, _policy(max_time), store, drift=DriftPolicy() if drift_check else None,
                            auto_pin=drift_check)
        space_args = _key_values(space_arg, "--space-arg")
        if space is not None:
            if not calibrate:
                raise HwnasError("--space calibrates on the space's models: it needs --calibrate")
            cal = _space_calibration_models(space, space_args, dev, space_models)
        else:
            cal = [(m.name, m.onnx) for m in calibration_models(quick)] if calibrate else []
        with _progress(len(cal) * model_passes, "calibration models", err) as prog:
            task = prog.task_ids[0]
            report = train_device_predictor(
                profiler, model, samples, adaptive, cal, profile_ops=_op_progress(profiler, err, passes),
                on_model=lambda name, ms: prog.update(task, advance=1, current=f"{name}: {ms:.2f} ms"),
                model_passes=model_passes, op_time=op_time)
        again = _repeat_check(profiler, recheck, err)
        summary = getattr(report.predictor.model, "training_summary_", None)
        if again is not None and isinstance(summary, dict):  # the predictor says how far its data repeats
            summary["repeat_check"] = {k: v for k, v in again.to_dict().items() if k != "ops"}
        d = _default_predictor_dir(dev.name, profiler.fingerprint.id)
        if space is not None:
            d = d.with_name(f"{d.name}-{_space_key(space, space_args)}")
        d = report.predictor.save(out or d)
    val = getattr(report.predictor.model, "validation_", None) or {}
    cal_ = report.predictor.calibration
    result = {"predictor": str(d), "device": dev.name, "fingerprint": profiler.fingerprint.id, "model": model,
              "op_time": report.op_time, "op_configs": report.n_configs, "adaptive_samples": report.n_adaptive,
              "calibration_models": report.n_calibration_models, "op_level_5fold": val.get("op_level_5fold"),
              "calibration": cal_.__dict__, "recheck": again.to_dict() if again is not None else None,
              "op_time_selection": report.op_time_choice.to_dict() if report.op_time_choice else None}
    if as_json:
        _print_json(result)
        return
    o = _out()
    op = result["op_level_5fold"] or {}
    o.print(f"trained {model} on {report.n_configs} op configurations ({report.n_adaptive} adaptive) of {dev.name}, "
            f"op time: {report.op_time}")
    if report.op_time_choice is not None:
        o.print(report.op_time_choice.summary())
    if op:
        o.print(f"op level, 5-fold: MAPE {100 * op['mape']:.1f}%, within +-10% {100 * op['acc10']:.1f}%")
    if cal_.fitted:
        o.print(f"calibrated on {cal_.n_models} whole models: MAPE {100 * (cal_.train_mape or 0):.1f}% on them")
    if again is not None:
        o.print(f"repeat check: {again.summary()}")
    o.print(f"saved to {d}")


@predictor_app.command("eval")
def predictor_eval(
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    predictor: PredictorDir = None,
    db: DbOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a predicted-vs-measured PNG here.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Few models (a smoke run).")] = False,
    model_passes: Annotated[int, typer.Option("--model-passes", min=1, help="Measure each whole model in this many passes over all of them and keep its fastest (contention on a shared machine slows whole models in phases of minutes).")] = 3,
    allow_mismatch: AllowMismatch = False,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure held-out whole models (MnasNet-, EfficientNet-, SqueezeNet-like, random) and score
    the predictor on them."""
    import warnings

    import numpy as np

    from hwnas.latency_models import latency_metrics
    from hwnas.latency_models._training import evaluation_models, measure_models
    from hwnas.profilers import Profiler

    dev = _registry(devices_file).get(device)
    pred, d = _load_predictor(dev, predictor, allow_mismatch)
    models = evaluation_models(quick)
    err = _err()
    with _store(db) as store, _progress(len(models) * model_passes, "measuring models", err) as prog:
        task = prog.task_ids[0]
        measured = measure_models(Profiler(dev, None, store), [(m.name, m.onnx) for m in models],
                                  lambda name, ms: prog.update(task, advance=1, current=name), passes=model_passes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = np.array([pred.predict_onnx(m.onnx).latency_ms for m in measured])
    truth = np.array([m.latency_ms for m in measured])
    metrics = latency_metrics(truth, predicted)
    rows = [{"family": z.family, "model": m.name, "measured_ms": m.latency_ms, "predicted_ms": float(p)}
            for z, m, p in zip(models, measured, predicted)]
    if plot:
        _scatter_png(truth, predicted, [r["family"] for r in rows], plot, f"{dev.name}: {d.name}")
    if as_json:
        _print_json({"predictor": str(d), "metrics": metrics, "models": rows})
        return
    t = Table("family", "model", "measured ms", "predicted ms", "error")
    for r in rows:
        t.add_row(r["family"], r["model"], f"{r['measured_ms']:.3f}", f"{r['predicted_ms']:.3f}",
                  f"{100 * (r['predicted_ms'] / r['measured_ms'] - 1):+.1f}%")
    o = _out()
    o.print(t)
    o.print(f"RMSE {metrics['rmse_ms']:.3f} ms, MAPE {100 * metrics['mape']:.2f}%, within +-5% "
            f"{100 * metrics['acc5']:.1f}%, within +-10% {100 * metrics['acc10']:.1f}%, Spearman "
            f"{metrics.get('spearman', float('nan')):.4f}, Kendall {metrics.get('kendall', float('nan')):.4f}"
            + (f"; plot: {plot}" if plot else ""))


def _scatter_png(truth: Any, predicted: Any, groups: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for g in sorted(set(groups)):
        sel = np.array([x == g for x in groups])
        ax.scatter(truth[sel], predicted[sel], s=16, label=g)
    lim = np.geomspace(0.8 * min(truth.min(), predicted.min()), 1.25 * max(truth.max(), predicted.max()), 50)
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.fill_between(lim, 0.9 * lim, 1.1 * lim, color="grey", alpha=0.2, label="+-10%")
    ax.set(xscale="log", yscale="log", xlabel="measured latency (ms)", ylabel="predicted latency (ms)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@predictor_app.command("show")
def predictor_show(directory: Annotated[Path, typer.Argument(help="Predictor directory.")]) -> None:
    """Print a saved predictor's metadata (fingerprint, training data, validation, calibration)."""
    meta_path = directory / "model.json"
    if not meta_path.exists():
        raise HwnasError(f"no predictor at {directory} (missing model.json)")
    meta = json.loads(meta_path.read_text())
    meta.pop("state", None)
    if (directory / "predictor.json").exists():
        meta["calibration"] = json.loads((directory / "predictor.json").read_text())["calibration"]
    _print_json(meta)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    predictor: PredictorDir = None,
    allow_mismatch: AllowMismatch = False,
    top: Annotated[int, typer.Option("--top", help="Kernels to list (0 = all).")] = 0,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Predict an ONNX model's latency on a device: kernels as the runtime executes them, summed and
    calibrated."""
    import warnings

    from hwnas.profilers import load_onnx

    onnx_model = load_onnx(model)
    dev = _registry(devices_file).get(device)
    pred, d = _load_predictor(dev, predictor, allow_mismatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pred.predict_onnx(onnx_model)
    err = _err()
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] fallback estimate for {w}", highlight=False)
    if not result.calibrated:
        err.print("[yellow]warning:[/] the predictor is not calibrated on whole models: the total is a plain sum")
    if as_json:
        _print_json({"model": str(model), "device": dev.name, "predictor": str(d), **result.to_dict()})
        return
    kernels = sorted(result.kernels, key=lambda k: -k.latency_ms)
    shown = kernels[:top] if top else kernels
    t = Table("kernel", "kind", "ms", "note", title=f"{model.name} on {dev.name}: {len(result.kernels)} kernels")
    for k in shown:
        t.add_row(k.label, k.kind + (" (fallback)" if k.fallback else ""), f"{k.latency_ms:.4f}", k.note[:70])
    o = _out()
    o.print(t)
    o.print(f"predicted latency: [bold]{result.latency_ms:.3f} ms[/] (sum of kernels {result.op_sum_ms:.3f} ms, "
            f"{result.n_units} kernels, {'calibrated' if result.calibrated else 'uncalibrated'})")


# ---- search -------------------------------------------------------------------------------------
@app.command()
def search(
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    space: Annotated[str, typer.Option("--space", help="Search space: nb201, mnasnet, proxyless or mlp.")] = "nb201",
    target_ms: Annotated[float, typer.Option("--target-ms", help="Latency target T of the MNAS reward (ms).")] = 5.0,
    strategy: Annotated[str, typer.Option("--strategy", help="grid, random, evolution, guided-evolution "
                        "(evolution screened by a surrogate), reinforce, ppo, nsga2 (multi-objective: --objective pareto), or proxyless (supernet with binary "
                        "gates and a latency loss; --space proxyless).")] = "guided-evolution",
    space_arg: Annotated[list[str] | None, typer.Option("--space-arg", help="A space setting NAME=VALUE, e.g. "
                         "resolution=64 or width=0.5 (repeatable).")] = None,
    strategy_param: Annotated[list[str] | None, typer.Option("--strategy-param", help="A strategy hyper-parameter "
                              "NAME=VALUE, e.g. population_size=50 or lr=0.02 (repeatable).")] = None,
    supernet_epochs: Annotated[int, typer.Option("--supernet-epochs", help="proxyless: supernet epochs.")] = 20,
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", help="proxyless: weight-only epochs first.")] = 5,
    latency_loss: Annotated[str, typer.Option("--latency-loss", help="proxyless: multiplicative "
                            "(CE * (log E[LAT] / log T)^beta), additive (CE + lambda E[LAT] / T), absolute (TuNAS: "
                            "CE + lambda |E[LAT] / T - 1|, pulls E[LAT] to T) or none.")] = "multiplicative",
    latency_lambda: Annotated[float, typer.Option("--latency-lambda", help="proxyless: weight of the additive and absolute forms.")] = 0.1,
    latency_beta: Annotated[float, typer.Option("--latency-beta", help="proxyless: multiplicative exponent.")] = 0.6,
    budget: Annotated[int, typer.Option("--budget", help="Architectures to evaluate.")] = 20,
    evaluator: Annotated[str, typer.Option("--evaluator", help="proxy (train on a dataset) or table (CSV).")] = "proxy",
    epochs: Annotated[int, typer.Option("--epochs", help="Proxy training epochs.")] = 2,
    dataset: Annotated[str, typer.Option("--dataset", help="digits, a .npz file, or an image folder.")] = "digits",
    resolution: Annotated[int, typer.Option("--resolution", help="Input resolution for proxy training (a space that searches it, mnasnet, trains each architecture at its own).")] = 16,
    accuracy_csv: Annotated[Path | None, typer.Option("--accuracy-csv", help="Table evaluator: CSV with arch_str.")] = None,
    accuracy_column: Annotated[str, typer.Option("--accuracy-column")] = "cifar10_test_acc",
    reward_name: Annotated[str, typer.Option("--reward", help="soft or hard MNAS preset.")] = "hard",
    objective: Annotated[str, typer.Option("--objective", help="mnas: the most accurate architecture within T "
                         "(the MNAS reward); pareto: the accuracy-latency front (within the limit), told to a "
                         "multi-objective strategy (--strategy nsga2; random and grid work too); --verify then "
                         "measures front members at the end.")] = "mnas",
    hard_limit: Annotated[bool, typer.Option("--hard-limit/--soft-limit", help="Only propose architectures "
                          "predicted within T (hard) or let the reward penalise them (soft).")] = True,
    verify: Annotated[int, typer.Option("--verify", help="Measure the incumbent on the device before trusting "
                      "it, up to this many models per run (0: trust the predictor); a measurement over the limit "
                      "disqualifies it and makes feasibility use the measured latency.")] = 5,
    qualify_band: Annotated[float, typer.Option("--qualify-band", help="With --verify: architectures predicted "
                            "over the limit by at most this fraction may be proposed too while measurements are "
                            "left, and are measured when they are the best found (the predictor's error cuts "
                            "both ways; 0: never).")] = 0.05,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/search"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    predictor: PredictorDir = None,
    allow_mismatch: AllowMismatch = False,
    train_device: Annotated[str, typer.Option("--train-device", help="cpu or cuda for proxy training.")] = "cpu",
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Latency-constrained search: the most accurate architecture within the device's budget."""
    import warnings

    from hwnas.search import (Journal, Limits, best_and_front, check_budget_feasible, create_space, create_strategy,
                              reward_preset, run_search)
    from hwnas.search._evaluators import ProxyTrainingEvaluator, TableEvaluator
    from hwnas.search._run import feasibility, write_run
    from hwnas.search.strategies import strategy_class, strategy_names

    dev = _registry(devices_file).get(device)
    if strategy not in [*strategy_names(), "proxyless"]:
        from hwnas.errors import UnknownNameError

        raise UnknownNameError("strategy", strategy, [*strategy_names(), "proxyless"])
    reward = reward_preset(reward_name, target_ms)
    from hwnas.search._run import OBJECTIVES

    if objective not in OBJECTIVES:
        from hwnas.errors import UnknownNameError

        raise UnknownNameError("objective", objective, OBJECTIVES)
    if objective == "pareto" and (strategy == "proxyless" or not strategy_class(strategy).multi_objective):
        multi = [n for n in strategy_names() if strategy_class(n).multi_objective]
        raise HwnasError(f"--objective pareto needs a multi-objective strategy ({', '.join(multi)}); "
                         f"{strategy} takes one reward")
    space_args = _key_values(space_arg, "--space-arg")
    strategy_params = _key_values(strategy_param, "--strategy-param")
    if evaluator == "proxy" and "classes" not in space_args and "classes" in _space_settings(space):
        # the networks trained, measured and exported have the dataset's classes: so must the
        # op configurations the latency is predicted from (on cpu-ort a 1000-class head added
        # ~0.19 ms to quickstart-size proxyless networks that measure 0.12-0.21 ms)
        from hwnas.search._evaluators import dataset_classes

        space_args["classes"] = dataset_classes(dataset)
    sp = _make_space(space, space_args).restrict(dev.constraints)
    pred, pred_dir = _load_predictor(dev, predictor, allow_mismatch, _space_key(space, space_args))
    if not as_json:
        cal = pred.calibration
        _err().print(f"latency predictor: {pred_dir} (calibrated on {cal.n_models} whole models)", highlight=False)
    if strategy == "proxyless":
        _search_proxyless(sp, dev, pred, pred_dir, target_ms, space_args, supernet_epochs, warmup_epochs, latency_loss,
                          latency_lambda, latency_beta, strategy_params, epochs, dataset, resolution, seed, out,
                          resume, train_device, as_json)
        return
    cache: dict = {}

    def latency_many(archs):  # noqa: ANN001, ANN202
        todo = [a for a in archs if a not in cache]
        if todo:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache.update(zip(todo, pred.predict_architectures([sp.op_configs(a) for a in todo])))
        return [cache[a] for a in archs]

    def latency(arch):  # noqa: ANN001, ANN202
        return latency_many([arch])[0]

    c = dev.constraints
    limit = target_ms if hard_limit else c.latency_budget_ms
    if c.latency_budget_ms is not None and limit is not None:
        limit = min(limit, c.latency_budget_ms)
    limits = Limits(limit, c.max_params, c.max_peak_memory_mb)
    if verify < 0:
        raise HwnasError(f"--verify takes a count >= 0, got {verify}")
    if not 0 <= qualify_band <= 1:
        raise HwnasError(f"--qualify-band takes a fraction in [0, 1], got {qualify_band}")
    feasible = within = feasibility(sp, limits, latency)
    check_budget_feasible(sp, feasible, latency, seed=seed, latency_many=latency_many)
    # the pareto objective measures front members at the end, not incumbents on the way
    incumbents = verify if objective == "mnas" else 0
    qualify_ms = limit * (1 + qualify_band) if incumbents and qualify_band and limit is not None else None
    if qualify_ms is not None:  # borderline architectures too, while measurements are left to decide them
        loose = feasibility(sp, dataclasses.replace(limits, latency_ms=qualify_ms), latency)
        n_measured = [0]

        def feasible(arch) -> bool:  # noqa: ANN001
            return within(arch) or (n_measured[0] < verify and loose(arch))
    if evaluator == "table":
        if accuracy_csv is None:
            raise HwnasError("--evaluator table needs --accuracy-csv")
        evaluate = TableEvaluator(sp, accuracy_csv, accuracy_column)
    elif evaluator == "proxy":
        evaluate = ProxyTrainingEvaluator(sp, dataset, epochs, resolution, device=train_device, seed=seed)
    else:
        from hwnas.errors import UnknownNameError

        raise UnknownNameError("evaluator", evaluator, ["proxy", "table"])
    settings = {"device": dev.name, "space": space, "space_args": space_args, "strategy": strategy,
                "strategy_params": strategy_params, "seed": seed, "target_ms": target_ms,
                "reward": reward_name, "limit_ms": limit, "evaluator": evaluator, "epochs": epochs,
                "dataset": dataset, "resolution": resolution, "predictor": str(pred_dir), "verify": verify,
                "qualify_band": qualify_band}
    if objective != "mnas":  # journals written before --objective existed resume unchanged
        settings["objective"] = objective
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "journal.sqlite", settings, resume)
    try:
        strat = create_strategy(strategy, sp, seed=seed, feasible=feasible, **strategy_params)
    except TypeError as exc:
        import inspect

        known = [p for p in inspect.signature(strategy_class(strategy)).parameters
                 if p not in ("self", "space", "seed", "feasible")]
        raise HwnasError(f"bad --strategy-param for {strategy}: {exc}; its parameters: {', '.join(known)}") from None
    def on_measured(arch, ms: float) -> None:  # noqa: ANN001
        cache[arch] = ms
        if qualify_ms is not None:
            n_measured[0] += 1

    err = _err()
    done = len(journal.trials())
    with _progress(budget, f"{strategy} on {space}", err) as prog:
        task = prog.task_ids[0]
        prog.update(task, completed=done)
        trials = run_search(sp, strat, evaluate, latency, reward, budget, journal,
                            on_trial=lambda t, n: prog.update(task, completed=n,
                                                              current=f"acc {t.accuracy:.3f} lat {t.latency_ms:.2f} ms"),
                            measure=_arch_latency_on(dev, sp) if incumbents and limit is not None else None,
                            measure_budget=verify, limit_ms=limit, qualify_ms=qualify_ms,
                            on_measured=on_measured, objective=objective)
    measured = {a: ms for a, _, ms in journal.measurements()}
    best, front = best_and_front(trials, limit, measured)
    if objective == "pareto" and verify > len(measured) and trials:
        _measure_front(front, verify - len(measured), measured, journal, _arch_latency_on(dev, sp), sp, trials, err)
    journal.close()
    result = write_run(out, sp, trials, best, front, settings, target_ms, pred, measured)
    if as_json:
        _print_json(result)
        return
    o = _out()
    if objective == "pareto":
        t = Table("arch", "accuracy", "predicted ms", "measured ms", title=f"accuracy-latency front ({len(front)})")
        for f in front:
            t.add_row(f.arch, f"{f.accuracy:.4f}", f"{f.latency_ms:.3f}",
                      f"{measured[f.arch]:.3f}" if f.arch in measured else "")
        o.print(t)
    if best is None:
        o.print("no evaluated architecture is within the latency limit")
    else:
        seen = f", measured {measured[best.arch]:.3f} ms" if best.arch in measured else ""
        o.print(f"best: [bold]{best.arch}[/] accuracy {best.accuracy:.4f}, predicted {best.latency_ms:.3f} ms{seen} "
                f"(target {target_ms} ms), {best.params:,} parameters")
        over = sum(ms > limit for ms in measured.values()) if limit is not None else 0
        if measured and objective == "mnas":
            o.print(f"{len(measured)} incumbents measured on {dev.name}; {over} over the limit, disqualified")
            if best.arch not in measured and len(measured) >= verify:
                o.print(f"[yellow]the best was not measured:[/] the --verify {verify} measurements went to earlier "
                        f"incumbents; its latency is the prediction (`hwnas export --run {out}` measures it; a "
                        f"larger --verify measures more in a new run)")
    o.print(f"{len(trials)} evaluated ({len(trials) - done} now); run directory: {out} "
            f"(journal.sqlite, best.json, trials.csv, pareto.csv, pareto.png)")


def _measure_front(front: list, n: int, measured: dict[str, float], journal: Any, measure: Any, sp: Any,
                   trials: list, err: Console) -> None:
    """Measure up to ``n`` unmeasured members of the front on the device, spread evenly along it
    (fastest to most accurate), into the journal (a resumed run does not repeat them) and
    ``measured``."""
    import numpy as np

    todo = [f for f in front if f.arch not in measured]
    if not todo:
        return
    pick = [todo[int(i)] for i in np.unique(np.linspace(0, len(todo) - 1, min(n, len(todo))).round().astype(int))]
    with _progress(len(pick), "measuring the front", err) as prog:
        for f in pick:
            ms = float(measure(sp.from_string(f.arch)))
            journal.add_measurement(f.arch, trials[-1].number, ms)
            measured[f.arch] = ms
            prog.update(prog.task_ids[0], advance=1, current=f"{f.arch}: {ms:.3f} ms")


def _arch_latency_on(dev: Any, sp: Any):  # noqa: ANN202
    """A device measurement of an architecture (ms): its module (untrained weights; latency does not
    depend on them) exported to ONNX and timed by the device's profiler, not stored."""
    import torch

    from hwnas.export import _to_onnx
    from hwnas.profilers import Profiler

    profiler = Profiler(dev, _policy(None), None)

    def measure(arch):  # noqa: ANN001, ANN202
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = sp.build_module(arch, classes=getattr(sp, "classes", 10)).eval()
        model = _to_onnx(module, sp.input_shape(arch), False)
        return profiler.profile_model(model, name=sp.to_string(arch), breakdown_runs=0, record=False).latency_ms

    return measure


def _key_values(items: list[str] | None, option: str) -> dict[str, Any]:
    """``NAME=VALUE`` strings to a dict; values become int, float or bool where they read as one."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HwnasError(f"{option} takes NAME=VALUE, got {item!r}")
        v: Any = value
        for conv in (int, float):
            try:
                v = conv(value)
                break
            except ValueError:
                pass
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        out[key.strip()] = v
    return out


def _space_calibration_models(space: str, space_args: dict[str, Any], dev: Any, n: int) -> list[tuple[str, Any]]:
    """``n`` ONNX models of a search space (restricted to the device), spread evenly over its
    FLOPs range, the smallest and largest included (uniform samples cluster in the middle)."""
    import numpy as np

    from hwnas.pipeline import _space_models, _spread_archs

    sp = _make_space(space, space_args).restrict(dev.constraints)
    archs = _spread_archs(sp, lambda archs: np.array([sp.flops(a) for a in archs], float), n, seed=0)
    return [(name, model) for name, _, model in _space_models(sp, archs)]


def _space_settings(name: str) -> list[str]:
    """The settings (``--space-arg`` names) of the search space ``name``; unknown names list the
    known spaces (exit code 2)."""
    import inspect

    from hwnas.search.spaces import _SPACES, space_names

    if name not in space_names():
        from hwnas.errors import UnknownNameError

        raise UnknownNameError("search space", name, space_names())
    return [p for p in inspect.signature(_SPACES.get(name).__init__).parameters if p not in ("self", "allowed")]


def _make_space(name: str, args: dict[str, Any]):  # noqa: ANN202
    from hwnas.search import create_space

    known = _space_settings(name)
    bad = [k for k in args if k not in known]
    if bad:
        raise HwnasError(f"space {name!r} has no setting {bad[0]!r}; its settings: {', '.join(known)}")
    return create_space(name, **args)


def _search_proxyless(sp: Any, dev: Any, pred: Any, pred_dir: Path, target_ms: float, space_args: dict, supernet_epochs: int,
                      warmup_epochs: int, latency_loss: str, lam: float, beta: float, params: dict, epochs: int,
                      dataset: str, resolution: int, seed: int, out: Path, resume: bool, train_device: str,
                      as_json: bool) -> None:
    import math

    from hwnas.search._run import best_and_front, write_run
    from hwnas.search.proxyless import ProxylessConfig, run_proxyless

    if sp.name != "proxyless":
        raise HwnasError(f"--strategy proxyless searches the proxyless space's supernet, not {sp.name!r} "
                         "(use --space proxyless)")
    t = None if math.isinf(target_ms) else target_ms
    try:
        cfg = ProxylessConfig(target_ms=t, latency_loss=latency_loss, lam=lam, beta=beta, epochs=supernet_epochs,
                              warmup_epochs=warmup_epochs, seed=seed, **params)
    except TypeError as exc:
        raise HwnasError(f"bad --strategy-param for proxyless: {exc}") from None
    settings = {"device": dev.name, "space": sp.name, "space_args": space_args, "strategy": "proxyless",
                "strategy_params": params, "seed": seed, "target_ms": target_ms, "latency_loss": latency_loss,
                "lambda": lam, "beta": beta, "supernet_epochs": supernet_epochs, "warmup_epochs": warmup_epochs,
                "epochs": epochs, "dataset": dataset, "resolution": resolution, "predictor": str(pred_dir),
                "limit_ms": t}
    out.mkdir(parents=True, exist_ok=True)
    err = _err()
    with _progress(supernet_epochs, "proxyless supernet", err) as prog:
        task = prog.task_ids[0]
        res = run_proxyless(out, sp, pred, cfg, settings, dataset, resolution, epochs, train_device, resume,
                            on_epoch=lambda r: prog.update(task, completed=r.epoch + 1,
                                                           current=f"E[LAT] {r.expected_latency_ms:.3f} ms"))
    trials = res["trials"]
    best, front = best_and_front(trials, None)
    result = write_run(out, sp, trials, best, front, settings, t if t is not None else max(x.latency_ms for x in trials), pred)
    derived = trials[0]
    meets = t is None or derived.latency_ms <= t
    result["meets_target"] = meets
    (out / "best.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if as_json:
        _print_json(result)
        return
    o = _out()
    o.print(f"derived: [bold]{derived.arch}[/] accuracy {derived.accuracy:.4f} after {epochs} epochs from scratch, "
            f"predicted {derived.latency_ms:.3f} ms (target {target_ms} ms{'' if meets else ': NOT MET'})")
    if not meets:
        err.print("[yellow]warning:[/] the derived architecture's predicted latency is over the target: raise "
                  "--latency-beta/--latency-lambda or train longer")
    o.print(f"run directory: {out} (journal.sqlite, best.json, epochs.csv, proxyless.png, supernet.pt)")


# ---- export -------------------------------------------------------------------------------------
@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write.")],
    run: Annotated[Path | None, typer.Option("--run", help="A search run directory (its best.json).")] = None,
    arch: Annotated[Path | None, typer.Option("--arch", help='An architecture JSON: {"space", "arch", "space_args"}.')] = None,
    front: Annotated[int | None, typer.Option("--front", help="With --run: export this member of the run's "
                     "accuracy-latency front instead of its best (0 the fastest, -1 the most accurate; "
                     "pareto.csv lists them).")] = None,
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs on the dataset before export.")] = 5,
    no_train: Annotated[bool, typer.Option("--no-train", help="Export untrained (random) weights.")] = False,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Default: the run's dataset (digits).")] = None,
    resolution: Annotated[int | None, typer.Option("--resolution", help="Training resolution (default: the run's).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="A dynamic batch axis.")] = False,
    budget_ms: Annotated[float | None, typer.Option("--budget-ms", help="Latency budget (default: the run's).")] = None,
    predictor: PredictorDir = None,
    allow_mismatch: AllowMismatch = False,
    db: DbOption = None,
    train_device: Annotated[str, typer.Option("--train-device", help="cpu or cuda for training.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Train, export to ONNX, verify parity with PyTorch, measure on the device, write model_card.json
    (and the compiled library for TVM devices)."""
    import dataclasses

    from hwnas.export import card_summary, export_architecture, load_arch_spec
    from hwnas.profilers import DriftPolicy

    if (run is None) == (arch is None):
        raise HwnasError("give exactly one of --run DIR or --arch ARCH.json")
    if front is not None and run is None:
        raise HwnasError("--front picks a member of a run's front: give --run DIR")
    spec = load_arch_spec(run or arch, front)  # type: ignore[arg-type]
    if budget_ms is not None:
        spec = dataclasses.replace(spec, budget_ms=budget_ms)
    dev = _registry(devices_file).get(device)
    try:
        pred, _ = _load_predictor(dev, predictor, allow_mismatch, _space_key(spec.space, spec.space_args))
    except HwnasError as exc:
        if predictor is not None:
            raise
        pred = None
        _err().print(f"[yellow]warning:[/] {exc}; the card will have no predicted latency", highlight=False)
    err = _err()
    with _store(db) if db else _nullcontext() as store:
        with err.status(f"{'training, ' if not no_train else ''}exporting and measuring on {dev.name}"):
            res = export_architecture(spec, dev, output, pred, epochs, not no_train, dataset, resolution,
                                      dynamic_batch, store=store, seed=seed, train_device=train_device,
                                      drift=DriftPolicy() if store is not None else None)
    if as_json:
        _print_json({**res.card, "onnx_path": str(res.onnx_path), "card_path": str(res.card_path)})
        return
    t = Table("", "", title=f"exported {res.onnx_path}")
    for k, v in card_summary(res.card):
        t.add_row(k, v)
    t.add_row("model card", str(res.card_path))
    if res.library_path:
        t.add_row("compiled library (TVM)", str(res.library_path))
    _out().print(t)
    if res.card["meets_budget"] is False:
        err.print(f"[yellow]warning:[/] measured {res.card['measured_latency_ms']:.3f} ms is over the budget "
                  f"{res.card['budget_ms']} ms")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A search run directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file (default: RUN/report.html).")] = None,
) -> None:
    """A self-contained HTML report of a run: Pareto front, predicted vs measured latency, per-op
    breakdown of the chosen model, search progress."""
    from hwnas.report import write_report

    path = write_report(run, output)
    _out().print(f"report written to {path}")


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield None


# ---- main job ---------------------------------------------------------------------------------
@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Directory for everything written.")] = Path("hwnas-quickstart"),
    device: Annotated[str, typer.Option("--device", "-d")] = "cpu-ort",
    budget_ms: Annotated[float | None, typer.Option("--budget-ms", help="Latency budget (default: the 40th "
                         "percentile of the space's predicted latencies).")] = None,
    search_budget: Annotated[int, typer.Option("--search-budget", help="Architectures trained in the search.")] = 10,
    max_time: Annotated[float | None, typer.Option("--max-time-per-op")] = None,
    op_passes: Annotated[int, typer.Option("--op-passes", min=1, help="Measure the ops in this many passes over all of them and keep each op's fastest (as `hwnas profile --passes`).")] = 1,
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny budgets and short timing (a smoke test of the "
                     "pipeline, about a minute; its numbers mean nothing).")] = False,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job, end to end on this machine: profile the ops of a small search space, train and
    check a latency predictor, search under a latency budget with proxy training on digits, export
    the best model to ONNX, verify and measure it. Rerunning reuses what is stored."""
    import dataclasses

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from hwnas.pipeline import PipelineConfig, run_pipeline

    dev = _registry(devices_file).get(device)
    err = _err()
    _warn_governor(err)
    cfg = dataclasses.replace(PipelineConfig(), budget_ms=budget_ms, search_budget=search_budget, op_passes=op_passes)
    policy = _policy(max_time)
    if smoke:
        from hwnas.testing import FAST_POLICY

        cfg = dataclasses.replace(cfg, space_args={"resolution": 16, "width": 0.25, "classes": 10}, sampled_ops=5,
                                  calibration_models=5, heldout_models=2, model_passes=1, search_budget=2, search_epochs=1,
                                  export_epochs=1)
        policy = FAST_POLICY
    tasks: dict[str, Any] = {}
    with _Progress(TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err,
                  disable=not err.is_terminal and as_json) as prog:
        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done)

        result = run_pipeline(out, dev, cfg, policy, tick, lambda msg: prog.console.print(msg))
    if as_json:
        _print_json(result.summary)
        return
    t = Table("", "", title="hwnas quickstart: profile -> predictor -> search -> export")
    for k, v in result.rows:
        t.add_row(k, v)
    _out().print(t)


# ---- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for bad input)."""
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="hwnas")
    except HwnasError as exc:
        _err().print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _err().print("interrupted; what was measured is stored: run the same command again to resume")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, ...
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    return rc if isinstance(rc, int) else 0


def entry() -> None:
    sys.exit(main())
