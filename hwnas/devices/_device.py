"""Device specification: a frozen, serialisable value."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from hwnas._optypes import OpType
from hwnas.errors import HwnasError

__all__ = ["Device", "RuntimeOptions", "DeviceConstraints", "RemoteSpec", "RUNTIMES", "parse_address"]

RUNTIMES = ("onnxruntime", "tvm", "torch")
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
PRECISIONS = ("fp32", "fp16", "int8")

Precision = Literal["fp32", "fp16", "int8"]


def _from_mapping(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HwnasError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise HwnasError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class RuntimeOptions:
    """How the runtime is configured. ``intra_op_threads=0`` means all cores.

    ``tvm_target`` is ``"host"`` (LLVM for this CPU, resolved at run time), ``"llvm"``, ``"cuda"``
    or a JSON target dict as TVM 0.2x accepts it. ``precision`` ``int8`` quantizes models with the
    runtime's own quantizer (ONNX Runtime: static, QDQ, per-channel weights). ``cuda_graphs``
    replays a captured CUDA graph instead of launching kernels one by one (GPU devices; ``None``
    means on for ``device_type = "cuda"``, off otherwise: see :attr:`graphs`). ``tune_trials``
    (TVM devices): MetaSchedule trials per task before a model is compiled (0: untuned), its
    records kept in ``tune_database`` (a directory; default: ``tvm-tuning/<device name>`` beside
    the default profile store) and reused by every later compile on the device.
    """

    device_type: Literal["cpu", "cuda"] = "cpu"
    provider: str | None = None
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization_level: str = "all"
    tvm_target: str | None = None
    precision: Precision = "fp32"
    batch_size: int = 1
    cpu_affinity: tuple[int, ...] | None = None
    cuda_graphs: bool | None = None
    tune_trials: int = 0
    tune_database: str | None = None

    @property
    def graphs(self) -> bool:
        """Whether the device replays CUDA graphs (``cuda_graphs``, defaulting to on for GPUs)."""
        return self.device_type == "cuda" if self.cuda_graphs is None else bool(self.cuda_graphs)

    def __post_init__(self) -> None:
        if self.device_type not in ("cpu", "cuda"):
            raise ValueError(f"device_type must be 'cpu' or 'cuda', got {self.device_type!r}")
        if self.graph_optimization_level not in GRAPH_OPT_LEVELS:
            raise ValueError(
                f"graph_optimization_level must be one of {GRAPH_OPT_LEVELS}, "
                f"got {self.graph_optimization_level!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 = all cores)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.cuda_graphs and self.device_type != "cuda":
            raise ValueError("cuda_graphs = true needs device_type = 'cuda'")
        if isinstance(self.tune_trials, bool) or not isinstance(self.tune_trials, int) or self.tune_trials < 0:
            raise ValueError(f"tune_trials must be a count >= 0 (0 = untuned), got {self.tune_trials!r}")


@dataclass(frozen=True)
class DeviceConstraints:
    """Limits that searches on this device must honour (``None`` = no limit)."""

    latency_budget_ms: float | None = None
    max_params: int | None = None
    max_peak_memory_mb: float | None = None
    allowed_op_types: tuple[str, ...] | None = None
    allowed_kernel_sizes: tuple[int, ...] | None = None
    max_input_resolution: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_budget_ms", "max_params", "max_peak_memory_mb", "max_input_resolution"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.allowed_op_types is not None:
            known = {t.value for t in OpType}
            bad = sorted(set(self.allowed_op_types) - known)
            if bad:
                raise ValueError(
                    f"allowed_op_types has unknown op type(s) {bad}; known: {sorted(known)}"
                )


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); anything else is a ValueError naming ``what``."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:9190), got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class RemoteSpec:
    """Where a remote TVM device is reached: through an RPC ``tracker`` (``HOST:PORT``) and the
    ``key`` its servers registered under, or a server at ``host`` (``HOST:PORT``) directly. Models
    are compiled on this machine for the device's ``tvm_target`` and linked by ``cross_compiler``
    (a C++ compiler for the device, e.g. ``aarch64-linux-gnu-g++``; this machine's for a host target).
    ``timeout_s``: how long to wait for a free server and for each call."""

    tracker: str | None = None
    host: str | None = None
    key: str = ""
    cross_compiler: str | None = None
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if (self.tracker is None) == (self.host is None):
            raise ValueError("a remote needs exactly one of tracker = 'HOST:PORT' (with key) or host = 'HOST:PORT'")
        if self.tracker is not None:
            parse_address(self.tracker, "remote.tracker")
            if not self.key:
                raise ValueError("a remote reached through a tracker needs the key its servers registered under")
        if self.host is not None:
            parse_address(self.host, "remote.host")
        if self.timeout_s <= 0:
            raise ValueError(f"remote.timeout_s must be > 0, got {self.timeout_s}")

    @property
    def address(self) -> str:
        return f"tracker {self.tracker} key {self.key}" if self.tracker else f"server {self.host}"


@dataclass(frozen=True)
class Device:
    """A target device: a runtime with its options, and the constraints searches must honour.

    >>> d = Device("my-cpu", "onnxruntime")
    >>> Device.from_dict(d.to_dict()) == d
    True
    """

    name: str
    runtime: str
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    constraints: DeviceConstraints = field(default_factory=DeviceConstraints)
    description: str = ""
    #: a device measured over TVM's RPC (``runtime = "tvm"`` only); None: this machine
    remote: RemoteSpec | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"device name must be non-empty without spaces, got {self.name!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.remote is not None and self.runtime != "tvm":
            raise ValueError(f"a remote device is measured over TVM's RPC: runtime must be 'tvm', got {self.runtime!r}")
        if self.options.tune_trials and self.runtime != "tvm":
            raise ValueError(f"tune_trials tunes TVM devices (MetaSchedule); this device's runtime is {self.runtime!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "device") -> Device:
        data = dict(data)
        options = _from_mapping(RuntimeOptions, dict(data.pop("options", {}) or {}), f"{where}.options")
        constraints = _from_mapping(
            DeviceConstraints, dict(data.pop("constraints", {}) or {}), f"{where}.constraints"
        )
        remote = data.pop("remote", None)
        if remote is not None:
            remote = _from_mapping(RemoteSpec, dict(remote), f"{where}.remote")
        return _from_mapping(cls, {**data, "options": options, "constraints": constraints, "remote": remote}, where)

    def replace(self, **changes: Any) -> Device:
        return dataclasses.replace(self, **changes)
