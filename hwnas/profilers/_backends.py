"""Runtime backends: compile + run + parse. Each says in ``check()`` what is missing.

A backend ``prepare``s an ONNX model (or an op configuration) for a device and returns a
:class:`Prepared` runner whose ``sample(n)`` times ``n`` runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwnas._registry import Registry
from hwnas.devices import Device, resolve_threads
from hwnas.errors import DeviceUnreachableError, RuntimeUnavailableError
from hwnas.profilers._quantize import INT8_RECIPE, quantize_int8, to_fp16
from hwnas.profilers._runtime import (
    Backend,
    NodeTiming,
    Prepared,
    random_inputs,
    wall_times,
)
from hwnas.profilers._torch import TorchBackend

__all__ = ["NodeTiming", "Prepared", "Backend", "get_backend", "backend_names", "list_backends", "register_backend", "random_inputs"]


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------
#: GPU execution providers, with what installs them
_GPU_PROVIDERS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (pip install onnxruntime-gpu) with CUDA and cuDNN",
    "TensorrtExecutionProvider": "install onnxruntime-gpu and TensorRT (pip install onnxruntime-gpu tensorrt)",
}
_ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtPrepared(Prepared):
    """A session for the model in the device's precision; with CUDA graphs, run through an I/O
    binding on the GPU (ONNX Runtime captures the graph on the first run, then replays it)."""

    def __init__(self, model: onnx.ModelProto, device: Device, backend: OrtBackend) -> None:
        self.device, self.backend = device, backend
        self.model = backend.runnable(model, device)
        self.feeds = random_inputs(self.model, device.options.batch_size)
        self.session = backend.session(self.model, device)
        self.binding = self._bind() if backend.graphs(device) else None

    def _bind(self) -> Any:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, value in self.feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for out in self.session.get_outputs():
            binding.bind_output(out.name, "cuda")
        self.session.run_with_iobinding(binding)  # captures the graph
        return binding

    def sample(self, n: int) -> list[float]:
        if self.binding is not None:
            run_bound, binding = self.session.run_with_iobinding, self.binding

            def bound() -> None:
                run_bound(binding)
                binding.synchronize_outputs()
            return wall_times(bound, n)
        run, feeds = self.session.run, self.feeds
        return wall_times(lambda: run(None, feeds), n)

    def breakdown(self, runs: int = 10) -> list[NodeTiming]:
        with tempfile.TemporaryDirectory(prefix="hwnas-ort-") as tmp:
            sess = self.backend.session(
                self.model, self.device, profile_prefix=str(Path(tmp) / "trace"),
                optimized_path=str(Path(tmp) / "optimized.onnx"),
            )
            for _ in range(runs + 1):
                sess.run(None, self.feeds)
            trace = json.loads(Path(sess.end_profiling()).read_text())
        original = {n.name for n in self.model.graph.node}
        return parse_ort_trace(trace, original, skip_runs=1)


def parse_ort_trace(trace: list[dict[str, Any]], original_nodes: set[str], skip_runs: int = 1) -> list[NodeTiming]:
    """Per-node median time from ONNX Runtime's profiler trace (``*_kernel_time`` events).

    A node is ``fused`` when it is not one of the model's own nodes: ORT fused or rewrote it.
    """
    durations: dict[str, list[float]] = defaultdict(list)
    info: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for ev in trace:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        if name not in info:
            order.append(name)
            info[name] = ev.get("args", {})
        durations[name].append(ev["dur"] / 1e3)
    out = []
    for name in order:
        d = durations[name][skip_runs:] or durations[name]
        args = info[name]
        shape = None
        ots = args.get("output_type_shape") or []
        if ots and isinstance(ots[0], dict):
            shape = tuple(next(iter(ots[0].values())))
        out.append(NodeTiming(
            name=name,
            op_type=str(args.get("op_name", "?")),
            duration_ms=float(np.median(d)),
            fused=name not in original_nodes,
            provider=str(args.get("provider", "")),
            output_shape=shape,
        ))
    return out


class OrtBackend(Backend):
    name = "onnxruntime"
    reports_kernel_times = True
    install_hint = "pip install onnxruntime (or onnxruntime-gpu for the CUDA execution provider)"

    def check(self, device: Device | None = None) -> list[str]:
        try:
            import onnxruntime as ort
        except ImportError:
            return [f"onnxruntime is not installed: {self.install_hint}"]
        if device is None:
            return []
        opts = device.options
        provider = opts.provider or "CPUExecutionProvider"
        gpu = provider in _GPU_PROVIDERS
        if provider not in ort.get_available_providers():
            hint = _GPU_PROVIDERS.get(provider, self.install_hint)
            return [f"execution provider {provider} is not available here (have: "
                    f"{', '.join(ort.get_available_providers())}); {hint}"]
        if opts.precision == "int8" and gpu:
            return [f"int8 models are measured on the CPU execution provider; {provider} runs fp32 and fp16"]
        if opts.precision == "fp16" and not gpu:
            return ["ONNX Runtime's CPU execution provider has few fp16 kernels (it would time casts); fp16 needs "
                    "the CUDA or TensorRT execution provider"]
        if opts.graphs and not gpu:
            return [f"cuda_graphs needs the CUDA or TensorRT execution provider, not {provider}"]
        return []

    def graphs(self, device: Device) -> bool:
        return device.options.graphs and (device.options.provider or "") in _GPU_PROVIDERS

    def setup_tag(self, device: Device) -> str:
        opts = device.options
        parts = [INT8_RECIPE if opts.precision == "int8" else ""]
        if opts.precision == "fp16" and opts.provider == "CUDAExecutionProvider":
            parts.append("fp16 ort-float16 keep-io")
        parts.append("cuda-graphs" if self.graphs(device) else "")
        return ", ".join(p for p in parts if p)

    def runnable(self, model: onnx.ModelProto, device: Device,
                 calibration: list[dict[str, np.ndarray]] | None = None) -> onnx.ModelProto:
        """``model`` as the device runs it: quantized to int8 (calibrated on ``calibration``, random
        inputs when None), converted to fp16 for the CUDA provider (TensorRT converts itself), or as
        it is."""
        opts = device.options
        if opts.precision == "int8":
            return quantize_int8(model, calibration)
        if opts.precision == "fp16" and opts.provider == "CUDAExecutionProvider":
            return to_fp16(model)
        return model

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def session(self, model: onnx.ModelProto, device: Device, profile_prefix: str | None = None,
                optimized_path: str | None = None) -> Any:
        import onnxruntime as ort



        opts = device.options
        so = ort.SessionOptions()
        so.intra_op_num_threads = resolve_threads(opts.intra_op_threads)
        so.inter_op_num_threads = resolve_threads(opts.inter_op_threads)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_LEVELS[opts.graph_optimization_level])
        so.log_severity_level = 3
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        if optimized_path:
            so.optimized_model_filepath = optimized_path
        return ort.InferenceSession(model.SerializeToString(), so, providers=self.providers(device))

    def providers(self, device: Device) -> list[Any]:
        """The session's execution providers with their options (CUDA graphs, TensorRT's fp16)."""
        opts = device.options
        provider = opts.provider or "CPUExecutionProvider"
        if provider == "TensorrtExecutionProvider":
            trt = {"trt_cuda_graph_enable": str(int(self.graphs(device))),
                   "trt_fp16_enable": str(int(opts.precision == "fp16"))}
            return [(provider, trt), "CUDAExecutionProvider"]
        if provider == "CUDAExecutionProvider":
            return [(provider, {"enable_cuda_graph": str(int(self.graphs(device)))})]
        return [provider]

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        self.require(device)
        return OrtPrepared(model, device, self)


# ---------------------------------------------------------------------------------------------
# TVM (relax)
# ---------------------------------------------------------------------------------------------
class TvmPrepared(Prepared):
    """A model compiled by TVM relax for the device's target; run by a VM here, or, for a remote
    device, uploaded and run by the RPC server (a lost connection is retried once on a fresh
    session, then a :class:`DeviceUnreachableError`)."""

    def __init__(self, model: onnx.ModelProto, device: Device, backend: TvmBackend) -> None:
        import tvm

        from hwnas.profilers._tvm_tune import compile_onnx

        self.tvm, self.device, self.backend = tvm, device, backend
        self._affinity = None
        if device.remote is None:
            # TVM pins the calling thread when it configures its pool: undo that in close()
            self._affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
            tvm.get_global_func("runtime.config_threadpool")(0, resolve_threads(device.options.intra_op_threads))
        feeds = random_inputs(model, device.options.batch_size)
        release = (lambda: backend.sessions.release(device.remote)) if device.remote is not None else None
        self.executable = compile_onnx(model, device, backend.resolved_target(device),
                                       {k: list(v.shape) for k, v in feeds.items()}, before_tuning=release)
        self.feeds = [feeds[i.name] for i in model.graph.input if i.name in feeds]
        self.remote = self._on_remote() if device.remote is not None else None
        if self.remote is None:
            from tvm import relax

            self.dev = tvm.cuda() if device.options.device_type == "cuda" else tvm.cpu()
            self.vm = relax.VirtualMachine(self.executable, self.dev)
            self.args = [tvm.runtime.tensor(x, self.dev) for x in self.feeds]
            self._timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=1)

    def _on_remote(self, retry: bool = True) -> Any:
        from hwnas.profilers._tvm_remote import RemoteModule, is_connection_error

        remote = self.device.remote
        try:
            return RemoteModule(self.backend.sessions.get(remote), self.executable, self.device, self.feeds)
        except DeviceUnreachableError:  # no tracker, no server under the key: said clearly already
            raise
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.backend.sessions.drop(remote)
            if retry:
                return self._on_remote(retry=False)
            raise DeviceUnreachableError(f"lost the connection to {self.device.name} ({remote.address}): "
                                         f"{str(exc).splitlines()[0]}; what was measured is kept: rerun to resume") from None

    def sample(self, n: int) -> list[float]:
        if self.remote is not None:
            return self._remote_sample(n)
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=n) if n > 1 else self._timer
        return [float(r) for r in timer(*self.args).results]

    def _remote_sample(self, n: int) -> list[float]:
        from hwnas.profilers._tvm_remote import is_connection_error

        try:
            return self.remote.sample(n)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.backend.sessions.drop(self.device.remote)
            self.remote = self._on_remote()  # the server may be back: one fresh session, then give up
            return self.remote.sample(n)

    def breakdown(self, runs: int = 10) -> list[NodeTiming] | None:
        """Per-call times from the relax VM's instrument hook (builtins excluded); none remotely."""
        if self.remote is not None:
            return None
        durations: dict[str, list[float]] = defaultdict(list)
        started: dict[str, float] = {}
        order: list[str] = []
        seen: dict[str, int] = {}
        pc = time.perf_counter

        def instrument(func: Any, name: str, before: bool, ret: Any, *args: Any) -> int:
            if name.startswith("vm.builtin."):
                return 0
            if before:
                started[name] = pc()
            else:
                key = f"{name}#{seen.get(name, 0)}"
                seen[name] = seen.get(name, 0) + 1
                if key not in durations:
                    order.append(key)
                durations[key].append((pc() - started[name]) * 1e3)
            return 0

        self.vm.set_instrument(instrument)
        try:
            for _ in range(runs + 1):
                seen.clear()
                self.vm["main"](*self.args)
        finally:
            self.vm.set_instrument(lambda *a: 0)
        out = []
        for key in order:
            d = durations[key][1:] or durations[key]
            name = key.split("#")[0]
            fused = name.startswith("fused_")
            out.append(NodeTiming(name=key, op_type=name, duration_ms=float(np.median(d)), fused=fused, provider="tvm"))
        return out

    def close(self) -> None:
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)


#: target options TVM takes as lists
_LIST_OPTIONS = ("mattr", "keys", "libs", "cl-opt")


def target_dict(text: str) -> dict[str, Any]:
    """A target in the command-line form (``llvm -mtriple=aarch64-linux-gnu -mattr=+neon``, as
    device files and TVM's documentation write it) as the JSON dict TVM 0.2x takes."""
    kind, *options = text.split()
    out: dict[str, Any] = {"kind": kind}
    for opt in options:
        key, eq, value = opt.lstrip("-").partition("=")
        if not eq or not key:
            raise RuntimeUnavailableError(f"target option {opt!r} in {text!r} is not -NAME=VALUE")
        out[key] = value.split(",") if key in _LIST_OPTIONS else value
    return out


class TvmBackend(Backend):
    """TVM relax; a device with a ``remote`` is compiled here and measured over TVM's RPC."""

    name = "tvm"
    install_hint = "pip install apache-tvm   (or: pip install 'hwnas[tvm]')"

    def __init__(self) -> None:
        from hwnas.profilers._tvm_remote import RemoteSessions

        #: the RPC sessions of remote devices, opened on first use
        self.sessions = RemoteSessions()

    def connect(self, device: Device) -> None:
        if device.remote is not None:
            self.sessions.get(device.remote)

    def setup_tag(self, device: Device) -> str:
        from hwnas.profilers._tvm_tune import tuning_tag

        r = device.remote
        tags = [tuning_tag(device)]
        if r is not None:
            tags.insert(0, f"remote {r.address}" + (f", linked by {r.cross_compiler}" if r.cross_compiler else ""))
        return "; ".join(t for t in tags if t)

    def check(self, device: Device | None = None) -> list[str]:
        try:
            import tvm
            from tvm.relax.frontend.onnx import from_onnx  # noqa: F401 - checks the frontend is there
        except ImportError as exc:
            return [f"TVM with the relax ONNX frontend is not installed ({exc}): {self.install_hint}"]
        problems = []
        if device is not None:
            if device.options.device_type == "cuda":
                if not tvm.cuda().exist:
                    problems.append("no CUDA GPU visible to TVM (needs a CUDA-enabled TVM build and a GPU)")
            if device.options.precision != "fp32":
                problems.append("the tvm backend measures fp32 models; use precision = 'fp32'")
            if device.options.tune_trials and importlib.util.find_spec("xgboost") is None:
                problems.append("tuning (tune_trials) needs MetaSchedule's cost model, XGBoost: pip install xgboost-cpu"
                                "   (or: pip install 'hwnas[tvm]')")
        return problems

    def version(self) -> str:
        try:
            return importlib.metadata.version("apache-tvm")
        except importlib.metadata.PackageNotFoundError:
            import tvm

            return str(tvm.__version__)

    def resolved_target(self, device: Device) -> str:
        """The TVM target as canonical JSON; ``host`` becomes LLVM for this CPU."""
        t = device.options.tvm_target or ("cuda" if device.options.device_type == "cuda" else "host")
        if t == "host":
            from tvm.target import codegen

            return json.dumps({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}, sort_keys=True)
        if t.lstrip().startswith("{"):
            return json.dumps(json.loads(t), sort_keys=True)
        return json.dumps(target_dict(t), sort_keys=True)

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        self.require(device)
        return TvmPrepared(model, device, self)


_BACKENDS: Registry[type[Backend]] = Registry("runtime")
for _cls in (OrtBackend, TvmBackend, TorchBackend):
    _BACKENDS.register(_cls.name, _cls)


def get_backend(name: str) -> Backend:
    """A backend instance by runtime name (``onnxruntime``, ``tvm``, ``torch``)."""
    return _BACKENDS.get(name)()


def register_backend(cls: type[Backend], *, replace: bool = False) -> type[Backend]:
    """Register a runtime :class:`Backend` class under its ``name`` (usable as a decorator)."""
    return _BACKENDS.register(cls.name, cls, replace=replace)


def list_backends(pattern: str = "*") -> list[str]:
    return _BACKENDS.names(pattern)


backend_names = list_backends


