"""Real runtimes on tiny ops: no mocked runtime."""

from __future__ import annotations

import pytest

from conftest import HAS_TVM
from hwnas.profilers import fingerprint
from hwnas.errors import RuntimeUnavailableError
from hwnas.profilers import OpConfig, Profiler, backend_names, build_sequence_onnx, get_backend, mobilenetv2_layers
from hwnas.profilers._backends import parse_ort_trace
from hwnas.testing import check_backend

CPU_DEVICES = ["cpu-ort", "cpu-ort-mt", "cpu-torch", "cpu-tvm"]


@pytest.mark.parametrize("runtime", ["onnxruntime", "tvm", "torch"])
def test_backend_registry(runtime: str) -> None:
    assert runtime in backend_names()
    assert get_backend(runtime).name == runtime


@pytest.mark.parametrize("name", CPU_DEVICES)
def test_backends_pass_the_backend_suite(registry, name: str) -> None:
    device = registry.get(name)
    if device.runtime == "tvm" and not HAS_TVM:
        pytest.skip("apache-tvm not installed")
    check_backend(get_backend(device.runtime), device)


@pytest.mark.parametrize("name", ["cuda-torch", "cuda-ort"])
def test_backend_suite_on_gpu_devices(registry, name: str) -> None:
    device = registry.get(name)
    check_backend(get_backend(device.runtime), device)  # passes with problems listed when absent
    if get_backend(device.runtime).check(device):
        with pytest.raises(RuntimeUnavailableError, match="cannot run here"):
            Profiler(device)


def _tiny_model():
    layers = mobilenetv2_layers(32, 0.35, classes=10)[:4]
    return build_sequence_onnx(layers, name="tiny")[1]


def test_ort_breakdown_reports_fused_kernels(registry, fast_policy) -> None:
    m = Profiler(registry.get("cpu-ort"), fast_policy).profile_model(_tiny_model(), breakdown_runs=3)
    assert m.latency_ms > 0 and m.breakdown
    assert all(n.duration_ms >= 0 and n.op_type for n in m.breakdown)
    # ORT fuses Conv + Clip (relu6) into one kernel: at least one node is not an original node
    assert any(n.fused for n in m.breakdown)
    assert any(n.op_type == "Conv" for n in m.breakdown)


def test_parse_ort_trace_skips_warmup_run() -> None:
    ev = lambda name, dur, op: {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur,  # noqa: E731
                                "args": {"op_name": op, "provider": "CPUExecutionProvider",
                                         "output_type_shape": [{"float": [1, 8, 4, 4]}]}}
    trace = [ev("conv_0", 900, "Conv"), ev("fused_1", 50, "FusedConv"),
             ev("conv_0", 10, "Conv"), ev("fused_1", 20, "FusedConv"),
             ev("conv_0", 12, "Conv"), ev("fused_1", 22, "FusedConv"),
             {"cat": "Session", "name": "model_run", "dur": 5}]
    nodes = parse_ort_trace(trace, {"conv_0"}, skip_runs=1)
    assert [(n.name, n.fused) for n in nodes] == [("conv_0", False), ("fused_1", True)]
    assert nodes[0].duration_ms == pytest.approx(0.011) and nodes[1].output_shape == (1, 8, 4, 4)


@pytest.mark.skipif(not HAS_TVM, reason="apache-tvm not installed")
def test_tvm_whole_model_and_per_op_report(registry, fast_policy) -> None:
    device = registry.get("cpu-tvm")
    fp = fingerprint(device)
    assert fp.tvm_target and '"kind": "llvm"' in fp.tvm_target and fp.runtime == "tvm"
    m = Profiler(device, fast_policy).profile_model(_tiny_model(), breakdown_runs=2)
    assert m.latency_ms > 0
    assert m.breakdown and any("conv2d" in n.op_type for n in m.breakdown)


def test_torch_runs_op_configs_and_onnx_files(registry, fast_policy) -> None:
    p = Profiler(registry.get("cpu-torch"), fast_policy)
    m = p.profile_op(OpConfig.parse("mbconv_i8_o8_r8_k3_s1_e3_se0.25_ahardswish_res"))
    assert m.status == "ok" and m.latency_ms > 0
    assert p.profile_model(_tiny_model(), breakdown_runs=0).latency_ms > 0


@pytest.mark.skipif(not HAS_TVM, reason="apache-tvm not installed")
def test_tvm_leaves_the_process_affinity_as_it_was(registry, fast_policy) -> None:
    import os

    before = os.sched_getaffinity(0)
    Profiler(registry.get("cpu-tvm"), fast_policy).profile_op(OpConfig.parse("act_i8_r8_arelu"))
    assert os.sched_getaffinity(0) == before
