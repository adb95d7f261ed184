"""Compiling ONNX models with TVM relax, tuned by MetaSchedule where the device asks for it.

A device with ``tune_trials = N`` (N > 0) has every task (fused TIR function) of a model tuned by
``tvm.s_tir.meta_schedule`` for N trials before it is compiled; the records go to the device's
tuning database (a MetaSchedule JSON database in a directory, :func:`tuning_dir`), and a task
already in the database is not tuned again, so a workload is tuned once for every later op
profile, whole-model measurement and export on that device. A remote device is tuned with the
builder here (its cross compiler) and the runner on the remote over the tracker.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx

from hwnas.devices import Device
from hwnas.errors import HwnasError

__all__ = ["tuning_dir", "compile_onnx", "TuningStats", "tuning_tag", "tuning_target"]


def tuning_dir(device: Device) -> Path:
    """The device's MetaSchedule database directory: its ``tune_database`` option, or
    ``<user cache dir>/hwnas/tvm-tuning/<device name>-<trials>trials`` (beside the default profile
    store; one database per trial budget)."""
    if device.options.tune_database:
        return Path(device.options.tune_database).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hwnas")) / "tvm-tuning" / f"{device.name}-{device.options.tune_trials}trials"


def tuning_tag(device: Device) -> str:
    """How the device is tuned, for its fingerprint ("" when untuned)."""
    n = device.options.tune_trials
    return f"meta_schedule {n} trials/task, database {tuning_dir(device)}" if n else ""


class TuningStats:
    """What tuning did in this process: tasks tuned, tasks found in the database, seconds spent."""

    def __init__(self) -> None:
        self.tuned_tasks = 0
        self.reused_tasks = 0
        self.seconds = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tuned_tasks": self.tuned_tasks, "reused_tasks": self.reused_tasks, "tuning_s": self.seconds}


#: tuning done by this process (read by benchmarks; each compile adds to it)
STATS = TuningStats()


def compile_onnx(model: onnx.ModelProto, device: Device, target_json: str, shapes: dict[str, list[int]],
                 before_tuning: Callable[[], None] | None = None) -> Any:
    """``model`` imported by relax's ONNX frontend and compiled for ``target_json``: tuned first
    when the device has ``tune_trials``; the relax VM executable. ``before_tuning`` runs when
    tasks remain to tune (a remote device's RPC server serves one session at a time: the caller
    gives its own up there so that MetaSchedule's runner can have it)."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
    if not device.options.tune_trials:
        return tvm.compile(mod, target=tvm.target.Target(json.loads(target_json)))
    return _tuned_compile(mod, tuning_target(target_json, device), device, before_tuning)


def tuning_target(target_json: str, device: Device) -> Any:
    """The target tuned for: ``target_json`` with MetaSchedule's ``num-cores``, the device's
    ``intra_op_threads`` (0: this machine's cores; a remote device should name its count)."""
    import tvm

    from hwnas.devices import resolve_threads

    target = json.loads(target_json)
    target.setdefault("num-cores", resolve_threads(device.options.intra_op_threads))
    return tvm.target.Target(target)


def _tuned_compile(mod: Any, target: Any, device: Device, before_tuning: Callable[[], None] | None) -> Any:
    from tvm.s_tir import meta_schedule as ms

    work_dir = tuning_dir(device)
    work_dir.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(work_dir), module_equality="structural")
    tasks = ms.relax_integration.extract_tasks(_fused(mod, target), target)
    todo = [t for t in tasks if not database.has_workload(t.dispatched[0])]
    STATS.reused_tasks += len(tasks) - len(todo)
    if todo:
        if before_tuning is not None:
            before_tuning()
        start = time.perf_counter()
        _tune(todo, target, device, work_dir, database)
        STATS.tuned_tasks += len(todo)
        STATS.seconds += time.perf_counter() - start
    return ms.relax_integration.compile_relax(database, mod, target, params=None)


def _fused(mod: Any, target: Any) -> Any:
    """The module legalized and fused as ``compile_relax`` prepares it, so that the tasks extracted
    from it are the database keys ``compile_relax`` looks up."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline

    try:
        dispatch = pipeline.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []
    passes = [*dispatch, relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
              relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def _tune(tasks: list[Any], target: Any, device: Device, work_dir: Path, database: Any) -> None:
    from tvm.s_tir import meta_schedule as ms

    trials = device.options.tune_trials
    with _unnamed_handlers_set_aside("tvm.s_tir.meta_schedule"):
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted_tasks=tasks, work_dir=str(work_dir), seed=0)
    builder, runner = _builder_runner(device)
    ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                       max_trials_global=trials * len(tasks), max_trials_per_task=trials,
                       num_trials_per_iter=min(64, trials), builder=builder, runner=runner,
                       database=database, cost_model="xgb")


@contextmanager
def _unnamed_handlers_set_aside(name: str) -> Iterator[None]:
    """MetaSchedule's logging set-up lists its logger's handlers by name and fails on one without a
    name (pytest >= 9.2 attaches its unnamed capture handler to every logger that does not propagate,
    as MetaSchedule's does once set up): such handlers are off the logger while it sets up, then back."""
    logger = logging.getLogger(name)
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for h in unnamed:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in unnamed:
            logger.addHandler(h)


def _builder_runner(device: Device) -> tuple[Any, Any]:
    """A builder here (linking with the device's cross compiler where it has one) and a runner
    here or on the remote through its tracker; kept for the process, so their worker processes
    serve every later model and op."""
    remote = device.remote
    if remote is None:
        return _pooled_builder(None), _local_runner()
    if remote.tracker is None:
        raise HwnasError(f"{device.name}: tuning on a remote needs its tracker (MetaSchedule's runner asks the "
                         "tracker for a server); give the device remote.tracker and key instead of remote.host")
    return _pooled_builder(remote.cross_compiler), _rpc_runner(remote.tracker, remote.key, int(remote.timeout_s))


@functools.lru_cache(maxsize=1)
def _local_runner() -> Any:
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner()


@functools.lru_cache(maxsize=4)
def _rpc_runner(tracker: str, key: str, timeout_s: int) -> Any:
    from tvm.s_tir import meta_schedule as ms

    host, _, port = tracker.rpartition(":")
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=key,
                                 session_timeout_sec=timeout_s)
    return ms.runner.RPCRunner(rpc_config=config)


#: builds a worker process serves before it is replaced (MetaSchedule replaces its builder's
#: workers after every batch for a memory leak; starting them costs ~25 s a batch here)
BUILDS_PER_WORKER = 64


@functools.lru_cache(maxsize=4)
def _pooled_builder(cross_compiler: str | None) -> Any:
    """MetaSchedule's local builder with worker processes kept between batches (replaced after
    :data:`BUILDS_PER_WORKER` builds or a timeout); the same build and export functions."""
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder import local_builder as lb
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    initializer = functools.partial(_register_export, cross_compiler) if cross_compiler else None
    f_export = "hwnas.tune_export" if cross_compiler else None

    @lb.derived_object
    class PooledBuilder(PyBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=lb.cpu_count(logical=True), timeout=30.0,
                                          initializer=initializer, maximum_process_uses=BUILDS_PER_WORKER)

        def build(self, build_inputs: list[Any]) -> list[Any]:
            jobs = [(None, f_export, b.mod, b.target, lb._serialize_params(b.params)) for b in build_inputs]
            results = []
            for r in self.pool.map_with_error_catching(lambda x: lb._worker_func(*x), jobs):
                if r.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(r.value, None))
                else:
                    results.append(BuilderResult(None, f"hwnas builder: {r.status.name.lower()}: {r.value}"))
            return results

    return PooledBuilder()


def _register_export(compiler: str) -> None:
    """(In MetaSchedule's builder processes) ``hwnas.tune_export``: link with ``compiler``."""
    import tempfile

    import tvm
    from tvm.support.cc import cross_compiler

    def export(mod: Any) -> str:
        path = str(Path(tempfile.mkdtemp(prefix="hwnas-tune-")) / "tuned.so")
        mod.export_library(path, fcompile=cross_compiler(compiler))
        return path

    tvm.register_global_func("hwnas.tune_export", export, override=True)
