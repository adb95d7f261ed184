"""Device fingerprints: what hardware and software a measurement was taken on."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from hwnas.devices._device import Device

__all__ = ["Fingerprint", "make_fingerprint", "host_cpu_model", "resolve_threads"]


@dataclass(frozen=True)
class Fingerprint:
    """Identity of the hardware + runtime a measurement comes from.

    Two measurements are comparable only when their fingerprints' ``id`` is equal.
    """

    device_name: str
    cpu_model: str
    cpu_cores_logical: int
    cpu_cores_physical: int
    machine: str
    os: str
    gpu_name: str | None
    gpu_driver: str | None
    runtime: str
    runtime_version: str
    provider: str | None
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization_level: str
    tvm_target: str | None
    precision: str
    batch_size: int

    @property
    def id(self) -> str:
        """A short stable hash of every field except the device's name."""
        data = asdict(self)
        data.pop("device_name")
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        data = {k: v for k, v in data.items() if k != "id"}
        return cls(**data)

    def diff(self, other: Fingerprint) -> dict[str, tuple[Any, Any]]:
        """Fields that differ (name excluded): ``{field: (self, other)}``."""
        a, b = asdict(self), asdict(other)
        return {k: (a[k], b[k]) for k in a if k != "device_name" and a[k] != b[k]}


def host_cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


def resolve_threads(n: int) -> int:
    """``0`` means all cores available to this process."""
    if n > 0:
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _nvidia_smi() -> tuple[str | None, str | None]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if out.returncode != 0 or not out.stdout.strip():
        return None, None
    name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
    return name.strip(), driver.strip() or None


def make_fingerprint(device: Device, runtime_version: str, tvm_target: str | None = None) -> Fingerprint:
    """Fingerprint of ``device`` on this machine, given what its runtime reports: its installed
    ``runtime_version`` and, for TVM, the resolved target (:func:`hwnas.profilers.fingerprint`
    looks both up)."""
    gpu_name = gpu_driver = None
    if device.options.device_type == "cuda":
        gpu_name, gpu_driver = _nvidia_smi()
    opts = device.options
    return Fingerprint(
        device_name=device.name,
        cpu_model=host_cpu_model(),
        cpu_cores_logical=os.cpu_count() or 1,
        cpu_cores_physical=_physical_cores(),
        machine=platform.machine(),
        os=platform.system(),
        gpu_name=gpu_name,
        gpu_driver=gpu_driver,
        runtime=device.runtime,
        runtime_version=runtime_version,
        provider=opts.provider,
        intra_op_threads=resolve_threads(opts.intra_op_threads),
        inter_op_threads=resolve_threads(opts.inter_op_threads),
        graph_optimization_level=opts.graph_optimization_level,
        tvm_target=tvm_target if device.runtime == "tvm" else None,
        precision=opts.precision,
        batch_size=opts.batch_size,
    )
