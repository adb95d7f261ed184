"""The hypernetwork job (SMASH-style, ``proxyless`` chain): the generator trained in a run directory
(resumable per epoch), candidates within the target ranked by their accuracy with generated weights,
the best few trained stand-alone (journaled), the best of those exported and measured."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.devices import Device
from hwnas.errors import ArgumentError, HwnasError
from hwnas.jobs._common import Progress, check_count, check_positive, get_device, no_progress, strategy_config
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["hypernetwork_search", "HYPER_PARAMS"]

#: parameters of the search itself (the rest of ``strategy_params`` go to :class:`HyperConfig`)
HYPER_PARAMS = {"candidates": 100, "top_k": 3}


def hypernetwork_search(device: str | Device, out: str | Path, *, target_ms: float,
                        space_args: dict[str, Any] | None = None, predictor: Any = None, supernet_epochs: int = 15,
                        strategy_params: dict[str, Any] | None = None, epochs: int = 2, export: bool = True,
                        dataset: str = "digits", resolution: int = 16, seed: int = 0, train_device: str = "cpu",
                        allow_fingerprint_mismatch: bool = False, progress: Progress = no_progress,
                        message: Callable[[str], None] = print) -> dict[str, Any]:
    """A SMASH-style search (:mod:`hwnas.search.hypernet`) on the ``proxyless`` space restricted to
    ``device``: the hypernetwork trained ``supernet_epochs`` at ``resolution`` (``<out>/hypernet.pt``,
    per epoch); ``candidates`` distinct random architectures predicted within ``target_ms`` scored
    with generated weights; the ``top_k`` best trained ``epochs`` stand-alone (``<out>/trained.json``,
    kept as they come); the best of them to ``<out>/arch.json`` and, with ``export``, exported and
    measured. Returns ``<out>/hypernet.json``'s content."""
    from hwnas.jobs._ofa import _at_resolution
    from hwnas.search import create_space, dataset_classes
    from hwnas.search._evaluators import ProxyTrainingEvaluator, load_dataset
    from hwnas.search.hypernet import HyperConfig, HyperTrainer

    dev = get_device(device)
    check_count("supernet_epochs", supernet_epochs)
    check_count("epochs", epochs)
    check_positive("target_ms", target_ms)
    params = dict(strategy_params or {})
    search_params = {k: params.pop(k, v) for k, v in HYPER_PARAMS.items()}
    for k, v in search_params.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArgumentError(f"hypernetwork parameter {k}", "takes an integer >= 1", v)
    cfg = strategy_config("hypernetwork", HyperConfig, params, {"epochs": supernet_epochs, "seed": seed},
                          also=tuple(HYPER_PARAMS))
    space_args = {**(space_args or {}), "classes": dataset_classes(dataset)}
    space = create_space("proxyless", **space_args).restrict(dev.constraints)
    pred = predictor if isinstance(predictor, LatencyPredictor) else load_predictor(
        dev, path=predictor, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cands = _candidates(space, pred, target_ms, search_params["candidates"], seed)  # before training: fail fast
    train_space = _at_resolution(space, resolution)
    trainer = HyperTrainer(train_space, load_dataset(dataset, resolution, seed), cfg, train_device)
    trainer.train(out / "hypernet.pt", lambda e, loss: progress("hypernetwork", e, supernet_epochs, f"CE {loss:.3f}"))
    start = time.perf_counter()
    scored = []
    for i, (a, ms) in enumerate(cands):
        scored.append((trainer.accuracy(a), a, ms))
        progress("scoring with generated weights", i + 1, len(cands))
    scored.sort(key=lambda t: -t[0])
    ev = ProxyTrainingEvaluator(space, dataset, epochs, resolution, seed=seed, device=train_device)
    top = _train_top(scored[: search_params["top_k"]], space, ev, out / "trained.json", progress)
    best = max(top, key=lambda r: r["accuracy"])
    spec = {"space": "proxyless", "arch": best["arch"], "space_args": space_args, "budget_ms": target_ms,
            "dataset": dataset, "resolution": resolution}
    (out / "arch.json").write_text(json.dumps(spec, indent=1))
    result: dict[str, Any] = {"device": dev.name, "arch": best["arch"], "target_ms": target_ms,
                              "predicted_ms": best["predicted_ms"], "proxy_accuracy": best["accuracy"],
                              "generated_acc": best["generated_acc"], "trained": top, "candidates": len(cands),
                              "hypernet_epochs": trainer.epoch, "hypernet_train_s": round(trainer.train_s, 1),
                              "search_s": round(time.perf_counter() - start, 1), "config": asdict(cfg),
                              "arch_path": str(out / "arch.json")}
    message(f"best: {best['arch']} (generated-weights accuracy {best['generated_acc']:.3f}, trained "
            f"{best['accuracy']:.3f}, predicted {best['predicted_ms']:.3f} ms <= {target_ms} ms)")
    if export:
        from hwnas.jobs._export import export as export_arch

        card = export_arch(out / "arch.json", dev, out / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, message=message)
        result.update(onnx_path=str(out / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                      accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    (out / "hypernet.json").write_text(json.dumps(result, indent=1))
    return result


def _candidates(space: Any, pred: LatencyPredictor, target_ms: float, n: int, seed: int) -> list[tuple[Any, float]]:
    """``n`` distinct random architectures predicted within the target, with their predicted ms
    (fewer when 50 * n draws find fewer; none: an error)."""
    rng = np.random.default_rng(seed)
    draws = list(dict.fromkeys(space.sample(rng) for _ in range(50 * n)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms = pred.predict_architectures([space.op_configs(a) for a in draws])
    feasible = [(a, float(t)) for a, t in zip(draws, ms) if t <= target_ms][:n]
    if not feasible:
        raise HwnasError(f"hypernetwork: none of {len(draws)} random architectures is predicted within "
                         f"{target_ms} ms; raise the target")
    return feasible


def _train_top(scored: list, space: Any, ev: Any, path: Path, progress: Progress) -> list[dict[str, Any]]:
    done = json.loads(path.read_text()) if path.exists() else {}
    rows = []
    for i, (gen_acc, a, ms) in enumerate(scored):
        key = space.to_string(a)
        if key not in done:
            done[key] = {"arch": key, "generated_acc": gen_acc, "predicted_ms": ms, "accuracy": float(ev(a))}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            tmp.replace(path)
        rows.append(done[key])
        progress("training the best stand-alone", i + 1, len(scored))
    return rows
