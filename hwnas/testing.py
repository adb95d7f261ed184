"""Shared check suites for plug-ins; parametrise your tests over the registries with them.

>>> from hwnas.devices import builtin_devices
>>> for d in builtin_devices():
...     check_device(d)
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from hwnas.devices._device import Device
from hwnas.profilers._backends import Backend
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._timing import TimingPolicy, measure

__all__ = ["check_device", "check_backend", "FAST_POLICY"]

#: A timing policy for tests: a few runs, a few milliseconds per op. Never for reported numbers.
FAST_POLICY = TimingPolicy(warmup_runs=2, warmup_s=0.0, min_runs=5, min_time_s=0.002, max_time_s=0.05, batch=5, rounds=2)


def check_device(device: Device) -> None:
    """Every device spec: frozen, hashable, JSON round trip, a known runtime."""
    assert hash(device) == hash(Device.from_dict(device.to_dict()))
    assert Device.from_dict(json.loads(device.to_json())) == device
    try:
        device.name = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Device must be frozen")
    from hwnas.profilers._backends import backend_names

    assert device.runtime in backend_names()


def check_backend(backend: Backend, device: Device, config: OpConfig | None = None) -> None:
    """Every runtime backend: ``check()`` is a list of strings; when it is empty the backend
    reports a version, prepares an op, and times it with positive, finite samples."""
    problems = backend.check(device)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if problems:
        return
    assert backend.version()
    cfg = config or OpConfig.parse("conv_i4_o8_r8_k3_s1_g1_arelu")
    prepared = backend.prepare_op(cfg, device)
    try:
        samples = prepared.sample(3)
        assert len(samples) == 3 and all(np.isfinite(s) and s > 0 for s in samples)
        stats, raw = measure(prepared.sample, FAST_POLICY)
        assert stats.n_runs == len(raw) >= FAST_POLICY.min_runs
        assert stats.min_ms <= stats.p10_ms <= stats.latency_ms <= stats.p90_ms <= stats.max_ms
    finally:
        prepared.close()
