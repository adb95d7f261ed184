"""The PNAS job: cells grown block by block on the ``cell`` space (every trained cell kept in
``<out>/pnas.json``, so a killed run resumes), the best full-size cell exported and measured."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.jobs._common import Progress, check_count, check_positive, get_device, no_progress, strategy_config
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["pnas_search"]


def pnas_search(device: str | Device, out: str | Path, *, target_ms: float, space_args: dict[str, Any] | None = None,
                predictor: Any = None, strategy_params: dict[str, Any] | None = None, epochs: int = 2,
                export: bool = True, dataset: str = "digits", seed: int = 0, train_device: str = "cpu",
                allow_fingerprint_mismatch: bool = False, progress: Progress = no_progress,
                message: Callable[[str], None] = print) -> dict[str, Any]:
    """PNAS (:mod:`hwnas.search.pnas`) up to the ``cell`` space's ``blocks`` (space_args; default
    4), each candidate trained ``epochs`` on ``dataset`` at the space's resolution, only cells the
    device's predictor puts within ``target_ms``. The best full-size network goes to
    ``<out>/arch.json``; with ``export`` it is trained ``epochs`` again, exported and measured.
    Returns ``<out>/result.json``'s content (per step: expansions ranked, the surrogate's
    predictions and the trained accuracies of the beam)."""
    from hwnas.search import create_space
    from hwnas.search._evaluators import ProxyTrainingEvaluator
    from hwnas.search.pnas import Pnas, PnasConfig
    from hwnas.search.spaces import CELL_OPS

    dev = get_device(device)
    check_count("epochs", epochs)
    check_positive("target_ms", target_ms)
    space_args = dict(space_args or {})
    full = create_space("cell", **space_args).restrict(dev.constraints)
    cfg = strategy_config("pnas", PnasConfig, strategy_params, {"seed": seed})
    pred = predictor if isinstance(predictor, LatencyPredictor) else load_predictor(
        dev, path=predictor, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ops = tuple(CELL_OPS[i] for i in full.allowed[1])  # every op decision allows the same ops
    others = {k: v for k, v in space_args.items() if k != "blocks"}
    start = time.perf_counter()

    def evaluate(space: Any, arch: Any) -> float:
        return ProxyTrainingEvaluator(space, dataset, epochs, resolution=space.resolution, seed=seed,
                                      device=train_device)(arch)

    def latency(space: Any, archs: list) -> Any:
        with warnings.catch_warnings():  # fallback estimates (ops the predictor never saw) are said once, below
            warnings.simplefilter("ignore")
            return pred.predict_architectures([space.op_configs(a) for a in archs])

    pnas = Pnas(others, full.blocks, ops, cfg, evaluate, latency, target_ms, out / "pnas.json")
    arch, acc = pnas.run(lambda b, k, n: progress(f"pnas: cells of {b} block(s)", k, n))
    spec = {"space": "cell", "arch": full.to_string(arch), "space_args": space_args, "budget_ms": target_ms,
            "dataset": dataset, "resolution": full.resolution}
    (out / "arch.json").write_text(json.dumps(spec, indent=1))
    result: dict[str, Any] = {"device": dev.name, "arch": spec["arch"], "target_ms": target_ms, "proxy_accuracy": acc,
                              "predicted_ms": float(latency(full, [arch])[0]),
                              "trained_cells": len(pnas.trained), "steps": pnas.steps,
                              "search_s": round(time.perf_counter() - start, 1), "arch_path": str(out / "arch.json")}
    message(f"best cell: {spec['arch']} (proxy accuracy {acc:.3f}, predicted {result['predicted_ms']:.3f} ms "
            f"<= {target_ms} ms; {len(pnas.trained)} cells trained)")
    if export:
        from hwnas.jobs._export import export as export_arch

        card = export_arch(out / "arch.json", dev, out / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, message=message)
        result.update(onnx_path=str(out / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                      accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result
