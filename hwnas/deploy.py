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

from hwnas._files import read_json
from hwnas.errors import HwnasError
from hwnas.profilers import OPSET, Profiler, fingerprint, get_backend, module_to_onnx
from hwnas.search import RunDir, write_json
from hwnas.search.spaces import create_space

__all__ = ["ArchSpec", "ModelCard", "load_arch_spec", "export_architecture", "check_output", "check_parity", "card_summary", "versions"]


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

    @classmethod
    def from_settings(cls, settings: dict[str, Any], arch: str, accuracy: float | None = None) -> ArchSpec:
        """A run's architecture: the run's space, settings, dataset and resolution, and its limit
        (else its target) as the budget."""
        return cls(settings["space"], arch, dict(settings.get("space_args") or {}), accuracy,
                   settings.get("limit_ms") or settings.get("target_ms"), settings.get("dataset", "digits"),
                   settings.get("resolution"))

    def build_space(self) -> Any:
        try:
            return create_space(self.space, **self.space_args)
        except TypeError as exc:
            raise HwnasError(f"bad settings for space {self.space!r}: {exc}") from None


def load_arch_spec(path: str | Path, front: int | None = None) -> ArchSpec:
    """A run directory (its ``best.json``), a ``best.json``, or an architecture JSON
    ``{"space": ..., "arch": ..., "space_args": {...}}``. With ``front``, a run's member of the
    accuracy-latency front instead of its best: 0 the fastest, -1 the most accurate."""
    p = Path(path)
    if p.is_dir() or p.name == "best.json":
        return _run_spec(RunDir(p if p.is_dir() else p.parent), front)
    if not p.exists():
        raise HwnasError(f"not found: {p} (give a run directory with best.json, or an architecture JSON)")
    data = read_json(p)
    if isinstance(data, dict) and "settings" in data:
        return _run_spec(RunDir(p.parent), front, p)
    if front is not None:
        raise HwnasError(f"a front member needs a run directory (its best.json); {p} is an architecture JSON")
    if not isinstance(data, dict) or not isinstance(data.get("space"), str) or not isinstance(data.get("arch"), str):
        raise HwnasError(f"{p} needs 'space' and 'arch' strings (and optionally 'space_args')")
    return ArchSpec(data["space"], data["arch"], data.get("space_args") or {}, data.get("accuracy"),
                    data.get("budget_ms"), data.get("dataset", "digits"), data.get("resolution"))


def _run_spec(run: RunDir, front: int | None, best_json: Path | None = None) -> ArchSpec:
    """The best trial of a run, or a member of its front."""
    if best_json is not None and best_json != run.best_json:
        run = RunDir(best_json.parent)
    data = run.read_best()
    s = data["settings"]
    if front is None:
        if not data.get("best"):
            raise HwnasError(f"the run {run.path} has no architecture within its latency limit to export")
        m = data["best"]
    else:
        members = data.get("pareto_front")
        if members is None:
            raise HwnasError(f"{run.best_json} holds no front (written by an older hwnas); export with --arch instead")
        if not -len(members) <= front < len(members):
            raise HwnasError(f"the run's front has {len(members)} members: give 0..{len(members) - 1} "
                             f"(0 the fastest) or -1 (the most accurate); got {front}")
        m = members[front]
    return ArchSpec.from_settings(s, m["arch"], m.get("accuracy"))


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


class ModelCard(dict):
    """An exported model's card (``model_card.json``'s content: architecture, accuracy, predicted and
    measured latency, budget, parity, fingerprint, versions), with where the files are."""

    def __init__(self, card: dict[str, Any], onnx_path: Path, card_path: Path, library_path: Path | None = None,
                 measurement: Any = None) -> None:
        super().__init__(card)
        self.onnx_path, self.card_path, self.library_path, self.measurement = onnx_path, card_path, library_path, measurement

    @property
    def card(self) -> dict[str, Any]:
        """The card as a plain dict."""
        return dict(self)


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
                        train_device: str = "cpu", drift: Any = None, overwrite: bool = False,
                        card_extra: Any = None, weights: Any = None) -> ModelCard:
    """Build, train (``epochs`` on ``dataset``; untrained with ``train=False``; from ``weights``, a
    ``state_dict`` of the module such as a supernet's subnetwork, fine-tuned ``epochs``, 0 for
    as they are, batch norm re-estimated on the training images), export to ONNX,
    check, verify parity with PyTorch, measure on ``device`` and write ``model_card.json`` beside
    the model (and, for TVM devices, the compiled library). With a
    :class:`~hwnas.profilers.DriftPolicy` the measurement is bracketed by readings of the speed
    reference, and the card says how fast the device was against the store's baseline. An
    existing model or another model's card in the folder is refused unless ``overwrite``.
    ``card_extra()``, called right after the measurement, returns more fields for the card."""
    out = Path(out)
    check_output(out, overwrite)
    get_backend(device.runtime).require(device)
    space, arch = _checked_arch(spec, device)
    input_shape = tuple(space.input_shape(arch))
    t0 = time.perf_counter()
    module, accuracy = _trained_module(space, arch, spec, epochs, train, dataset, resolution, seed, train_device,
                                       weights)
    train_s = time.perf_counter() - t0
    model = module_to_onnx(module, input_shape, dynamic_batch)
    model.graph.name = f"{space.name}:{spec.arch}"
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_parity(model, module, input_shape, batch_sizes=(1, 3) if dynamic_batch else (1,))
    fp32_model, precision = model, {}
    if device.options.precision == "int8":
        model, precision = _int8(model, spec, dataset, train, seed, input_shape)
    profiler = Profiler(device, policy, store, drift=drift, auto_pin=drift is not None)
    if profiler.guard is not None:  # measured between readings of the speed reference
        m = profiler.guard.run([model], lambda x: profiler.profile_model(x, name=out.name), "export")[0]
    else:
        m = profiler.profile_model(model, name=out.name)
    if precision:
        precision.update(_fp32_latency(fp32_model, device, policy, store, m.latency_ms))
        _save(fp32_model, out.with_suffix(".fp32.onnx"))
    predicted, predicted_onnx = _predicted(predictor, space, arch, fp32_model)
    library = out.with_suffix(".so") if device.runtime == "tvm" else None
    card = {
        "arch": spec.arch, "space": space.name, "space_args": spec.space_args,
        "accuracy": accuracy, "accuracy_dataset": (dataset or spec.dataset) if train else None,
        "trained_epochs": epochs if train else 0, "weights": "given" if weights is not None else (
            "trained" if train else "untrained"), "search_accuracy": spec.accuracy,
        "params": space.params(arch), "flops": space.flops(arch),
        "predicted_latency_ms": predicted, "predicted_latency_onnx_ms": predicted_onnx,
        "measured_latency_ms": m.latency_ms,
        "measured": {"p10_ms": m.stats.p10_ms, "p90_ms": m.stats.p90_ms, "runs": m.stats.n_runs,
                     "rounds": m.stats.n_rounds},
        "measured_over_predicted": (m.latency_ms / predicted) if predicted else None,
        "budget_ms": spec.budget_ms, "meets_budget": (m.latency_ms <= spec.budget_ms) if spec.budget_ms else None,
        **_speed_fields(profiler),
        "device": device.name, "fingerprint": fingerprint(device).to_dict(),
        "versions": versions(), "onnx": out.name, "opset": OPSET, "input_shape": list(input_shape),
        "dynamic_batch": dynamic_batch, "parity_max_abs_diff": max_diff,
        "compiled_library": library.name if library else None,
        "breakdown": [n.to_dict() for n in sorted(m.breakdown, key=lambda n: -n.duration_ms)[:30]],
        "train_seconds": round(train_s, 2), **precision,
        **(card_extra() if card_extra is not None else {}),
    }
    return _write(model, out, card, device, library, m)


def _int8(model: onnx.ModelProto, spec: ArchSpec, dataset: str | None, train: bool, seed: int,
          input_shape: tuple[int, ...]) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The model quantized for an int8 device, calibrated on training images at the deployed input
    size (random inputs for an untrained model), and the card's ``int8`` section: both models'
    accuracy on the validation images, run by ONNX Runtime."""
    from hwnas.profilers import INT8_RECIPE, dataset_feeds, onnx_accuracy, quantize_int8

    if not train:
        return quantize_int8(model), {"int8": {"recipe": INT8_RECIPE, "calibration": "random inputs"}}
    from hwnas.search._evaluators import load_dataset

    res = input_shape[-1] if len(input_shape) == 4 else None
    xt, _, xv, yv, _ = load_dataset(dataset or spec.dataset, res, seed)
    xt, xv, yv = xt.numpy(), xv.numpy(), yv.numpy()
    if len(input_shape) == 2:  # the mlp space: one channel, flattened
        xt, xv = xt[:, 0].reshape(len(xt), -1), xv[:, 0].reshape(len(xv), -1)
    feeds = dataset_feeds(model, xt)
    q = quantize_int8(model, feeds)
    a32, a8 = onnx_accuracy(model, xv, yv), onnx_accuracy(q, xv, yv)
    return q, {"int8": {"recipe": INT8_RECIPE, "calibration": f"{len(feeds)} training images",
                        "accuracy_fp32": a32, "accuracy_int8": a8, "accuracy_drop": a32 - a8,
                        "validation_images": len(yv)}}


def _fp32_latency(model: onnx.ModelProto, device: Any, policy: Any, store: Any, int8_ms: float) -> dict[str, Any]:
    """The fp32 model measured on the device's fp32 twin (same runtime and options), beside the int8 one."""
    import dataclasses

    twin = device.replace(name=f"{device.name}@fp32", options=dataclasses.replace(device.options, precision="fp32"))
    ms = Profiler(twin, policy, store).profile_model(model, breakdown_runs=0).latency_ms
    return {"fp32_latency_ms": ms, "int8_speedup": ms / int8_ms}


def _save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def check_output(out: Path, overwrite: bool = False) -> None:
    """Refuse an output that is not an .onnx path, a folder, an existing model, or a folder whose
    card belongs to another model, unless ``overwrite``."""
    if out.suffix != ".onnx":
        raise HwnasError(f"the output must be an .onnx file, got {out}")
    if out.is_dir():
        raise HwnasError(f"{out} is a directory; give the .onnx file to write")
    if overwrite:
        return
    if out.exists():
        raise HwnasError(f"{out} exists; refusing to replace it (overwrite=True / --overwrite replaces it)")
    card = out.parent / "model_card.json"
    if card.exists():
        raise HwnasError(f"{card} exists (another model's card); refusing to replace it: export into another folder "
                         "(or overwrite=True / --overwrite)")


def _checked_arch(spec: ArchSpec, device: Any) -> tuple[Any, Any]:
    """The space and architecture of ``spec``, checked against the device's constraints."""
    space = spec.build_space()
    arch = space.from_string(spec.arch)
    try:
        space.restrict(device.constraints).validate(arch)
    except HwnasError as exc:
        raise HwnasError(f"{device.name} cannot run this architecture: {exc}") from None
    c = device.constraints
    params = space.params(arch)
    if c.max_params is not None and params > c.max_params:
        raise HwnasError(f"{device.name} allows {c.max_params:,} parameters; this architecture has {params:,}")
    if c.max_peak_memory_mb is not None and space.peak_memory_mb(arch) > c.max_peak_memory_mb:
        raise HwnasError(f"{device.name} allows {c.max_peak_memory_mb} MB of activations; this architecture "
                         f"needs {space.peak_memory_mb(arch):.1f} MB")
    return space, arch


def _trained_module(space: Any, arch: Any, spec: ArchSpec, epochs: int, train: bool, dataset: str | None,
                    resolution: int | None, seed: int, train_device: str, weights: Any = None
                    ) -> tuple[Any, float | None]:
    """The module to deploy (eval mode, on the CPU) and its validation accuracy (None untrained):
    trained (from ``weights`` where given) at ``resolution`` and rebuilt at the deployed input size
    where they differ."""
    import torch

    from hwnas.search import ProxyTrainingEvaluator

    input_shape = tuple(space.input_shape(arch))
    if not train:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return space.build_module(arch, classes=getattr(space, "classes", None) or 10).eval(), None
    res = resolution or spec.resolution or (input_shape[-1] if len(input_shape) == 4 else None)
    ev = ProxyTrainingEvaluator(space, dataset or spec.dataset, epochs, res, device=train_device, seed=seed)
    module, accuracy = ev.train(arch) if weights is None else ev.train_inherited(arch, weights, epochs)[:2]
    module = module.cpu()
    if res is not None and len(input_shape) == 4 and res != input_shape[-1]:
        deployed = space.build_module(arch, classes=ev.data[4])
        deployed.load_state_dict(module.state_dict())  # convolutions do not depend on resolution
        module = deployed
    return module.eval(), accuracy


def _predicted(predictor: Any, space: Any, arch: Any, model: onnx.ModelProto) -> tuple[float | None, float | None]:
    """The predictor's latency of the architecture (its op configurations) and of the ONNX graph."""
    if predictor is None:
        return None, None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (float(predictor.predict_architecture(space.op_configs(arch))),
                float(predictor.predict_onnx(model).latency_ms))


def _speed_fields(profiler: Any) -> dict[str, Any]:
    g = profiler.guard
    return {  # the device's speed when measured, relative to when the store was profiled (None: not checked)
        "speed_factor": (g.readings_ms[-1] / g.baseline_ms) if g else None,
        "speed_check": g.summary() if g else None,
        "pinned_cpus": list(profiler.pinned) if profiler.pinned else None,
    }


def _write(model: onnx.ModelProto, out: Path, card: dict[str, Any], device: Any, library: Path | None,
           measurement: Any) -> ModelCard:
    """The model (through a temporary name), the TVM library and the card."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(model, out)
    if library is not None:
        _tvm_export_library(model, device, library)
    card_path = out.parent / "model_card.json"
    write_json(card_path, card)
    return ModelCard(card, out, card_path, library, measurement)


def _tvm_export_library(model: onnx.ModelProto, device: Any, path: Path) -> None:
    """Compile with TVM relax for the device's target and write the deployable library."""
    from hwnas.profilers import random_inputs
    from hwnas.profilers._tvm_remote import export_for
    from hwnas.profilers._tvm_tune import compile_onnx

    backend = get_backend("tvm")
    feeds = random_inputs(model, device.options.batch_size)
    release = (lambda: backend.sessions.release(device.remote)) if device.remote is not None else None
    executable = compile_onnx(model, device, backend.resolved_target(device), {k: list(v.shape) for k, v in feeds.items()},
                              before_tuning=release)
    export_for(executable, device, path.parent, path.name)  # the device's cross compiler where it has one


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


