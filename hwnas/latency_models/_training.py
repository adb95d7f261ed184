"""Fitting a device's predictor on measurements handed to it: the op data in a store, where the
error is high (adaptive resampling proposes the next op configurations), the whole-model
calibration on measured models, and the zoo models that calibrate and check predictors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from hwnas.devices import Fingerprint
from hwnas.errors import HwnasError
from hwnas.latency_models._decompose import decompose_onnx
from hwnas.latency_models._metrics import latency_metrics
from hwnas.latency_models._models import LatencyModel, create_latency_model
from hwnas.latency_models._predictor import LatencyPredictor
from hwnas.latency_models._sampling import perturb
from hwnas.profilers import MeasuredModel, OpConfig, ProfileStore

__all__ = ["OP_TIMES", "OP_TIME_CHOICES", "OpTimeChoice", "select_op_time", "op_time_candidates", "default_op_time", "training_data", "out_of_fold", "adaptive_round", "calibrate_on", "kernel_units",
           "adaptive_configs", "evaluate", "fit_model", "calibration_models", "evaluation_models", "HELDOUT_SETS",
           "HeldoutSet"]


#: what an op model learns: ``e2e``, each op timed alone end to end (every runtime); ``kernel``,
#: the runtime's own time of the op's kernels (``OpMeasurement.kernel_ms``: ONNX Runtime); or
#: ``mean``, the geometric mean of the two. Inside a whole model an op costs more than its kernel
#: time (dispatch between ops, layout changes at some boundaries) and less than its time alone
#: (no session call, none of the layout conversions an op alone needs); the calibration on whole
#: models fits the rest. Which predicts held-out models best differs by store (BENCHMARKS.md),
#: hence ``auto``.
OP_TIMES = ("e2e", "kernel", "mean")


#: ``auto``: every op time the store has, each op model calibrated on the measured whole models,
#: and the one whose calibration predicts a left-out model best is kept (``select_op_time``)
OP_TIME_CHOICES = OP_TIMES + ("auto",)


def default_op_time(profiler: Any) -> str:
    """``mean`` where the device's runtime reports kernel times, ``e2e`` elsewhere."""
    return "mean" if profiler.kernel_times else "e2e"


def op_time_candidates(profiler: Any) -> tuple[str, ...]:
    """The op times a device's store has: all of ``OP_TIMES`` where the runtime reports kernel times."""
    return OP_TIMES if profiler.kernel_times else ("e2e",)


@dataclass(frozen=True)
class OpTimeChoice:
    """Which op time ``select_op_time`` kept, and each candidate's leave-one-out figures."""

    op_time: str
    loo: dict[str, dict[str, float]]  # op time -> {"mape": ..., "acc10": ...}
    n_models: int

    def to_dict(self) -> dict[str, Any]:
        return {"op_time": self.op_time, "criterion": "leave-one-out MAPE over the calibration models",
                "n_models": self.n_models, "loo": self.loo}

    def summary(self) -> str:
        figs = ", ".join(f"{ot} {100 * v['mape']:.1f}%" for ot, v in self.loo.items())
        return (f"op time {self.op_time}, chosen by leave-one-out over {self.n_models} calibration models "
                f"(MAPE {figs})")


def select_op_time(data: dict[str, tuple[list[OpConfig], np.ndarray]], fingerprint: Fingerprint | None,
                   measured: Sequence[MeasuredModel], model_name: str = "lightgbm",
                   **params: object) -> tuple[LatencyPredictor, OpTimeChoice]:
    """Fit ``model_name`` on each op time of ``data`` (op time -> its ``training_data``),
    calibrate each on the measured whole models, and keep the one whose calibration predicts a
    left-out model best (leave-one-out MAPE). Which op time an op's in-model cost follows best
    differs by device and by day (BENCHMARKS.md), and the calibration models tell which, without
    looking at held-out ones.
    The choice and every candidate's figures are kept in the model's ``training_summary_``."""
    if not data:
        raise HwnasError("select_op_time needs at least one op time's training data")
    units = [kernel_units(m.onnx) for m in measured]
    ms = [m.latency_ms for m in measured]
    fitted: dict[str, LatencyPredictor] = {}
    loo: dict[str, dict[str, float]] = {}
    for op_time, (configs, y) in data.items():
        raw = LatencyPredictor(fit_model(model_name, configs, y, fingerprint, op_time, **params))
        err = raw.calibration_loo(units, ms)
        fitted[op_time] = raw
        loo[op_time] = {"mape": float(np.mean(np.abs(err))), "acc10": float(np.mean(np.abs(err) <= 0.1))}
    best = min(loo, key=lambda ot: loo[ot]["mape"])
    choice = OpTimeChoice(best, loo, len(measured))
    predictor = fitted[best].calibrate(units, ms)
    summary = getattr(predictor.model, "training_summary_", None)
    if isinstance(summary, dict):
        summary["op_time_selection"] = choice.to_dict()
    return predictor, choice


def training_data(store: ProfileStore, fingerprint: Fingerprint,
                  op_time: str = "e2e") -> tuple[list[OpConfig], np.ndarray]:
    """The successfully measured op configurations of one device fingerprint (never mixed), and
    their latency: end to end or the kernels' own time (``op_time``, see ``OP_TIMES``)."""
    if op_time not in OP_TIMES:
        raise HwnasError(f"unknown op time {op_time!r}; known: {', '.join(OP_TIMES)}")
    store.check_fingerprint(fingerprint)
    df = store.op_measurements(fingerprint.id)
    if df.empty:
        raise HwnasError(
            f"the profile store {store.path} has no measurements for device {fingerprint.device_name!r} "
            f"(fingerprint {fingerprint.id}); run `hwnas profile --device {fingerprint.device_name}` first"
        )
    ok = df[df["status"] == "ok"]
    if op_time in ("kernel", "mean"):
        lacking = int(ok["kernel_ms"].isna().sum())  # the store adds the column when opened
        if lacking:
            raise HwnasError(
                f"{lacking} of {len(ok)} op measurements of device {fingerprint.device_name!r} in {store.path} have no "
                "kernel time (measured before hwnas recorded it, or the runtime reports none); `hwnas profile "
                f"--device {fingerprint.device_name} --stored` adds it (only the kernel time is measured), or use "
                "the ops' end-to-end time (op time 'e2e')")
        k = ok["kernel_ms"].to_numpy(dtype=float)
        y = k if op_time == "kernel" else np.sqrt(k * ok["latency_ms"].to_numpy(dtype=float))
        return [OpConfig.parse(c) for c in ok["config_key"]], y
    return [OpConfig.parse(k) for k in ok["config_key"]], ok["latency_ms"].to_numpy(dtype=float)


def out_of_fold(model: LatencyModel, configs: Sequence[OpConfig], y: np.ndarray, folds: int = 5,
                seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions (k-fold cross-validation) of ``model`` on the op data."""
    from sklearn.base import clone

    n = len(configs)
    order = np.random.default_rng(seed).permutation(n)
    pred = np.zeros(n)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        m = clone(model).fit([configs[i] for i in train], y[train])
        pred[test] = m.predict([configs[i] for i in test])
    return pred


def adaptive_round(model: LatencyModel, configs: Sequence[OpConfig], y: np.ndarray, n_new: int,
                   seed: int = 0) -> list[OpConfig]:
    """nn-Meter's adaptive sampling: new configurations near those with the largest
    cross-validated relative error."""
    pred = out_of_fold(model, configs, y, seed=seed)
    err = np.abs(pred - y) / y
    worst = [configs[i] for i in np.argsort(-err)[: max(1, len(configs) // 10)]]
    return perturb(worst, n_new, seed=seed)


def adaptive_configs(configs: Sequence[OpConfig], y: np.ndarray, base: Sequence[OpConfig], n_new: int,
                     seed: int) -> list[OpConfig]:
    """The adaptive round, fitted on the measured part of ``base`` only, so that rerunning a
    training on the same store asks for the same configurations (and profiles nothing new)."""
    keep = set(base)
    idx = [i for i, c in enumerate(configs) if c in keep]
    sub = [configs[i] for i in idx]
    return adaptive_round(fit_model("lightgbm", sub, y[idx], None), sub, y[idx], n_new, seed=seed)


def kernel_units(model: onnx.ModelProto) -> list[OpConfig]:
    return [k.config for k in decompose_onnx(model) if k.kind == "op" and k.config is not None]


def calibrate_on(predictor: LatencyPredictor, measured: Sequence[MeasuredModel]) -> LatencyPredictor:
    """Fit the whole-model calibration on measured models (decomposed into kernels)."""
    return predictor.calibrate([kernel_units(m.onnx) for m in measured], [m.latency_ms for m in measured])


def evaluate(predictor: LatencyPredictor, measured: Sequence[MeasuredModel]) -> tuple[dict[str, float], np.ndarray]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = np.array([predictor.predict_onnx(m.onnx).latency_ms for m in measured])
    return latency_metrics(np.array([m.latency_ms for m in measured]), pred), pred


def fit_model(name: str, configs: Sequence[OpConfig], y: np.ndarray, fingerprint: Fingerprint | None,
              op_time: str = "e2e", **params: object) -> LatencyModel:
    model = create_latency_model(name, **params)
    oof = out_of_fold(model, configs, y) if len(configs) >= 10 else None
    model.fit(configs, y, fingerprint, op_time=op_time)
    if oof is not None:
        model.validation_ = {"op_level_5fold": latency_metrics(y, oof)}
    return model



def calibration_models(quick: bool = False, n_random: int | None = None) -> list[Any]:
    """Default whole models (zoo models) a predictor is calibrated on: random architectures,
    MobileNetV2- and ResNet-like at several widths and resolutions (MnasNet, EfficientNet and
    SqueezeNet stay held out)."""
    from hwnas import zoo

    widths, res = ([0.5], [96]) if quick else ([0.35, 0.5, 0.75, 1.0], [96, 160])
    n = n_random if n_random is not None else (3 if quick else 16)
    models = [zoo.random_model(s) for s in range(n)]
    return models + [zoo.create(f, w, r) for f in ("mobilenetv2", "resnet") for w in widths for r in res]


@dataclass(frozen=True)
class HeldoutSet:
    first_seed: int  # of the random architectures
    widths: tuple[float, ...]  # of the families
    resolutions: tuple[int, ...]
    quick_width: float  # the one width of ``quick``


#: the held-out sets of ``evaluation_models``, disjoint from each other and from the calibration models
HELDOUT_SETS = {"first": HeldoutSet(1000, (0.35, 0.5, 0.75, 1.0), (128, 192), 0.5),
                "second": HeldoutSet(2000, (0.6, 0.9), (160, 224), 0.6),
                "third": HeldoutSet(3000, (0.4, 0.8), (144, 208), 0.4)}


def evaluation_models(quick: bool = False, n_random: int | None = None, heldout: str = "first") -> list[Any]:
    """Held-out whole models (zoo models): other random architectures and the MnasNet-,
    EfficientNet- and SqueezeNet-like families. ``heldout`` picks one of ``HELDOUT_SETS``: each
    later set checks a choice made while looking at the earlier ones on models nobody has looked at
    (random seeds from 2000 / 3000, the families at other widths and resolutions)."""
    from hwnas import zoo

    if heldout not in HELDOUT_SETS:
        raise HwnasError(f"unknown held-out set {heldout!r}; known: {', '.join(HELDOUT_SETS)}")
    h = HELDOUT_SETS[heldout]
    first_seed, widths, res = h.first_seed, h.widths, h.resolutions
    if quick:
        widths, res = (h.quick_width,), res[:1]
    n = n_random if n_random is not None else (2 if quick else 16)
    models = [zoo.random_model(first_seed + s) for s in range(n)]
    return models + [zoo.create(f, w, r) for f in ("mnasnet", "efficientnet", "squeezenet") for w in widths for r in res]
