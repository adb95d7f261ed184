"""Op-level latency models with the scikit-learn estimator API, saved as text + JSON (no pickles).

>>> from hwnas.profilers import OpConfig
>>> cfgs = [OpConfig.parse(f"pwconv_i{c}_o{c}_r14_arelu") for c in (8, 16, 32, 64, 128)]
>>> m = FlopsLinearModel().fit(cfgs, [0.01, 0.02, 0.05, 0.15, 0.5])
>>> bool(m.predict(cfgs[:1])[0] > 0)
True
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from hwnas._registry import Registry
from hwnas.devices._fingerprint import Fingerprint
from hwnas._files import read_json
from hwnas.errors import FingerprintMismatchError, HwnasError
from hwnas.latency_models._features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, feature_matrix
from hwnas.profilers._ops import OpConfig, OpType

__all__ = [
    "LatencyModel", "OpPrediction", "LightGBMLatencyModel", "LookupTableModel", "FlopsLinearModel",
    "MODEL_FORMAT_VERSION", "load_latency_model", "latency_model_names", "create_latency_model",
    "register_latency_model", "list_latency_models",
]

MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class OpPrediction:
    """Per-op predictions; ``fallback[i]`` marks an explicit fallback estimate, with its reason."""

    latency_ms: np.ndarray
    fallback: np.ndarray
    reasons: tuple[str, ...]


class _CostFallback:
    """log(latency) ~ log(MACs) + log(bytes moved): the estimate for ops a model cannot predict."""

    def __init__(self, coef: list[float] | None = None) -> None:
        self.coef = coef

    @staticmethod
    def _design(configs: Sequence[OpConfig]) -> np.ndarray:
        X = feature_matrix(configs)
        macs = X[:, FEATURE_NAMES.index("macs")]
        moved = X[:, [FEATURE_NAMES.index(n) for n in ("bytes_in", "bytes_out", "bytes_weights")]].sum(1)
        return np.column_stack([np.log1p(macs), np.log1p(moved), np.ones(len(configs))])

    def fit(self, configs: Sequence[OpConfig], y: np.ndarray) -> _CostFallback:
        A = self._design(configs)
        self.coef = np.linalg.lstsq(A, np.log(y), rcond=None)[0].tolist()
        return self

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        return np.exp(self._design(configs) @ np.asarray(self.coef))


class LatencyModel(BaseEstimator, ABC):
    """Predicts the latency (ms) of op configurations on one device.

    Subclasses: hyper-parameters in ``__init__`` only; ``fit`` returns ``self``; learned state ends
    in ``_``. ``fingerprint_`` is the device fingerprint the training data came from (or None).
    """

    name: str = ""

    def fit(self, configs: Sequence[OpConfig], latency_ms: Sequence[float], fingerprint: Fingerprint | None = None,
            op_time: str = "e2e") -> LatencyModel:
        """``op_time`` names what ``latency_ms`` is (one of ``hwnas.latency_models._training.OP_TIMES``:
        "e2e", "kernel" or "mean"); it is kept in ``training_summary_``."""
        configs = list(configs)
        y = np.asarray(latency_ms, dtype=float)
        if len(configs) != len(y):
            raise ValueError(f"{len(configs)} configurations but {len(y)} latencies")
        if len(configs) == 0:
            raise HwnasError("cannot fit a latency model on no measurements")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("latencies must be positive and finite")
        self.fingerprint_ = fingerprint.to_dict() if fingerprint else None
        counts: dict[str, int] = {}
        for c in configs:
            counts[c.op.value] = counts.get(c.op.value, 0) + 1
        self.training_summary_ = {
            "n_configs": len(configs), "per_op_type": counts, "op_time": op_time,
            "latency_ms_min": float(y.min()), "latency_ms_median": float(np.median(y)), "latency_ms_max": float(y.max()),
        }
        self.fallback_ = _CostFallback().fit(configs, y)
        self._fit(configs, y)
        return self

    @abstractmethod
    def _fit(self, configs: list[OpConfig], y: np.ndarray) -> None: ...

    @abstractmethod
    def predict_detailed(self, configs: Sequence[OpConfig]) -> OpPrediction: ...

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        """Latency in ms of each configuration (fallback estimates included; see ``predict_detailed``)."""
        return self.predict_detailed(configs).latency_ms

    @property
    def op_time(self) -> str:
        """What the model was trained on: "e2e", "kernel" or "mean" (see ``fit``)."""
        self._check_fitted()
        return str(self.training_summary_.get("op_time", "e2e"))

    def _check_fitted(self) -> None:
        if not hasattr(self, "fallback_"):
            raise HwnasError(f"{type(self).__name__} is not fitted; call fit() first")

    # ---- persistence ------------------------------------------------------------------------
    @abstractmethod
    def _state(self, directory: Path) -> dict[str, Any]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, Any], directory: Path) -> None: ...

    def save(self, directory: str | Path, validation: dict[str, Any] | None = None) -> Path:
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": MODEL_FORMAT_VERSION,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "model": self.name,
            "params": self.get_params(),
            "fingerprint": self.fingerprint_,
            "training_summary": self.training_summary_,
            "validation": validation or getattr(self, "validation_", None),
            "fallback_coef": self.fallback_.coef,
            "state": self._state(d),
        }
        (d / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return d


_MODELS: Registry[type[LatencyModel]] = Registry("latency model")


def _group(configs: Sequence[OpConfig]) -> dict[OpType, list[int]]:
    groups: dict[OpType, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(c.op, []).append(i)
    return groups


@_MODELS.decorator("lightgbm")
class LightGBMLatencyModel(LatencyModel):
    """One LightGBM booster per op type (nn-Meter's per-kernel predictors), on log latency.

    ``base="linear"`` (the default) first fits, per op type, a linear cost model ``latency = a +
    b * MACs + c * MB in + d * MB out + e * MB of weights`` (non-negative least squares in relative
    error: a fixed cost plus a roofline-like compute and memory time), and the booster learns the
    log of what that leaves (``log(latency / linear)``). Trees alone predict a constant beyond the
    largest op they were trained on; the linear cost carries the trend there, and the trees only
    the shape-dependent efficiency. On the 2,946 ops of ``benchmarks/out/predictor.sqlite`` (mean op
    time; ``benchmarks/op_model_accuracy.py``): 5-fold cross-validated +-10% accuracy 68.1% -> 81.0%
    (MAPE 10.9% -> 6.9%); with each op type's 15% largest ops held out, 4.9% -> 51.0% (median error
    -60.6% -> -3.3%).
    ``base="none"`` is the booster alone.
    """

    name = "lightgbm"
    BASES = ("linear", "none")
    _BASE_COLUMNS = ("macs", "bytes_in", "bytes_out", "bytes_weights")

    def __init__(self, n_estimators: int = 400, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 3, log_target: bool = True, min_type_samples: int = 5,
                 random_state: int = 0, base: str = "linear") -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.log_target = log_target
        self.min_type_samples = min_type_samples
        self.random_state = random_state
        self.base = base

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples, "min_data_in_bin": 1, "verbosity": -1,
            "seed": self.random_state, "num_threads": 1, "deterministic": True, "force_row_wise": True,
            "feature_pre_filter": False,
        }

    @classmethod
    def _base_design(cls, X: np.ndarray) -> np.ndarray:
        """Columns of the linear cost model: 1, MACs (millions), MB in, MB out, MB of weights."""
        return np.column_stack([np.ones(len(X)), X[:, [FEATURE_NAMES.index(n) for n in cls._BASE_COLUMNS]] / 1e6])

    def _base_ms(self, op: str, X: np.ndarray) -> np.ndarray:
        coef = self.base_coef_.get(op)
        if coef is None:
            return np.ones(len(X))
        return np.maximum(self._base_design(X) @ np.asarray(coef), 1e-6)

    def _fit(self, configs: list[OpConfig], y: np.ndarray) -> None:
        import lightgbm as lgb
        from scipy.optimize import nnls

        if self.base not in self.BASES:
            raise HwnasError(f"unknown base {self.base!r} for the lightgbm latency model; "
                             f"known: {', '.join(self.BASES)}")
        if self.base == "linear" and not self.log_target:
            raise HwnasError("base='linear' needs log_target=True (the booster learns log(latency / linear cost))")
        self.boosters_: dict[str, Any] = {}
        self.base_coef_: dict[str, list[float]] = {}
        X = feature_matrix(configs)
        target = np.log(y) if self.log_target else y
        for op, idx in _group(configs).items():
            if len(idx) < self.min_type_samples:
                continue
            t = target[idx]
            if self.base == "linear":
                A = self._base_design(X[idx])
                coef = nnls(A / y[idx, None], np.ones(len(idx)))[0]
                if coef.any():
                    self.base_coef_[op.value] = [float(c) for c in coef]
                    t = t - np.log(self._base_ms(op.value, X[idx]))
            ds = lgb.Dataset(X[idx], t, feature_name=FEATURE_NAMES, params={"verbosity": -1})
            self.boosters_[op.value] = lgb.train(self._lgb_params(), ds, num_boost_round=self.n_estimators)

    def predict_detailed(self, configs: Sequence[OpConfig]) -> OpPrediction:
        self._check_fitted()
        configs = list(configs)
        out = np.zeros(len(configs))
        fb = np.zeros(len(configs), dtype=bool)
        reasons = [""] * len(configs)
        if not configs:
            return OpPrediction(out, fb, ())
        X = feature_matrix(configs)
        for op, idx in _group(configs).items():
            booster = self.boosters_.get(op.value)
            if booster is None:
                out[idx] = self.fallback_.predict([configs[i] for i in idx])
                fb[idx] = True
                for i in idx:
                    reasons[i] = f"no {op.value} measurements were in the training data: MACs/bytes fallback estimate"
                continue
            p = booster.predict(X[idx], num_threads=1)
            out[idx] = (np.exp(p) * self._base_ms(op.value, X[idx])) if self.log_target else np.maximum(p, 1e-6)
        return OpPrediction(out, fb, tuple(reasons))

    def _state(self, directory: Path) -> dict[str, Any]:
        import hashlib

        files, sums = {}, {}
        for op, booster in self.boosters_.items():
            fname = f"lightgbm_{op}.txt"
            booster.save_model(str(directory / fname))
            files[op] = fname
            sums[fname] = hashlib.sha256((directory / fname).read_bytes()).hexdigest()
        return {"boosters": files, "base_coef": self.base_coef_, "sha256": sums}

    def _load_state(self, state: dict[str, Any], directory: Path) -> None:
        import lightgbm as lgb

        self.boosters_ = {op: lgb.Booster(model_str=_checked_booster(directory / f, state.get("sha256", {}).get(f)))
                          for op, f in state["boosters"].items()}
        # a model saved before the linear base existed has no coefficients: its boosters learned
        # log latency itself
        if "base_coef" not in state:
            self.base = "none"
        self.base_coef_ = state.get("base_coef", {})


def _checked_booster(path: Path, sha256: str | None) -> str:
    """A LightGBM model file's text, checked in Python before the native library sees it (a
    damaged file aborts the process there): its checksum where the predictor recorded one, and
    the structure LightGBM writes (a ``tree`` header, trees, ``end of trees``)."""
    import hashlib

    if Path(path).name != path.name or not path.is_file():
        raise HwnasError(f"predictor file {path} is missing")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HwnasError(f"predictor file {path} cannot be read ({exc})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise HwnasError(f"predictor file {path} is damaged (its checksum differs from the one saved with it); "
                         "train the predictor again")
    if not text.startswith("tree\n") or "\nend of trees" not in text or "Tree=0" not in text:
        raise HwnasError(f"predictor file {path} is not a complete LightGBM model; train the predictor again")
    return text


@_MODELS.decorator("lut")
class LookupTableModel(LatencyModel):
    """Exact-configuration lookup table (ProxylessNAS / FBNet); misses use the explicit fallback."""

    name = "lut"

    def __init__(self) -> None:
        pass

    def _fit(self, configs: list[OpConfig], y: np.ndarray) -> None:
        groups: dict[str, list[float]] = {}
        for c, v in zip(configs, y):
            groups.setdefault(str(c), []).append(float(v))
        self.table_ = {k: float(np.median(v)) for k, v in groups.items()}

    def predict_detailed(self, configs: Sequence[OpConfig]) -> OpPrediction:
        self._check_fitted()
        configs = list(configs)
        keys = [str(c) for c in configs]
        hit = np.array([k in self.table_ for k in keys], dtype=bool)
        out = np.array([self.table_.get(k, np.nan) for k in keys], dtype=float)
        if (~hit).any():
            miss = [c for c, h in zip(configs, hit) if not h]
            out[~hit] = self.fallback_.predict(miss)
        reasons = tuple("" if h else "configuration not in the lookup table: MACs/bytes fallback estimate" for h in hit)
        return OpPrediction(out, ~hit, reasons)

    def _state(self, directory: Path) -> dict[str, Any]:
        return {"table": self.table_}

    def _load_state(self, state: dict[str, Any], directory: Path) -> None:
        self.table_ = state["table"]


@_MODELS.decorator("flops")
class FlopsLinearModel(LatencyModel):
    """Latency proportional to MACs: ``a * MACs + b`` by least squares (the FLOPs proxy)."""

    name = "flops"

    def __init__(self) -> None:
        pass

    def _fit(self, configs: list[OpConfig], y: np.ndarray) -> None:
        macs = feature_matrix(configs)[:, FEATURE_NAMES.index("macs")]
        A = np.column_stack([macs, np.ones(len(y))])
        a, b = np.linalg.lstsq(A, y, rcond=None)[0]
        self.coef_ = [float(max(a, 0.0)), float(max(b, 1e-6))]

    def predict_detailed(self, configs: Sequence[OpConfig]) -> OpPrediction:
        self._check_fitted()
        configs = list(configs)
        macs = feature_matrix(configs)[:, FEATURE_NAMES.index("macs")] if configs else np.zeros(0)
        out = self.coef_[0] * macs + self.coef_[1]
        return OpPrediction(out, np.zeros(len(configs), dtype=bool), ("",) * len(configs))

    def _state(self, directory: Path) -> dict[str, Any]:
        return {"coef": self.coef_}

    def _load_state(self, state: dict[str, Any], directory: Path) -> None:
        self.coef_ = state["coef"]


def register_latency_model(name: str, cls: type[LatencyModel], *, replace: bool = False) -> type[LatencyModel]:
    """Register a :class:`LatencyModel` class under ``name``; the shared check suite
    (:func:`hwnas.testing.check_latency_model`) runs over every registered model."""
    return _MODELS.register(name, cls, replace=replace)


def list_latency_models(pattern: str = "*") -> list[str]:
    return _MODELS.names(pattern)


latency_model_names = list_latency_models


def create_latency_model(name: str, **params: Any) -> LatencyModel:
    return _MODELS.get(name)(**params)


def _check_fallback_coef(coef: Any, path: Path) -> None:
    """The cost fallback's coefficients as saved: None (never fitted) or 3 finite numbers."""
    if coef is not None and not (isinstance(coef, list) and len(coef) == 3
                                 and all(isinstance(c, (int, float)) and np.isfinite(c) for c in coef)):
        raise HwnasError(f"{path} has a damaged fallback_coef ({str(coef)[:40]}; 3 finite numbers expected): "
                         "train it again")


def load_latency_model(directory: str | Path, fingerprint: Fingerprint | None = None,
                       allow_fingerprint_mismatch: bool = False) -> LatencyModel:
    """Load a saved model; refuse one trained on another device fingerprint unless overridden."""
    d = Path(directory)
    path = d / "model.json"
    if not path.exists():
        raise HwnasError(f"no latency model in {d} (missing model.json); train one with `hwnas predictor train`")
    meta = read_json(path)
    need = ("format_version", "feature_schema_version", "model", "params", "state", "fallback_coef")
    if not isinstance(meta, dict) or any(k not in meta for k in need):
        missing = [k for k in need if not isinstance(meta, dict) or k not in meta]
        raise HwnasError(f"{path} is not a predictor's model.json (missing {', '.join(missing)})")
    if meta.get("format_version") != MODEL_FORMAT_VERSION or meta.get("feature_schema_version") != FEATURE_SCHEMA_VERSION:
        raise HwnasError(
            f"{path} has format {meta.get('format_version')} / feature schema {meta.get('feature_schema_version')}; "
            f"this hwnas reads {MODEL_FORMAT_VERSION} / {FEATURE_SCHEMA_VERSION}: retrain it"
        )
    _check_fallback_coef(meta["fallback_coef"], path)
    stored = meta.get("fingerprint")
    if fingerprint is not None and not allow_fingerprint_mismatch and not (isinstance(stored, dict) and stored.get("id")):
        raise FingerprintMismatchError(f"{path} records no device fingerprint: it cannot be checked against "
                                       f"{fingerprint.device_name!r} (--allow-fingerprint-mismatch / "
                                       "allow_fingerprint_mismatch=True uses it anyway)")
    if fingerprint is not None and stored and stored.get("id") != fingerprint.id and not allow_fingerprint_mismatch:
        diff = Fingerprint.from_dict(stored).diff(fingerprint)
        detail = "; ".join(f"{k}: trained on {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise FingerprintMismatchError(
            f"the latency model in {d} was trained for device {stored.get('device_name')!r} with another "
            f"fingerprint ({detail}). Retrain it on this device, or override explicitly "
            "(--allow-fingerprint-mismatch / allow_fingerprint_mismatch=True)."
        )
    try:
        model = create_latency_model(meta["model"], **meta["params"])
        model.fingerprint_ = stored
        model.training_summary_ = meta.get("training_summary")
        model.validation_ = meta.get("validation")
        model.fallback_ = _CostFallback(meta["fallback_coef"])
        model._load_state(meta["state"], d)
    except HwnasError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HwnasError(f"{path} is not a valid predictor ({type(exc).__name__}: {exc}); train it again") from None
    return model
