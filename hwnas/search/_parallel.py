"""Evaluations in flight: executors (this process, local worker processes, Ray) and the loop that
keeps ``workers`` trials of a :class:`~hwnas.search.Search` evaluating at once."""

from __future__ import annotations

import pickle
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwnas._registry import Registry
from hwnas.errors import ArgumentError, HwnasError
from hwnas.search.spaces._base import Arch
from hwnas.search.strategies._base import SearchExhausted

if TYPE_CHECKING:
    from hwnas.search._run import Trial
    from hwnas.search._search import Search

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "RayExecutor", "EvaluationFailed", "evaluate_trial",
           "register_executor", "create_executor", "list_executors", "run_trials"]


class EvaluationFailed(Exception):
    """An evaluation that may succeed when tried again (an error in it, a worker that died)."""


def evaluate_trial(evaluator: Callable[[Arch], float], arch: Arch, cpus: int | None = None,
                   gpus: float = 0) -> tuple[float, float]:
    """Run one evaluation where it was sent: ``(accuracy, seconds)``. ``cpus`` caps torch's
    threads (one trial per CPU share); with ``gpus``, an evaluator that can move
    (``with_device``) trains on the GPU the worker was given."""
    import torch

    before = torch.get_num_threads()
    if cpus:
        torch.set_num_threads(max(1, int(cpus)))
    if gpus and hasattr(evaluator, "with_device"):
        evaluator = evaluator.with_device("cuda")
    try:
        t0 = time.perf_counter()
        return float(evaluator(arch)), time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


class Executor(ABC):
    """Runs evaluations somewhere: ``submit`` returns a handle, ``wait`` the handles that are
    done (at least one), ``result`` a done handle's ``(accuracy, seconds)`` or raises: an
    :class:`~hwnas.errors.HwnasError` for a user error (the search stops), anything else for an
    evaluation worth retrying. ``close(cancel)`` releases the workers."""

    name = ""

    def __init__(self, workers: int = 1, trial_cpus: int | None = None, trial_gpus: float = 0, **_: Any) -> None:
        self.workers, self.trial_cpus, self.trial_gpus = workers, trial_cpus, trial_gpus

    @abstractmethod
    def submit(self, evaluator: Callable[[Arch], float], arch: Arch) -> Any: ...

    @abstractmethod
    def wait(self, handles: list[Any]) -> list[Any]: ...

    @abstractmethod
    def result(self, handle: Any) -> tuple[float, float]: ...

    def close(self, cancel: bool = False) -> None:
        """Release the workers (``cancel``: stop what is running)."""


class InlineExecutor(Executor):
    """Evaluations in this process, one at a time, at submit."""

    name = "inline"

    def submit(self, evaluator: Callable[[Arch], float], arch: Arch) -> Any:
        f: Future = Future()
        try:
            f.set_result(evaluate_trial(evaluator, arch, self.trial_cpus, self.trial_gpus))
        except HwnasError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported by result(), retried by the loop
            f.set_exception(exc)
        return f

    def wait(self, handles: list[Any]) -> list[Any]:
        return list(handles)

    def result(self, handle: Any) -> tuple[float, float]:
        return handle.result()


class ProcessExecutor(Executor):
    """Evaluations in ``workers`` worker processes on this machine (spawned: torch is not forked).
    A worker that dies fails the evaluations in flight (retried by the loop) and the pool is
    started again. The evaluator must pickle (a registered evaluator does; a lambda does not)."""

    name = "local"

    def __init__(self, workers: int = 1, trial_cpus: int | None = None, trial_gpus: float = 0, **_: Any) -> None:
        super().__init__(workers, trial_cpus, trial_gpus)
        if trial_gpus:
            raise ArgumentError("trial_gpus", "needs the ray executor (it gives each trial its GPU)", trial_gpus)
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A pool whose workers start now (and import torch), not at the first trial: created before
        the driver loads its predictor and data, their start-up overlaps that work."""
        import multiprocessing

        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_import_trial_modules)
        pool.submit(int)  # spawns every worker (a spawn-context pool starts them all at once)
        return pool

    def submit(self, evaluator: Callable[[Arch], float], arch: Arch) -> Any:
        _check_picklable(evaluator)
        try:
            return self._pool.submit(evaluate_trial, evaluator, arch, self.trial_cpus)
        except BrokenProcessPool:  # a worker died since the last submit: a new pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(evaluate_trial, evaluator, arch, self.trial_cpus)

    def wait(self, handles: list[Any]) -> list[Any]:
        return list(wait_futures(handles, return_when=FIRST_COMPLETED).done)

    def result(self, handle: Any) -> tuple[float, float]:
        try:
            return handle.result()
        except BrokenProcessPool as exc:
            raise EvaluationFailed(f"a worker process died ({exc})") from None

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def _import_trial_modules() -> None:
    import torch  # noqa: F401

    import hwnas.search._evaluators  # noqa: F401


class RayExecutor(Executor):
    """Evaluations as Ray tasks (``trial_cpus`` CPUs and ``trial_gpus`` GPUs each), on the cluster
    at ``address`` or a local Ray started here. Ray retries a task whose worker or node died
    (``max_retries``); the evaluator is put in Ray's object store once."""

    name = "ray"
    #: Ray's retries of a task whose worker process or node died
    MAX_RETRIES = 3

    def __init__(self, workers: int = 1, trial_cpus: int | None = None, trial_gpus: float = 0,
                 address: str | None = None, **_: Any) -> None:
        super().__init__(workers, trial_cpus, trial_gpus)
        self.ray = connect_ray(address)
        self._task = self.ray.remote(evaluate_trial).options(
            num_cpus=trial_cpus or 1, num_gpus=trial_gpus or 0, max_retries=self.MAX_RETRIES)
        self._refs: dict[int, Any] = {}

    def submit(self, evaluator: Callable[[Arch], float], arch: Arch) -> Any:
        key = id(evaluator)
        if key not in self._refs:
            _check_picklable(evaluator)
            self._refs = {key: self.ray.put(evaluator)}
        return self._task.remote(self._refs[key], arch, self.trial_cpus or 1, self.trial_gpus)

    def wait(self, handles: list[Any]) -> list[Any]:
        return self.ray.wait(handles, num_returns=1)[0]

    def result(self, handle: Any) -> tuple[float, float]:
        import ray.exceptions as rex

        try:
            return self.ray.get(handle)
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, HwnasError):
                raise cause from None
            raise EvaluationFailed(str(cause or exc).strip().splitlines()[-1]) from None
        except rex.RayError as exc:  # the worker or node died after Ray's retries
            raise EvaluationFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None

    def close(self, cancel: bool = False) -> None:
        self._refs = {}


def connect_ray(address: str | None) -> Any:
    """The ``ray`` module, connected to the cluster at ``address`` (or to a local Ray started now
    when None); one line and exit 2 when Ray is missing or the cluster does not answer."""
    try:
        import ray
    except ImportError:
        raise HwnasError("the ray executor needs Ray: pip install 'hwnas[ray]'") from None
    if ray.is_initialized():
        return ray
    if address is not None:
        _check_answers(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    except ray.exceptions.AuthenticationError:
        raise HwnasError(f"the Ray cluster at {address} asks for a token: set RAY_AUTH_TOKEN (or "
                         f"~/.ray/auth_token) to the cluster's, or RAY_AUTH_MODE as the cluster was started") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise HwnasError(f"cannot connect to the Ray cluster at {where} "
                         f"({str(exc).strip().splitlines()[0]}); start it with `ray start --head`") from None
    return ray


def _check_answers(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address (HOST:PORT of the head's GCS) must accept a connection: ``ray.init``
    itself waits for an absent head without end."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address:
        return
    if not sep or not host or not port.isdigit():
        raise ArgumentError("ray_address", "takes HOST:PORT (the head's address, as `ray start --head` prints)",
                            address)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise HwnasError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                         "`ray start --head` or leave out --ray-address for a local Ray") from None


def _check_picklable(evaluator: Any) -> None:
    try:
        pickle.dumps(evaluator)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise HwnasError(f"the evaluator cannot be sent to worker processes ({exc}); with several workers it must "
                         "pickle: a registered evaluator (proxy, table) or a module-level function") from None


_EXECUTORS: Registry[type[Executor]] = Registry("executor")


def register_executor(name: str, cls: type[Executor], *, replace: bool = False) -> type[Executor]:
    """Register an :class:`Executor` class by name (``create_executor(name, workers=...)``)."""
    return _EXECUTORS.register(name, cls, replace=replace)


def create_executor(name: str, **options: Any) -> Executor:
    """The executor ``name`` (``local``, ``ray``, ``inline``) with ``workers``, ``trial_cpus``,
    ``trial_gpus`` and, for Ray, ``address``; unknown names list the known ones."""
    return _EXECUTORS.get(name)(**options)


def list_executors(pattern: str = "*") -> list[str]:
    return _EXECUTORS.names(pattern)


register_executor("inline", InlineExecutor)
register_executor("local", ProcessExecutor)
register_executor("ray", RayExecutor)


@dataclass
class _InFlight:
    trial: Trial
    arch: Arch
    attempt: int


def run_trials(search: Search, budget: int, callbacks: list[Callable[[Search, Trial], None]], *, workers: int = 1,
               executor: Executor | str | None = None, retries: int = 2) -> None:
    """Keep ``workers`` evaluations of ``search`` in flight until it holds ``budget`` completed
    trials: the trials a resumed search left pending first, then the strategy's asks. A trial is
    told when its evaluation ends (in completion order); a failed evaluation is tried ``retries``
    more times, then the trial is recorded as failed. The incumbent is measured on the device only
    while nothing is in flight (the loop stops asking until then): a measurement never shares the
    machine with training, and with one worker the search is the sequential one, draw for draw.
    Ctrl-C or a user error stops the workers; what was told is kept, the rest stays pending."""
    for name, value in (("workers", workers), ("retries", retries + 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(name, "takes a count >= 1" if name == "workers" else "takes a count >= 0", value)
    ex = _executor(executor, workers)
    loop = _Loop(search, ex, workers, retries, callbacks)
    try:
        loop.run(budget)
    except BaseException:
        ex.close(cancel=True)
        raise
    ex.close()


def _executor(executor: Executor | str | None, workers: int) -> Executor:
    if isinstance(executor, Executor):
        return executor
    if executor is None:
        executor = "inline" if workers == 1 else "local"
    return create_executor(executor, workers=workers)


class _Loop:
    def __init__(self, search: Search, ex: Executor, workers: int, retries: int,
                 callbacks: list[Callable[[Search, Trial], None]]) -> None:
        self.search, self.ex, self.workers, self.retries, self.callbacks = search, ex, workers, retries, callbacks
        self.inflight: dict[Any, _InFlight] = {}
        self.queue = [(t, search.arch_of(t)) for t in search.pending_trials]
        self.exhausted = False
        self.max_failures = max(3, 2 * workers)

    def run(self, budget: int) -> None:
        while True:
            self._fill(budget)
            if not self.inflight:
                return
            for handle in self.ex.wait(list(self.inflight)):
                self._finish(handle, self.inflight.pop(handle))

    def _fill(self, budget: int) -> None:
        s = self.search
        while (len(self.inflight) < self.workers and len(s.trials) + len(self.inflight) < budget
               and not (self.inflight and s.incumbent_due())):
            if self.queue:
                trial, arch = self.queue.pop(0)
            elif self.exhausted:
                return
            else:
                try:
                    trial = s.ask()
                except SearchExhausted:
                    self.exhausted = True
                    return
                arch = s.arch_of(trial)
            self._submit(_InFlight(trial, arch, 0))

    def _submit(self, job: _InFlight) -> None:
        self.inflight[self.ex.submit(self.search.evaluator, job.arch)] = job  # type: ignore[arg-type]

    def _finish(self, handle: Any, job: _InFlight) -> None:
        try:
            accuracy, seconds = self.ex.result(handle)
        except HwnasError:
            raise
        except Exception as exc:  # noqa: BLE001 - an evaluation error: retried, then recorded as failed
            self._failed(job, f"{type(exc).__name__}: {exc}")
            return
        # the incumbent is measured only when no trial is training beside the measurement
        done = self.search.tell(job.trial, accuracy, eval_seconds=seconds, check_incumbent=not self.inflight)
        for cb in self.callbacks:
            cb(self.search, done)

    def _failed(self, job: _InFlight, error: str) -> None:
        if job.attempt < self.retries:
            self._submit(_InFlight(job.trial, job.arch, job.attempt + 1))
            return
        self.search.fail(job.trial, error)
        if len(self.search.failed_trials) >= self.max_failures:
            raise HwnasError(f"{len(self.search.failed_trials)} evaluations failed (each tried {self.retries + 1} "
                             f"times); the last: {error}. The journal keeps what completed; fix the cause and resume")
