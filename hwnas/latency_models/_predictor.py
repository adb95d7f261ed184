"""Whole-model latency: predict each kernel (or op configuration), sum, add a calibrated overhead.

Each op the profiler measured ran in its own runtime session, so each measurement includes one
call's overhead (and, on ONNX Runtime, layout reorders around the op). A whole model pays that once.
The calibration is fitted on measured whole models:

    latency = scale * sum(op predictions) + per_unit_ms * n_units + per_mb_ms * MB reordered
              + per_weight_mb_ms * MB of weights + per_silu_ms * n_silu
              + hardswish_scale * sum(predictions of the ops with HardSwish) + offset_ms

(``n_units``: the ops summed; ``MB reordered``: inputs + outputs of the convs and pools, which ONNX
Runtime converts to and from its blocked layout around an op timed alone but not inside a model;
``MB of weights``: their parameters), by a robust fit of log(predicted / measured)
(``Calibration.ROBUST_SCALE``). The reordered MB count the layout ops only. The weights term
matters on CPUs: an op timed alone runs with its weights hot in cache, while in a whole model the
layers evict each other's weights. What each term brought: BENCHMARKS.md. The
HardSwish term is a second scale for the ops with a HardSwish activation, which run faster inside
a model than timed alone (BENCHMARKS.md, "Latency predictor accuracy").
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwnas.devices._fingerprint import Fingerprint
from hwnas.errors import HwnasError
from hwnas.latency_models._decompose import Kernel, decompose_onnx, expand_kernels
from hwnas.latency_models._features import FEATURE_NAMES, feature_matrix
from hwnas.latency_models._models import LatencyModel, OpPrediction, load_latency_model
from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["Calibration", "KernelPrediction", "ModelPrediction", "LatencyPredictor", "LayerTable", "FallbackWarning"]

_IO = [FEATURE_NAMES.index("bytes_in"), FEATURE_NAMES.index("bytes_out")]
_W = FEATURE_NAMES.index("bytes_weights")


class FallbackWarning(UserWarning):
    """A kernel was predicted with a fallback estimate."""


#: bump when a calibration term's meaning changes (2: the MB term counts ``LAYOUT_OPS`` only)
CALIBRATION_TERMS_VERSION = 2

#: op types whose input and output a runtime keeps in its own blocked layout inside a model but
#: converts when the op is timed alone (ONNX Runtime's NCHWc: a lone conv or pool runs between a
#: ReorderInput and a ReorderOutput, e.g. 24 of a 1x1 conv's 75 us and 64 of a max pool's 106 us;
#: in a whole model they are gone. GAP and SE keep their reorders in models too, so they are not here)
LAYOUT_OPS = frozenset({OpType.CONV, OpType.PWCONV, OpType.DWCONV, OpType.MAXPOOL, OpType.AVGPOOL})


def _term_rows(configs: Sequence[OpConfig], ms: np.ndarray) -> np.ndarray:
    """The calibration's per-model terms of each op (``ms``: its predicted latency), one row per
    op: MB in + out if it is a layout op (see ``LAYOUT_OPS``), MB of weights, 1 if its activation
    is SiLU, its predicted ms if its activation is HardSwish."""
    if not configs:
        return np.zeros((0, 4))
    F = feature_matrix(configs)
    layout = np.array([c.op in LAYOUT_OPS for c in configs])
    silu = np.array([c.act is Act.SILU for c in configs])
    hswish = np.array([c.act is Act.HARDSWISH for c in configs])
    return np.column_stack([F[:, _IO].sum(1) * layout / 1e6, F[:, _W] / 1e6, silu, np.asarray(ms) * hswish])


def _terms(configs: Sequence[OpConfig], ms: np.ndarray) -> tuple[float, float, float, float]:
    """The calibration's per-model terms of these ops (the sums of ``_term_rows``)."""
    io, w, q, h = _term_rows(configs, ms).sum(0)
    return float(io), float(w), float(q), float(h)


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    per_unit_ms: float = 0.0
    per_mb_ms: float = 0.0
    per_weight_mb_ms: float = 0.0
    offset_ms: float = 0.0
    #: per SiLU activation: ONNX Runtime runs x*sigmoid(x) as a separate QuickGelu with NCHWc
    #: layout reorders around it in a whole model, which a kernel timed alone does not pay
    #: (EfficientNet-like held-out models: +-10% accuracy 12% -> 88%; BENCHMARKS.md)
    per_silu_ms: float = 0.0
    #: added to ``scale`` for the predicted time of the ops with a HardSwish activation (a conv with
    #: HardSwish timed alone pays more than inside a model; BENCHMARKS.md)
    hardswish_scale: float = 0.0
    n_models: int = 0
    train_mape: float | None = None

    #: below this many measured models only ``scale`` and ``offset_ms`` are fitted (both >= 0)
    FULL_FIT_MODELS = 15
    #: the full fit minimises a robust loss (soft L1) of log(predicted / measured), quadratic up to
    #: about this relative error and linear beyond, so that a model measured in a slow phase of a
    #: shared machine pulls the fit less. Against least squares in relative error, on the 56
    #: calibration models of benchmarks/predictor_accuracy.py (leave-one-out): MAPE 5.4% -> 4.9%,
    #: +-5% 57% -> 70%, +-10% the same 89% (BENCHMARKS.md)
    ROBUST_SCALE = 0.05
    #: a calibrated latency is never below this fraction of the raw op sum (the linear terms can
    #: extrapolate below zero for models far smaller than the calibration models)
    MIN_FRACTION = 0.05
    #: the SiLU and HardSwish terms are fitted only when at least this many calibration models have
    #: such ops: one or two models' residuals (and their measurement noise) would set them alone
    MIN_MODELS_PER_TERM = 3

    @property
    def fitted(self) -> bool:
        return self.n_models > 0

    def apply(self, op_sum_ms: Any, n_units: Any, io_mb: Any, weight_mb: Any, n_silu: Any = 0.0,
              hardswish_ms: Any = 0.0) -> Any:
        total = (self.scale * op_sum_ms + self.per_unit_ms * n_units + self.per_mb_ms * io_mb
                 + self.per_weight_mb_ms * weight_mb + self.offset_ms + self.per_silu_ms * n_silu
                 + self.hardswish_scale * hardswish_ms)
        if not self.fitted:
            return total
        if hasattr(total, "clamp_min"):  # a torch tensor (differentiable expected latency)
            import torch

            return torch.maximum(total, self.MIN_FRACTION * op_sum_ms)
        return np.maximum(total, self.MIN_FRACTION * np.asarray(op_sum_ms))

    @classmethod
    def fit(cls, op_sum_ms: Sequence[float], n_units: Sequence[float], io_mb: Sequence[float],
            weight_mb: Sequence[float], measured_ms: Sequence[float],
            n_silu: Sequence[float] | None = None, hardswish_ms: Sequence[float] | None = None) -> Calibration:
        """A robust fit of the log ratio (see ``ROBUST_SCALE``), started from least squares in
        relative error. The SiLU and HardSwish terms are fitted only when at least
        ``MIN_MODELS_PER_TERM`` calibration models have SiLU or HardSwish activations (otherwise
        they stay 0)."""
        s, n, b, w, m = (np.asarray(v, dtype=float) for v in (op_sum_ms, n_units, io_mb, weight_mb, measured_ms))
        q = np.zeros_like(s) if n_silu is None else np.asarray(n_silu, dtype=float)
        h = np.zeros_like(s) if hardswish_ms is None else np.asarray(hardswish_ms, dtype=float)
        if len(m) < 5:
            raise HwnasError(f"calibration needs at least 5 measured models, got {len(m)}")
        names = ["scale", "per_unit_ms", "per_mb_ms", "per_weight_mb_ms", "offset_ms"]
        if len(m) >= cls.FULL_FIT_MODELS:
            from scipy.optimize import least_squares

            cols = [s, n, b, w, np.ones_like(s)]
            for name, col in (("per_silu_ms", q), ("hardswish_scale", h)):
                if np.count_nonzero(col) >= cls.MIN_MODELS_PER_TERM:
                    names.append(name)
                    cols.append(col)
            A = np.column_stack(cols)
            start = np.linalg.lstsq(A / m[:, None], np.ones_like(m), rcond=None)[0]

            def log_ratio(c: np.ndarray) -> np.ndarray:
                return np.log(np.maximum(A @ c, 1e-3 * m)) - np.log(m)

            coef = dict(zip(names, (float(c) for c in least_squares(log_ratio, start, loss="soft_l1",
                                                                    f_scale=cls.ROBUST_SCALE).x)))
        else:  # too few models for 5 coefficients: non-negative scale and offset only
            from scipy.optimize import nnls

            a, c = nnls(np.column_stack([s, np.ones_like(s)]) / m[:, None], np.ones_like(m))[0]
            coef = {"scale": float(a), "offset_ms": float(c)}
        pred = cls(**coef, n_models=len(m)).apply(s, n, b, w, q, h)
        return cls(**coef, n_models=len(m), train_mape=float(np.mean(np.abs(pred - m) / m)))


@dataclass(frozen=True)
class KernelPrediction:
    label: str
    kind: str
    latency_ms: float
    fallback: bool
    note: str
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelPrediction:
    latency_ms: float
    op_sum_ms: float
    n_units: int
    calibrated: bool
    kernels: tuple[KernelPrediction, ...] = field(default=())

    @property
    def warnings(self) -> list[str]:
        return [f"{k.label}: {k.note}" for k in self.kernels if k.fallback]

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms, "op_sum_ms": self.op_sum_ms, "n_units": self.n_units,
            "calibrated": self.calibrated, "warnings": self.warnings,
            "kernels": [k.to_dict() for k in self.kernels],
        }


class LayerTable:
    """Predicted latency of every choice of every layer, for fast batch prediction.

    ``choices[l][j]`` is the op configurations of choice ``j`` at layer ``l`` (an empty list for a
    skipped layer). ``predict(indices)`` takes an ``(n_architectures, n_layers)`` integer array.
    ``TERMS`` name the per-choice arrays, in the order ``Calibration.apply`` takes their sums.
    """

    TERMS = ("ms", "units", "io_mb", "weight_mb", "silu", "hardswish_ms")

    def __init__(self, predictor: LatencyPredictor, choices: Sequence[Sequence[Sequence[OpConfig]]]) -> None:
        choices = [[expand_kernels(list(choice)) for choice in layer] for layer in choices]
        flat = [c for layer in choices for choice in layer for c in choice]
        uniq = list(dict.fromkeys(flat))
        pred = dict(zip(uniq, predictor.predict_configs(uniq).latency_ms)) if uniq else {}
        width = max(len(layer) for layer in choices)
        self.ms = np.zeros((len(choices), width))
        self.units = np.zeros((len(choices), width))
        self.io_mb = np.zeros((len(choices), width))
        self.weight_mb = np.zeros((len(choices), width))
        self.silu = np.zeros((len(choices), width))
        self.hardswish_ms = np.zeros((len(choices), width))
        for i, layer in enumerate(choices):
            for j, choice in enumerate(layer):
                ms = np.array([pred[c] for c in choice])
                self.ms[i, j] = ms.sum()
                self.units[i, j] = len(choice)
                (self.io_mb[i, j], self.weight_mb[i, j], self.silu[i, j],
                 self.hardswish_ms[i, j]) = _terms(list(choice), ms)
        self.calibration = predictor.calibration
        self._rows = np.arange(len(choices))

    def with_calibration(self, calibration: Calibration) -> LayerTable:
        """The same per-option predictions under another calibration (no op is predicted again)."""
        import copy

        out = copy.copy(self)
        out.calibration = calibration
        return out

    def predict(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        return self.calibration.apply(*(getattr(self, t)[self._rows, idx].sum(1) for t in self.TERMS))


class LatencyPredictor:
    """An op-level latency model plus the calibration that turns op sums into model latency.

    >>> from hwnas.latency_models import FlopsLinearModel
    >>> from hwnas.profilers import OpConfig
    >>> cfgs = [OpConfig.parse(f"pwconv_i{c}_o{c}_r14_arelu") for c in (8, 16, 32, 64)]
    >>> p = LatencyPredictor(FlopsLinearModel().fit(cfgs, [0.01, 0.02, 0.05, 0.15]))
    >>> p.predict_architecture(cfgs) > 0
    True
    """

    def __init__(self, model: LatencyModel, calibration: Calibration | None = None) -> None:
        self.model = model
        self.calibration = calibration or Calibration()

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        return getattr(self.model, "fingerprint_", None)

    # ---- ops and architectures --------------------------------------------------------------
    def predict_configs(self, configs: Sequence[OpConfig]) -> OpPrediction:
        return self.model.predict_detailed(configs)

    def predict_architecture(self, configs: Sequence[OpConfig]) -> float:
        """Latency (ms) of a model made of these op configurations, without exporting ONNX."""
        return float(self.predict_architectures([configs])[0])

    def predict_architectures(self, archs: Sequence[Sequence[OpConfig]]) -> np.ndarray:
        """Batch prediction: blocks are expanded into the kernels they run as (as in the ONNX
        path, so the calibration applies alike), and each distinct kernel is predicted once."""
        uniq: dict[OpConfig, int] = {}
        expanded: dict[OpConfig, list[OpConfig]] = {}
        rows = []
        for arch in archs:
            row = []
            for c in arch:
                ks = expanded.get(c)
                if ks is None:
                    ks = expanded[c] = expand_kernels([c])
                row += [uniq.setdefault(k, len(uniq)) for k in ks]
            rows.append(row)
        keys = list(uniq)
        pred = self.predict_configs(keys)
        if pred.fallback.any():
            bad = sorted({str(keys[i]) for i in np.flatnonzero(pred.fallback)})
            warnings.warn(f"fallback estimates for {len(bad)} op configuration(s), e.g. {bad[0]}: "
                          f"{pred.reasons[int(np.flatnonzero(pred.fallback)[0])]}", FallbackWarning, stacklevel=2)
        ms = pred.latency_ms
        terms = _term_rows(keys, ms)
        sums = np.array([ms[r].sum() for r in rows])
        units = np.array([len(r) for r in rows], dtype=float)
        per_arch = np.array([terms[r].sum(0) for r in rows]).reshape(len(rows), 4)
        return self.calibration.apply(sums, units, *per_arch.T)

    def layer_table(self, choices: Sequence[Sequence[Sequence[OpConfig]]]) -> LayerTable:
        return LayerTable(self, choices)

    # ---- ONNX models ------------------------------------------------------------------------
    def predict_kernels(self, kernels: Sequence[Kernel]) -> ModelPrediction:
        ops = [k for k in kernels if k.kind == "op"]
        unknown = [k for k in kernels if k.kind == "unknown"]
        stand_ins = [OpConfig(OpType.ACT, max(1, k.elements), act=Act.RELU) for k in unknown]
        configs = [k.config for k in ops] + stand_ins
        pred = self.predict_configs(configs) if configs else OpPrediction(np.zeros(0), np.zeros(0, bool), ())
        by_id: dict[int, tuple[float, bool, str]] = {}
        for i, k in enumerate(ops):
            by_id[id(k)] = (float(pred.latency_ms[i]), bool(pred.fallback[i]), pred.reasons[i] or k.note)
        for j, k in enumerate(unknown):
            i = len(ops) + j
            note = (f"{k.note}; estimated as an elementwise op over {k.elements} elements "
                    f"({k.label} has no hwnas op type)")
            by_id[id(k)] = (float(pred.latency_ms[i]), True, note)
        out = []
        for k in kernels:
            if k.kind == "view":
                out.append(KernelPrediction(k.label, "view", 0.0, False, k.note, k.nodes))
            else:
                ms, fb, note = by_id[id(k)]
                out.append(KernelPrediction(k.label, k.kind, ms, fb, note, k.nodes))
        op_sum = float(sum(k.latency_ms for k in out))
        n_units = sum(1 for k in out if k.kind != "view")
        total = float(self.calibration.apply(op_sum, n_units, *_terms(configs, pred.latency_ms)))
        result = ModelPrediction(total, op_sum, n_units, self.calibration.fitted, tuple(out))
        for w in result.warnings:
            warnings.warn(w, FallbackWarning, stacklevel=2)
        return result

    def predict_onnx(self, model: onnx.ModelProto) -> ModelPrediction:
        """Decompose an ONNX graph into executed kernels, predict each, sum, calibrate."""
        return self.predict_kernels(decompose_onnx(model))

    def with_calibration(self, calibration: Calibration) -> LatencyPredictor:
        return LatencyPredictor(self.model, calibration)

    def calibration_terms(self, units: Sequence[Sequence[OpConfig]]) -> np.ndarray:
        """Per model (given as its op configurations, kernels or blocks), the calibration's inputs:
        rows of (uncalibrated op sum ms, n_units, MB reordered, MB of weights, n_silu, HardSwish ms):
        the arguments of ``Calibration.apply``, in order."""
        rows = []
        for u in units:
            u = expand_kernels(list(u))
            p = self.model.predict_detailed(u).latency_ms
            rows.append((float(p.sum()), len(u), *_terms(u, p)))
        return np.array(rows, dtype=float).reshape(len(rows), 6)

    def calibrate(self, units: Sequence[Sequence[OpConfig]], measured_ms: Sequence[float]) -> LatencyPredictor:
        """A copy calibrated on models given as their op configurations (kernels or blocks)."""
        s, n, b, w, q, h = self.calibration_terms(units).T
        return self.with_calibration(Calibration.fit(s, n, b, w, measured_ms, q, h))

    def calibration_loo(self, units: Sequence[Sequence[OpConfig]], measured_ms: Sequence[float]) -> np.ndarray:
        """Leave-one-out relative errors (predicted / measured - 1) of the calibration: each model
        predicted by a calibration fitted on the others (needs at least 6 models)."""
        T = self.calibration_terms(units)
        m = np.asarray(measured_ms, dtype=float)
        if len(m) < 6:
            raise HwnasError(f"leave-one-out over the calibration needs at least 6 measured models, got {len(m)}")
        err = np.empty(len(m))
        for i in range(len(m)):
            keep = np.arange(len(m)) != i
            s, n, b, w, q, h = T[keep].T
            cal = Calibration.fit(s, n, b, w, m[keep], q, h)
            err[i] = float(cal.apply(*T[i])) / m[i] - 1
        return err

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = self.model.save(directory)
        (d / "predictor.json").write_text(json.dumps({"calibration": asdict(self.calibration),
                                                      "calibration_terms_version": CALIBRATION_TERMS_VERSION},
                                                     indent=2) + "\n")
        self.path_ = d
        return d

    @classmethod
    def load(cls, directory: str | Path, fingerprint: Fingerprint | None = None,
             allow_fingerprint_mismatch: bool = False) -> LatencyPredictor:
        d = Path(directory)
        model = load_latency_model(d, fingerprint, allow_fingerprint_mismatch)
        cal = Calibration()
        if (d / "predictor.json").exists():
            try:
                meta = json.loads((d / "predictor.json").read_text())
                cal = Calibration(**meta["calibration"])
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise HwnasError(f"{d / 'predictor.json'} is not a valid calibration ({type(exc).__name__}: {exc}); "
                                 "train the predictor again") from None
            version = meta.get("calibration_terms_version", 1)
            if version != CALIBRATION_TERMS_VERSION and cal.per_mb_ms != 0:
                raise HwnasError(
                    f"{d / 'predictor.json'} was calibrated with calibration terms version {version}; this hwnas "
                    f"reads {CALIBRATION_TERMS_VERSION} (the MB term now counts the convs' and pools' inputs and "
                    "outputs only): train the predictor again (`hwnas predictor train`; the profile store is reused)")
        out = cls(model, cal)
        out.path_ = d  # where it was loaded from
        return out


def kernel_configs(model: onnx.ModelProto) -> list[OpConfig]:
    """The op configurations of an ONNX model's kernels (views and unknown kernels excluded)."""
    return [k.config for k in decompose_onnx(model) if k.kind == "op" and k.config is not None]
