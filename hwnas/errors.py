"""Errors that are the user's to fix.

Every error a user can cause by bad input derives from :class:`HwnasError`. The CLI prints its
message (no traceback) and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HwnasError",
    "UnknownNameError",
    "InvalidModelError",
    "StoreError",
    "FingerprintMismatchError",
    "RuntimeUnavailableError",
    "DeviceUnreachableError",
    "InvalidOpConfigError",
    "ArgumentError",
    "RunExistsError",
]


class HwnasError(Exception):
    """Base class of errors caused by input or environment; the CLI exits 2 on them."""


class UnknownNameError(HwnasError, KeyError):
    """A name that is not in a registry; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        super().__init__(
            f"unknown {kind} {name!r}. Known {plural}: {', '.join(self.known) or '(none)'}.{hint}"
        )

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class InvalidModelError(HwnasError):
    """A model file that is missing, not ONNX, or fails the ONNX checker."""


class InvalidOpConfigError(HwnasError, ValueError):
    """An op configuration string or value that does not describe a valid op."""


class StoreError(HwnasError):
    """A profile store that cannot be used (corrupted, foreign, or of an unknown schema)."""


class FingerprintMismatchError(HwnasError):
    """Measurements from another machine or runtime version would be mixed in."""


class RuntimeUnavailableError(HwnasError):
    """A runtime (TVM, CUDA, ...) was requested but is not installed or not present."""


class ArgumentError(HwnasError, ValueError):
    """A bad argument value: the message names the argument (as the Python API spells it) and
    what is allowed; the CLI names its own option instead (``target_ms`` -> ``--target-ms``)."""

    def __init__(self, argument: str, problem: str, value: object = None) -> None:
        self.argument, self.problem, self.value = argument, problem, value
        super().__init__(self.with_name(argument))

    def with_name(self, name: str) -> str:
        """The message with the argument called ``name`` (e.g. a CLI option)."""
        got = "" if self.value is None else f", got {self.value!r}"
        return f"{name} {self.problem}{got}"


class RunExistsError(HwnasError):
    """A run directory already holds a search that was not asked to be continued."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"{path} already holds a search; continue it (resume) or choose another directory")


class DeviceUnreachableError(RuntimeUnavailableError):
    """A remote device that does not answer (its tracker or server), has no free server, or lost
    its connection: nothing is recorded for what was being measured; a rerun resumes."""
