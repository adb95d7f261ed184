"""Shared check suites for plug-ins; parametrise your tests over the registries with them.

>>> from hwnas.devices import builtin_devices
>>> for d in builtin_devices():
...     check_device(d)
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.devices._device import Device
from hwnas.profilers._backends import Backend
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._timing import TimingPolicy, measure

__all__ = ["deterministic_feasibility", "check_device", "check_backend", "check_latency_model", "check_strategy", "check_space", "FAST_POLICY",
           "LocalTvmRpc", "free_port", "FakeEvaluator", "FakeFidelityEvaluator", "LocalRayCluster"]

#: A timing policy for tests: a few runs, a few milliseconds per op. Never for reported numbers.
FAST_POLICY = TimingPolicy(warmup_runs=2, warmup_s=0.0, min_runs=5, min_time_s=0.002, max_time_s=0.05, batch=5, rounds=2)


def check_device(device: Device) -> None:
    """Every device spec: frozen, hashable, JSON round trip, a known runtime."""
    assert hash(device) == hash(Device.from_dict(device.to_dict()))
    assert Device.from_dict(json.loads(device.to_json())) == device
    try:
        device.name = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Device must be frozen")
    from hwnas.profilers._backends import backend_names

    assert device.runtime in backend_names()


def check_backend(backend: Backend, device: Device, config: OpConfig | None = None) -> None:
    """Every runtime backend: ``check()`` is a list of strings; when it is empty the backend
    reports a version, prepares an op, and times it with positive, finite samples."""
    problems = backend.check(device)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if problems:
        return
    assert backend.version()
    cfg = config or OpConfig.parse("conv_i4_o8_r8_k3_s1_g1_arelu")
    prepared = backend.prepare_op(cfg, device)
    try:
        samples = prepared.sample(3)
        assert len(samples) == 3 and all(np.isfinite(s) and s > 0 for s in samples)
        stats, raw = measure(prepared.sample, FAST_POLICY)
        assert stats.n_runs == len(raw) >= FAST_POLICY.min_runs
        assert stats.min_ms <= stats.p10_ms <= stats.latency_ms <= stats.p90_ms <= stats.max_ms
    finally:
        prepared.close()


def check_latency_model(model: Any, configs: Sequence[OpConfig], latency_ms: Sequence[float],
                        fingerprint: Any, other_fingerprint: Any, tmp_dir: Any) -> None:
    """Every latency model: estimator API, positive predictions, save/load round trip, refusal of
    another device's fingerprint, explicit fallback for an unseen op type, and monotone sanity
    (more output channels is not faster on average)."""
    from sklearn.base import clone

    from hwnas.errors import FingerprintMismatchError
    from hwnas.latency_models import load_latency_model
    from hwnas.profilers._ops import OpType

    params = model.get_params()
    assert clone(model).get_params() == params, "__init__ must only store hyper-parameters"
    assert not [k for k in vars(model) if k.endswith("_")], "an unfitted model has no learned attributes"
    fitted = model.fit(configs, latency_ms, fingerprint)
    assert fitted is model, "fit must return self"
    pred = model.predict(configs)
    assert pred.shape == (len(configs),) and np.all(np.isfinite(pred)) and np.all(pred > 0)
    path = model.save(tmp_dir / model.name)
    loaded = load_latency_model(path, fingerprint)
    np.testing.assert_allclose(loaded.predict(configs), pred, rtol=1e-9)
    try:
        load_latency_model(path, other_fingerprint)
    except FingerprintMismatchError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a model of another fingerprint must be refused")
    load_latency_model(path, other_fingerprint, allow_fingerprint_mismatch=True)
    seen = {c.op for c in configs}
    unseen = [t for t in OpType if t not in seen]
    if unseen:
        from hwnas.profilers._opsets import op_set

        probe = next(c for c in op_set("micro") if c.op is unseen[0])
        d = model.predict_detailed([probe])
        assert d.latency_ms[0] > 0, "never a silent zero"
        if model.name != "flops":
            assert d.fallback[0] and d.reasons[0]
    small = [c for c in configs if c.op is OpType.PWCONV]
    if small:
        wide = [dataclasses.replace(c, cout=4 * c.cout) for c in small]
        assert model.predict(wide).mean() >= model.predict(small).mean()


def check_space(space: Any, samples: int = 30, seed: int = 0) -> None:
    """Every search space: string and vector encodings round-trip, variation stays in the space,
    op configurations and costs exist, block keys (where given) name the module's blocks."""
    rng = np.random.default_rng(seed)
    dims = fdims = None
    for _ in range(samples):
        a = space.sample(rng)
        assert space.from_string(space.to_string(a)) == a
        v = space.encode(a)
        dims = dims or v.shape
        assert v.shape == dims and v.sum() == len(space.decisions)
        f = space.features(a)  # a surrogate's input: fixed length, finite
        fdims = fdims or f.shape
        assert f.shape == fdims and len(f) >= len(v) and np.isfinite(f).all()
        b = space.mutate(a, rng)
        space.validate(b)
        space.validate(space.crossover(a, b, rng))
        assert hash(a) == hash(space.make(a.choices))
        assert space.op_configs(a) and space.params(a) > 0 and space.flops(a) > 0
    keys = space.block_keys(a)
    if keys is not None:  # weight inheritance: one unique key per block of the module's chain
        assert len(keys) == len(set(keys)) == len(space.build_module(a).blocks)


def deterministic_feasibility(space: Any, keep: float = 0.5) -> Any:
    """A feasibility predicate that rejects about ``1 - keep`` of ``space``, the same in every process
    (a CRC of the architecture's string, not Python's salted ``hash``): a stand-in for a latency
    limit in tests of strategies.

    >>> from hwnas.search.spaces import create_space
    >>> sp = create_space("nb201")
    >>> ok = deterministic_feasibility(sp)
    >>> a = sp.from_string(sp.to_string(sp.sample(np.random.default_rng(0))))
    >>> ok(a) == deterministic_feasibility(sp)(a)
    True
    """
    import zlib

    def feasible(arch: Any) -> bool:
        return zlib.crc32(space.to_string(arch).encode()) % 1000 < 1000 * keep or sum(arch.choices) % 2 == 0

    return feasible


def check_strategy(name: str, space: Any, budget: int = 25) -> None:
    """Every strategy: ask/tell contract, determinism under a seed, only feasible proposals,
    and resume by replaying tells; a multi-objective one (``multi_objective``) also when told
    tuples of values (as ``--objective pareto`` tells ``(accuracy, -latency_ms)``)."""
    from hwnas.search.strategies import SearchExhausted, create_strategy, strategy_class

    feasible = deterministic_feasibility(space)

    def reward(arch: Any) -> float:
        return float(np.sin(sum((i + 1) * c for i, c in enumerate(arch.choices))))

    def values(arch: Any) -> tuple[float, float]:  # two objectives in conflict
        return reward(arch), -float(sum(arch.choices)) + 0.5 * reward(arch)

    tells: list[Any] = [reward]
    if strategy_class(name).multi_objective:
        tells.append(values)
    for told in tells:
        def run(n: int, s: Any) -> list[Any]:
            out = []
            for _ in range(n):
                try:
                    a = s.ask()
                except SearchExhausted:
                    break
                space.validate(a)
                assert feasible(a), "strategies must only propose feasible architectures"
                s.tell(a, told(a))  # noqa: B023
                out.append(a)
            return out

        first = run(budget, create_strategy(name, space, seed=7, feasible=feasible))
        assert first, "a strategy must propose something"
        assert run(budget, create_strategy(name, space, seed=7, feasible=feasible)) == first, "seeded runs must repeat"
        assert len(set(first)) == len(first), "no architecture is proposed twice"
        replay = create_strategy(name, space, seed=7, feasible=feasible)
        k = len(first) // 2
        for a in first[:k]:
            assert replay.ask() == a
            replay.tell(a, told(a))
        assert run(len(first) - k, replay) == first[k:], "replaying tells must resume the same run"


def free_port() -> int:
    """A TCP port free on localhost now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTvmRpc:
    """A real TVM RPC tracker and one server under ``key`` on localhost (TVM's own
    ``tvm.exec.rpc_tracker`` and ``tvm.exec.rpc_server``), for tests and benchmarks of remote
    devices; ``stop_server``/``start_server`` simulate a device that goes away and comes back."""

    def __init__(self, key: str = "hwnas-test") -> None:
        self.key, self.port = key, free_port()
        self.tracker = self._start("rpc_tracker", "--host", "127.0.0.1", "--port", str(self.port),
                                   "--port-end", str(self.port + 1))
        self._wait_port(self.port)
        self.server = None
        self.start_server()

    def _start(self, what: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", f"tvm.exec.{what}", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    @staticmethod
    def _wait_port(port: int) -> None:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {port}")

    def start_server(self) -> None:
        from tvm import rpc

        port = free_port()
        self.server = self._start("rpc_server", "--tracker", f"127.0.0.1:{self.port}", "--key", self.key,
                                  "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1))
        from hwnas.profilers._tvm_remote import servers_for_key

        for _ in range(100):  # registered with the tracker
            if servers_for_key(rpc.connect_tracker("127.0.0.1", self.port), self.key)[0]:
                return
            time.sleep(0.2)
        raise RuntimeError("the RPC server did not register")

    @staticmethod
    def _kill(p: subprocess.Popen) -> None:
        """The process and every process it started (TVM's server runs in a worker of its own)."""
        import psutil

        for child in psutil.Process(p.pid).children(recursive=True):
            child.kill()
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()

    def stop_server(self) -> None:
        self._kill(self.server)

    def close(self) -> None:
        for p in (self.server, self.tracker):
            if p is not None and p.poll() is None:
                self._kill(p)


class FakeEvaluator:
    """A deterministic fake accuracy for testing search orchestration (workers, retries, resume):
    a hash of the architecture's string in [0.5, 1), after ``seconds`` of sleep. Never a number to
    report. ``fail_times`` > 0: each architecture's first ``fail_times`` attempts raise; ``die_once``:
    the first attempt of all kills its own process (a worker that dies mid-trial); both counted in
    files under ``marker_dir`` so that they hold across worker processes."""

    def __init__(self, seconds: float = 0.0, fail_times: int = 0, die_once: bool = False,
                 marker_dir: str | None = None) -> None:
        if (fail_times or die_once) and marker_dir is None:
            raise ValueError("fail_times and die_once count attempts in marker_dir")
        self.seconds, self.fail_times, self.die_once, self.marker_dir = seconds, fail_times, die_once, marker_dir

    def __call__(self, arch: Any) -> float:
        import zlib
        from pathlib import Path

        key = "_".join(map(str, arch.choices))
        if self.die_once:
            marker = Path(self.marker_dir) / "died"  # type: ignore[arg-type]
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_times:
            tries = Path(self.marker_dir) / f"tries-{key}"  # type: ignore[arg-type]
            n = int(tries.read_text()) if tries.exists() else 0
            tries.write_text(str(n + 1))
            if n < self.fail_times:
                raise RuntimeError(f"fake failure {n + 1} of {self.fail_times} for {key}")
        time.sleep(self.seconds)
        return 0.5 + (zlib.crc32(key.encode()) % 1000) / 2000


class FakeFidelityEvaluator:
    """A deterministic fake of an evaluator that trains in rungs (``train_to``), for testing
    multi-fidelity orchestration only, never for a number: the accuracy grows with the epochs
    towards a per-architecture ceiling; the checkpoint file records the epochs reached (a rung
    continues from it: ``trained`` counts the epochs actually trained). ``stop_after`` raises
    KeyboardInterrupt at that many evaluations (a killed run)."""

    supports_fidelity = True

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.calls, self.trained = stop_after, 0, 0

    def train_to(self, arch: Any, epochs: int, max_epochs: int, checkpoint: Any = None) -> float:
        import zlib
        from pathlib import Path

        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        start = 0
        if checkpoint is not None and Path(checkpoint).exists():
            start = int(Path(checkpoint).read_text())
        self.trained += epochs - start
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(checkpoint).write_text(str(epochs))
        ceiling = 0.5 + (zlib.crc32("_".join(map(str, arch.choices)).encode()) % 1000) / 2000
        return ceiling * (1 - 0.5 ** epochs)


class LocalRayCluster:
    """A real Ray cluster on localhost for tests and benchmarks: a head (``head_cpus`` CPUs) and
    optionally a second node (``node_cpus``) advertising ``node_resources`` (e.g.
    ``{"hwnas-device:pi4": 1}``), each started with ``ray start`` (token authentication off:
    localhost only); ``address`` to connect,
    ``close()`` stops them (``ray stop --force``: every Ray process of this machine)."""

    def __init__(self, head_cpus: int = 2, node_cpus: int = 0, node_resources: dict[str, float] | None = None,
                 head_resources: dict[str, float] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                  "--num-cpus", str(head_cpus), "--num-gpus", "0", "--include-dashboard", "false",
                  "--resources", json.dumps(head_resources or {}), "--disable-usage-stats")
        if node_cpus or node_resources:
            self._ray("start", "--address", self.address, "--node-ip-address", "127.0.0.1", "--num-cpus",
                      str(node_cpus), "--num-gpus", "0", "--resources", json.dumps(node_resources or {}),
                      "--disable-usage-stats")

    @staticmethod
    def _ray(*args: str) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "ray")
        # Ray enables token auth on a head when ~/.ray/auth_token exists, but not on a node joining
        # by address: say the mode for both (a localhost cluster needs no token)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        r = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"ray {args[0]} failed: {(r.stderr or r.stdout).strip()[-2000:]}")

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            import ray

            if ray.is_initialized():
                ray.shutdown()
        self._ray("stop", "--force")
