"""The PyTorch runtime: eager modules, or CUDA graphs of them on a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from hwnas.devices import Device, resolve_threads
from hwnas.errors import RuntimeUnavailableError
from hwnas.profilers._runtime import Backend, Prepared, random_inputs, wall_times

__all__ = ["TorchBackend", "TorchPrepared"]


# ---------------------------------------------------------------------------------------------
# PyTorch (eager)
# ---------------------------------------------------------------------------------------------
class TorchPrepared(Prepared):
    """A torch module on the device, timed eager or, with ``graphs``, replayed as one CUDA graph.

    A CUDA graph is captured once after warm-up runs on a side stream (cuDNN's algorithm choice and
    the allocator settle there); the timed region holds the replays only, each between two CUDA
    events, as TensorRT and ``torch.compile(mode="reduce-overhead")`` deployments run a network.
    """

    WARMUP_RUNS = 3

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
        self.graph = self._capture() if device.options.graphs else None

    def _capture(self) -> Any:
        """Warm up on a side stream, then capture one forward pass as a CUDA graph."""
        torch, m, xs = self.torch, self.module, self.inputs
        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_RUNS):
                    m(*xs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self._output = m(*xs)
            except RuntimeError as exc:
                raise RuntimeUnavailableError(
                    f"CUDA graph capture failed ({str(exc).splitlines()[0]}); time it eager with "
                    "cuda_graphs = false in the device's options") from None
        torch.cuda.synchronize()
        return graph

    def _events(self, n: int, run: Any) -> list[float]:
        torch = self.torch
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        torch.cuda.synchronize()
        for start, end in events:
            start.record()
            run()
            end.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) / 1e3 for s, e in events]

    def sample(self, n: int) -> list[float]:
        torch, m, xs = self.torch, self.module, self.inputs
        if self.graph is not None:
            return self._events(n, self.graph.replay)
        with torch.inference_mode():
            if self.cuda:
                return self._events(n, lambda: m(*xs))
            return wall_times(lambda: m(*xs), n)

    def close(self) -> None:
        self.graph = None
        self.torch.set_num_threads(self._threads_before)


class TorchBackend(Backend):
    """PyTorch: op configurations as hwnas's own torch blocks (batch norms folded), ONNX models through
    :func:`hwnas.profilers.onnx_to_torch`; eager on the CPU, CUDA graphs on a GPU by default."""

    name = "torch"
    install_hint = "pip install torch"

    def check(self, device: Device | None = None) -> list[str]:
        try:
            import torch
        except ImportError:
            return [f"PyTorch is not installed: {self.install_hint}"]
        if device is None:
            return []
        opts = device.options
        if opts.device_type == "cuda" and not torch.cuda.is_available():
            return ["no CUDA GPU is available to PyTorch (torch.cuda.is_available() is False)"]
        if opts.precision == "fp16" and opts.device_type == "cpu":
            return ["fp16 eager inference is a GPU setting; use precision = 'fp32' on the CPU"]
        if opts.precision == "int8":
            return ["the torch runtime measures fp32 and fp16; for int8 use an onnxruntime device (cpu-ort-int8)"]
        return []

    #: how hwnas builds the modules it times; part of the fingerprint, so measurements taken before
    #: a change (before batch norms were folded: one kernel more per conv) are not mixed with later ones
    OPS_TAG = "bn-folded"

    def version(self) -> str:
        import torch

        return f"{torch.__version__} ({self.OPS_TAG})"

    def setup_tag(self, device: Device) -> str:
        return "cuda-graphs" if device.options.graphs else ""

    def prepare_op(self, cfg: Any, device: Device) -> Prepared:
        import torch

        from hwnas.profilers._blocks import build_module, fold_batch_norms

        self.require(device)
        rng = np.random.default_rng(0)
        inputs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in cfg.input_shapes()]
        return TorchPrepared(fold_batch_norms(build_module(cfg)), inputs, device)

    def prepare(self, model: onnx.ModelProto, device: Device) -> Prepared:
        import torch

        from hwnas.profilers._onnx_torch import onnx_to_torch

        self.require(device)
        feeds = random_inputs(model, device.options.batch_size)
        return TorchPrepared(onnx_to_torch(model), [torch.from_numpy(v) for v in feeds.values()], device)
