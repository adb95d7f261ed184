"""``hwnas predictor adapt``: a new device's predictor from other devices' predictors and a few
whole-network measurements on it (no op profile)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import (
    Message,
    Progress,
    check_count,
    get_device,
    no_message,
    no_progress,
    open_store,
    timing_policy,
)
from hwnas.jobs._predictors import _save_replacing, load_predictor, predictor_dir
from hwnas.jobs._space_models import space_calibration_models
from hwnas.latency_models import calibration_models
from hwnas.latency_models._adapt import (
    ADAPT_VIEWS,
    MIN_SAMPLES,
    AdaptedPredictor,
    loo_errors,
    spread_order,
    transfer_inputs,
    transfer_parts,
)
from hwnas.latency_models._transfer import VIEWS
from hwnas.latency_models._predictor import kernel_configs
from hwnas.profilers import (
    DriftPolicy,
    Profiler,
    fingerprint,
    get_backend,
    measure_models,
)
from hwnas.search import create_space

__all__ = ["adapt_predictor", "Candidate", "default_candidates"]


@dataclass(frozen=True)
class Candidate:
    """A network the adaptation may measure: its name, family (for spreading) and ONNX graph."""

    name: str
    family: str
    onnx: Any


def default_candidates(space: Any = None, space_models: int = 40, mixed: int = 0) -> list[Candidate]:
    """The zoo's calibration networks (random architectures, MobileNetV2- and ResNet-like at several
    widths and resolutions; the held-out families stay out), with ``space`` that many of the space's
    own networks spread over its FLOPs, and ``mixed`` random networks of every block kind
    (:func:`hwnas.zoo.random_mixed_model`: fire modules' concatenations, residual adds,
    squeeze-excite, max pools; none by default: they did not lower the error on held-out families,
    BENCHMARKS.md, "Few-shot adaptation")."""
    from hwnas.zoo import random_mixed_model

    check_count("mixed", mixed, 0)
    out = [Candidate(m.name, m.family, m.onnx) for m in calibration_models(n_random=40)]
    out += [Candidate(m.name, m.family, m.onnx) for m in map(random_mixed_model, range(mixed))]
    if space is not None:
        out += [Candidate(n, space.name, m) for n, m in space_calibration_models(space, space_models)]
    return out


def _inputs(sources: Sequence[Any], cands: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transfer model's inputs (X, S, G) of each candidate, from the sources' ONNX predictions
    and its kernels."""
    totals = [np.array([s.predict_onnx(c.onnx).latency_ms for c in cands]) for s in sources]
    configs = [kernel_configs(c.onnx) for c in cands]
    return (*transfer_inputs(sources, configs, totals), transfer_parts(sources, configs))


def _source(text: str) -> tuple[str, str | None]:
    """``DEVICE`` (its default predictor) or ``DEVICE=PREDICTOR_DIR``."""
    name, _, path = str(text).partition("=")
    return name.strip(), (path.strip() or None)


def adapt_predictor(device: str | Device, sources: Sequence[str], *, samples: int = 20, batch: int = 5,
                    space: str | None = None, space_args: dict[str, Any] | None = None, store: Any = None,
                    candidates: Sequence[Candidate] | None = None, out: str | Path | None = None,
                    overwrite: bool = True, max_time_per_op: float | None = None, model_passes: int = 2,
                    drift_check: bool = True, views: Sequence[str] = ADAPT_VIEWS,
                    progress: Progress = no_progress, message: Message = no_message) -> AdaptedPredictor:
    """Measure ``samples`` networks whole on ``device`` (chosen to spread over the sources'
    predicted latencies and over families), fit the transfer model on the ``sources``' predictions
    (each ``DEVICE``, its predictor where :func:`load_predictor` finds it, or ``DEVICE=DIR``)
    and save it where :func:`load_predictor` finds the device's predictor (``out`` to choose).
    Measurements go into ``store`` (a rerun reuses them); after each ``batch`` the leave-one-out
    error is reported through ``message``. ``views``: the transfer model's views (see
    :class:`~hwnas.latency_models.TransferLatencyModel`). Returns the predictor (``path_``: where it
    was saved)."""
    check_count("samples", samples, MIN_SAMPLES)
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise HwnasError(f"views takes one or more of {', '.join(VIEWS)}; got {', '.join(map(str, views)) or 'none'}")
    check_count("batch", batch, 1)
    dev = get_device(device)
    get_backend(dev.runtime).require(dev)
    given = dict(_source(s) for s in sources)
    names = list(given)
    if not names:
        raise HwnasError("adaptation needs at least one source device with a predictor (--from)")
    if dev.name in names:
        raise HwnasError(f"{dev.name} is the device being adapted; it cannot be its own source")
    # a source without a predictor: one line, before any work
    preds = [load_predictor(n, path=p, space=space, space_args=space_args) for n, p in given.items()]
    sp = create_space(space, **(space_args or {})).restrict(dev.constraints) if space is not None else None
    target = Path(out) if out is not None else predictor_dir(dev, space=space, space_args=space_args,
                                                             trained_for_space=space is not None)
    if not overwrite and target.exists():
        raise HwnasError(f"{target} holds a predictor; refusing to replace it (overwrite=True / --overwrite)")
    cands = list(candidates) if candidates is not None else default_candidates(sp)
    if samples > len(cands):
        raise HwnasError(f"samples={samples} is more than the {len(cands)} candidate networks")
    X, S, G = _inputs(preds, cands)
    chosen = spread_order(np.log(S[:, 0]), [c.family for c in cands])[:samples]
    y = _measure(dev, [cands[i] for i in chosen], store, batch, max_time_per_op, model_passes, drift_check,
                 progress, message, (X[chosen], S[chosen], G[chosen], tuple(views)))
    pred = AdaptedPredictor(preds, names, X[chosen], S[chosen], y, fingerprint(dev).to_dict(),
                            [cands[i].name for i in chosen], G[chosen], views)
    _save_replacing(pred, target)
    return pred


def _measure(dev: Device, chosen: list[Candidate], store: Any, batch: int, max_time_per_op: float | None,
             passes: int, drift_check: bool, progress: Progress, message: Message,
             fit: tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]) -> np.ndarray:
    """The chosen networks measured whole on the device in batches, the fit's leave-one-out error
    reported after each batch once there are enough (``fit``: the chosen rows' X, S, G and the views)."""
    X, S, G, views = fit
    y: list[float] = []
    count = [0]

    def tick(name: str, ms: float) -> None:
        count[0] += 1
        total = len(chosen) * passes  # every pass reports; a stored network reports once
        progress("measure networks", min(count[0], total), total, f"{name} {ms:.3f} ms")

    with open_store(store) as st:
        profiler = Profiler(dev, timing_policy(max_time_per_op), st, drift=DriftPolicy() if drift_check else None,
                            auto_pin=drift_check)
        for start in range(0, len(chosen), batch):
            part = chosen[start: start + batch]
            done = measure_models(profiler, [(c.name, c.onnx) for c in part], passes=passes,
                                  on_done=tick)
            y += [m.latency_ms for m in done]
            if len(y) >= MIN_SAMPLES:
                err = loo_errors(X[: len(y)], S[: len(y)], np.array(y), G[: len(y)], views)
                message(f"{len(y)} networks: leave-one-out MAPE {100 * np.mean(np.abs(err)):.1f}%, "
                        f"within +-10% {100 * np.mean(np.abs(err) <= 0.1):.0f}%")
    return np.array(y)
