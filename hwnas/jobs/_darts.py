"""The DARTS job: a search network on the ``cell`` space trained in a run directory (resumable per
epoch), the derived cell pair written as an architecture file, trained, exported and measured."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import Progress, check_count, check_positive, get_device, no_progress, strategy_config
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["darts_search"]


def darts_search(device: str | Device, out: str | Path, *, target_ms: float | None, space: str = "cell",
                 space_args: dict[str, Any] | None = None, predictor: Any = None, supernet_epochs: int = 10,
                 strategy_params: dict[str, Any] | None = None, latency_loss: str = "additive",
                 latency_lambda: float = 0.1, latency_beta: float = 0.6, epochs: int = 2, export: bool = True,
                 dataset: str = "digits", resolution: int = 16, seed: int = 0, train_device: str = "cpu",
                 allow_fingerprint_mismatch: bool = False, progress: Progress = no_progress,
                 message: Callable[[str], None] = print) -> dict[str, Any]:
    """DARTS (:mod:`hwnas.search.darts`) on the ``cell`` space restricted to ``device``: the search
    network is trained ``supernet_epochs`` with the latency term towards ``target_ms`` (None: none)
    and checkpointed every epoch in ``<out>/supernet.pt`` (a rerun continues it; one trained with
    other settings is refused); ``<out>/epochs.csv`` has each epoch's derived cells and latencies.
    The derived architecture goes to ``<out>/arch.json``; with ``export`` it is trained ``epochs``
    from scratch, exported and measured (``model.onnx`` and its card). Returns ``darts.json``'s content.

    With ``space="proxyless"``, first-order DARTS on the chain: the proxyless supernet with every
    layer's allowed ops weighted by ``softmax(alpha)`` in both steps (``relaxation="softmax"`` of
    :func:`~hwnas.jobs.proxyless_search`, whose run directory and ``best.json`` content it returns),
    trained at ``resolution``, no warm-up."""
    if space == "proxyless":
        return _darts_on_the_chain(device, out, target_ms, space_args, predictor, supernet_epochs, strategy_params,
                                   latency_loss, latency_lambda, latency_beta, epochs, export, dataset, resolution,
                                   seed, train_device, allow_fingerprint_mismatch, progress, message)
    if space != "cell":
        raise HwnasError(f"darts searches the cell space or the proxyless chain, not {space!r}")
    from hwnas.search import create_space
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.darts import DartsConfig, DartsSearch

    dev = get_device(device)
    check_count("supernet_epochs", supernet_epochs)
    check_count("epochs", epochs)
    check_positive("target_ms", target_ms, allow_none=True)
    space_args = dict(space_args or {})
    space = create_space("cell", **space_args).restrict(dev.constraints)
    cfg = strategy_config("darts", DartsConfig, strategy_params,
                          {"target_ms": target_ms, "latency_loss": latency_loss, "lam": latency_lambda,
                           "beta": latency_beta, "epochs": supernet_epochs, "seed": seed})
    pred = predictor if isinstance(predictor, LatencyPredictor) else load_predictor(
        dev, path=predictor, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    search = DartsSearch(space, pred, cfg, load_dataset(dataset, space.resolution, seed), train_device)
    arch = search.run(out / "supernet.pt", lambda r: (_append_epoch(out / "epochs.csv", r), progress(
        "darts search network", r.epoch + 1, supernet_epochs, f"E[LAT] {r.expected_latency_ms:.3f} ms")))
    predicted = search.predicted(arch)
    spec = {"space": "cell", "arch": space.to_string(arch), "space_args": space_args, "budget_ms": target_ms,
            "dataset": dataset, "resolution": space.resolution}
    (out / "arch.json").write_text(json.dumps(spec, indent=1))
    result: dict[str, Any] = {"device": dev.name, "arch": spec["arch"], "target_ms": target_ms,
                              "predicted_ms": predicted, "meets_target": target_ms is None or predicted <= target_ms,
                              "supernet_epochs": search.epoch, "search_s": round(time.perf_counter() - start, 1),
                              "config": cfg.__dict__, "arch_path": str(out / "arch.json")}
    message(f"derived: {spec['arch']} (predicted {predicted:.3f} ms"
            + (f", target {target_ms} ms)" if target_ms is not None else ")"))
    if export:
        from hwnas.jobs._export import export as export_arch

        card = export_arch(out / "arch.json", dev, out / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, message=message)
        result.update(onnx_path=str(out / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                      accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    (out / "darts.json").write_text(json.dumps(result, indent=1))
    return result


def _append_epoch(path: Path, rec: Any) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["epoch", "train_loss", "arch_ce", "expected_latency_ms", "derived_latency_ms", "derived_arch"])
        w.writerow([rec.epoch, f"{rec.train_loss:.4f}", f"{rec.arch_ce:.4f}", f"{rec.expected_latency_ms:.4f}",
                    f"{rec.derived_latency_ms:.4f}", rec.derived_arch])


def _darts_on_the_chain(device: Any, out: Any, target_ms: float | None, space_args: Any, predictor: Any,
                        supernet_epochs: int, strategy_params: Any, latency_loss: str, latency_lambda: float,
                        latency_beta: float, epochs: int, export: bool, dataset: str, resolution: int, seed: int,
                        train_device: str,
                        allow_mismatch: bool, progress: Progress, message: Callable[[str], None]) -> dict[str, Any]:
    from hwnas.jobs._search import proxyless_search

    params = dict(strategy_params or {})
    if params.pop("order", 1) != 1:
        raise HwnasError("second-order DARTS runs on the cell space; on the proxyless chain DARTS is first order "
                         "(drop order=2 or use --space cell)")
    if params.setdefault("relaxation", "softmax") != "softmax":
        raise HwnasError(f"darts relaxes with a softmax; relaxation={params['relaxation']!r} is proxyless's "
                         "(use --strategy proxyless)")
    from hwnas.search._rundir import RunDir

    result = proxyless_search("proxyless", device, predictor, out, target_ms=math.inf if target_ms is None else target_ms,
                              space_args=space_args, supernet_epochs=supernet_epochs, warmup_epochs=0,
                              latency_loss=latency_loss, latency_lambda=latency_lambda, latency_beta=latency_beta,
                              strategy_params=params, epochs=epochs, dataset=dataset, resolution=resolution, seed=seed,
                              resume=RunDir(out).has_journal(), train_device=train_device,
                              allow_fingerprint_mismatch=allow_mismatch, progress=progress, message=message)
    if export:
        from hwnas.jobs._export import export as export_arch

        out = Path(out)
        spec = {"space": "proxyless", "arch": result["best"]["arch"], "space_args": result["settings"]["space_args"],
                "budget_ms": target_ms, "dataset": dataset, "resolution": resolution}
        (out / "arch.json").write_text(json.dumps(spec, indent=1))
        card = export_arch(out / "arch.json", device, out / "model.onnx", epochs=epochs,
                           predictor=result["settings"]["predictor"] or None, seed=seed, train_device=train_device,
                           allow_fingerprint_mismatch=allow_mismatch, overwrite=True, message=message)
        result.update(onnx_path=str(out / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                      accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    return result
