"""Devices on a Ray cluster: a node that holds a device advertises the custom resource
``hwnas-device:NAME``; the device's measurements run there, one at a time (the resource has a
count of 1), and several devices are profiled at once, each on its node, into the one store here."""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import Message, Progress, check_count, get_device, no_message, no_progress, open_store, timing_policy
from hwnas.profilers import DriftPolicy, OpConfig, Profiler, ProfileStore

__all__ = ["device_resource", "measure_on_ray", "profile_devices", "FarmResult"]


def device_resource(name: str) -> str:
    """The Ray custom resource a node advertises for a device it holds.

    >>> device_resource("pi4")
    'hwnas-device:pi4'
    """
    return f"hwnas-device:{name}"


def _placement(ray: Any, name: str) -> dict[str, Any]:
    """Ray task options that put a device's work on its node: the device's resource where a node
    advertises it, else this (the driver's) node."""
    res = device_resource(name)
    if res in ray.cluster_resources():
        return {"resources": {res: 1}}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}


def _measure_arch(device: Device, space: Any, arch: Any) -> float:
    from hwnas.jobs._search import arch_latency_on

    return arch_latency_on(device, space)(arch)


def measure_on_ray(device: Device, space: Any, address: str | None) -> Callable[[Any], float]:
    """A search's device measurement run on the node that holds ``device`` (its resource), or
    here when no node advertises it; a node that is gone is one line, exit 2."""
    from hwnas.search._parallel import connect_ray

    ray = connect_ray(address)
    opts = _placement(ray, device.name)
    if "resources" not in opts:
        from hwnas.jobs._search import arch_latency_on

        return arch_latency_on(device, space)
    task = ray.remote(_measure_arch).options(max_retries=0, **opts)

    def measure(arch: Any) -> float:
        import ray.exceptions as rex

        try:
            return float(ray.get(task.remote(device, space, arch)))
        except rex.RayTaskError as exc:
            raise HwnasError(f"measuring on {device.name}'s node failed: {exc.cause or exc}") from None
        except rex.RayError as exc:
            raise HwnasError(f"{device.name}'s node did not finish the measurement ({type(exc).__name__}); "
                             "the journal keeps the search: resume it when the node is back") from None

    return measure


# ---- a device farm -------------------------------------------------------------------------------
@dataclass
class FarmResult:
    """What :func:`profile_devices` did per device: ops measured now, skipped (stored before),
    the fingerprint, and the error that stopped a device (None when it finished)."""

    db: str
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, str]:
        return {n: d["error"] for n, d in self.devices.items() if d.get("error")}


def _profile_stream(devices: Sequence[Device], configs: Sequence[OpConfig], done: dict[str, dict[str, set[str]]],
                    max_time_per_op: float | None, drift_check: bool, passes: int) -> Iterator[tuple[str, str, Any]]:
    """On the device's node: profile each device in turn (one measurement at a time), yielding
    ``(device, "start", (fingerprint, todo, skipped))``, ``(device, "op", OpMeasurement)`` per
    measurement and ``(device, "end", None)``. Ops whose keys ``done[device][fingerprint]`` holds
    are skipped (the head's store has them)."""
    for dev in devices:
        q: queue.Queue = queue.Queue()
        with tempfile.TemporaryDirectory() as tmp:
            worker = threading.Thread(target=_profile_into, daemon=True, args=(
                q, dev, configs, done.get(dev.name, {}), Path(tmp) / "node.sqlite", max_time_per_op, drift_check, passes))
            worker.start()
            while True:
                kind, item = q.get()
                if kind == "error":
                    raise item
                yield dev.name, kind, item
                if kind == "end":
                    break
            worker.join()


def _profile_into(q: queue.Queue, dev: Device, configs: Sequence[OpConfig], done: dict[str, set[str]],
                  db: Path, max_time_per_op: float | None, drift_check: bool, passes: int) -> None:
    try:
        with ProfileStore(db) as st:
            profiler = Profiler(dev, timing_policy(max_time_per_op), st,
                                drift=DriftPolicy() if drift_check else None, auto_pin=drift_check)
            fp = profiler.fingerprint
            have = done.get(fp.id, set())
            cfgs = [c.with_batch(dev.options.batch_size) for c in configs]
            todo = [c for c in dict.fromkeys(cfgs) if str(c) not in have]
            q.put(("start", (fp, len(todo) * passes, len(set(cfgs)) - len(todo))))
            profiler.profile_ops(todo, on_done=lambda m: q.put(("op", m)), passes=passes)
        q.put(("end", None))
    except BaseException as exc:  # noqa: BLE001 - carried to the driver
        q.put(("error", exc))


def _groups(ray: Any, devices: Sequence[Device]) -> list[tuple[list[Device], dict[str, Any]]]:
    """Devices with a node of their own each get a stream; the others run here, one after the
    other (devices that share this machine would disturb each other's measurements)."""
    here: list[Device] = []
    out: list[tuple[list[Device], dict[str, Any]]] = []
    for dev in devices:
        opts = _placement(ray, dev.name)
        if "resources" in opts:
            out.append(([dev], opts))
        else:
            here.append(dev)
    if here:
        out.append((here, _placement(ray, here[0].name)))
    return out


def profile_devices(devices: Sequence[str | Device], *, configs: Sequence[OpConfig], store: Any = None,
                    address: str | None = None, max_time_per_op: float | None = None, drift_check: bool = True,
                    passes: int = 1, progress: Progress = no_progress, message: Message = no_message) -> FarmResult:
    """Profile ``configs`` on several devices at once through Ray: each device on the node that
    advertises it (``hwnas-device:NAME``; devices no node advertises run here, one after the
    other), each device one measurement at a time, streamed into the one ``store`` here as they
    come (a rerun skips what is stored, by fingerprint). A device whose node goes away stops with
    its error in the result while the others go on."""
    from hwnas.search._parallel import connect_ray

    check_count("passes", passes)
    devs = [get_device(d) for d in devices]
    if len({d.name for d in devs}) != len(devs):
        raise HwnasError("a device is named twice")
    ray = connect_ray(address)
    with open_store(store) as st:
        done = {d.name: _stored_keys(st, d.name) for d in devs}
        result = FarmResult(str(st.path), {d.name: {"measured": 0, "skipped": 0, "fingerprint": None, "error": None}
                                           for d in devs})
        task = ray.remote(_profile_stream)
        streams = [(names, task.options(num_returns="streaming", max_retries=0, **opts).remote(
            names, list(configs), done, max_time_per_op, drift_check, passes)) for names, opts in _groups(ray, devs)]
        _collect(ray, streams, st, result, progress, message)
    return result


def _stored_keys(st: ProfileStore, device_name: str) -> dict[str, set[str]]:
    return {fp.id: st.done_keys(fp.id) for fp in st.fingerprints() if fp.device_name == device_name}


def _collect(ray: Any, streams: list[tuple[list[Device], Any]], st: ProfileStore, result: FarmResult,
             progress: Progress, message: Message) -> None:
    """Read every stream (a thread each) and write what arrives into the store, in this thread."""
    q: queue.Queue = queue.Queue()

    def read(names: list[Device], gen: Any) -> None:
        import ray.exceptions as rex

        current = names[0].name
        try:
            for ref in gen:
                item = ray.get(ref)
                current = item[0]
                q.put(item)
        except rex.RayTaskError as exc:
            q.put((current, "error", str(exc.cause or exc).strip().splitlines()[-1]))
        except rex.RayError as exc:
            q.put((current, "error", f"its node went away ({type(exc).__name__})"))
        q.put((None, "closed", names))

    threads = [threading.Thread(target=read, args=s, daemon=True) for s in streams]
    for t in threads:
        t.start()
    open_streams, totals = len(threads), {}
    while open_streams:
        name, kind, item = q.get()
        if kind == "closed":
            open_streams -= 1
            continue
        _take(st, result, totals, name, kind, item, progress, message)


def _take(st: ProfileStore, result: FarmResult, totals: dict[str, int], name: str, kind: str, item: Any,
          progress: Progress, message: Message) -> None:
    rec = result.devices[name]
    if kind == "start":
        fp, todo, skipped = item
        st.add_fingerprint(fp)
        rec.update(fingerprint=fp.id, skipped=skipped)
        totals[name] = todo
        if skipped:
            message(f"{name}: {skipped} op configuration(s) already in {st.path} are skipped")
        progress(f"profiling on {name}", 0, todo, "")
    elif kind == "op":
        st.record_op(item, replace=True)
        rec["measured"] += 1
        progress(f"profiling on {name}", rec["measured"], totals.get(name, 0), str(item.config))
    elif kind == "error":
        rec["error"] = item
        message(f"{name}: stopped: {item}; what it measured is stored, a rerun resumes")
