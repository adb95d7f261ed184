"""Whole models measured end to end, in passes, reusing a store's earlier measurements."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import onnx

from hwnas.errors import HwnasError
from hwnas.profilers._onnx import graph_sha256
from hwnas.profilers._profiler import Profiler
from hwnas.profilers._records import MeasuredModel

__all__ = ["measure_models"]


def measure_models(profiler: Profiler, models: Sequence[tuple[str, onnx.ModelProto]],
                   on_done: Callable[[str, float], None] | None = None, passes: int = 1,
                   force: bool = False) -> list[MeasuredModel]:
    """End-to-end latency of each model.

    ``passes`` > 1 measures every model once per pass, a pass over all models before the next, and
    keeps each model's fastest: on a shared machine contention slows a whole model down in phases of
    minutes that a single measurement cannot tell from the model's own speed (BENCHMARKS.md,
    "Measurement repeatability"). Contention only slows
    a run down, so the fastest pass is the model's uncontended latency, what the op measurements see.
    Every pass is stored. ``on_done(name, ms)`` is called after each measurement (each pass) and once
    for each reused model.

    With a store, a model measured before on this fingerprint is not measured again (unless
    ``force``): its fastest stored measurement of the same file (hash of its bytes) or of the same
    network with other weights' values (``graph_sha256``: latency does not depend on them, so a
    re-export after more training or a builder refactor is not measured again) is used."""
    if passes < 1:
        raise HwnasError(f"passes must be >= 1; got {passes}")
    stored: dict[str, float] = {}
    if profiler.store is not None and not force:
        df = profiler.store.model_measurements(profiler.fingerprint.id)
        stored = df.groupby("model_sha256")["latency_ms"].min().to_dict() if not df.empty else {}
        if "model_graph_sha256" in df and not df.empty:
            g = df.dropna(subset=["model_graph_sha256"]).groupby("model_graph_sha256")["latency_ms"].min()
            stored.update({f"graph:{h}": float(ms) for h, ms in g.items()})

    def known(m: onnx.ModelProto) -> float | None:
        ms = stored.get(hashlib.sha256(m.SerializeToString()).hexdigest())
        return ms if ms is not None else stored.get(f"graph:{graph_sha256(m)}")

    reused = [None] * len(models) if force else [known(m) for _, m in models]  # hashed once per model
    todo = [item for item, ms in zip(models, reused) if ms is None]
    fresh: dict[str, float] = {}
    this: dict[str, float] = {}  # the current pass

    def one(item: tuple[str, onnx.ModelProto]) -> float:
        ms = profiler.profile_model(item[1], name=item[0], breakdown_runs=0).latency_ms
        first = item[0] not in this
        # a drifted chunk measured again: the faster of its values, as a later run reusing the store
        # takes the fastest stored one (each value is stored), so that both see the same latency
        this[item[0]] = min(this.get(item[0], ms), ms)
        if on_done and first:
            on_done(item[0], float(ms))
        return ms

    for _ in range(passes if todo else 0):
        this.clear()
        if profiler.guard is not None:  # chunks between readings of the speed reference
            profiler.guard.run(todo, one, "whole models", every=profiler.guard.policy.every_model)
        else:
            for item in todo:
                one(item)
        for name, ms in this.items():
            fresh[name] = min(fresh.get(name, ms), ms)
    out = []
    for (name, m), prior in zip(models, reused):
        ms = fresh.get(name)
        if ms is None:
            ms = prior
            if on_done:
                on_done(name, float(ms))
        out.append(MeasuredModel(name, m, float(ms)))
    return out
