"""Predictor jobs: where a device's (or a search space's) predictor lives, training one from the
device's profile, loading it, and scoring it on held-out whole models."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas._files import read_json
from hwnas.devices import Device
from hwnas.errors import HwnasError, UnknownNameError
from hwnas.jobs._common import (OpProgress, Progress, check_count, get_device, no_progress, open_store, timing_policy)
from hwnas.jobs._space_models import space_calibration_models
from hwnas.latency_models import (OP_TIME_CHOICES, OP_TIMES, LatencyPredictor, OpTimeChoice, adaptive_configs,
                                  calibrate_on, calibration_models, create_latency_model, default_op_time,
                                  evaluation_models, fit_model, kernel_units, latency_metrics, op_time_candidates,
                                  sample_configs, select_op_time, training_data)
from hwnas.latency_models._adapt import ADAPTED_FILE, load_any_predictor
from hwnas.profilers import (DriftPolicy, Profiler, RepeatCheck, fingerprint, get_backend, measure_models)
from hwnas.search import create_space

__all__ = ["default_predictor_dir", "space_key", "predictor_dir", "load_predictor", "train_predictor",
           "train_device_predictor", "TrainReport", "PredictorEvaluation", "evaluate_predictor", "repeat_check", "predictor_info",
           "scatter_png"]


def default_predictor_dir(device_name: str, fp_id: str) -> Path:
    """The user cache dir's predictor of a device and fingerprint."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hwnas")) / "predictors" / f"{device_name}-{fp_id}"


def space_key(space: str, space_args: dict[str, Any] | None) -> str:
    """A search space and its settings as a directory suffix: ``nb201``, ``proxyless-<hash>``.
    ``classes`` is left out: the head is predicted op by op, and the calibration does not depend
    on it."""
    args = {k: v for k, v in (space_args or {}).items() if k != "classes"}
    if not args:
        return space
    text = ",".join(f"{k}={args[k]}" for k in sorted(args))
    return f"{space}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def predictor_dir(device: str | Device, *, space: str | None = None, space_args: dict[str, Any] | None = None,
                  trained_for_space: bool = False) -> Path:
    """Where the device's predictor lives; with ``space``, the one calibrated on that space's
    models where there is one (or, with ``trained_for_space``, where it is saved)."""
    dev = get_device(device)
    d = default_predictor_dir(dev.name, fingerprint(dev).id)
    if space is None:
        return d
    own = d.with_name(f"{d.name}-{space_key(space, space_args)}")
    return own if trained_for_space or _holds_predictor(own) else d


def _holds_predictor(d: Path) -> bool:
    """Whether ``d`` holds a trained (``model.json``) or adapted (``adapted.json``) predictor."""
    return (d / "model.json").is_file() or (d / ADAPTED_FILE).is_file()


def load_predictor(device: str | Device, *, space: str | None = None, space_args: dict[str, Any] | None = None,
                   path: str | Path | None = None, allow_fingerprint_mismatch: bool = False) -> LatencyPredictor:
    """The predictor at ``path``; by default the device's, or, for a search space, the one
    :func:`train_predictor` calibrated on that space's models where there is one. Its ``path_``
    says which. A predictor of another device fingerprint is refused unless
    ``allow_fingerprint_mismatch``."""
    dev = get_device(device)
    get_backend(dev.runtime).require(dev)
    d = Path(path) if path is not None else predictor_dir(dev, space=space, space_args=space_args)
    if not _holds_predictor(d):
        hint = f" --out {d}" if path is not None else ""
        raise HwnasError(f"no predictor at {d}; train one with `hwnas predictor train --device {dev.name}{hint}` "
                         f"(or adapt one: `hwnas predictor adapt --device {dev.name} --from SOURCE`)")
    return load_any_predictor(d, fingerprint(dev), allow_fingerprint_mismatch)


@dataclass
class TrainReport:
    """What :func:`train_device_predictor` did."""

    predictor: LatencyPredictor
    n_configs: int
    n_adaptive: int
    n_calibration_models: int
    op_time: str = "e2e"
    #: how ``auto`` chose the op time (None when it was given, or too few models to compare)
    op_time_choice: OpTimeChoice | None = None
    recheck: RepeatCheck | None = None

    def to_dict(self, device: str, model: str) -> dict[str, Any]:
        """What ``hwnas predictor train --json`` prints."""
        pred = self.predictor
        val = getattr(pred.model, "validation_", None) or {}
        return {"predictor": str(getattr(pred, "path_", "")), "device": device,
                "fingerprint": (pred.fingerprint or {}).get("id"), "model": model, "op_time": self.op_time,
                "op_configs": self.n_configs, "adaptive_samples": self.n_adaptive,
                "calibration_models": self.n_calibration_models, "op_level_5fold": val.get("op_level_5fold"),
                "calibration": pred.calibration.__dict__,
                "recheck": self.recheck.to_dict() if self.recheck is not None else None,
                "op_time_selection": self.op_time_choice.to_dict() if self.op_time_choice else None}


def _op_runner(profiler: Profiler, progress: Progress, passes: int):  # noqa: ANN202
    """Profiles op configurations with progress: ``run(configs, stage)``."""
    def run(cfgs: list, stage: str) -> None:
        bar = OpProgress(progress, stage)
        profiler.profile_ops(cfgs, on_start=bar.start, on_done=bar.done, passes=passes)
    return run


def train_device_predictor(profiler: Profiler, model_name: str = "lightgbm", samples: int = 400, adaptive: int = 100,
                           calibrate_with: list[tuple[str, Any]] | tuple = (), seed: int = 0,
                           progress: Progress = no_progress, model_passes: int = 1, op_time: str | None = None,
                           op_passes: int = 1) -> TrainReport:
    """Profile (sampled configurations + the calibration models' kernels), resample adaptively
    (where the op model errs), fit ``model_name`` on the device's store (``op_time``: see
    ``OP_TIME_CHOICES``; default ``auto`` with at least 6 calibration models, else
    ``default_op_time``), calibrate on the measured whole models."""
    if profiler.store is None:
        raise HwnasError("training a predictor needs a profile store")
    if op_time is not None and op_time not in OP_TIME_CHOICES:
        raise UnknownNameError("op time", op_time, list(OP_TIME_CHOICES))
    op_time = op_time or ("auto" if len(calibrate_with) >= 6 else default_op_time(profiler))
    if op_time == "auto" and len(calibrate_with) < 6:
        raise HwnasError(f"op time 'auto' compares the op times on at least 6 calibration models; got "
                         f"{len(calibrate_with)} (give an op time: {', '.join(OP_TIMES)})")
    run = _op_runner(profiler, progress, op_passes)
    base = sample_configs(samples, seed=seed) + list(dict.fromkeys(c for _, m in calibrate_with for c in kernel_units(m)))
    run(base, "profiling ops")
    configs, y = training_data(profiler.store, profiler.fingerprint)
    n_new = 0
    if adaptive and len(configs) >= 20:
        new = adaptive_configs(configs, y, base, adaptive, seed + 1)
        n_new = len(new)
        run(new, "adaptive ops")
    total = len(calibrate_with) * model_passes
    done = [0]

    def on_model(name: str, ms: float) -> None:
        done[0] += 1
        progress("calibration models", min(done[0], total), total, f"{name}: {ms:.2f} ms")

    measured = measure_models(profiler, calibrate_with, on_model, passes=model_passes) if calibrate_with else []
    if op_time == "auto":
        data = {ot: training_data(profiler.store, profiler.fingerprint, ot) for ot in op_time_candidates(profiler)}
        predictor, choice = select_op_time(data, profiler.fingerprint, measured, model_name)
        return TrainReport(predictor, len(data[choice.op_time][0]), n_new, len(calibrate_with), choice.op_time, choice)
    configs, y = training_data(profiler.store, profiler.fingerprint, op_time)
    predictor = LatencyPredictor(fit_model(model_name, configs, y, profiler.fingerprint, op_time))
    if measured:
        predictor = calibrate_on(predictor, measured)
    return TrainReport(predictor, len(configs), n_new, len(calibrate_with), op_time)


def repeat_check(profiler: Profiler, n: int, progress: Progress = no_progress) -> RepeatCheck | None:
    """``Profiler.recheck`` of up to ``n`` stored ops; None when ``n`` is 0 or nothing is stored."""
    if n <= 0:
        return None
    df = profiler.store.op_measurements(profiler.fingerprint.id)
    n = min(n, int((df["status"] == "ok").sum()) if not df.empty else 0)
    if n == 0:
        return None
    done = [0]

    def tick(*_: Any) -> None:
        done[0] += 1
        progress("measuring stored ops again (repeat check)", done[0], n)

    return profiler.recheck(n, on_done=tick)


def train_predictor(device: str | Device, *, store: Any = None, space: str | None = None,
                    space_args: dict[str, Any] | None = None, model: str = "lightgbm", samples: int = 400,
                    adaptive: int = 100, calibrate: bool = True, quick: bool = False,
                    max_time_per_op: float | None = None, drift_check: bool = True, model_passes: int = 3,
                    op_time: str | None = None, recheck: int = 10, passes: int = 1, space_models: int = 16,
                    out: str | Path | None = None, overwrite: bool = True,
                    progress: Progress = no_progress) -> LatencyPredictor:
    """Profile ``device`` (resumable, into ``store``), fit a latency model, calibrate it on whole
    models (the zoo's, or with ``space``, ``space_models`` of that search space's own, spread over
    its FLOPs) and save it (``out``; by default where :func:`load_predictor` finds it). Returns the
    predictor; its ``report_`` is the :class:`TrainReport` and ``path_`` where it was saved."""
    create_latency_model(model)  # unknown names fail before any profiling
    for name, value, low in (("samples", samples, 0), ("adaptive", adaptive, 0), ("model_passes", model_passes, 1),
                             ("recheck", recheck, 0), ("passes", passes, 1), ("space_models", space_models, 6)):
        check_count(name, value, low)
    if op_time is not None and op_time not in OP_TIME_CHOICES:
        raise UnknownNameError("op time", op_time, list(OP_TIME_CHOICES))
    if op_time == "auto" and (not calibrate or quick):
        raise HwnasError("op time 'auto' compares the op times on the calibration models: it needs calibrate=True "
                         "without quick (or give e2e, kernel or mean)")
    if space is not None and not calibrate:
        raise HwnasError("space calibrates on the space's models: it needs calibrate=True")
    dev = get_device(device)
    sp = create_space(space, **(space_args or {})).restrict(dev.constraints) if space is not None else None
    target = Path(out) if out is not None else predictor_dir(dev, space=space, space_args=space_args,
                                                             trained_for_space=True)
    if not overwrite and (target / "model.json").exists():
        raise HwnasError(f"{target} holds a predictor; refusing to replace it (overwrite=True / --overwrite)")
    policy = timing_policy(max_time_per_op)
    with open_store(store) as st:
        profiler = Profiler(dev, policy, st, drift=DriftPolicy() if drift_check else None,
                            auto_pin=drift_check)
        cal = (space_calibration_models(sp, space_models) if sp is not None
               else [(m.name, m.onnx) for m in calibration_models(quick)] if calibrate else [])
        report = train_device_predictor(profiler, model, samples, adaptive, cal, progress=progress,
                                        model_passes=model_passes, op_time=op_time, op_passes=passes)
        report.recheck = repeat_check(profiler, recheck, progress)
    summary = getattr(report.predictor.model, "training_summary_", None)
    if report.recheck is not None and isinstance(summary, dict):  # the predictor says how far its data repeats
        summary["repeat_check"] = {k: v for k, v in report.recheck.to_dict().items() if k != "ops"}
    _save_replacing(report.predictor, target)
    report.predictor.report_ = report
    return report.predictor


def _save_replacing(predictor: LatencyPredictor, target: Path) -> None:
    """Save into a fresh folder beside ``target`` and swap it in: no old booster file stays, and
    a crash leaves the old predictor whole."""
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    predictor.save(tmp)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    predictor.path_ = target


@dataclass
class PredictorEvaluation:
    """Held-out whole models, measured and predicted."""

    predictor: str
    metrics: dict[str, float]
    rows: list[dict[str, Any]]  # family, model, measured_ms, predicted_ms


def evaluate_predictor(device: str | Device, *, predictor: LatencyPredictor | None = None, store: Any = None,
                       quick: bool = False, model_passes: int = 3, allow_fingerprint_mismatch: bool = False,
                       plot: str | Path | None = None, progress: Progress = no_progress,
                       heldout: str = "first") -> PredictorEvaluation:
    """Measure the held-out zoo models (MnasNet-, EfficientNet-, SqueezeNet-like, random) on the
    device and score the predictor (by default the device's) on them; ``plot``: a predicted vs
    measured PNG."""
    check_count("model_passes", model_passes)
    dev = get_device(device)
    pred = predictor or load_predictor(dev, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    models = evaluation_models(quick, heldout=heldout)  # ``heldout``: which set (HELDOUT_SETS)
    total = len(models) * model_passes
    done = [0]

    def tick(name: str, ms: float) -> None:
        done[0] += 1
        progress("measuring models", min(done[0], total), total, name)

    with open_store(store) as st:
        measured = measure_models(Profiler(dev, None, st), [(m.name, m.onnx) for m in models], tick,
                                  passes=model_passes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = np.array([pred.predict_onnx(m.onnx).latency_ms for m in measured])
    truth = np.array([m.latency_ms for m in measured])
    rows = [{"family": z.family, "model": m.name, "measured_ms": m.latency_ms, "predicted_ms": float(p)}
            for z, m, p in zip(models, measured, predicted)]
    if plot is not None:
        scatter_png(truth, predicted, [r["family"] for r in rows], Path(plot),
                    f"{dev.name}: {Path(str(getattr(pred, 'path_', ''))).name}")
    return PredictorEvaluation(str(getattr(pred, "path_", "")), latency_metrics(truth, predicted), rows)


def scatter_png(truth: Any, predicted: Any, groups: list[str], path: Path, title: str) -> None:
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



def predictor_info(directory: str | Path) -> dict[str, Any]:
    """A saved predictor's metadata (fingerprint, training data, validation, calibration), its
    model state left out; a missing or unreadable file is one line naming it."""

    d = Path(directory)
    if (d / ADAPTED_FILE).is_file():
        meta = read_json(d / ADAPTED_FILE)
        if not isinstance(meta, dict):
            raise HwnasError(f"{d / ADAPTED_FILE} is not an adapted predictor (not a JSON object)")
        return {"kind": "adapted", **{k: v for k, v in meta.items() if k not in ("X", "S")}}
    out: dict[str, Any] = {}
    for name in ("model.json", "predictor.json"):
        path = d / name
        if not path.is_file():
            if name == "model.json":
                raise HwnasError(f"no predictor at {d} (missing model.json)")
            continue
        data = read_json(path)
        if not isinstance(data, dict):
            raise HwnasError(f"{path} is not a predictor's metadata (not a JSON object)")
        if name == "model.json":
            out = {k: v for k, v in data.items() if k != "state"}
        elif "calibration" in data:
            out["calibration"] = data["calibration"]
    return out
