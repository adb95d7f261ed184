"""Profiling jobs: op configurations into the store (resumable), a whole ONNX model end to end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import (Message, OpProgress, Progress, check_count, get_device, no_message, no_progress, open_store,
                                timing_policy)
from hwnas.jobs._predictors import repeat_check
from hwnas.profilers import DriftPolicy, OpConfig, Profiler, load_onnx, op_set, read_ops_file

__all__ = ["ProfileResult", "profile_ops", "profile_model", "model_summary", "parse_key_values"]


@dataclass
class ProfileResult:
    """What :func:`profile_ops` measured."""

    device: str
    fingerprint: str
    db: str
    run: Any  # a ProfileRun
    recheck: Any = None  # a RepeatCheck, or None when none was asked for or nothing was measured

    def summary(self) -> dict[str, Any]:
        run = self.run
        return {
            "device": self.device, "fingerprint": self.fingerprint, "db": self.db, "measured": len(run.measured),
            "skipped": len(run.skipped), "kernel_time_added": len(run.completed), "passes": run.passes,
            "unsupported": [{"config": str(m.config), "reason": m.reason} for m in run.unsupported],
            "recheck": self.recheck.to_dict() if self.recheck is not None else None,
            "elapsed_s": round(run.elapsed_s, 3), "ops_per_minute": round(run.ops_per_minute, 1),
            "ops": [{"config": str(m.config), "status": m.status, "latency_ms": m.latency_ms,
                     "ci95_rel": m.stats.rel_ci if m.stats else None, "n_runs": m.stats.n_runs if m.stats else 0,
                     "converged": m.stats.converged if m.stats else None} for m in run.measured],
        }


def _configs(ops_file: str | Path | None, op_set_name: str | None, stored: bool) -> list[OpConfig]:
    if sum(map(bool, (ops_file, op_set_name, stored))) > 1:
        raise HwnasError("give one of an ops file, an op set and the stored ops")
    if ops_file:
        return read_ops_file(ops_file)
    return [] if stored else op_set(op_set_name or "micro")


def profile_ops(device: str | Device, *, ops_file: str | Path | None = None, op_set_name: str | None = None,
                store: Any = None, force: bool = False, max_time_per_op: float | None = None,
                drift_check: bool = True, stored: bool = False, recheck: int = 0, passes: int = 1,
                progress: Progress = no_progress, message: Message = no_message) -> ProfileResult:
    """Measure op configurations (an ops file, a named op set, or with ``stored`` the device's
    stored ones) into the store; ops already stored are skipped (``force`` re-measures)."""
    check_count("passes", passes)
    check_count("recheck", recheck, 0)
    configs = _configs(ops_file, op_set_name, stored)
    dev = get_device(device)
    policy = timing_policy(max_time_per_op)
    with open_store(store) as st:
        profiler = Profiler(dev, policy, st, drift=DriftPolicy() if drift_check else None,
                            auto_pin=drift_check)
        if stored:
            configs = [OpConfig.parse(k) for k in sorted(st.done_keys(profiler.fingerprint.id))]
            if not configs:
                raise HwnasError(f"{st.path} has no op measurements of device {dev.name!r} "
                                 f"(fingerprint {profiler.fingerprint.id}) to complete or re-measure")
        bar = OpProgress(progress, f"profiling on {dev.name}", lambda skipped: message(
            f"resuming: {skipped} op configuration(s) already in {st.path} are skipped (force re-measures)"))
        run = profiler.profile_ops(configs, force=force, on_start=bar.start, on_done=bar.done, passes=passes)
        again = repeat_check(profiler, recheck, progress)
        if again is not None and again.warning():
            message(f"warning: {again.warning()}")
        return ProfileResult(dev.name, profiler.fingerprint.id, str(st.path), run, again)


def profile_model(model: str | Path, device: str | Device, *, store: Any = None, record: bool = True,
                  max_time_s: float | None = None) -> Any:
    """End-to-end latency of an ONNX model and its kernels (the runtime's own profiler): a
    :class:`~hwnas.profilers.ModelMeasurement`, stored unless ``record=False``."""
    onnx_model = load_onnx(model)
    dev = get_device(device)
    st = open_store(store) if record else None
    try:
        return Profiler(dev, timing_policy(max_time_s), st).profile_model(onnx_model, name=Path(model).name)
    finally:
        if st is not None:
            st.close()


def model_summary(m: Any, top: int) -> dict[str, Any]:
    """A model measurement with its ``top`` slowest kernels and their shares."""
    nodes = sorted(m.breakdown, key=lambda n: -n.duration_ms)
    total = sum(n.duration_ms for n in m.breakdown) or 1.0
    return {"model": m.model_name, "sha256": m.model_sha256, "device": m.device_name,
            "fingerprint": m.fingerprint_id, **m.stats.to_dict(), "kernels": len(m.breakdown),
            "kernel_sum_ms": sum(n.duration_ms for n in m.breakdown),
            "top_nodes": [{**n.to_dict(), "share": n.duration_ms / total} for n in nodes[:top]]}


def parse_key_values(items: list[str] | None, option: str) -> dict[str, Any]:
    """``NAME=VALUE`` strings to a dict; values become int, float or bool where they read as one.

    >>> parse_key_values(["width=0.5", "resolution=32", "se=true", "act=relu"], "--space-arg")
    {'width': 0.5, 'resolution': 32, 'se': True, 'act': 'relu'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HwnasError(f"{option} takes NAME=VALUE, got {item!r}")
        v: Any = value
        for conv in (int, float):
            try:
                v = conv(value)
                break
            except ValueError:
                pass
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        out[key.strip()] = v
    return out
