"""What every runtime backend implements: a :class:`Backend` prepares a model for a device and
returns a :class:`Prepared` runner whose ``sample(n)`` times ``n`` runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from hwnas.devices import Device
from hwnas.errors import RuntimeUnavailableError

__all__ = ["NodeTiming", "Prepared", "Backend", "random_inputs", "wall_times", "LAYOUT_CONVERSIONS", "BOUNDARY_CONVERSIONS"]


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

#: runtime nodes at an op's edges that a model does not repeat between consecutive ops: layout
#: conversions, and an int8 op's quantization of its input and dequantization of its output
#: (and the NHWC transposes ONNX Runtime inserts around int8 convolutions: ``is_boundary``)
BOUNDARY_CONVERSIONS = LAYOUT_CONVERSIONS | {"QuantizeLinear", "DequantizeLinear"}


def is_boundary(node: NodeTiming) -> bool:
    """A conversion at an op's edges (see ``BOUNDARY_CONVERSIONS``); a ``Transpose`` counts when
    the runtime inserted it (``fused``), not when the model has it."""
    return node.op_type in BOUNDARY_CONVERSIONS or (node.op_type == "Transpose" and node.fused)


def wall_times(run: Any, n: int) -> list[float]:
    """``run()`` called ``n`` times; each call's wall time in seconds."""
    import time

    pc, out = time.perf_counter, []
    for _ in range(n):
        t = pc()
        run()
        out.append(pc() - t)
    return out


class Prepared(ABC):
    """A model compiled for a device, ready to time."""

    @abstractmethod
    def sample(self, n: int) -> list[float]:
        """Run ``n`` times; each run's wall time in seconds."""

    def breakdown(self, runs: int = 10) -> list[NodeTiming] | None:
        """Per-kernel times, when the runtime can report them."""
        return None

    def kernel_ms(self, runs: int = 30) -> float | None:
        """The summed per-kernel times of ``breakdown`` without the conversions at the op's edges
        (see ``BOUNDARY_CONVERSIONS``): the kernels' own time; None when the runtime reports none."""
        nodes = self.breakdown(runs)
        if not nodes:
            return None
        # ONNX Runtime's profiler counts whole microseconds: a kernel below one reads 0; it is kept
        # at half a microsecond (a latency model learns log time)
        return max(float(sum(n.duration_ms for n in nodes if not is_boundary(n))), 0.0005)

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

    def connect(self, device: Device) -> None:
        """Reach the device before any measurement (a remote one: open its session), so that a
        device that does not answer fails at once, in one line."""

    def setup_tag(self, device: Device) -> str:
        """How this backend runs ``device`` beyond its options' fields (CUDA graphs, a quantization
        recipe); part of the fingerprint, so measurements taken another way never mix. Empty when
        there is nothing to add."""
        return ""

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


