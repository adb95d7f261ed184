"""A device's fingerprint on this machine, with its runtime's installed version."""

from __future__ import annotations

from hwnas.devices import Device, Fingerprint, make_fingerprint
from hwnas.profilers._backends import get_backend

__all__ = ["fingerprint"]


def fingerprint(device: Device) -> Fingerprint:
    """Fingerprint of ``device`` on this machine, with its runtime's installed version (and, for
    TVM, the resolved target; with the backend's ``setup_tag`` in brackets after the version where
    it has one). The runtime must be importable (see the backend's ``check()``).

    >>> from hwnas.devices import default_registry
    >>> fingerprint(default_registry().get("cpu-ort")).runtime
    'onnxruntime'
    """
    backend = get_backend(device.runtime)
    target = backend.resolved_target(device) if device.runtime == "tvm" else None
    tag = backend.setup_tag(device)
    return make_fingerprint(device, f"{backend.version()} [{tag}]" if tag else backend.version(), target)
