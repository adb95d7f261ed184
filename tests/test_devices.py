from __future__ import annotations

import dataclasses

import pytest

from hwnas.devices import Device, DeviceConstraints, RuntimeOptions, builtin_devices, default_registry
from hwnas.profilers import fingerprint
from hwnas.errors import HwnasError, UnknownNameError
from hwnas.profilers import get_backend
from hwnas.testing import check_device

BUILTINS = [d.name for d in builtin_devices()]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_devices_pass_the_device_suite(registry, name: str) -> None:
    check_device(registry.get(name))


def test_required_builtins_exist(registry) -> None:
    assert {"cpu-ort", "cpu-ort-mt", "cpu-tvm", "cpu-torch", "cuda-torch", "cuda-ort"} <= set(registry.names())
    ort = registry.get("cpu-ort")
    assert (ort.runtime, ort.options.intra_op_threads, ort.options.graph_optimization_level) == ("onnxruntime", 1, "all")
    assert (ort.options.precision, ort.options.batch_size) == ("fp32", 1)
    assert registry.get("cpu-ort-mt").options.intra_op_threads == 0  # all cores


def test_unknown_device_lists_known(registry) -> None:
    with pytest.raises(UnknownNameError) as exc:
        registry.get("cpu-orrt")
    msg = str(exc.value)
    assert "cpu-ort, cpu-ort-mt" in msg and "Did you mean: cpu-ort" in msg


def test_device_validation() -> None:
    with pytest.raises(ValueError, match="runtime must be one of"):
        Device("x", "tensorrt")
    with pytest.raises(ValueError, match="graph_optimization_level"):
        RuntimeOptions(graph_optimization_level="max")
    with pytest.raises(ValueError, match="unknown op type"):
        DeviceConstraints(allowed_op_types=("conv", "transformer"))
    with pytest.raises(ValueError, match="latency_budget_ms must be > 0"):
        DeviceConstraints(latency_budget_ms=0)


def test_toml_devices_with_base(tmp_path) -> None:
    f = tmp_path / "devices.toml"
    f.write_text(
        """
[devices.pi4]
base = "cpu-ort"
description = "Raspberry Pi 4"
[devices.pi4.options]
intra_op_threads = 4
[devices.pi4.constraints]
latency_budget_ms = 25.0
allowed_op_types = ["conv", "dwconv", "pwconv", "mbconv", "gap", "linear"]
max_input_resolution = 160

[devices.my-tvm]
runtime = "tvm"
[devices.my-tvm.options]
tvm_target = '{"kind": "llvm", "mcpu": "cortex-a72"}'
"""
    )
    reg = default_registry(f)
    pi = reg.get("pi4")
    assert pi.runtime == "onnxruntime" and pi.options.intra_op_threads == 4
    assert pi.options.graph_optimization_level == "all"  # from the base
    assert pi.constraints.latency_budget_ms == 25.0 and pi.constraints.max_input_resolution == 160
    assert "mbconv" in pi.constraints.allowed_op_types
    check_device(pi)
    check_device(reg.get("my-tvm"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[devices.a]\nruntime = 'onnxruntime'\nthreads = 3\n", "unknown field"),
        ("[devices.a]\nbase = 'nope'\n", "unknown device 'nope'"),
        ("[devices.a]\ndescription = 'x'\n", "needs 'runtime' or 'base'"),
        ("[devices.a\n", "not valid TOML"),
        ("title = 'x'\n", "no \\[devices.NAME\\] tables"),
        ("[devices.a]\nruntime = 'onnxruntime'\n[devices.a.options]\nbatch_size = 0\n", "batch_size must be >= 1"),
    ],
)
def test_bad_toml_is_refused(tmp_path, text: str, message: str) -> None:
    f = tmp_path / "d.toml"
    f.write_text(text)
    with pytest.raises(HwnasError, match=message):
        default_registry(f)


def test_fingerprint_identifies_hardware_and_runtime(registry) -> None:
    ort = registry.get("cpu-ort")
    fp = fingerprint(ort)
    import onnxruntime

    assert fp.runtime_version == onnxruntime.__version__
    assert fp.intra_op_threads == 1 and fp.cpu_model and fp.cpu_cores_logical >= 1
    assert fingerprint(ort).id == fp.id  # stable
    mt = fingerprint(registry.get("cpu-ort-mt"))
    assert mt.id != fp.id and "intra_op_threads" in fp.diff(mt)
    # a renamed copy of a device measures the same thing: same id
    assert fingerprint(ort.replace(name="alias")).id == fp.id
    other_version = dataclasses.replace(fp, runtime_version="0.0.1")
    assert other_version.id != fp.id and set(fp.diff(other_version)) == {"runtime_version"}


def test_cuda_devices_say_what_is_missing(registry) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    problems = get_backend("torch").check(registry.get("cuda-torch"))
    assert problems and "CUDA" in problems[0]
    problems = get_backend("onnxruntime").check(registry.get("cuda-ort"))
    assert problems and "CUDAExecutionProvider" in problems[0] and "onnxruntime-gpu" in problems[0]
