"""The compound-scaling job: EfficientNet's grid search for alpha, beta, gamma at phi = 1 on proxy
training, then the largest phi whose scaled network the device's predictor puts within the
target, exported and measured (phi stepped down while the measurement is over the target)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.devices import Device
from hwnas.errors import ArgumentError, HwnasError
from hwnas.jobs._common import Progress, check_count, check_positive, get_device, no_progress, strategy_params_named
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["compound_scaling", "DEFAULT_BASE"]

#: the base network when none is given: MobileNetV2's layers (every layer an MBConv 3x3, expand 6)
DEFAULT_BASE = "-".join(["k3e6"] * 21)

#: the parameters ``strategy_params`` may set, with their defaults
SCALING_PARAMS = {"grid_points": 6, "grid_step": 0.05, "flops_ratio": 2.0, "tolerance": 0.1, "phi_step": 0.25,
                  "max_phi": 6.0, "measure_tries": 3}


def compound_scaling(device: str | Device, out: str | Path, *, target_ms: float, base: str | None = None,
                     space_args: dict[str, Any] | None = None, predictor: Any = None, epochs: int = 2,
                     strategy_params: dict[str, Any] | None = None, export: bool = True, dataset: str = "digits",
                     seed: int = 0, train_device: str = "cpu", allow_fingerprint_mismatch: bool = False,
                     progress: Progress = no_progress, message: Callable[[str], None] = print) -> dict[str, Any]:
    """Compound scaling of ``base`` (a ``proxyless`` architecture at ``space_args``; default
    :data:`DEFAULT_BASE`) for ``device`` within ``target_ms``. Each grid point's network at phi = 1
    is trained ``epochs`` at its own resolution on ``dataset``; the results go to
    ``<out>/grid.json`` as they come (a killed run resumes there). Returns ``<out>/scaling.json``'s
    content: the grid, the chosen coefficients (``best``), the largest phi predicted within the target
    (``phi``; None when even the base is over it) and, with ``export``, each network exported
    (``export``: phi, predicted and measured latency, accuracy; the last is ``<out>/model.onnx``)."""
    from hwnas.search import create_space, dataset_classes

    dev = get_device(device)
    check_positive("target_ms", target_ms)
    check_count("epochs", epochs)
    p = _params(strategy_params)
    base_space = create_space("proxyless", **{**(space_args or {}), "classes": dataset_classes(dataset)})
    base_arch = _base_arch(base_space, base or DEFAULT_BASE, dev)
    pred = predictor if isinstance(predictor, LatencyPredictor) else load_predictor(
        dev, path=predictor, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = _grid_search(base_space, base_arch, p, epochs, dataset, seed, train_device, out / "grid.json", progress)
    best = max(grid, key=lambda g: (g["accuracy"], -g["mflops"]))
    message(f"best coefficients: alpha {best['alpha']:g}, beta {best['beta']:g}, gamma {best['gamma']:g} "
            f"(accuracy {best['accuracy']:.3f} at phi = 1)")
    chosen = _largest_phi(base_space, base_arch, _coefficients(best), dev, pred, target_ms, p)
    result: dict[str, Any] = {"device": dev.name, "target_ms": target_ms, "base": base_space.to_string(base_arch),
                              "space_args": _space_args(base_space), "grid": grid, "best": best, "phi": chosen}
    if chosen is None:
        message(f"even the base network is predicted over {target_ms} ms on {dev.name}: nothing to scale")
    elif export:
        result["export"] = _export_fitting(base_space, base_arch, _coefficients(best), chosen, dev, pred, target_ms,
                                        p, out, epochs, dataset, seed, train_device, message)
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    return result


def _params(given: dict[str, Any] | None) -> dict[str, Any]:
    bad = [k for k in (given or {}) if k not in SCALING_PARAMS]
    if bad:
        raise ArgumentError("strategy_params", f"for compound-scaling has no parameter {bad[0]!r}; its parameters: "
                            f"{', '.join(SCALING_PARAMS)}")
    from hwnas.search.scaling import check_grid

    p = {**SCALING_PARAMS, **(given or {})}
    with strategy_params_named("compound-scaling", {"step": "grid_step"}):
        check_count("grid_points", p["grid_points"])
        check_count("measure_tries", p["measure_tries"])
        for k in ("grid_step", "flops_ratio", "tolerance", "phi_step", "max_phi"):
            check_positive(k, p[k])
        check_grid(p["grid_step"], p["flops_ratio"], p["tolerance"])  # before any training
    return p


def _base_arch(space: Any, text: str, dev: Device) -> Any:
    arch = space.from_string(text)
    space.restrict(dev.constraints).validate(arch)  # an option the device cannot run: one line
    return arch


def _space_args(space: Any) -> dict[str, Any]:
    return {"resolution": space.resolution, "width": round(space.width, 6), "depth": round(space.depth, 6),
            "classes": space.classes, "act": space.act.value}


def _coefficients(row: dict[str, Any]) -> Any:
    from hwnas.search.scaling import Coefficients

    return Coefficients(row["alpha"], row["beta"], row["gamma"])


def _grid_points(p: dict[str, Any]) -> list[Any]:
    """``grid_points`` coefficients spread over EfficientNet's grid (sorted by alpha, beta)."""
    from hwnas.search.scaling import coefficient_grid

    grid = coefficient_grid(p["grid_step"], p["flops_ratio"], p["tolerance"])
    if not grid:
        raise HwnasError(f"no alpha, beta, gamma on a grid of {p['grid_step']} has alpha * beta^2 * gamma^2 within "
                         f"{p['tolerance']} of {p['flops_ratio']}: raise tolerance or lower grid_step")
    idx = np.unique(np.linspace(0, len(grid) - 1, min(p["grid_points"], len(grid))).round().astype(int))
    return [grid[i] for i in idx]


def _grid_search(base_space: Any, base_arch: Any, p: dict[str, Any], epochs: int, dataset: str, seed: int,
                 train_device: str, path: Path, progress: Progress) -> list[dict[str, Any]]:
    """Each grid point's phi = 1 network trained; rows kept in ``path`` (a rerun skips them)."""
    from hwnas.search._evaluators import ProxyTrainingEvaluator
    from hwnas.search.scaling import scale_arch, scaled_space

    done = {(r["alpha"], r["beta"], r["gamma"]): r for r in (json.loads(path.read_text()) if path.exists() else [])}
    points = _grid_points(p)
    rows = []
    for i, c in enumerate(points):
        key = (c.alpha, c.beta, c.gamma)
        if key not in done:
            space = scaled_space(base_space, c, 1.0)
            arch = scale_arch(base_space, base_arch, space)
            start = time.perf_counter()
            ev = ProxyTrainingEvaluator(space, dataset, epochs, resolution=space.resolution, seed=seed,
                                        device=train_device)
            done[key] = {"alpha": c.alpha, "beta": c.beta, "gamma": c.gamma, "accuracy": ev(arch),
                         "mflops": space.flops(arch) / 1e6, "resolution": space.resolution,
                         "train_s": round(time.perf_counter() - start, 1)}
            _write_atomic(path, [done[k] for k in done])
        rows.append(done[key])
        progress("compound-scaling grid (phi = 1)", i + 1, len(points), f"{c}: acc {done[key]['accuracy']:.3f}")
    return rows


def _write_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _predicted(base_space: Any, base_arch: Any, c: Any, phi: float, dev: Device, pred: LatencyPredictor) -> tuple:
    """The scaled space (restricted to the device), its architecture and predicted latency."""
    from hwnas.search.scaling import scale_arch, scaled_space

    space = scaled_space(base_space, c, phi)
    arch = scale_arch(base_space, base_arch, space)
    restricted = space.restrict(dev.constraints)
    restricted.validate(arch)
    return space, arch, pred.predict_architecture(space.op_configs(arch))


def _largest_phi(base_space: Any, base_arch: Any, c: Any, dev: Device, pred: LatencyPredictor, target: float,
                 p: dict[str, Any]) -> float | None:
    """The largest phi on the grid of ``phi_step`` up to ``max_phi`` whose network is predicted
    within ``target`` (latency grows with phi: the scan stops at the first over it)."""
    best = None
    limit = dev.constraints.max_input_resolution or 1024
    for phi in np.arange(0.0, p["max_phi"] + 1e-9, p["phi_step"]):
        if round(base_space.resolution * c.gamma ** phi) > limit or base_space.depth * c.alpha ** phi > 8 \
                or base_space.width * c.beta ** phi > 4:  # the device's input limit; the space's own
            break
        if _predicted(base_space, base_arch, c, float(phi), dev, pred)[2] > target:
            break
        best = round(float(phi), 6)
    return best


def _export_fitting(base_space: Any, base_arch: Any, c: Any, phi: float, dev: Device, pred: LatencyPredictor,
                    target: float, p: dict[str, Any], out: Path, epochs: int, dataset: str, seed: int,
                    train_device: str, message: Callable[[str], None]) -> dict[str, Any]:
    """Export the network at ``phi``; while its measured latency is over ``target``, one
    ``phi_step`` lower (at most ``measure_tries`` exports)."""
    from hwnas.jobs._export import export as export_arch

    tries = []
    for _ in range(p["measure_tries"]):
        space, arch, predicted = _predicted(base_space, base_arch, c, phi, dev, pred)
        spec = {"space": "proxyless", "arch": space.to_string(arch), "space_args": _space_args(space),
                "budget_ms": target, "dataset": dataset, "resolution": space.resolution}
        _write_atomic(out / "arch.json", spec)
        card = export_arch(out / "arch.json", dev, out / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, message=message)
        measured = card.get("measured_latency_ms")
        tries.append({"phi": phi, "predicted_ms": predicted, "measured_ms": measured, "accuracy": card.get("accuracy"),
                      "mflops": space.flops(arch) / 1e6, **_space_args(space)})
        message(f"phi {phi:g}: resolution {space.resolution}, width {space.width:.3f}, depth {space.depth:.3f}: "
                f"predicted {predicted:.3f} ms, measured {measured:.3f} ms (target {target} ms)")
        if measured is None or measured <= target or phi - p["phi_step"] < -1e-9:
            break
        phi = round(phi - p["phi_step"], 6)
    return {"phi": tries[-1]["phi"], "meets_target_measured": tries[-1]["measured_ms"] is not None
            and tries[-1]["measured_ms"] <= target, "tries": tries}
