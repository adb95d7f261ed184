"""The ``hwnas`` command line (typer + rich): each command parses its options, calls one library
function (:mod:`hwnas.jobs`) and renders its result. Bad input: one line and exit code 2."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hwnas import render as _render
from hwnas.console import LogProgress, err_console, out_console, print_json, progress_bar, say_to as _say
from hwnas.console import warn_governor as _warn_governor
from hwnas.errors import ArgumentError, HwnasError, RunExistsError

_Progress = LogProgress  # the progress bar class (tests drive it with a fake clock)
_out, _err, _print_json = out_console, err_console, print_json

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
TuneTrials = Annotated[int | None, typer.Option("--tune-trials", help="TVM devices: tune every task of a model with "
                       "MetaSchedule for this many trials first (its records in tvm-tuning/<device> beside the store, "
                       "reused by later profiles and exports; tuned and untuned measurements never mix).")]


def _registry(files: list[Path] | None):  # noqa: ANN202
    from hwnas.jobs import load_devices

    return load_devices(list(files or []))


# ---- devices ----------------------------------------------------------------------------------
@devices_app.command("list")
def devices_list(devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """List known devices and whether each can run on this machine."""
    from hwnas.jobs import device_status

    rows = device_status(_registry(devices_file))
    _print_json(rows) if as_json else _render.device_list(rows)


@devices_app.command("show")
def devices_show(name: str, devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """Show one device's runtime options, constraints and availability."""
    from hwnas.jobs import device_status

    reg = _registry(devices_file)
    data = {**reg.get(name).to_dict(), **device_status(reg, [name])[0]}
    _print_json(data) if as_json else _render.device(reg.get(name), data)


@devices_app.command("check")
def devices_check(name: str, devices_file: DevicesFile = None) -> None:
    """One line: can the device measure now (remote: tracker, servers under its key, a trivial kernel)."""
    from hwnas.jobs import check_device

    ok, line = check_device(_registry(devices_file).get(name))
    if not ok:
        raise HwnasError(line)
    _out().print(line, highlight=False)


@devices_app.command("detect")
def devices_detect(devices_file: DevicesFile = None, as_json: JsonFlag = False) -> None:
    """Describe this machine and which devices can be profiled on it (with their fingerprints)."""
    from hwnas.jobs import detect_devices

    result = detect_devices(_registry(devices_file))
    _print_json(result) if as_json else _render.detection(result)


# ---- ops --------------------------------------------------------------------------------------
@ops_app.command("sets")
def ops_sets(as_json: JsonFlag = False) -> None:
    """List the named op sets usable with ``hwnas profile --space NAME``."""
    from hwnas.profilers import op_set, op_set_doc, op_set_names

    rows = [{"name": n, "ops": len(op_set(n)), "description": op_set_doc(n)} for n in op_set_names()]
    _print_json(rows) if as_json else _render.table(["op set", "ops", "description"], rows)


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


@app.command()
def profile(
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Device name (hwnas devices list); "
                      "repeat it to profile several (one after the other, or at once with --executor ray).")] = None,
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
    executor: Annotated[str | None, typer.Option("--executor", help="ray: profile the devices at once, each on the "
                        "Ray node that advertises hwnas-device:<device> (others here, one after the other).")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="A Ray cluster (default: a local Ray).")] = None,
    tune_trials: TuneTrials = None,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure op configurations on a device into the profile store (resumes where it stopped)."""
    from hwnas.jobs import profile_ops, tuned_device

    if sum(map(bool, (ops, space, stored))) > 1:
        raise HwnasError("give one of --ops FILE, --space NAME and --stored")
    names = list(dict.fromkeys(device or ["cpu-ort"]))
    reg = _registry(devices_file)
    devs = [tuned_device(reg.get(n), tune_trials, db) for n in names]
    if executor is not None:
        _profile_farm(devs, executor, ray_address, ops, space, stored, force, db, max_time, drift_check, passes,
                      as_json)
        return
    err = _err()
    _warn_governor(err)
    for dev in devs:
        with progress_bar(err) as bars:
            res = profile_ops(dev, ops_file=ops, op_set_name=space, store=db, force=force,
                              max_time_per_op=max_time, drift_check=drift_check, stored=stored, recheck=recheck,
                              passes=passes, progress=bars, message=_say(err))
        summary = res.summary()
        if as_json:
            _print_json(summary)
        else:
            _render.profile_result(res, summary)


def _profile_farm(devs: list, executor: str, address: str | None, ops: Path | None, space: str | None, stored: bool,
                  force: bool, db: Path | None, max_time: float | None, drift_check: bool, passes: int,
                  as_json: bool) -> None:
    from hwnas.jobs import profile_devices
    from hwnas.profilers import op_set, read_ops_file

    if executor != "ray":
        raise HwnasError(f"hwnas profile --executor takes ray (got {executor!r}); without it devices are profiled "
                         "one after the other here")
    if stored or force:
        raise HwnasError("--stored and --force profile one device at a time: leave out --executor")
    configs = read_ops_file(ops) if ops else op_set(space or "micro")
    err = _err()
    with progress_bar(err) as bars:
        res = profile_devices(devs, configs=configs, store=db, address=address, max_time_per_op=max_time,
                              drift_check=drift_check, passes=passes, progress=bars, message=_say(err))
    if as_json:
        _print_json({"db": res.db, "devices": res.devices})
    else:
        for name, d in res.devices.items():
            err.print(f"{name}: {d['measured']} measured, {d['skipped']} already stored, fingerprint "
                      f"{d['fingerprint']}" + (f", stopped: {d['error']}" if d["error"] else ""), highlight=False)
    if res.failed:
        raise HwnasError(f"{', '.join(res.failed)} stopped before the end (their measurements so far are stored; "
                         "rerun to resume)")


@app.command("profile-model")
def profile_model(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device name (hwnas devices list).")] = "cpu-ort",
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", help="How many of the slowest kernels to show.")] = 10,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the measurement.")] = False,
    max_time: Annotated[float | None, typer.Option("--max-time", help="Seconds of timing at most.")] = None,
    tune_trials: TuneTrials = None,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """End-to-end latency of an ONNX model and its slowest kernels (runtime's own profiler)."""
    from hwnas.jobs import model_summary, tuned_device
    from hwnas.jobs import profile_model as run_profile_model

    dev = tuned_device(_registry(devices_file).get(device), tune_trials, db)
    _warn_governor(_err())
    with _err().status(f"profiling {model.name} on {dev.name}"):
        m = run_profile_model(model, dev, store=db, record=not no_store, max_time_s=max_time)
    s = model_summary(m, top)
    if as_json:
        _print_json(s)
        return
    _render.model_measurement(m, s)


# ---- store ------------------------------------------------------------------------------------
@store_app.command("info")
def store_info(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Counts of fingerprints and measurements in the store."""
    from hwnas.jobs import open_store

    with open_store(db, create=False) as store:
        s = store.summary()
        fps = [f.to_dict() for f in store.fingerprints()]
    _print_json({**s, "fingerprint_list": fps}) if as_json else _render.store_summary(s, fps)


@store_app.command("export")
def store_export(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    db: DbOption = None,
) -> None:
    """Export every table of the store as Parquet or CSV."""
    from hwnas.jobs import open_store

    if fmt not in ("csv", "parquet"):  # before the store is opened
        raise HwnasError(f"unknown export format {fmt!r}; known formats: csv, parquet")
    with open_store(db, create=False) as store:
        paths = store.export(out_dir, fmt)
    for p in paths:
        sys.stdout.write(f"{p}\n")


PredictorDir = Annotated[Path | None, typer.Option("--predictor", help="Predictor directory. Default: the "
                         "user cache dir's predictor for this device and fingerprint.")]
AllowMismatch = Annotated[bool, typer.Option("--allow-fingerprint-mismatch",
                          help="Use a predictor trained on another machine or runtime version anyway.")]


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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the predictor at --out.")] = False,
    tune_trials: TuneTrials = None,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Profile the device (resumable), fit a latency model, calibrate it on whole models, save it."""
    from hwnas.jobs import parse_key_values, train_predictor, tuned_device

    if space is not None and not calibrate:
        raise HwnasError("--space calibrates on the space's models: it needs --calibrate")
    if op_time == "auto" and (not calibrate or quick):
        raise HwnasError("--op-time auto compares the op times on the calibration models: it needs --calibrate "
                         "without --quick (or give e2e, kernel or mean)")
    err = _err()
    _warn_governor(err)
    with progress_bar(err) as bars:
        pred = train_predictor(tuned_device(_registry(devices_file).get(device), tune_trials, db), store=db, space=space,
                               space_args=parse_key_values(space_arg, "--space-arg"), model=model, samples=samples,
                               adaptive=adaptive, calibrate=calibrate, quick=quick, max_time_per_op=max_time,
                               drift_check=drift_check, model_passes=model_passes, op_time=op_time, recheck=recheck,
                               passes=passes, space_models=space_models, out=out, overwrite=overwrite or out is None,
                               progress=bars)
    report = pred.report_
    if report.recheck is not None and report.recheck.warning():
        err.print(f"[yellow]warning:[/] {report.recheck.warning()}", highlight=False)
    result = report.to_dict(device, model)
    if as_json:
        _print_json(result)
        return
    _render.trained_predictor(result, report, pred, model, device, pred.calibration)


@predictor_app.command("adapt")
def predictor_adapt(
    device: Annotated[str, typer.Option("--device", "-d", help="The new device.")],
    sources: Annotated[list[str], typer.Option("--from", help="A device whose predictor is a source (repeatable).")],
    samples: Annotated[int, typer.Option("--samples", help="Networks measured whole on the new device.")] = 20,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Report the leave-one-out error after each this many.")] = 5,
    space: Annotated[str | None, typer.Option("--space", help="Also choose among this space's networks; saved as "
                     "the device's predictor for the space.")] = None,
    space_arg: Annotated[list[str] | None, typer.Option("--space-arg", help="With --space: NAME=VALUE.")] = None,
    db: DbOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to save the predictor.")] = None,
    model_passes: Annotated[int, typer.Option("--model-passes", min=1)] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the predictor at --out.")] = False,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """A new device's predictor from other devices' predictors and a few whole-network measurements
    (no op profile): resumable, the leave-one-out error printed after each batch."""
    from hwnas.jobs import adapt_predictor, parse_key_values

    reg, err = _registry(devices_file), _err()
    with progress_bar(err) as bars:
        pred = adapt_predictor(reg.get(device), sources, samples=samples, batch=batch, space=space,
                               space_args=parse_key_values(space_arg, "--space-arg"), store=db, out=out,
                               overwrite=overwrite or out is None, model_passes=model_passes, progress=bars,
                               message=lambda text: err.print(text, highlight=False))
    result = _render.adapted_predictor(pred, device)
    _print_json(result) if as_json else err.print(result["line"], highlight=False)


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
    from hwnas.jobs import evaluate_predictor, load_predictor

    dev = _registry(devices_file).get(device)
    pred = load_predictor(dev, path=predictor, allow_fingerprint_mismatch=allow_mismatch)
    with progress_bar(_err()) as bars:
        ev = evaluate_predictor(dev, predictor=pred, store=db, quick=quick, model_passes=model_passes, plot=plot,
                                progress=bars)
    metrics = ev.metrics
    if as_json:
        _print_json({"predictor": ev.predictor, "metrics": metrics, "models": ev.rows})
        return
    _render.predictor_evaluation(ev, metrics, plot)


@predictor_app.command("show")
def predictor_show(directory: Annotated[Path, typer.Argument(help="Predictor directory.")]) -> None:
    """Print a saved predictor's metadata (fingerprint, training data, validation, calibration)."""
    from hwnas.jobs import predictor_info

    _print_json(predictor_info(directory))


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

    from hwnas.jobs import load_predictor
    from hwnas.profilers import load_onnx

    onnx_model = load_onnx(model)
    dev = _registry(devices_file).get(device)
    pred = load_predictor(dev, path=predictor, allow_fingerprint_mismatch=allow_mismatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pred.predict_onnx(onnx_model)
    err = _err()
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] fallback estimate for {w}", highlight=False)
    if not result.calibrated:
        err.print("[yellow]warning:[/] the predictor is not calibrated on whole models: the total is a plain sum")
    if as_json:
        _print_json({"model": str(model), "device": dev.name, "predictor": str(pred.path_), **result.to_dict()})
        return
    _render.prediction(result, top, model, dev)


# ---- search -------------------------------------------------------------------------------------
@app.command()
def search(
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="The device (default cpu-ort); "
                      "once-for-all: repeat it, a network for each device from one supernet.")] = None,
    space: Annotated[str, typer.Option("--space", help="Search space: nb201, mnasnet, proxyless, mlp or cell.")] = "nb201",
    target_ms: Annotated[list[float] | None, typer.Option("--target-ms", help="Latency target T of the MNAS reward "
                         "(ms; default 5). once-for-all: one for all devices, or one per --device in their "
                         "order.")] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="grid, random, evolution, guided-evolution "
                        "(evolution screened by a surrogate), reinforce, ppo, bo (Gaussian process), tpe (Optuna), "
                        "nsga2 (multi-objective: --objective pareto), successive-halving or hyperband (proxy training "
                        "in rungs; --sampler), or proxyless (supernet with binary "
                        "gates and a latency loss; --space proxyless), or once-for-all (one single-path supernet, "
                        "then evolution on its accuracy for each --device; --space proxyless), or compound-scaling "
                        "(EfficientNet's alpha/beta/gamma grid on --base, then the largest phi within --target-ms; "
                        "--space proxyless), or darts (softmax over each edge's ops, latency term; --space cell), or enas "
                        "(LSTM controller and shared weights, MNAS reward; --space proxyless: macro, --space cell: micro), or pnas (cells grown a block at "
                        "a time, a surrogate choosing which to train; --space cell), or hypernetwork (SMASH-style weights "
                        "generated from the encoding rank candidates, the best trained; --space proxyless).")] = "guided-evolution",
    base: Annotated[str | None, typer.Option("--base", help="compound-scaling: the proxyless architecture to "
                    "scale (default: every layer k3e6, MobileNetV2's).")] = None,
    inherit: Annotated[int | None, typer.Option("--inherit", help="evolution, guided-evolution: a child starts from "
                       "its parent's trained weights (Net2Net-style) and trains this many epochs (fewer than "
                       "--epochs).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="successive-halving/hyperband: the strategy that "
                       "proposes each bracket's candidates (random; bo makes Hyperband BOHB-like).")] = "random",
    space_arg: Annotated[list[str] | None, typer.Option("--space-arg", help="A space setting NAME=VALUE, e.g. "
                         "resolution=64 or width=0.5 (repeatable).")] = None,
    strategy_param: Annotated[list[str] | None, typer.Option("--strategy-param", help="A strategy hyper-parameter "
                              "NAME=VALUE, e.g. population_size=50 or lr=0.02 (repeatable).")] = None,
    supernet_epochs: Annotated[int, typer.Option("--supernet-epochs", help="proxyless, once-for-all: supernet "
                               "epochs.")] = 20,
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
    evaluate_quantized: Annotated[bool, typer.Option("--evaluate-quantized", help="Proxy evaluator: the accuracy "
                                  "after int8 quantization (for an int8 device).")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Evaluations in flight at once (asynchronous: the "
                       "strategy is asked while others train).")] = 1,
    executor: Annotated[str | None, typer.Option("--executor", help="Where trials run: local (worker processes; "
                        "the default for --workers > 1) or ray.")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="A Ray cluster (HOST:PORT; default: a "
                           "local Ray started for the run). Device measurements run on the node that advertises "
                           "the resource hwnas-device:<device>.")] = None,
    trial_cpus: Annotated[int | None, typer.Option("--trial-cpus", help="CPUs (torch threads) per trial.")] = None,
    trial_gpus: Annotated[float, typer.Option("--trial-gpus", help="GPUs per trial (Ray; training uses it).")] = 0,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Latency-constrained search: the most accurate architecture within the device's budget."""
    from hwnas.jobs import check_count, create_search, parse_key_values

    check_count("budget", budget)
    check_count("workers", workers)
    names = device or ["cpu-ort"]
    space_args = parse_key_values(space_arg, "--space-arg")
    params = parse_key_values(strategy_param, "--strategy-param")
    targets = list(target_ms or [5.0])
    if strategy == "once-for-all":
        _search_ofa([_registry(devices_file).get(n) for n in names], space, space_args, params, targets,
                    supernet_epochs, epochs, dataset, resolution, seed, out, predictor, allow_mismatch, train_device,
                    as_json)
        return
    if len(names) > 1:
        raise ArgumentError("device", "takes one device (several only with --strategy once-for-all)", " ".join(names))
    if len(targets) > 1:
        raise ArgumentError("target-ms", "takes one target (one per device only with --strategy once-for-all)",
                            " ".join(f"{t:g}" for t in targets))
    target_ms = targets[0]
    dev = _registry(devices_file).get(names[0])
    if base is not None and strategy != "compound-scaling":
        raise ArgumentError("base", "is for --strategy compound-scaling", base)
    if strategy == "hypernetwork":
        _search_hypernet(dev, space, space_args, params, target_ms, supernet_epochs, epochs, dataset, resolution, seed,
                         out, predictor, allow_mismatch, train_device, as_json)
        return
    if strategy == "pnas":
        _search_pnas(dev, space, space_args, params, target_ms, epochs, dataset, seed, out, predictor, allow_mismatch,
                     train_device, as_json)
        return
    if strategy == "enas":
        _search_enas(dev, space, space_args, params, target_ms, supernet_epochs, epochs, dataset, resolution, seed, out,
                     predictor, allow_mismatch, train_device, as_json)
        return
    if strategy == "darts":
        _search_darts(dev, space, space_args, params, target_ms, supernet_epochs, latency_loss, latency_lambda,
                      latency_beta, epochs, dataset, resolution, seed, out, predictor, allow_mismatch, train_device,
                      as_json)
        return
    if strategy == "compound-scaling":
        _search_scaling(dev, space, base, space_args, params, target_ms, epochs, dataset, seed, out, predictor,
                        allow_mismatch, train_device, as_json)
        return
    if strategy in ("successive-halving", "hyperband"):
        if evaluator != "proxy":
            raise ArgumentError("evaluator", f"{strategy} trains in rungs: it needs the proxy evaluator", evaluator)
        _search_multifidelity(strategy, sampler, dev, space, space_args, params, target_ms, dataset, resolution, seed,
                              out, resume, predictor, allow_mismatch, train_device, as_json)
        return
    if sampler != "random":
        raise ArgumentError("sampler", "is for --strategy successive-halving or hyperband", sampler)
    if strategy == "proxyless":
        _search_proxyless(dev, space, space_args, params, target_ms, supernet_epochs, warmup_epochs, latency_loss,
                          latency_lambda, latency_beta, epochs, dataset, resolution, seed, out, resume, predictor,
                          allow_mismatch, train_device, as_json)
        return
    if inherit is not None and workers > 1:
        raise ArgumentError("inherit", "runs with one worker (a child waits for its parent's weights)", inherit)
    pool = _early_pool(workers, executor, trial_cpus, trial_gpus)
    try:
        s = create_search(space, dev, target_ms=target_ms, predictor=predictor, strategy=strategy, evaluator=evaluator,
                      objective=objective, reward=reward_name, storage=out, seed=seed, verify=verify,
                      space_args=space_args, strategy_params=params, hard_limit=hard_limit, qualify_band=qualify_band,
                      dataset=dataset, epochs=epochs, resolution=resolution, accuracy_csv=accuracy_csv,
                      accuracy_column=accuracy_column, train_device=train_device,
                      allow_fingerprint_mismatch=allow_mismatch, resume=resume, evaluate_quantized=evaluate_quantized,
                      executor=executor, ray_address=ray_address, trial_cpus=trial_cpus, trial_gpus=trial_gpus,
                      inherit_epochs=inherit)
    except BaseException:
        if pool is not None:
            pool.close(cancel=True)
        raise
    if not as_json:
        _err().print(f"latency predictor: {s.predictor.path_} (calibrated on {s.predictor.calibration.n_models} "
                     "whole models)", highlight=False)
    _run_search(s, budget, strategy, space, out, verify, target_ms, as_json, workers, pool)


def _early_pool(workers: int, executor: str | None, trial_cpus: int | None, trial_gpus: float) -> Any:
    """The local worker processes, started before the search loads its predictor and data (their
    start-up overlaps that work); None where the trials run elsewhere or in this process."""
    if workers == 1 or executor not in (None, "local") or trial_gpus:
        return None
    from hwnas.search import create_executor

    return create_executor("local", workers=workers, trial_cpus=trial_cpus)


def _run_search(s: Any, budget: int, strategy: str, space: str, out: Path, verify: int, target_ms: float,
                as_json: bool, workers: int = 1, pool: Any = None) -> None:
    from hwnas.jobs import measure_front, write_search

    err = _err()
    done = len(s.trials)
    with progress_bar(err) as bars:
        bars(f"{strategy} on {space}", done, budget)
        try:
            s.optimize(budget, [lambda srch, t: bars(f"{strategy} on {space}", len(srch.trials), budget,
                                                     f"acc {t.accuracy:.3f} lat {t.latency_ms:.2f} ms")],
                       workers=workers, executor=pool)
        except BaseException:
            s.close()  # what was told stays in the journal; pending trials run again on --resume
            raise
        measure_front(s, bars)
    s.close()
    result = write_search(s, out)
    if as_json:
        _print_json(result)
        return
    _render.search_result(s, done, out, verify, target_ms)


def _search_proxyless(dev: Any, space: str, space_args: dict, params: dict, target_ms: float, supernet_epochs: int,
                      warmup_epochs: int, latency_loss: str, lam: float, beta: float, epochs: int, dataset: str,
                      resolution: int, seed: int, out: Path, resume: bool, predictor: Path | None,
                      allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import proxyless_search

    with progress_bar(_err()) as bars:
        result = proxyless_search(space, dev, predictor, out, target_ms=target_ms, space_args=space_args,
                                  supernet_epochs=supernet_epochs, warmup_epochs=warmup_epochs,
                                  latency_loss=latency_loss, latency_lambda=lam, latency_beta=beta,
                                  strategy_params=params, epochs=epochs, dataset=dataset, resolution=resolution,
                                  seed=seed, resume=resume, train_device=train_device,
                                  allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                                  message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.proxyless_result(result, epochs, target_ms, out)


def _search_ofa(devs: list, space: str, space_args: dict, params: dict, target_ms: list[float], supernet_epochs: int,
                epochs: int, dataset: str, resolution: int, seed: int, out: Path, predictor: Path | None,
                allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import once_for_all_search

    if space != "proxyless":
        raise ArgumentError("space", "once-for-all trains the proxyless space's supernet (use --space proxyless)", space)
    with progress_bar(_err()) as bars:
        result = once_for_all_search(devs, out, target_ms=target_ms, space_args=space_args,
                                     predictors=[predictor] * len(devs) if predictor else None,
                                     supernet_epochs=supernet_epochs, strategy_params=params, epochs=epochs,
                                     dataset=dataset, resolution=resolution, seed=seed, train_device=train_device,
                                     allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                                     message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.ofa_result(result, out)


def _search_hypernet(dev: Any, space: str, space_args: dict, params: dict, target_ms: float, supernet_epochs: int,
                     epochs: int, dataset: str, resolution: int, seed: int, out: Path, predictor: Path | None,
                     allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import hypernetwork_search

    if space != "proxyless":
        raise ArgumentError("space", "the hypernetwork generates the proxyless chain's weights (use --space proxyless)",
                            space)
    with progress_bar(_err()) as bars:
        result = hypernetwork_search(dev, out, target_ms=target_ms, space_args=space_args, predictor=predictor,
                                     supernet_epochs=supernet_epochs, strategy_params=params, epochs=epochs,
                                     dataset=dataset, resolution=resolution, seed=seed, train_device=train_device,
                                     allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                                     message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.hypernet_result(result, out)


def _search_pnas(dev: Any, space: str, space_args: dict, params: dict, target_ms: float, epochs: int, dataset: str,
                 seed: int, out: Path, predictor: Path | None, allow_mismatch: bool, train_device: str,
                 as_json: bool) -> None:
    from hwnas.jobs import pnas_search

    if space != "cell":
        raise ArgumentError("space", "pnas grows cells of the cell space (use --space cell)", space)
    with progress_bar(_err()) as bars:
        result = pnas_search(dev, out, target_ms=target_ms, space_args=space_args, predictor=predictor,
                             strategy_params=params, epochs=epochs, dataset=dataset, seed=seed,
                             train_device=train_device, allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                             message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.pnas_result(result, out)


def _search_enas(dev: Any, space: str, space_args: dict, params: dict, target_ms: float, supernet_epochs: int,
                 epochs: int, dataset: str, resolution: int, seed: int, out: Path, predictor: Path | None,
                 allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import enas_search

    if space not in ("proxyless", "cell"):
        raise ArgumentError("space", "enas searches the proxyless chain (macro search: --space proxyless) or the "
                            "cell space (micro search: --space cell)", space)
    with progress_bar(_err()) as bars:
        result = enas_search(dev, out, target_ms=target_ms, space=space, space_args=space_args, predictor=predictor,
                             supernet_epochs=supernet_epochs, strategy_params=params, epochs=epochs, dataset=dataset,
                             resolution=resolution, seed=seed, train_device=train_device,
                             allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                             message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.enas_result(result, out)


def _search_darts(dev: Any, space: str, space_args: dict, params: dict, target_ms: float, supernet_epochs: int,
                  latency_loss: str, latency_lambda: float, latency_beta: float, epochs: int, dataset: str,
                  resolution: int, seed: int,
                  out: Path, predictor: Path | None, allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import darts_search

    if space not in ("cell", "proxyless"):
        raise ArgumentError("space", "darts searches the cell space's normal and reduction cells (use --space cell) "
                            "or the proxyless chain's layers (--space proxyless)", space)
    with progress_bar(_err()) as bars:
        result = darts_search(dev, out, target_ms=target_ms, space=space, space_args=space_args, predictor=predictor,
                              supernet_epochs=supernet_epochs, strategy_params=params, latency_loss=latency_loss,
                              latency_lambda=latency_lambda, latency_beta=latency_beta, epochs=epochs, dataset=dataset,
                              resolution=resolution, seed=seed, train_device=train_device,
                              allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                              message=(lambda m: None) if as_json else _say(_err()))
    if as_json:
        _print_json(result)
    elif space == "proxyless":
        _render.proxyless_result(result, epochs, target_ms, out)
        _render.export_line(result)
    else:
        _render.darts_result(result, out)


def _search_scaling(dev: Any, space: str, base: str | None, space_args: dict, params: dict, target_ms: float,
                    epochs: int, dataset: str, seed: int, out: Path, predictor: Path | None, allow_mismatch: bool,
                    train_device: str, as_json: bool) -> None:
    from hwnas.jobs import compound_scaling

    if space != "proxyless":
        raise ArgumentError("space", "compound-scaling scales a proxyless chain (use --space proxyless)", space)
    with progress_bar(_err()) as bars:
        result = compound_scaling(dev, out, target_ms=target_ms, base=base, space_args=space_args, predictor=predictor,
                                  epochs=epochs, strategy_params=params, dataset=dataset, seed=seed,
                                  train_device=train_device, allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                                  message=(lambda m: None) if as_json else _say(_err()))
    _print_json(result) if as_json else _render.scaling_result(result, out)


def _search_multifidelity(method: str, sampler: str, dev: Any, space: str, space_args: dict, params: dict,
                          target_ms: float, dataset: str, resolution: int, seed: int, out: Path, resume: bool,
                          predictor: Path | None, allow_mismatch: bool, train_device: str, as_json: bool) -> None:
    from hwnas.jobs import multifidelity_search

    with progress_bar(_err()) as bars:
        result = multifidelity_search(method, space, dev, predictor, out, target_ms=target_ms, params=params,
                                      sampler=sampler, space_args=space_args, dataset=dataset, resolution=resolution,
                                      seed=seed, resume=resume, train_device=train_device,
                                      allow_fingerprint_mismatch=allow_mismatch, progress=bars,
                                      message=(lambda m: None) if as_json else _say(_err()))
    if as_json:
        _print_json(result)
        return
    _render.multifidelity_result(result, out)


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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model (and card) at --output.")] = False,
    tune_trials: TuneTrials = None,
    devices_file: DevicesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Train, export to ONNX, verify parity with PyTorch, measure on the device, write model_card.json
    (and the compiled library for TVM devices)."""
    from hwnas.jobs import export as run_export
    from hwnas.jobs import tuned_device

    if (run is None) == (arch is None):
        raise HwnasError("give exactly one of --run DIR or --arch ARCH.json")
    if front is not None and run is None:
        raise HwnasError("--front picks a member of a run's front: give --run DIR")
    dev = tuned_device(_registry(devices_file).get(device), tune_trials, db)
    err = _err()
    with err.status(f"{'training, ' if not no_train else ''}exporting and measuring on {dev.name}"):
        card = run_export(run or arch, dev, output, epochs=epochs, train=not no_train, dataset=dataset,
                          resolution=resolution, dynamic_batch=dynamic_batch, budget_ms=budget_ms, predictor=predictor,
                          allow_fingerprint_mismatch=allow_mismatch, store=db, seed=seed, train_device=train_device,
                          front=front, overwrite=overwrite, message=_say(err))
    if as_json:
        _print_json({**card, "onnx_path": str(card.onnx_path), "card_path": str(card.card_path)})
        return
    _render.model_card(card, err)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A search run directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file (default: RUN/report.html).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file that is not a report.")] = False,
) -> None:
    """A self-contained HTML report of a run: Pareto front, predicted vs measured latency, per-op
    breakdown of the chosen model, search progress."""
    from hwnas.report import write_report

    path = write_report(run, output, overwrite)
    _out().print(f"report written to {path}")


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
    from hwnas.jobs import quickstart as run_quickstart

    dev = _registry(devices_file).get(device)
    err = _err()
    _warn_governor(err)
    with progress_bar(err, disable=not err.is_terminal and as_json) as bars:
        result = run_quickstart(out, dev, max_time_per_op=max_time, smoke=smoke, budget_ms=budget_ms,
                                search_budget=search_budget, op_passes=op_passes, progress=bars,
                                message=lambda msg: bars.prog.console.print(msg))
    if as_json:
        _print_json(result.summary)
        return
    t = Table("", "", title="hwnas quickstart: profile -> predictor -> search -> export")
    for k, v in result.rows:
        t.add_row(k, v)
    _out().print(t)


# ---- entry point ------------------------------------------------------------------------------
def _flag(exc: ArgumentError) -> str:
    """A library argument's name as the CLI's option (``target_ms`` -> ``--target-ms``)."""
    flags = {"storage": "--out", "space_args": "--space-arg", "strategy_params": "--strategy-param",
             "path": "--output", "max_time_per_op": "--max-time-per-op", "max_time_s": "--max-time",
             "inherit_epochs": "--inherit"}
    for what, flag in ((" setting ", "--space-arg "), (" parameter ", "--strategy-param ")):
        if what in exc.argument:
            return exc.with_name(flag + exc.argument.split(what)[1])
    return exc.with_name(flags.get(exc.argument, "--" + exc.argument.replace("_", "-")))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for bad input, 130 when interrupted).
    hwnas's own warnings (speed drift, fallback estimates) print as one ``warning:`` line."""
    with warnings.catch_warnings():  # restores Python's own display on the way out
        python_shows = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *where: Any) -> None:
            if category.__module__.startswith("hwnas."):
                _say(_err())(f"warning: {message}")  # the jobs' own warning line
            else:
                python_shows(message, category, *where)

        warnings.showwarning = show
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="hwnas")
    except ArgumentError as exc:
        return _fail(_flag(exc))
    except MemoryError:
        return _fail("out of memory (an input or model too large for this machine); what was measured is stored")
    except RunExistsError as exc:
        return _fail(f"{exc.path} already holds a search; pass --resume to continue it, or another --out")
    except HwnasError as exc:
        return _fail(str(exc))
    except typer.Exit as exc:
        rc = int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        rc = 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, ...
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    if rc == 130:  # Ctrl-C (typer turns it into exit code 130)
        _err().print("interrupted; what was measured is stored: run the same command again to resume")
    return rc if isinstance(rc, int) else 0


def _fail(message: str) -> int:
    _err().print(f"[red]error:[/] {message}", highlight=False)
    return 2


def entry() -> None:
    sys.exit(main())
