"""A new device's latency predictor from a few whole-network measurements (few-shot adaptation).

Other devices' predictors (the *sources*) predict each network; a :class:`TransferLatencyModel`
learns the new device's latency from those predictions, the network's MACs and the parts of the
sources' predictions (dense convolutions, depthwise ones, the rest, the kernel count). The same
transfer model serves NAS-Bench-201's tables, where the sources are the table's other devices.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwnas._files import read_json, write_json
from hwnas._optypes import OpType
from hwnas.devices import Fingerprint
from hwnas.errors import FingerprintMismatchError, HwnasError
from hwnas.latency_models._decompose import expand_kernels
from hwnas.latency_models._predictor import (
    LatencyPredictor,
    ModelPrediction,
    kernel_configs,
)
from hwnas.latency_models._transfer import VIEWS, TransferLatencyModel
from hwnas.profilers import OpConfig

__all__ = ["AdaptedPredictor", "network_features", "transfer_inputs", "transfer_parts", "spread_order",
           "loo_errors", "load_any_predictor", "ADAPTED_FILE", "MIN_SAMPLES", "ADAPT_VIEWS"]

#: the file that marks a predictor directory as adapted
ADAPTED_FILE = "adapted.json"
ADAPTED_FORMAT = 2
#: the transfer model's views for an adapted predictor (BENCHMARKS.md, "Few-shot adaptation")
ADAPT_VIEWS: tuple[str, ...] = ("multiplicative", "parts")
#: the views of predictors saved in format 1 (before the parts view)
_FORMAT1_VIEWS = ("multiplicative", "additive")
#: fewest measured networks a fit (and its leave-one-out check) needs
MIN_SAMPLES = 3

_DENSE = {OpType.CONV, OpType.PWCONV, OpType.LINEAR}
_DEPTHWISE = {OpType.DWCONV}


#: kernel groups of the parts view: dense, depthwise, the rest (``_group``)
_GROUPS = 3


def _parts_width(n_sources: int) -> int:
    """Columns of :func:`transfer_parts`: each source's groups, then the kernel count and a constant."""
    return _GROUPS * n_sources + 2


def _group(c: OpConfig) -> int:
    return 0 if c.op in _DENSE else 1 if c.op in _DEPTHWISE else 2


def network_features(configs: Sequence[OpConfig]) -> np.ndarray:
    """Cheap features of a network given as its op configurations: log MACs, log parameters, log
    activation MB, the number of kernels, and the kernels in each group (dense, depthwise, other)."""
    ks = expand_kernels(list(configs))
    macs = sum(c.macs() for c in ks)
    params = sum(c.params() for c in ks)
    io = sum(sum(int(np.prod(s)) for s in c.input_shapes()) + int(np.prod(c.output_shape())) for c in ks)
    groups = np.bincount([_group(c) for c in ks], minlength=_GROUPS)
    return np.array([np.log1p(macs / 1e6), np.log1p(params / 1e3), np.log1p(4 * io / 1e6), len(ks), *groups], float)


def transfer_inputs(sources: Sequence[LatencyPredictor], archs: Sequence[Sequence[OpConfig]],
                    totals: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The transfer model's inputs for networks given as op configurations: ``S``, every source's
    whole-network prediction (ms; ``totals``: each source's own predictions, where already known);
    ``X``, the network's log MACs. Few inputs on purpose: with 5-20 measured networks the kernel
    groups and the other network features overfit (BENCHMARKS.md, "Few-shot adaptation")."""
    X = np.array([network_features(a)[:1] for a in archs]).reshape(len(archs), -1)
    S = np.column_stack([s.predict_architectures(archs) if totals is None else np.asarray(totals[i], float)
                         for i, s in enumerate(sources)])
    return X, S


def transfer_parts(sources: Sequence[LatencyPredictor], archs: Sequence[Sequence[OpConfig]]) -> np.ndarray:
    """The parts view's inputs (ms): per source, its uncalibrated predicted time of the network's
    dense kernels (conv, pointwise conv, linear), depthwise kernels and the rest; then the number of
    kernels and a constant 1 (a per-kernel and a per-run overhead)."""
    kernels = [expand_kernels(list(a)) for a in archs]
    cols = []
    for s in sources:
        ms = _kernel_ms(s, kernels)
        for g in range(_GROUPS):
            cols.append([sum(t for t, c in zip(m, ks) if _group(c) == g) for m, ks in zip(ms, kernels)])
    cols += [[len(ks) for ks in kernels], [1.0] * len(kernels)]
    return np.array(cols, float).T.reshape(len(archs), -1)


def _kernel_ms(source: LatencyPredictor, kernels: list[list[OpConfig]]) -> list[np.ndarray]:
    """The source's op-level prediction of each network's kernels, each distinct kernel predicted once."""
    uniq = list(dict.fromkeys(k for ks in kernels for k in ks))
    pred = dict(zip(uniq, source.predict_configs(uniq).latency_ms)) if uniq else {}
    return [np.array([pred[k] for k in ks]) for ks in kernels]


def spread_order(log_ms: np.ndarray, families: Sequence[str], seed: int = 0) -> list[int]:
    """An order of candidates whose every prefix spreads over the predicted latency range and the
    families: the median first, then each time the candidate farthest (in log latency) from those
    chosen, a family not chosen yet winning within a tenth of the range."""
    x = np.asarray(log_ms, float)
    order = [int(np.argsort(x)[len(x) // 2])]
    width = float(x.max() - x.min()) or 1.0
    used = {families[order[0]]}
    rest = set(range(len(x))) - set(order)
    while rest:
        idx = np.array(sorted(rest))
        dist = np.min(np.abs(x[idx, None] - x[np.array(order)][None, :]), axis=1)
        bonus = np.array([0.1 * width if families[i] not in used else 0.0 for i in idx])
        pick = int(idx[int(np.argmax(dist + bonus))])
        order.append(pick)
        used.add(families[pick])
        rest.discard(pick)
        if len(used) == len(set(families)):
            used = set()  # every family once: start a new round
    return order


def loo_errors(X: np.ndarray, S: np.ndarray, y: np.ndarray, G: np.ndarray | None = None,
               views: Sequence[str] = ADAPT_VIEWS) -> np.ndarray:
    """Leave-one-out relative errors (predicted / measured - 1) of the transfer fit (``views``;
    ``G``: the parts, needed by the parts view)."""
    n = len(y)
    if n < MIN_SAMPLES:
        raise HwnasError(f"the transfer fit needs at least {MIN_SAMPLES} measured networks; got {n}")
    err = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        m = TransferLatencyModel(views=tuple(views)).fit(X[keep], S[keep], y[keep], _rows(G, keep))
        err[i] = float(m.predict(X[i: i + 1], S[i: i + 1], _rows(G, slice(i, i + 1)))[0]) / y[i] - 1
    return err


def _rows(G: np.ndarray | None, idx: Any) -> np.ndarray | None:
    return None if G is None else G[idx]


@dataclass(frozen=True)
class _Calibrated:
    """What the CLI reports of a predictor's calibration: here, the adapted fit's sample count."""

    n_models: int
    fitted: bool = True


class AdaptedPredictor:
    """A device's latency predictor transferred from ``sources`` with ``n`` of its measurements.

    Predicts like a :class:`LatencyPredictor` (``predict_architectures``, ``predict_architecture``,
    ``predict_onnx``); it predicts whole networks, so it has no per-layer table (ProxylessNAS needs
    a trained predictor)."""

    def __init__(self, sources: Sequence[LatencyPredictor], names: Sequence[str], X: np.ndarray, S: np.ndarray,
                 y: np.ndarray, fingerprint: dict[str, Any], measured: Sequence[str] = (),
                 G: np.ndarray | None = None, views: Sequence[str] = ADAPT_VIEWS) -> None:
        if len(y) < MIN_SAMPLES:
            raise HwnasError(f"an adapted predictor needs at least {MIN_SAMPLES} measured networks; got {len(y)}")
        self.sources, self.source_names = list(sources), list(names)
        self.X, self.S, self.y = np.asarray(X, float), np.asarray(S, float), np.asarray(y, float)
        self.G = None if G is None else np.asarray(G, float)
        self.views = tuple(views)
        self.measured = list(measured)
        self._fingerprint = fingerprint
        self.transfer = TransferLatencyModel(views=self.views).fit(self.X, self.S, self.y, self.G)
        self.calibration = _Calibrated(len(self.y))

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def features(self, archs: Sequence[Sequence[OpConfig]], totals: Sequence[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The transfer model's inputs ``X``, ``S`` and (for the parts view) ``G`` of these networks."""
        X, S = transfer_inputs(self.sources, archs, totals)
        return X, S, (transfer_parts(self.sources, archs) if "parts" in self.views else None)

    def predict_architectures(self, archs: Sequence[Sequence[OpConfig]]) -> np.ndarray:
        return self.transfer.predict(*self.features(archs))

    def predict_architecture(self, configs: Sequence[OpConfig]) -> float:
        return float(self.predict_architectures([configs])[0])

    def predict_onnx(self, model: onnx.ModelProto) -> ModelPrediction:
        configs = kernel_configs(model)
        X, S, G = self.features([configs], [np.array([s.predict_onnx(model).latency_ms]) for s in self.sources])
        return ModelPrediction(float(self.transfer.predict(X, S, G)[0]), float(S[0, 0]), len(configs), True)

    def layer_table(self, choices: Any) -> Any:
        raise HwnasError("an adapted predictor predicts whole networks and has no per-layer latency table "
                         "(ProxylessNAS needs one): train a predictor on the device (`hwnas predictor train`)")

    def loo(self) -> np.ndarray:
        return loo_errors(self.X, self.S, self.y, self.G, self.views)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(self.sources):
            target = d / "sources" / str(i)
            if target.exists():
                shutil.rmtree(target)
            s.save(target)
        write_json(d / ADAPTED_FILE, {
            "format": ADAPTED_FORMAT, "fingerprint": self._fingerprint, "sources": [
                {"device": n, "fingerprint": s.fingerprint, "dir": f"sources/{i}"}
                for i, (n, s) in enumerate(zip(self.source_names, self.sources))],
            "samples": len(self.y), "measured": [{"name": n, "latency_ms": float(v)} for n, v in
                                                 zip(self.measured, self.y)],
            "X": self.X.tolist(), "S": self.S.tolist(), "views": list(self.views),
            "G": None if self.G is None else self.G.tolist()})
        self.path_ = d
        return d

    @classmethod
    def load(cls, directory: str | Path, fingerprint: Fingerprint | None = None,
             allow_fingerprint_mismatch: bool = False) -> AdaptedPredictor:
        d = Path(directory)
        meta = read_json(d / ADAPTED_FILE)
        need = ("format", "fingerprint", "sources", "measured", "X", "S")
        if not isinstance(meta, dict) or any(k not in meta for k in need) or meta["format"] not in (1, ADAPTED_FORMAT):
            raise HwnasError(f"{d / ADAPTED_FILE} is not an adapted predictor of format 1 or {ADAPTED_FORMAT}; "
                             "adapt again")
        names, dirs, X, S, y, measured, G, views = _stored_fit(meta, d / ADAPTED_FILE)
        stored = meta["fingerprint"] or {}
        if fingerprint is not None and stored.get("id") != fingerprint.id and not allow_fingerprint_mismatch:
            raise FingerprintMismatchError(
                f"the adapted predictor in {d} is for device {stored.get('device_name')!r} with fingerprint "
                f"{stored.get('id')}, not {fingerprint.id}: adapt again on this device, or override explicitly "
                "(--allow-fingerprint-mismatch / allow_fingerprint_mismatch=True)")
        sources = [LatencyPredictor.load(d / s) for s in dirs]
        out = cls(sources, names, X, S, y, stored, measured, G, views)
        out.path_ = d
        return out


def _stored_fit(meta: dict[str, Any], path: Path) -> tuple:
    """An ``adapted.json``'s sources' names and directories, X, S, measured latencies and names, G
    and views, checked to fit together (rows per measured network, a column of S per source, G's
    columns as :func:`transfer_parts` makes them), or a :class:`HwnasError` naming what does not."""
    try:
        names = [str(s["device"]) for s in meta["sources"]]
        dirs = [str(s["dir"]) for s in meta["sources"]]
        y = np.array([float(m["latency_ms"]) for m in meta["measured"]])
        measured = [str(m["name"]) for m in meta["measured"]]
        X, S = np.array(meta["X"], float), np.array(meta["S"], float)
        G = None if meta.get("G") is None else np.array(meta["G"], float)
        views = tuple(str(v) for v in meta.get("views", _FORMAT1_VIEWS))
    except (KeyError, TypeError, ValueError) as exc:
        raise HwnasError(f"{path} is damaged ({type(exc).__name__}: {exc}); adapt again") from None
    n, k = len(y), len(names)
    problems = [f"{what} has {shape} where {want} was expected" for what, shape, want in (
        ("X", X.shape[:1], (n,)), ("S", S.shape, (n, k)),
        ("G", None if G is None else G.shape, None if G is None else (n, _parts_width(k)))) if shape != want]
    problems += ["X is not a table"] * (X.ndim != 2) + ["no views"] * (not views)
    problems += [f"unknown view {v!r}" for v in views if v not in VIEWS]
    problems += ["the parts view without G"] * ("parts" in views and G is None)
    problems += ["a source without a directory"] * (not all(dirs))
    problems += ["a measured latency that is not positive and finite"] * bool(np.any(~np.isfinite(y) | (y <= 0)))
    problems += ["a fingerprint that is not a table"] * (not isinstance(meta["fingerprint"] or {}, dict))
    if problems:
        raise HwnasError(f"{path} does not fit together ({'; '.join(problems)}); adapt again")
    return names, dirs, X, S, y, measured, G, views


def load_any_predictor(directory: str | Path, fingerprint: Fingerprint | None = None,
                       allow_fingerprint_mismatch: bool = False) -> LatencyPredictor | AdaptedPredictor:
    """The predictor saved in ``directory``: adapted (``adapted.json``) or trained (``model.json``)."""
    d = Path(directory)
    if (d / ADAPTED_FILE).is_file():
        return AdaptedPredictor.load(d, fingerprint, allow_fingerprint_mismatch)
    return LatencyPredictor.load(d, fingerprint, allow_fingerprint_mismatch)


def summary(pred: AdaptedPredictor) -> dict[str, Any]:
    """What ``hwnas predictor info`` shows of an adapted predictor."""
    err = pred.loo()
    return {"kind": "adapted", "sources": pred.source_names, "samples": len(pred.y), "views": list(pred.views),
            "loo_mape": float(np.mean(np.abs(err))), "loo_acc10": float(np.mean(np.abs(err) <= 0.10)),
            "measured": dict(zip(pred.measured, pred.y.tolist()))}


