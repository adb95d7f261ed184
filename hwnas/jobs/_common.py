"""What every job shares: devices (with the user's devices file), the profile store, the timing
policy, progress callbacks, and argument checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from hwnas.devices import Device, DeviceRegistry, default_registry
from hwnas.errors import ArgumentError, HwnasError
from hwnas.profilers import ProfileStore, TimingPolicy, default_db_path

__all__ = ["Progress", "Message", "no_progress", "no_message", "load_devices", "get_device", "list_devices", "check_device",
           "open_store", "timing_policy", "check_positive", "check_count", "check_fraction", "user_devices_file",
           "device_status", "detect_devices", "OpProgress", "tuned_device"]


class Progress(Protocol):
    """``progress(stage, done, total, current)``: ``done`` of ``total`` items of ``stage`` are
    finished; ``current`` names the last one (may be empty)."""

    def __call__(self, stage: str, done: int, total: int, current: str = "") -> None: ...


#: ``message(text)``: what the job is doing, for a human
Message = Callable[[str], None]


def no_progress(stage: str, done: int, total: int, current: str = "") -> None:
    """A progress callback that shows nothing."""


def no_message(text: str) -> None:
    """A message callback that shows nothing."""


def user_devices_file() -> Path:
    """``~/.config/hwnas/devices.toml`` (read when it exists)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("hwnas")) / "devices.toml"


def load_devices(devices_file: str | Path | list[str | Path] | None = None) -> DeviceRegistry:
    """The built-in devices, the user's devices file, and ``devices_file`` (one or a list)."""
    files = [] if devices_file is None else [devices_file] if isinstance(devices_file, (str, Path)) else devices_file
    for f in files:
        if not Path(f).is_file():
            raise HwnasError(f"devices file {f}: {'is a directory' if Path(f).is_dir() else 'not found'}")
    user = user_devices_file()
    return default_registry(*([user] if user.exists() else []), *files)


def get_device(name: str | Device, devices_file: str | Path | list[str | Path] | None = None) -> Device:
    """The device called ``name`` (an unknown name lists the known ones); a :class:`Device` is
    returned as it is.

    >>> get_device("cpu-ort").runtime
    'onnxruntime'
    """
    if isinstance(name, Device):
        return name
    return load_devices(devices_file).get(name)


def tuned_device(device: Device, trials: int | None, store: str | Path | None = None) -> Device:
    """``device`` tuned by MetaSchedule for ``trials`` per task (``None``: as it is), its tuning
    database in ``tvm-tuning/<device name>-<trials>trials`` beside ``store`` (no store: the default
    place, :func:`hwnas.profilers._tvm_tune.tuning_dir`). One database per budget: a task tuned for 8
    trials is not taken as tuned for 64.

    >>> tuned_device(get_device("cpu-tvm"), 8).options.tune_trials
    8
    """
    if trials is None:
        return device
    check_count("tune_trials", trials, minimum=0)
    if device.runtime != "tvm":
        raise HwnasError(f"--tune-trials tunes TVM devices (MetaSchedule); {device.name} runs on {device.runtime}")
    import dataclasses

    database = (str(Path(store).parent / "tvm-tuning" / f"{device.name}-{trials}trials") if store is not None
                else device.options.tune_database)
    return device.replace(options=dataclasses.replace(device.options, tune_trials=trials, tune_database=database))


def list_devices(devices_file: str | Path | list[str | Path] | None = None) -> list[str]:
    """The names of the known devices (built-in and user-defined).

    >>> "cpu-ort" in list_devices()
    True
    """
    return load_devices(devices_file).names()


def open_store(store: str | Path | ProfileStore | None = None, *, create: bool = True) -> ProfileStore:
    """A profile store: ``store`` itself, the SQLite file at ``store``, or the default one. With
    ``create=False`` a missing file is an error rather than a new empty store."""
    if isinstance(store, ProfileStore):
        return store
    path = Path(store) if store is not None else default_db_path()
    if path.is_dir():
        raise HwnasError(f"{path} is a directory, not a profile store (an SQLite file)")
    if not create and not path.exists():
        raise HwnasError(f"no profile store at {path}")
    return ProfileStore(path)


def timing_policy(max_time_s: float | None = None) -> TimingPolicy:
    """The default timing policy, or one that times each op for at most ``max_time_s`` seconds."""
    if max_time_s is None:
        return TimingPolicy()
    check_positive("max_time_per_op", max_time_s)
    return TimingPolicy(max_time_s=max_time_s, min_time_s=min(0.1, max_time_s))


def check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    """A finite number > 0 (or None with ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(name, "takes a finite number > 0", value)


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArgumentError(name, f"takes a count >= {minimum}", value)


def check_fraction(name: str, value: Any) -> None:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ArgumentError(name, "takes a fraction in [0, 1]", value)


def device_status(registry: DeviceRegistry, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Each device's runtime, description, and whether it runs here (with the problems if not)."""
    from hwnas.profilers import get_backend

    rows = []
    for name in names or registry.names():
        d = registry.get(name)
        problems = get_backend(d.runtime).check(d)
        rows.append({"name": name, "runtime": d.runtime, "available": not problems, "problems": problems,
                     "description": d.description})
    return rows


def check_device(device: Device) -> tuple[bool, str]:
    """Whether ``device`` can measure now, in one line: for a remote TVM device whether its tracker
    answers, how many servers hold its key and whether a trivial kernel runs there; for a local one
    whether its runtime is here and a trivial kernel runs."""
    from hwnas.profilers import get_backend
    from hwnas.profilers._tvm_remote import check_remote

    if device.remote is not None:
        problems = get_backend(device.runtime).check(device)
        if problems:
            return False, f"{device.name}: {'; '.join(problems)}"
        result = check_remote(device)
        return result.ok, result.line
    from hwnas.profilers import OpConfig, Profiler
    from hwnas.testing import FAST_POLICY

    try:
        m = Profiler(device, FAST_POLICY).profile_op(OpConfig.parse("act_i8_r8_arelu"))
    except HwnasError as exc:
        return False, f"{device.name}: {exc}"
    if m.status != "ok":
        return False, f"{device.name}: a trivial kernel failed: {m.reason}"
    return True, f"{device.name}: runs here; a trivial kernel took {m.stats.latency_ms:.4f} ms"


def detect_devices(registry: DeviceRegistry) -> dict[str, Any]:
    """This machine: CPU frequency governors, and each device's availability and fingerprint."""
    from hwnas.profilers import cpu_governors, fingerprint

    devices = []
    for row in device_status(registry):
        entry = {k: row[k] for k in ("name", "available", "problems")}
        if row["available"]:
            entry["fingerprint"] = fingerprint(registry.get(row["name"])).to_dict()
        devices.append(entry)
    return {"cpu_governors": cpu_governors(), "devices": devices}


class OpProgress:
    """``on_start`` / ``on_done`` callbacks for :meth:`~hwnas.profilers.Profiler.profile_ops` that
    report ``done/total`` of ``stage`` (every pass counts; stored ops count as done), naming the
    last op (and whether it was unsupported). ``on_resume(skipped)`` hears of stored ops skipped."""

    def __init__(self, progress: Progress, stage: str, on_resume: Callable[[int], None] | None = None) -> None:
        self.progress, self.stage, self.on_resume = progress, stage, on_resume
        self.done_n = self.total = 0

    def start(self, todo: int, skipped: int) -> None:
        if skipped and self.on_resume is not None:
            self.on_resume(skipped)
        self.done_n, self.total = skipped, todo + skipped
        self.progress(self.stage, skipped, self.total)

    def done(self, m: Any) -> None:
        self.done_n += 1
        self.progress(self.stage, self.done_n, self.total, f"{m.config}{'' if m.status == 'ok' else ' (unsupported)'}")


@contextmanager
def strategy_params_named(method: str, renames: dict[str, str] | None = None) -> Iterator[None]:
    """An :class:`~hwnas.errors.ArgumentError` raised inside, about a value that came from
    ``strategy_params``, re-raised as ``<method> parameter <name>`` (the CLI's ``--strategy-param
    NAME``); ``renames``: a library argument's name -> the parameter's (``step`` -> ``grid_step``)."""
    try:
        yield
    except ArgumentError as exc:
        name = (renames or {}).get(exc.argument, exc.argument)
        raise ArgumentError(f"{method} parameter {name}", exc.problem, exc.value) from None


def strategy_config(method: str, cls: type, params: dict[str, Any] | None, set_by_job: dict[str, Any],
                    also: tuple[str, ...] = ()) -> Any:
    """``cls(**set_by_job, **params)`` for a search of its own (``darts``, ``enas``...): a parameter
    the config does not have, or one the job sets from an option of its own (``epochs`` from
    ``--supernet-epochs``, ``seed``), is an :class:`~hwnas.errors.ArgumentError` listing the ones
    ``params`` may set (with ``also``: the job's own, taken out of ``params`` before); a bad value
    is the config's own error (a wrong type: one line too)."""
    takes = [*also, *(f for f in cls.__dataclass_fields__ if f not in set_by_job)]
    bad = [k for k in (params or {}) if k not in takes]
    if bad:
        raise ArgumentError("strategy_params", f"for {method} has no parameter {bad[0]!r}; its parameters: "
                            f"{', '.join(takes)}")
    for name, value in (params or {}).items():
        if name in cls.__dataclass_fields__:
            _check_field_type(method, name, value, cls.__dataclass_fields__[name].type)
    try:
        return cls(**set_by_job, **(params or {}))
    except HwnasError:
        raise
    except (TypeError, ValueError) as exc:
        raise HwnasError(f"bad strategy_params for {method}: {exc}") from None


#: a config field's annotation -> (the types its value may have, what the message says it takes)
_FIELD_TYPES = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a name"),
                "bool": ((bool,), "true or false")}


def _check_field_type(method: str, name: str, value: Any, annotation: Any) -> None:
    """A strategy parameter of the type its config field is annotated with (``int``, ``float``,
    ``str``, ``bool``; others are the config's to check): one line before any training starts."""
    types, says = _FIELD_TYPES.get(str(annotation), (None, ""))
    if types is None:
        return
    if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
        raise ArgumentError(f"{method} parameter {name}", f"takes {says}", value)
