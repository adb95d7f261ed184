"""Remote TVM devices, measured through TVM's own RPC (tracker and server): sessions, uploads,
the remote's timer, and a one-line check of a remote device.

Models are compiled on this machine for the device's target, linked with the device's cross
compiler, uploaded, loaded by the server and timed there with ``time_evaluator`` (the remote's
clock; only the results cross the network).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.devices import Device, RemoteSpec, parse_address
from hwnas.errors import DeviceUnreachableError

__all__ = ["RemoteSessions", "RemoteCheck", "check_remote", "export_for", "servers_for_key", "is_connection_error"]

#: what TVM's RPC says when a connection is lost or refused (a lost server, not a failing model):
#: the server's shutdown code, a closed socket, a refused or reset connection
_LOST = ("rpccode::kshutdown", "code=kshutdown", "socket", "connection", "broken pipe", "timed out",
         "failed to connect", "rpc session")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the RPC connection broke (rather than that the model failed)."""
    return isinstance(exc, (ConnectionError, socket.timeout, DeviceUnreachableError)) or any(
        w in str(exc).lower() for w in _LOST)


def _answers(address: str, what: str, timeout: float) -> tuple[str, int]:
    host, port = parse_address(address, what)
    try:
        socket.create_connection((host, port), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        start = ("python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port " if what == "tracker"
                 else "python -m tvm.exec.rpc_server --host 0.0.0.0 --port ")
        raise DeviceUnreachableError(f"the {what} at {address} does not answer ({exc.strerror or exc}); start it "
                                     f"there ({start}{port}) or fix the device's remote.{what}") from None
    return host, port


def servers_for_key(tracker: Any, key: str) -> tuple[int, int, list[str]]:
    """(servers registered under ``key``, how many are free, every key the tracker knows)."""
    summary = tracker.summary()
    keys = sorted({str(s.get("key", "")).removeprefix("server:") for s in summary.get("server_info", [])} - {""})
    total = sum(1 for s in summary.get("server_info", []) if s.get("key") == f"server:{key}")
    free = int(summary.get("queue_info", {}).get(key, {}).get("free", 0))
    return total, free, keys


class RemoteSessions:
    """One RPC session per remote, opened on first use and reopened after a lost connection."""

    def __init__(self) -> None:
        self._open: dict[RemoteSpec, Any] = {}

    def get(self, remote: RemoteSpec) -> Any:
        if remote not in self._open:
            self._open[remote] = _connect(remote)
        return self._open[remote]

    def drop(self, remote: RemoteSpec) -> None:
        self._open.pop(remote, None)

    def release(self, remote: RemoteSpec) -> None:
        """Close the session (TVM closes one when its last reference goes) so that the server
        is free for another client, such as MetaSchedule's runner; the next :meth:`get` reopens."""
        import gc

        if self._open.pop(remote, None) is not None:
            gc.collect()


def _connect(remote: RemoteSpec) -> Any:
    from tvm import rpc

    if remote.host is not None:
        host, port = _answers(remote.host, "host", remote.timeout_s)
        return rpc.connect(host, port, key=remote.key, session_timeout=0)
    host, port = _answers(remote.tracker, "tracker", remote.timeout_s)
    tracker = rpc.connect_tracker(host, port)
    total, _, keys = servers_for_key(tracker, remote.key)
    if total == 0:
        raise DeviceUnreachableError(
            f"no server is registered under key {remote.key!r} at the tracker {remote.tracker} (keys there: "
            f"{', '.join(keys) or 'none'}); start one on the device: python -m tvm.exec.rpc_server --tracker "
            f"{remote.tracker} --key {remote.key}")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(tracker.request(remote.key, session_timeout=0)),
                              daemon=True)
    waiter.start()
    waiter.join(remote.timeout_s)
    if not got:
        raise DeviceUnreachableError(f"no free server under key {remote.key!r} at {remote.tracker} within "
                                     f"{remote.timeout_s:g} s ({total} registered, all busy); try again later or "
                                     "raise remote.timeout_s")
    return got[0]


def export_for(executable: Any, device: Device, directory: str | Path, name: str = "model.so") -> Path:
    """The compiled module as a shared library for the device: linked by its ``cross_compiler``
    (TVM's ``cross_compiler``), or by this machine's compiler for a host target."""
    path = Path(directory) / name
    cc = device.remote.cross_compiler if device.remote is not None else None
    if cc:
        from tvm.support.cc import cross_compiler

        executable.export_library(str(path), fcompile=cross_compiler(cc))
    else:
        executable.export_library(str(path))
    return path


def _threads(session: Any, device: Device) -> None:
    """The server's thread pool sized as the device says (``intra_op_threads``; 0: all its cores)."""
    try:
        config = session.get_function("runtime.config_threadpool")
    except AttributeError:  # a server without it runs with its own default
        return
    config(0, device.options.intra_op_threads)


class RemoteModule:
    """A library uploaded to and loaded on the remote, with its VM and inputs there."""

    def __init__(self, session: Any, executable: Any, device: Device, feeds: list[Any]) -> None:
        import tvm
        from tvm import relax

        with tempfile.TemporaryDirectory(prefix="hwnas-rpc-") as tmp:
            # a fresh name per upload: a server that loads a second library under the same path ends its session
            lib = export_for(executable, device, tmp, f"hwnas-{uuid.uuid4().hex[:12]}.so")
            session.upload(str(lib))
        _threads(session, device)
        self.dev = session.cuda() if device.options.device_type == "cuda" else session.cpu()
        self.vm = relax.VirtualMachine(session.load_module(lib.name), self.dev)
        self.args = [tvm.runtime.tensor(x, self.dev) for x in feeds]

    def sample(self, n: int) -> list[float]:
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=n)
        return [float(r) for r in timer(*self.args).results]


@dataclass(frozen=True)
class RemoteCheck:
    """What ``hwnas devices check`` says of a remote device."""

    ok: bool
    line: str


def check_remote(device: Device, sessions: RemoteSessions | None = None) -> RemoteCheck:
    """Whether the tracker (or server) answers, how many servers hold the key, and whether a trivial
    kernel compiled for the device's target runs there, in one line."""
    from hwnas.profilers._backends import get_backend
    from hwnas.profilers._blocks import build_onnx
    from hwnas.profilers._ops import OpConfig

    remote = device.remote
    assert remote is not None
    try:
        where = ""
        if remote.tracker is not None:
            from tvm import rpc

            host, port = _answers(remote.tracker, "tracker", remote.timeout_s)
            total, free, _ = servers_for_key(rpc.connect_tracker(host, port), remote.key)
            where = f"tracker {remote.tracker} answers, {total} server(s) under key {remote.key!r} ({free} free); "
        prepared = get_backend("tvm").prepare(build_onnx(OpConfig.parse("act_i8_r8_arelu")), device)
        ms = 1e3 * min(prepared.sample(5))
        return RemoteCheck(True, f"{device.name}: {where}a trivial kernel ran there in {ms:.3f} ms")
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return RemoteCheck(False, f"{device.name}: {str(exc).splitlines()[0]}")
