"""The ENAS job (macro search on the ``proxyless`` chain, micro search on the ``cell`` space): controller
and shared weights trained in a run directory (resumable per epoch), the best sampled path within the
target exported and measured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import Progress, check_count, check_positive, get_device, no_progress, strategy_config
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["enas_search"]


def enas_search(device: str | Device, out: str | Path, *, target_ms: float, space: str = "proxyless",
                space_args: dict[str, Any] | None = None,
                predictor: Any = None, supernet_epochs: int = 10, strategy_params: dict[str, Any] | None = None,
                epochs: int = 2, export: bool = True, dataset: str = "digits", resolution: int = 16, seed: int = 0,
                train_device: str = "cpu", allow_fingerprint_mismatch: bool = False, progress: Progress = no_progress,
                message: Callable[[str], None] = print) -> dict[str, Any]:
    """ENAS (:mod:`hwnas.search.enas`) on ``space`` (``proxyless``: macro search; ``cell``: micro
    search) restricted to ``device``: shared weights trained on ``dataset`` (the proxyless chain at
    ``resolution``, cells at the cell space's own) and the controller on the MNAS reward with the
    device's predicted latency at the space's own resolution, ``supernet_epochs`` epochs
    checkpointed in ``<out>/enas.pt`` (a rerun continues; other settings are refused). The best
    path within ``target_ms`` goes to ``<out>/arch.json``; with ``export`` it is trained ``epochs``,
    exported and measured. Returns ``<out>/enas.json``'s content."""
    from hwnas.jobs._ofa import _at_resolution
    from hwnas.search import create_space, dataset_classes
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.enas import EnasConfig, EnasSearch

    dev = get_device(device)
    check_count("supernet_epochs", supernet_epochs)
    check_count("epochs", epochs)
    check_positive("target_ms", target_ms)
    if space not in ("proxyless", "cell"):
        raise HwnasError(f"enas searches the proxyless chain (macro) or the cell space (micro), not {space!r}")
    space_args = dict(space_args or {})
    if space == "proxyless":
        space_args["classes"] = dataset_classes(dataset)
    sp = create_space(space, **space_args).restrict(dev.constraints)
    train_space = sp if space == "cell" else _at_resolution(sp, resolution)
    resolution = train_space.resolution
    cfg = strategy_config("enas", EnasConfig, strategy_params, {"epochs": supernet_epochs, "seed": seed})
    pred = predictor if isinstance(predictor, LatencyPredictor) else load_predictor(
        dev, path=predictor, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    search = EnasSearch(train_space, load_dataset(dataset, resolution, seed), cfg,
                        lambda a: pred.predict_architecture(sp.op_configs(a)), target_ms, train_device)
    search.run(out / "enas.pt", lambda e, loss, reward: progress("enas (shared weights, controller)", e,
                                                                 supernet_epochs, f"CE {loss:.3f}, reward {reward:.3f}"))
    arch, acc = search.best()
    spec = {"space": space, "arch": sp.to_string(arch), "space_args": space_args, "budget_ms": target_ms,
            "dataset": dataset, "resolution": resolution}
    (out / "arch.json").write_text(json.dumps(spec, indent=1))
    result: dict[str, Any] = {"device": dev.name, "arch": spec["arch"], "target_ms": target_ms,
                              "predicted_ms": search.latency(arch), "shared_weights_acc": acc,
                              "epochs": search.epoch, "train_s": round(search.train_s, 1),
                              "history": [{"ce": a, "reward": b} for a, b in search.history],
                              "config": cfg.__dict__, "arch_path": str(out / "arch.json")}
    message(f"best path: {spec['arch']} (shared-weights accuracy {acc:.3f}, predicted {result['predicted_ms']:.3f} ms "
            f"<= {target_ms} ms)")
    if export:
        from hwnas.jobs._export import export as export_arch

        card = export_arch(out / "arch.json", dev, out / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, message=message)
        result.update(onnx_path=str(out / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                      accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    (out / "enas.json").write_text(json.dumps(result, indent=1))
    return result
