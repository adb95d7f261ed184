"""Built-in devices and the device registry (with user devices from TOML)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hwnas._registry import Registry
from hwnas.devices._device import Device, RuntimeOptions
from hwnas.errors import HwnasError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["builtin_devices", "DeviceRegistry", "default_registry"]


def builtin_devices() -> list[Device]:
    """The devices hwnas knows without configuration."""
    return [
        Device(
            "cpu-ort",
            "onnxruntime",
            RuntimeOptions(provider="CPUExecutionProvider", intra_op_threads=1),
            description="ONNX Runtime, CPU execution provider, 1 intra-op thread, all graph optimisations, fp32, batch 1",
        ),
        Device(
            "cpu-ort-mt",
            "onnxruntime",
            RuntimeOptions(provider="CPUExecutionProvider", intra_op_threads=0),
            description="ONNX Runtime, CPU execution provider, all cores",
        ),
        Device(
            "cpu-tvm",
            "tvm",
            RuntimeOptions(tvm_target="host", intra_op_threads=1),
            description="Apache TVM (relax), LLVM for the host CPU, 1 thread",
        ),
        Device(
            "cpu-torch",
            "torch",
            RuntimeOptions(intra_op_threads=1),
            description="PyTorch eager on the CPU, 1 thread",
        ),
        Device(
            "cpu-ort-int8",
            "onnxruntime",
            RuntimeOptions(provider="CPUExecutionProvider", intra_op_threads=1, precision="int8"),
            description="ONNX Runtime, CPU, 1 thread, int8 (static QDQ quantization, per-channel weights)",
        ),
        Device(
            "cuda-torch",
            "torch",
            RuntimeOptions(device_type="cuda", intra_op_threads=1),
            description="PyTorch on a CUDA GPU, each network replayed as one CUDA graph, fp32",
        ),
        Device(
            "cuda-torch-fp16",
            "torch",
            RuntimeOptions(device_type="cuda", intra_op_threads=1, precision="fp16"),
            description="PyTorch on a CUDA GPU, CUDA graphs, fp16",
        ),
        Device(
            "cuda-torch-eager",
            "torch",
            RuntimeOptions(device_type="cuda", intra_op_threads=1, cuda_graphs=False),
            description="PyTorch eager on a CUDA GPU (kernels launched one by one), fp32",
        ),
        Device(
            "cuda-ort",
            "onnxruntime",
            RuntimeOptions(device_type="cuda", provider="CUDAExecutionProvider", intra_op_threads=1),
            description="ONNX Runtime CUDA execution provider with CUDA graphs (needs onnxruntime-gpu)",
        ),
        Device(
            "cuda-trt",
            "onnxruntime",
            RuntimeOptions(device_type="cuda", provider="TensorrtExecutionProvider", intra_op_threads=1,
                           precision="fp16"),
            description="TensorRT through ONNX Runtime, fp16, CUDA graphs (needs onnxruntime-gpu and TensorRT)",
        ),
    ]


class DeviceRegistry:
    """Devices by name. Built-ins plus any loaded from TOML files.

    TOML format (``base`` copies another device; tables override its fields)::

        [devices.pi4-ort]
        base = "cpu-ort"
        description = "Raspberry Pi 4, ONNX Runtime, 4 threads"
        [devices.pi4-ort.options]
        intra_op_threads = 4
        [devices.pi4-ort.constraints]
        latency_budget_ms = 30.0
    """

    def __init__(self, devices: list[Device] | None = None) -> None:
        self._reg: Registry[Device] = Registry("device")
        for d in devices or []:
            self._reg.register(d.name, d)

    def add(self, device: Device, *, replace: bool = False) -> None:
        self._reg.register(device.name, device, replace=replace)

    def get(self, name: str) -> Device:
        return self._reg.get(name)

    def names(self, pattern: str = "*") -> list[str]:
        return self._reg.names(pattern)

    def __contains__(self, name: object) -> bool:
        return name in self._reg

    def load_toml(self, path: str | Path) -> list[str]:
        """Add the devices in a TOML file; returns their names."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise HwnasError(f"devices file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HwnasError(f"devices file {path} is not valid TOML: {exc}") from None
        entries = data.get("devices")
        if not isinstance(entries, dict) or not entries:
            raise HwnasError(f"devices file {path} has no [devices.NAME] tables")
        added = []
        for name, spec in entries.items():
            if not isinstance(spec, dict):
                raise HwnasError(f"{path}: devices.{name} must be a table")
            spec = dict(spec)
            base_name = spec.pop("base", None)
            base: dict[str, Any] = self.get(base_name).to_dict() if base_name else {}
            merged = {**base, **{k: v for k, v in spec.items() if k not in ("options", "constraints", "remote")}}
            merged["name"] = name
            if base.get("remote") or spec.get("remote"):
                merged["remote"] = {**(base.get("remote") or {}), **spec.get("remote", {})}
            merged["options"] = {**base.get("options", {}), **spec.get("options", {})}
            merged["constraints"] = {**base.get("constraints", {}), **spec.get("constraints", {})}
            if "runtime" not in merged:
                raise HwnasError(f"{path}: devices.{name} needs 'runtime' or 'base'")
            self.add(Device.from_dict(merged, where=f"{path}: devices.{name}"), replace=True)
            added.append(name)
        return added


def default_registry(*toml_files: str | Path) -> DeviceRegistry:
    """A fresh registry with the built-in devices plus those of the given TOML files."""
    reg = DeviceRegistry(builtin_devices())
    for f in toml_files:
        reg.load_toml(f)
    return reg
