"""Deployment as it runs: int8 ONNX Runtime, ONNX graphs on the torch runtime, CUDA graphs.

The GPU cases run where PyTorch sees a GPU (benchmarks/gpu_session.sh); elsewhere they skip and
the CPU cases check options, messages and fingerprints."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwnas import zoo
from hwnas.devices import Device, RuntimeOptions, default_registry
from hwnas.errors import HwnasError, RuntimeUnavailableError
from hwnas.profilers import OpConfig, Profiler, fingerprint, get_backend
from hwnas.profilers._onnx_torch import SUPPORTED, _ops, onnx_to_torch
from hwnas.profilers._quantize import is_quantized, quantize_int8
from hwnas.profilers._runtime import NodeTiming, is_boundary, random_inputs
from hwnas.search.spaces import create_space

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to PyTorch")


def _models() -> list[tuple[str, onnx.ModelProto]]:
    out = [(f, zoo.create(f, 0.35, 32, 10).onnx) for f in zoo.list_families()]
    for s in ("nb201", "proxyless", "mnasnet", "mlp"):
        space = create_space(s)
        out.append((s, space.to_onnx(space.sample(np.random.default_rng(1)))))
    return out


def test_supported_list_is_what_runs() -> None:
    assert set(_ops(torch)) == SUPPORTED


@pytest.mark.parametrize("name,model", _models(), ids=lambda x: x if isinstance(x, str) else "")
def test_onnx_on_torch_matches_onnxruntime(name: str, model: onnx.ModelProto) -> None:
    feeds = random_inputs(model)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.inference_mode():
        out = onnx_to_torch(model).eval()(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_unknown_operator_is_named() -> None:
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Erf", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    with pytest.raises(RuntimeUnavailableError, match="cannot run operator.*Erf.*onnxruntime device"):
        onnx_to_torch(onnx.helper.make_model(g))


def test_cuda_graphs_option() -> None:
    assert RuntimeOptions(device_type="cuda").graphs
    assert not RuntimeOptions(device_type="cuda", cuda_graphs=False).graphs
    assert not RuntimeOptions().graphs
    with pytest.raises(ValueError, match="cuda_graphs = true needs device_type = 'cuda'"):
        RuntimeOptions(cuda_graphs=True)
    with pytest.raises(HwnasError, match="cuda_graphs"):
        Device.from_dict({"name": "x", "runtime": "torch", "options": {"cuda_graphs": True}})


def test_graphs_and_eager_never_share_a_fingerprint() -> None:
    reg = default_registry()
    ids = {n: fingerprint(reg.get(n)) for n in ("cuda-torch", "cuda-torch-eager", "cuda-torch-fp16", "cpu-ort",
                                                "cpu-ort-int8")}
    assert len({f.id for f in ids.values()}) == len(ids)
    assert "cuda-graphs" in ids["cuda-torch"].runtime_version
    assert "cuda-graphs" not in ids["cuda-torch-eager"].runtime_version
    assert "int8" in ids["cpu-ort-int8"].runtime_version and ids["cpu-ort-int8"].precision == "int8"
    # a device with nothing to add keeps the fingerprint it always had (stores stay valid)
    assert "[" not in ids["cpu-ort"].runtime_version


@pytest.mark.parametrize("device,words", [
    (Device("x", "onnxruntime", RuntimeOptions(precision="fp16")), "fp16 needs the CUDA or TensorRT"),
    (Device("x", "onnxruntime", RuntimeOptions(device_type="cuda", provider="CUDAExecutionProvider", precision="int8")),
     "not available here|int8 models are measured on the CPU"),
    (Device("x", "torch", RuntimeOptions(precision="int8")), "for int8 use an onnxruntime device"),
    (Device("x", "tvm", RuntimeOptions(precision="int8")), "fp32|TVM .* is not installed"),
    (default_registry().get("cuda-trt"), "not available here"),
])
def test_precision_a_runtime_cannot_run_is_refused(device: Device, words: str) -> None:
    problems = get_backend(device.runtime).check(device)
    if not problems and device.options.device_type == "cuda":
        pytest.skip("the GPU provider is installed here")
    assert problems and any(__import__("re").search(words, p) for p in problems), problems


def test_int8_model_is_quantized_and_input_untouched() -> None:
    model = zoo.create("mobilenetv2", 0.35, 32, 10).onnx
    before = model.SerializeToString()
    q = quantize_int8(model)
    assert model.SerializeToString() == before
    kinds = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds and is_quantized(q)
    assert quantize_int8(q) is q


def test_int8_op_measured_without_its_edges() -> None:
    cfg = OpConfig.parse("conv_i16_o32_r14_k3_s1_arelu")
    from hwnas.testing import FAST_POLICY

    m = Profiler(default_registry().get("cpu-ort-int8"), policy=FAST_POLICY).profile_op(cfg)
    # the kernels' time comes from a separate profiled run, rounded to the microsecond: on a ~10 us
    # op a noisy host can put it above the timed median (0.012 against 0.0106 ms once), not far above
    assert m.status == "ok" and m.kernel_ms is not None and 0 < m.kernel_ms <= 1.5 * m.stats.latency_ms
    prepared = get_backend("onnxruntime").prepare_op(cfg, default_registry().get("cpu-ort-int8"))
    nodes = prepared.breakdown(3)
    assert any(n.op_type == "QLinearConv" for n in nodes)
    inner = sum(n.duration_ms for n in nodes if not is_boundary(n))
    assert inner < sum(n.duration_ms for n in nodes)


def test_boundary_transpose_only_when_inserted() -> None:
    assert is_boundary(NodeTiming("t", "Transpose", 0.1, fused=True))
    assert not is_boundary(NodeTiming("t", "Transpose", 0.1, fused=False))
    assert is_boundary(NodeTiming("q", "QuantizeLinear", 0.1, fused=False))


# ---- on a GPU ---------------------------------------------------------------------------------
@cuda
@pytest.mark.parametrize("name", ["cuda-torch", "cuda-torch-fp16", "cuda-torch-eager"])
def test_gpu_devices_time_a_model(name: str) -> None:
    from hwnas.testing import FAST_POLICY

    model = zoo.create("mobilenetv2", 0.5, 64, 10).onnx
    m = Profiler(default_registry().get(name), policy=FAST_POLICY).profile_model(model, breakdown_runs=0)
    assert 0 < m.latency_ms < 100


@cuda
def test_graph_replay_computes_what_eager_does() -> None:
    from hwnas.profilers._torch import TorchPrepared

    model = zoo.create("resnet", 0.5, 32, 10).onnx
    x = torch.from_numpy(random_inputs(model)["input"] if "input" in random_inputs(model)
                         else next(iter(random_inputs(model).values())))
    prepared = TorchPrepared(onnx_to_torch(model), [x], default_registry().get("cuda-torch"))
    assert prepared.graph is not None
    prepared.graph.replay()
    torch.cuda.synchronize()
    with torch.inference_mode():
        eager = prepared.module(*prepared.inputs)
    torch.testing.assert_close(prepared._output, eager)
    assert all(t > 0 for t in prepared.sample(5))
    prepared.close()


# ---- bad input for the new options: one line, exit 2, the user's files untouched ---------------
@pytest.mark.parametrize("toml,words", [
    ('[devices.x]\nbase = "cpu-tvm"\n[devices.x.remote]\ntracker = "nohost"\nkey = "k"\n', "must be HOST:PORT"),
    ('[devices.x]\nbase = "cpu-tvm"\n[devices.x.remote]\ntracker = "127.0.0.1:9"\n', "needs the key"),
    ('[devices.x]\nbase = "cpu-ort"\n[devices.x.options]\ncuda_graphs = true\n', "cuda_graphs = true needs"),
    ('[devices.x]\nbase = "cpu-ort"\n[devices.x.options]\nprecision = "int4"\n', "precision must be one of"),
])
def test_bad_device_options_are_one_line(toml, words, tmp_path, capsys) -> None:
    import hashlib

    from hwnas.cli import main

    f = tmp_path / "devices.toml"
    f.write_text(toml)
    before = hashlib.sha256(f.read_bytes()).hexdigest()
    rc = main(["devices", "show", "x", "--devices-file", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("error")
    assert hashlib.sha256(f.read_bytes()).hexdigest() == before


def test_evaluate_quantized_needs_the_proxy_evaluator(tmp_path, capsys) -> None:
    from hwnas.cli import main

    csv = tmp_path / "acc.csv"
    csv.write_text("arch_str,cifar10_test_acc\n")
    rc = main(["search", "--space", "mlp", "--device", "cpu-ort", "--evaluator", "table", "--accuracy-csv",
               str(csv), "--evaluate-quantized", "--out", str(tmp_path / "run"), "--target-ms", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "evaluate_quantized needs the proxy evaluator" in err, err
    assert not (tmp_path / "run" / "journal.sqlite").exists()
