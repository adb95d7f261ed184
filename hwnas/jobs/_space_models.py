"""Whole models of a search space, spread over its latency or FLOPs range: what calibrates a
predictor on the space and checks it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["spread_archs", "space_models", "space_calibration_models"]


def spread_archs(space: Any, raw_ms: Callable[[list[Any]], np.ndarray], n: int, seed: int,
                  pool: int = 2000) -> list[Any]:
    """``n`` distinct architectures spread evenly over the space's range of predicted latency.

    Uniform samples of a space cluster around its middle (in ``proxyless`` about 3 of 21 layers are
    skipped), while a tight budget makes the search pick architectures from the fast tail (many
    skipped layers): calibrating on uniform samples extrapolates there. The pool mixes uniform samples
    with samples whose probability of skipping a layer is drawn from U(0, 0.9), and the architectures
    are taken at evenly spaced quantiles of their raw (uncalibrated) predicted latency, the extremes
    included; the held-out models come from the quantiles in between.
    """
    rng = np.random.default_rng(seed)
    archs: list[Any] = []
    for i in range(pool):
        if i % 2 == 0:
            archs.append(space.sample(rng))
            continue
        p_zero = rng.uniform(0.0, 0.9)
        choices = []
        for d, allowed in zip(space.decisions, space.allowed):
            zero = [j for j in allowed if d.options[j] == "zero"]
            rest = [j for j in allowed if d.options[j] != "zero"] or zero
            choices.append(zero[0] if zero and rng.random() < p_zero else rest[int(rng.integers(len(rest)))])
        archs.append(space.make(choices))
    archs = list(dict.fromkeys(archs))
    ms = raw_ms(archs)
    order = np.argsort(ms, kind="stable")
    out: list[Any] = []
    for q in np.linspace(0, len(order) - 1, n):
        i = int(round(q))
        while archs[order[i]] in out:  # the nearest not yet taken
            i = i + 1 if i + 1 < len(order) else 0
        out.append(archs[order[i]])
    return out


def space_models(space: Any, archs: Sequence[Any]) -> list[tuple[str, Any, Any]]:
    """The architectures' ONNX graphs (weights drawn from seed ``i`` for the ``i``-th), named
    ``<space>-<i>``: ``(name, arch, model)``."""
    return [(f"{space.name}-{i}", arch, space.to_onnx(arch, seed=i, name=f"arch{i}")) for i, arch in enumerate(archs)]


def space_calibration_models(space: Any, n: int) -> list[tuple[str, Any]]:
    """``n`` ONNX models of a search space (already restricted to the device), spread evenly over
    its FLOPs range, the smallest and largest included (uniform samples cluster in the middle)."""
    archs = spread_archs(space, lambda archs: np.array([space.flops(a) for a in archs], float), n, seed=0)
    return [(name, model) for name, _, model in space_models(space, archs)]
