"""Export a searched architecture as a deployable ONNX model, verified and measured.

Build -> train (or not) -> ONNX (opset 17, optional dynamic batch) -> ``onnx.checker`` ->
ONNX Runtime vs PyTorch parity on random inputs (a failure is an error) -> real latency on the
device -> ``model_card.json`` (and, for TVM devices, the compiled library).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwnas.errors import HwnasError

__all__ = ["ArchSpec", "load_arch_spec", "export_architecture", "ExportResult", "versions", "OPSET"]

OPSET = 17


@dataclass(frozen=True)
class ArchSpec:
    """What to build: a space (with its settings) and an architecture string."""

    space: str
    arch: str
    space_args: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    budget_ms: float | None = None
    dataset: str = "digits"
    resolution: int | None = None

    def build_space(self) -> Any:
        from hwnas.search.spaces import create_space

        try:
            return create_space(self.space, **self.space_args)
        except TypeError as exc:
            raise HwnasError(f"bad settings for space {self.space!r}: {exc}") from None


def load_arch_spec(path: str | Path, front: int | None = None) -> ArchSpec:
    """A run directory (its ``best.json``), a ``best.json``, or an architecture JSON
    ``{"space": ..., "arch": ..., "space_args": {...}}``. With ``front``, a run's member of the
    accuracy-latency front instead of its best: 0 the fastest, -1 the most accurate."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.json"
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise HwnasError(f"not found: {p} (give a run directory with best.json, or an architecture JSON)") from None
    except json.JSONDecodeError as exc:
        raise HwnasError(f"{p} is not JSON ({exc})") from None
    if front is not None and "settings" not in data:
        raise HwnasError(f"a front member needs a run directory (its best.json); {p} is an architecture JSON")
    if "settings" in data and front is not None:
        members = data.get("pareto_front")
        if members is None:
            raise HwnasError(f"{p} holds no front (written by an older hwnas); export with --arch instead")
        if not -len(members) <= front < len(members):
            raise HwnasError(f"the run's front has {len(members)} members: give 0..{len(members) - 1} "
                             f"(0 the fastest) or -1 (the most accurate); got {front}")
        m, s = members[front], data["settings"]
        return ArchSpec(s["space"], m["arch"], s.get("space_args") or {}, m.get("accuracy"),
                        s.get("limit_ms") or s.get("target_ms"), s.get("dataset", "digits"), s.get("resolution"))
    if "settings" in data:  # a run's best.json
        if not data.get("best"):
            raise HwnasError(f"the run {p.parent} has no architecture within its latency limit to export")
        s = data["settings"]
        return ArchSpec(s["space"], data["best"]["arch"], s.get("space_args") or {}, data["best"].get("accuracy"),
                        s.get("limit_ms") or s.get("target_ms"), s.get("dataset", "digits"), s.get("resolution"))
    if "space" not in data or "arch" not in data:
        raise HwnasError(f"{p} needs 'space' and 'arch' (and optionally 'space_args')")
    return ArchSpec(data["space"], data["arch"], data.get("space_args") or {}, data.get("accuracy"),
                    data.get("budget_ms"), data.get("dataset", "digits"), data.get("resolution"))


def versions() -> dict[str, str]:
    import onnxruntime
    import torch

    import hwnas

    out = {"hwnas": hwnas.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import tvm

        out["tvm"] = tvm.__version__
    except ImportError:
        pass
    return out


@dataclass
class ExportResult:
    card: dict[str, Any]
    onnx_path: Path
    card_path: Path
    library_path: Path | None
    measurement: Any = None


def _to_onnx(module: Any, input_shape: tuple[int, ...], dynamic_batch: bool) -> onnx.ModelProto:
    import io
    import warnings

    import torch

    if hasattr(module, "to_onnx"):  # our own graph builder: batch norms folded, opset 17
        return module.to_onnx("hwnas_model", dynamic_batch=dynamic_batch)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(*input_shape), buf, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None)
    return onnx.load_from_string(buf.getvalue())


def check_parity(model: onnx.ModelProto, module: Any, input_shape: tuple[int, ...], n: int = 5, seed: int = 0,
                 batch_sizes: tuple[int, ...] = (1,)) -> float:
    """Max absolute difference between ONNX Runtime and PyTorch on ``n`` random inputs per batch
    size; raises :class:`HwnasError` beyond ``1e-4 + 1e-3 * max|output|``."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    worst = 0.0
    module.eval()
    for b in batch_sizes:
        for _ in range(n):
            x = rng.standard_normal((b, *input_shape[1:])).astype(np.float32)
            got = sess.run(None, {name: x})[0]
            with torch.no_grad():
                ref = module(torch.from_numpy(x)).numpy()
            if got.shape != ref.shape:
                raise HwnasError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
            diff = float(np.abs(got - ref).max())
            worst = max(worst, diff)
            if diff > 1e-4 + 1e-3 * float(np.abs(ref).max()):
                raise HwnasError(f"ONNX Runtime and PyTorch disagree: max abs difference {diff:.3g} "
                                 f"(outputs up to {float(np.abs(ref).max()):.3g}); the export is not faithful")
    return worst


def export_architecture(spec: ArchSpec, device: Any, out: str | Path, predictor: Any = None, epochs: int = 5,
                        train: bool = True, dataset: str | None = None, resolution: int | None = None,
                        dynamic_batch: bool = False, policy: Any = None, store: Any = None, seed: int = 0,
                        train_device: str = "cpu", drift: Any = None) -> ExportResult:
    """Build, train, export, verify and measure ``spec`` on ``device``; write the model card.
    With a :class:`~hwnas.profilers.DriftPolicy` the measurement is bracketed by readings of the
    speed reference, and the card says how fast the device was against the store's baseline."""
    import torch

    from hwnas.devices import fingerprint
    from hwnas.profilers import Profiler, get_backend

    out = Path(out)
    if out.suffix != ".onnx":
        raise HwnasError(f"the output must be an .onnx file, got {out}")
    get_backend(device.runtime).require(device)
    if device.runtime == "torch":
        raise HwnasError(f"{device.name} runs the torch runtime, which measures ONNX files only through onnx2torch "
                         "(not installed); export for an ONNX Runtime or TVM device")
    space = spec.build_space()
    arch = space.from_string(spec.arch)
    try:
        space.restrict(device.constraints).validate(arch)
    except HwnasError as exc:
        raise HwnasError(f"{device.name} cannot run this architecture: {exc}") from None
    c = device.constraints
    params, flops = space.params(arch), space.flops(arch)
    if c.max_params is not None and params > c.max_params:
        raise HwnasError(f"{device.name} allows {c.max_params:,} parameters; this architecture has {params:,}")
    if c.max_peak_memory_mb is not None and space.peak_memory_mb(arch) > c.max_peak_memory_mb:
        raise HwnasError(f"{device.name} allows {c.max_peak_memory_mb} MB of activations; this architecture "
                         f"needs {space.peak_memory_mb(arch):.1f} MB")
    input_shape = tuple(space.input_shape(arch))
    accuracy = None
    t0 = time.perf_counter()
    dataset = dataset or spec.dataset
    classes = getattr(space, "classes", None)
    if train:
        from hwnas.search._evaluators import ProxyTrainingEvaluator

        res = resolution or spec.resolution or (input_shape[-1] if len(input_shape) == 4 else None)
        ev = ProxyTrainingEvaluator(space, dataset, epochs, res, device=train_device, seed=seed)
        module, accuracy = ev.train(arch)
        classes = ev.data[4]
        module = module.cpu()
        if res is not None and len(input_shape) == 4 and res != input_shape[-1]:
            deployed = space.build_module(arch, classes=classes)
            deployed.load_state_dict(module.state_dict())  # convolutions do not depend on resolution
            module = deployed
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = space.build_module(arch, classes=classes or 10)
    train_s = time.perf_counter() - t0
    module = module.eval()
    model = _to_onnx(module, input_shape, dynamic_batch)
    model.graph.name = f"{space.name}:{spec.arch}"
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_parity(model, module, input_shape, batch_sizes=(1, 3) if dynamic_batch else (1,))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    profiler = Profiler(device, policy, store, drift=drift, auto_pin=drift is not None)
    if profiler.guard is not None:  # measured between readings of the speed reference
        m = profiler.guard.run([model], lambda x: profiler.profile_model(x, name=out.name), "export")[0]
    else:
        m = profiler.profile_model(model, name=out.name)
    predicted = predicted_onnx = None
    if predictor is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predicted = float(predictor.predict_architecture(space.op_configs(arch)))
            predicted_onnx = float(predictor.predict_onnx(model).latency_ms)
    library = None
    if device.runtime == "tvm":
        library = out.with_suffix(".so")
        _tvm_export_library(model, device, library)
    budget = spec.budget_ms
    card = {
        "arch": spec.arch, "space": space.name, "space_args": spec.space_args,
        "accuracy": accuracy, "accuracy_dataset": dataset if train else None, "trained_epochs": epochs if train else 0,
        "search_accuracy": spec.accuracy, "params": params, "flops": flops,
        "predicted_latency_ms": predicted, "predicted_latency_onnx_ms": predicted_onnx,
        "measured_latency_ms": m.latency_ms,
        "measured": {"p10_ms": m.stats.p10_ms, "p90_ms": m.stats.p90_ms, "runs": m.stats.n_runs,
                     "rounds": m.stats.n_rounds},
        "measured_over_predicted": (m.latency_ms / predicted) if predicted else None,
        "budget_ms": budget, "meets_budget": (m.latency_ms <= budget) if budget else None,
        # the device's speed when measured, relative to when the store was profiled (None: not checked)
        "speed_factor": (profiler.guard.readings_ms[-1] / profiler.guard.baseline_ms) if profiler.guard else None,
        "speed_check": profiler.guard.summary() if profiler.guard else None,
        "pinned_cpus": list(profiler.pinned) if profiler.pinned else None,
        "device": device.name, "fingerprint": fingerprint(device).to_dict(),
        "versions": versions(), "onnx": out.name, "opset": OPSET, "input_shape": list(input_shape),
        "dynamic_batch": dynamic_batch, "parity_max_abs_diff": max_diff,
        "compiled_library": library.name if library else None,
        "breakdown": [n.to_dict() for n in sorted(m.breakdown, key=lambda n: -n.duration_ms)[:30]],
        "train_seconds": round(train_s, 2),
    }
    card_path = out.parent / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    return ExportResult(card, out, card_path, library, m)


def _tvm_export_library(model: onnx.ModelProto, device: Any, path: Path) -> None:
    """Compile with TVM relax for the device's target and write the deployable library."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    from hwnas.profilers import get_backend
    from hwnas.profilers._backends import random_inputs

    backend = get_backend("tvm")
    feeds = random_inputs(model, device.options.batch_size)
    mod = from_onnx(model, shape_dict={k: list(v.shape) for k, v in feeds.items()}, keep_params_in_input=False)
    target = tvm.target.Target(json.loads(backend.resolved_target(device)))
    executable = tvm.compile(mod, target=target)
    executable.export_library(str(path))


def card_summary(card: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for a human summary of a model card."""

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.3f} ms"

    rows = [("architecture", f"{card['space']}: {card['arch']}"),
            ("accuracy", "-" if card["accuracy"] is None else f"{card['accuracy']:.4f} ({card['accuracy_dataset']})"),
            ("parameters / MACs", f"{card['params']:,} / {card['flops']:,}"),
            ("measured latency", f"{ms(card['measured_latency_ms'])} on {card['device']}"),
            ("predicted latency", ms(card["predicted_latency_ms"])),
            ("budget", "-" if card["budget_ms"] is None else
             f"{ms(card['budget_ms'])} ({'met' if card['meets_budget'] else 'NOT met'})"),
            ("ONNX parity (max abs diff)", f"{card['parity_max_abs_diff']:.2e}")]
    if card.get("speed_factor") is not None:
        rows.append(("device speed", f"reference op at {card['speed_factor']:.2f}x the store's baseline "
                                     "(> 1: slower than when profiled)"))
    return rows


