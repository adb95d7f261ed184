"""Host conditions that affect timing: CPU frequency governor, CPU affinity."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator

__all__ = ["cpu_governors", "governor_warning", "cpu_affinity"]


def cpu_governors() -> dict[str, int]:
    """Count of CPUs per frequency governor; empty when the kernel exposes no cpufreq."""
    counts: dict[str, int] = {}
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"):
        try:
            with open(path) as f:
                gov = f.read().strip()
        except OSError:
            continue
        counts[gov] = counts.get(gov, 0) + 1
    return counts


def governor_warning() -> str | None:
    """A warning when a CPU's governor is not ``performance`` (frequency scaling adds noise)."""
    govs = cpu_governors()
    if not govs:
        return None
    others = {g: n for g, n in govs.items() if g != "performance"}
    if not others:
        return None
    desc = ", ".join(f"{n} CPU(s) '{g}'" for g, n in sorted(others.items()))
    return (
        f"CPU frequency governor is not 'performance' ({desc}); timings may vary with clock scaling. "
        "Fix: sudo cpupower frequency-set -g performance"
    )


@contextlib.contextmanager
def cpu_affinity(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Pin this process to ``cpus`` for the duration (no-op for ``None``)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
