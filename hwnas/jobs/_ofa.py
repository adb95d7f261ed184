"""The once-for-all job: one supernet trained (or reused) in a run directory, then a subnetwork
searched for each device within its target, each written as an architecture file and exported."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import Progress, check_count, get_device, no_progress, strategy_config
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor

__all__ = ["once_for_all_search"]


def once_for_all_search(devices: list[str | Device], out: str | Path, *, target_ms: list[float],
                        space_args: dict[str, Any] | None = None, predictors: list[Any] | None = None,
                        supernet_epochs: int = 20, strategy_params: dict[str, Any] | None = None,
                        epochs: int = 2, export: bool = True, dataset: str = "digits", resolution: int = 16,
                        seed: int = 0, train_device: str = "cpu", allow_fingerprint_mismatch: bool = False,
                        progress: Progress = no_progress, message: Callable[[str], None] = print) -> dict[str, Any]:
    """Once-for-all on the ``proxyless`` space for ``devices`` (targets ``target_ms``, one per device
    or one for all): the supernet ``<out>/supernet.pt`` is trained ``supernet_epochs`` (continued
    where a killed run stopped; reused as it is once trained), each device's subnetwork is searched
    on the supernet's accuracy within its target and written to ``<out>/<device>/arch.json``; with
    ``export`` it keeps the supernet's weights (:func:`~hwnas.search.proxyless.subnet_state`; batch
    norm re-estimated), fine-tuned ``epochs`` (0: none), and is exported and measured there
    (``model.onnx`` and its card): no device's network is trained from scratch. Returns
    ``<out>/ofa.json``'s content: the supernet's training time and each device's result with its
    time (``device_s``: search, export, measurement)."""
    from hwnas.search import create_space, dataset_classes
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.ofa import OFAConfig, OnceForAll

    devs = [get_device(d) for d in devices]
    if not devs or len({d.name for d in devs}) != len(devs):
        raise HwnasError("once-for-all takes one or more different devices (--device A --device B ...)")
    targets = list(target_ms) * len(devs) if len(target_ms) == 1 else list(target_ms)
    if len(targets) != len(devs):
        raise HwnasError(f"give one --target-ms for all devices or one per device ({len(devs)}), not {len(target_ms)}")
    check_count("supernet_epochs", supernet_epochs)
    check_count("epochs", epochs, 0)
    cfg = strategy_config("once-for-all", OFAConfig, strategy_params, {"epochs": supernet_epochs, "seed": seed})
    space_args = {**(space_args or {}), "classes": dataset_classes(dataset)}
    space = create_space("proxyless", **space_args)
    spaces = [space.restrict(d.constraints) for d in devs]
    preds = [_predictor(p, d, space_args, allow_fingerprint_mismatch)
             for p, d in zip(predictors or [None] * len(devs), devs)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    supernet_space = _union(space, spaces)
    train_space = _at_resolution(supernet_space, resolution)
    ofa = OnceForAll(train_space, load_dataset(dataset, resolution, seed), cfg, train_device)
    ofa.train(out / "supernet.pt", lambda e, loss: progress("once-for-all supernet", e, supernet_epochs,
                                                            f"CE {loss:.3f}"))
    message(f"supernet: {ofa.epoch} epochs, {ofa.train_s:.0f} s of training")
    scorer, table_s = None, 0.0
    if cfg.accuracy_samples:
        start = time.perf_counter()
        table = ofa.accuracy_table(out / "accuracy_table.json", lambda i, n: progress("once-for-all accuracy table", i, n))
        scorer = ofa.accuracy_predictor(table)
        table_s = time.perf_counter() - start
        message(f"accuracy predictor: fitted to {len(table)} subnetworks' supernet accuracies in {table_s:.0f} s")
    results = []
    for dev, sp, pred, t in zip(devs, spaces, preds, targets):
        results.append(_one_device(ofa, dev, sp, pred, t, out, space_args, epochs, export, dataset, resolution, seed,
                                   train_device, scorer, progress, message))
    summary = {"space": "proxyless", "space_args": space_args, "supernet": {
        "epochs": ofa.epoch, "train_s": round(ofa.train_s, 1), "path": str(out / "supernet.pt"),
        "config": cfg.__dict__, "accuracy_table_s": round(table_s, 1)}, "devices": results}
    (out / "ofa.json").write_text(json.dumps(summary, indent=1))
    return summary


def _predictor(p: Any, dev: Device, space_args: dict, allow_mismatch: bool) -> LatencyPredictor:
    if isinstance(p, LatencyPredictor):
        return p
    return load_predictor(dev, space="proxyless", space_args=space_args, path=p, allow_fingerprint_mismatch=allow_mismatch)


def _union(space: Any, spaces: list[Any]) -> Any:
    """``space`` allowing what any of ``spaces`` allows: the supernet covers every device."""
    import copy

    new = copy.copy(space)
    new.allowed = tuple(tuple(sorted(set().union(*(s.allowed[i] for s in spaces)))) for i in range(len(space.decisions)))
    return new


def _at_resolution(space: Any, resolution: int) -> Any:
    from hwnas.search.spaces import ProxylessSpace

    return ProxylessSpace(resolution, space.width, space.classes, space.act.value, space.allowed, depth=space.depth)


#: searches per device at most: a network measured over its target is searched again with the target
#: scaled by predicted / measured (the predictor's error where the network is), then exported again
_ATTEMPTS = 3


def _one_device(ofa: Any, dev: Device, sp: Any, pred: LatencyPredictor, target: float, out: Path, space_args: dict,
                epochs: int, export: bool, dataset: str, resolution: int, seed: int, train_device: str,
                scorer: Callable[[Any], float] | None, progress: Progress,
                message: Callable[[str], None]) -> dict[str, Any]:
    start = time.perf_counter()
    from hwnas.search.spaces import InfeasibleError

    limit, attempts, row = target, [], None
    for _ in range(_ATTEMPTS if export else 1):
        try:
            row = _search_and_export(ofa, dev, sp, pred, target, limit, out, space_args, epochs, export, dataset,
                                     resolution, seed, train_device, scorer, progress, message)
        except InfeasibleError:
            if row is None:
                raise
            message(f"{dev.name}: nothing is predicted within {limit:.4g} ms; keeping the network measured over")
            break
        attempts.append({k: row.get(k) for k in ("arch", "latency_ms", "measured_ms", "search_limit_ms")})
        if not export or row["meets_budget_measured"] or not row.get("measured_ms"):
            break
        limit = limit * row["latency_ms"] / row["measured_ms"]
        message(f"{dev.name}: measured {row['measured_ms']:.3f} ms over {target} ms; searching again within "
                f"{limit:.4g} ms predicted")
    row.update(attempts=attempts, device_s=round(time.perf_counter() - start, 1))
    return row


def _search_and_export(ofa: Any, dev: Device, sp: Any, pred: LatencyPredictor, target: float, limit: float, out: Path,
                       space_args: dict, epochs: int, export: bool, dataset: str, resolution: int, seed: int,
                       train_device: str, scorer: Callable[[Any], float] | None, progress: Progress,
                       message: Callable[[str], None]) -> dict[str, Any]:
    res = ofa.search(dev.name, sp, lambda a: pred.predict_architecture(sp.op_configs(a)), limit,
                     on_eval=lambda i, n: progress(f"once-for-all on {dev.name}", i, n), predicted_accuracy=scorer)
    d = out / dev.name
    d.mkdir(exist_ok=True)
    spec = {"space": "proxyless", "arch": res.arch, "space_args": space_args, "budget_ms": target,
            "dataset": dataset, "resolution": resolution}
    (d / "arch.json").write_text(json.dumps(spec, indent=1))
    row: dict[str, Any] = {**res.__dict__, "target_ms": target, "search_limit_ms": limit,
                           "meets_target": res.latency_ms <= target, "arch_path": str(d / "arch.json")}
    message(f"{dev.name}: {res.arch} (supernet acc {res.supernet_acc:.3f}, predicted {res.latency_ms:.3f} ms "
            f"<= {limit:.4g} ms) in {res.search_s:.0f} s")
    if export:
        from hwnas.jobs._export import export as export_arch
        from hwnas.search.proxyless import subnet_state

        weights = subnet_state(ofa.net, ofa.space.from_string(res.arch))
        card = export_arch(d / "arch.json", dev, d / "model.onnx", epochs=epochs, predictor=pred, seed=seed,
                           train_device=train_device, overwrite=True, weights=weights, message=message)
        row.update(onnx_path=str(d / "model.onnx"), measured_ms=card.get("measured_latency_ms"),
                   accuracy=card.get("accuracy"), meets_budget_measured=card.get("meets_budget"))
    return row
