"""Runtime backends: compile + run + parse. Each says in ``check()`` what is missing.

A backend ``prepare``s an ONNX model (or an op configuration) for a device and returns a
:class:`Prepared` runner whose ``sample(n)`` times ``n`` runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwnas._registry import Registry
from hwnas.devices import Device, resolve_threads
from hwnas.errors import RuntimeUnavailableError

__all__ = ["NodeTiming", "Prepared", "Backend", "get_backend", "backend_names", "list_backends", "register_backend", "random_inputs"]


@dataclass(frozen=True)
class NodeTiming:
    """Time of one executed kernel, median over profiled runs."""

    name: str
    op_type: str
    duration_ms: float
    fused: bool
    provider: str = ""
    output_shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dims(vi: onnx.ValueInfoProto, batch: int) -> tuple[int, ...]:
    dims = []
    for i, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif i == 0:
            dims.append(batch)
        else:
            raise RuntimeUnavailableError(
                f"input {vi.name!r} has a dynamic dimension {i} ({d.dim_param or '?'}); "
                "only the batch dimension may be dynamic"
            )
    return tuple(dims)


_NP_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_}


def random_inputs(model: onnx.ModelProto, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for every graph input that is not an initializer."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = _dims(vi, batch)
        dtype = _NP_TYPES.get(vi.type.tensor_type.elem_type, np.float32)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


#: runtime nodes that only convert a tensor's memory layout (ONNX Runtime's NCHWc reorders): an op
#: measured alone needs them around it, inside a model consecutive ops share the layout
LAYOUT_CONVERSIONS = frozenset({"ReorderInput", "ReorderOutput"})


class Prepared(ABC):
    """A model compiled for a device, ready to time."""

    @abstractmethod
    def sample(self, n: int) -> list[float]:
        """Run ``n`` times; each run's wall time in seconds."""

    def breakdown(self, runs: int = 10) -> list[NodeTiming] | None:
        """Per-kernel times, when the runtime can report them."""
        return None

    def kernel_ms(self, runs: int = 30) -> float | None:
        """The summed per-kernel times of ``breakdown`` without layout conversions (see
        ``LAYOUT_CONVERSIONS``): the kernels' own time; None when the runtime reports none."""
        nodes = self.breakdown(runs)
        if not nodes:
            return None
        # ONNX Runtime's profiler counts whole microseconds: a kernel below one reads 0; it is kept
        # at half a microsecond (a latency model learns log time)
        return max(float(sum(n.duration_ms for n in nodes if n.op_type not in LAYOUT_CONVERSIONS)), 0.0005)

    def close(self) -> None:
        """Release the runtime's resources and restore global settings."""


class Backend(ABC):
    name: str = ""
    install_hint: str = ""
    #: whether ``Prepared.breakdown`` reports per-kernel times (and so ``kernel_ms``)
    reports_kernel_times: bool = False

    @abstractmethod
    def check(self, device: Device | None = None) -> list[str]:
        """What is missing to run (on ``device``); empty when everything is there."""

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared: ...

    def prepare_op(self, cfg: Any, device: Device) -> Prepared:
        """Prepare an op configuration; by default via its ONNX model."""
        from hwnas.profilers._blocks import build_onnx

        return self.prepare(build_onnx(cfg), device)

    def require(self, device: Device) -> None:
        problems = self.check(device)
        if problems:
            raise RuntimeUnavailableError(
                f"device {device.name!r} cannot run here: " + "; ".join(problems)
            )


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------
_ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtPrepared(Prepared):
    def __init__(self, model: onnx.ModelProto, device: Device, backend: OrtBackend) -> None:
        self.model, self.device, self.backend = model, device, backend
        self.feeds = random_inputs(model, device.options.batch_size)
        self.session = backend.session(model, device)

    def sample(self, n: int) -> list[float]:
        run, feeds, pc = self.session.run, self.feeds, time.perf_counter
        out = []
        for _ in range(n):
            t = pc()
            run(None, feeds)
            out.append(pc() - t)
        return out

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
        problems = []
        if device is not None:
            provider = device.options.provider or "CPUExecutionProvider"
            if provider not in ort.get_available_providers():
                problems.append(
                    f"execution provider {provider} is not available (have: "
                    f"{', '.join(ort.get_available_providers())}); "
                    + ("install onnxruntime-gpu and CUDA/cuDNN" if "CUDA" in provider else self.install_hint)
                )
            if device.options.precision != "fp32":
                problems.append("the onnxruntime backend measures fp32 models; use precision = 'fp32'")
        return problems

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
        providers = [opts.provider or "CPUExecutionProvider"]
        return ort.InferenceSession(model.SerializeToString(), so, providers=providers)

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        self.require(device)
        return OrtPrepared(model, device, self)


# ---------------------------------------------------------------------------------------------
# TVM (relax)
# ---------------------------------------------------------------------------------------------
class TvmPrepared(Prepared):
    def __init__(self, model: onnx.ModelProto, device: Device, backend: TvmBackend) -> None:
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx



        self.tvm = tvm
        threads = resolve_threads(device.options.intra_op_threads)
        # TVM pins the calling thread when it configures its pool: undo that in close()
        self._affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        tvm.get_global_func("runtime.config_threadpool")(0, threads)
        feeds = random_inputs(model, device.options.batch_size)
        shape_dict = {k: list(v.shape) for k, v in feeds.items()}
        mod = from_onnx(model, shape_dict=shape_dict, keep_params_in_input=False)
        target = tvm.target.Target(json.loads(backend.resolved_target(device)))
        self.executable = tvm.compile(mod, target=target)
        self.dev = tvm.cuda() if device.options.device_type == "cuda" else tvm.cpu()
        self.vm = relax.VirtualMachine(self.executable, self.dev)
        names = [i.name for i in model.graph.input if i.name in feeds]
        self.args = [tvm.runtime.tensor(feeds[n], self.dev) for n in names]
        self._timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=1)

    def sample(self, n: int) -> list[float]:
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=n) if n > 1 else self._timer
        return [float(r) for r in timer(*self.args).results]

    def breakdown(self, runs: int = 10) -> list[NodeTiming]:
        """Per-call times from the relax VM's instrument hook (builtins excluded)."""
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


class TvmBackend(Backend):
    name = "tvm"
    install_hint = "pip install apache-tvm   (or: pip install 'hwnas[tvm]')"

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
        return json.dumps({"kind": t}, sort_keys=True)

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        self.require(device)
        return TvmPrepared(model, device, self)


# ---------------------------------------------------------------------------------------------
# PyTorch (eager)
# ---------------------------------------------------------------------------------------------
class TorchPrepared(Prepared):
    def __init__(self, module: Any, inputs: list[Any], device: Device) -> None:
        import torch



        self.torch = torch
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(resolve_threads(device.options.intra_op_threads))
        self.cuda = device.options.device_type == "cuda"
        dev = torch.device("cuda" if self.cuda else "cpu")
        dtype = torch.float16 if device.options.precision == "fp16" else torch.float32
        self.module = module.to(dev, dtype).eval()
        self.inputs = [x.to(dev, dtype) for x in inputs]

    def sample(self, n: int) -> list[float]:
        torch, m, xs = self.torch, self.module, self.inputs
        out = []
        with torch.inference_mode():
            if self.cuda:
                events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
                torch.cuda.synchronize()
                for start, end in events:
                    start.record()
                    m(*xs)
                    end.record()
                torch.cuda.synchronize()
                return [s.elapsed_time(e) / 1e3 for s, e in events]
            pc = time.perf_counter
            for _ in range(n):
                t = pc()
                m(*xs)
                out.append(pc() - t)
        return out

    def close(self) -> None:
        self.torch.set_num_threads(self._threads_before)


class TorchBackend(Backend):
    name = "torch"
    install_hint = "pip install torch"

    def check(self, device: Device | None = None) -> list[str]:
        try:
            import torch
        except ImportError:
            return [f"PyTorch is not installed: {self.install_hint}"]
        if device is not None and device.options.device_type == "cuda" and not torch.cuda.is_available():
            return ["no CUDA GPU is available to PyTorch (torch.cuda.is_available() is False)"]
        if device is not None and device.options.precision == "fp16" and device.options.device_type == "cpu":
            return ["fp16 eager inference is a GPU setting; use precision = 'fp32' on the CPU"]
        return []

    #: how hwnas builds the modules it times; part of the fingerprint, so measurements taken before
    #: a change (before batch norms were folded: one kernel more per conv) are not mixed with later ones
    OPS_TAG = "bn-folded"

    def version(self) -> str:
        import torch

        return f"{torch.__version__} ({self.OPS_TAG})"

    def prepare_op(self, cfg: Any, device: Device) -> Prepared:
        import torch

        from hwnas.profilers._blocks import build_module, fold_batch_norms

        self.require(device)
        rng = np.random.default_rng(0)
        inputs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in cfg.input_shapes()]
        return TorchPrepared(fold_batch_norms(build_module(cfg)), inputs, device)

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        self.require(device)
        try:
            from onnx2torch import convert
        except ImportError:
            raise RuntimeUnavailableError(
                "the torch runtime runs ONNX files through onnx2torch, which is not installed: "
                "pip install onnx2torch (it needs a torchvision that matches your torch). Op "
                "configurations (hwnas profile) run on the torch runtime without it"
            ) from None
        import torch

        feeds = random_inputs(model, device.options.batch_size)
        return TorchPrepared(convert(model), [torch.from_numpy(v) for v in feeds.values()], device)


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


