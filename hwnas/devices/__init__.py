"""Target devices: frozen specs (runtime, options, constraints), a registry, and fingerprints.

>>> from hwnas.devices import default_registry
>>> default_registry().get("cpu-ort").options.intra_op_threads
1
"""

from hwnas.devices._device import RUNTIMES, Device, DeviceConstraints, RemoteSpec, RuntimeOptions, parse_address
from hwnas.devices._fingerprint import Fingerprint, host_cpu_model, make_fingerprint, resolve_threads
from hwnas.devices._registry import DeviceRegistry, builtin_devices, default_registry

__all__ = [
    "RUNTIMES",
    "Device",
    "DeviceConstraints",
    "RuntimeOptions",
    "RemoteSpec",
    "parse_address",
    "Fingerprint",
    "make_fingerprint",
    "host_cpu_model",
    "resolve_threads",
    "DeviceRegistry",
    "builtin_devices",
    "default_registry",
]
