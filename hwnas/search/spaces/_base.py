"""Search spaces as lists of decisions; an architecture is an immutable tuple of option indices."""

from __future__ import annotations

import copy
import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from hwnas.devices import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.profilers import OpConfig

__all__ = ["Decision", "Arch", "SearchSpace", "InfeasibleError", "check_setting", "check_act", "check_config_fields"]


def check_setting(space: str, name: str, value: Any, kind: type = int, low: float = 1, high: float | None = None,
                  what: str = "setting") -> Any:
    """A space setting of type ``kind`` (an int is a float too) in ``[low, high]``; anything else is
    an :class:`~hwnas.errors.ArgumentError` naming the setting and the allowed range."""
    import math

    from hwnas.errors import ArgumentError

    ok_type = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if isinstance(value, bool) or not ok_type or (kind is float and not math.isfinite(value)) \
            or value < low or (high is not None and value > high):
        rng = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ArgumentError(f"{space} {what} {name}", f"takes {'an integer' if kind is int else 'a number'} {rng}",
                            value)
    return value


def check_config_fields(owner: str, config: Any, integers: dict[str, int], positive: tuple[str, ...] = ()) -> None:
    """A search config's ``integers`` (field -> its minimum) integers at least that, its ``positive``
    fields (rates) > 0: anything else a :class:`~hwnas.errors.HwnasError`, ``<owner> <field> ...``."""
    from hwnas.errors import HwnasError

    for name, low in integers.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise HwnasError(f"{owner} {name} takes an integer >= {low}, got {value!r}")
    for name in positive:
        if not getattr(config, name) > 0:
            raise HwnasError(f"{owner} {name} must be > 0, got {getattr(config, name)!r}")


def check_act(space: str, act: Any) -> Any:
    """An activation name of :class:`~hwnas.profilers.Act`; an unknown one lists the known ones."""
    from hwnas.errors import UnknownNameError
    from hwnas.profilers import Act

    try:
        return Act(act)
    except ValueError:
        raise UnknownNameError(f"{space} activation", str(act), [a.value for a in Act]) from None


class InfeasibleError(HwnasError):
    """Nothing (left) in the space satisfies the constraints."""


@dataclass(frozen=True)
class Decision:
    """One choice of a space: a name and its options (values)."""

    name: str
    options: tuple[Any, ...]


@dataclass(frozen=True, order=True)
class Arch:
    """An architecture: the space's name and one option index per decision.

    Use ``space.to_string(arch)`` / ``space.from_string(text)`` for the compact form.
    """

    space: str
    choices: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps({"space": self.space, "choices": list(self.choices)})


class SearchSpace(ABC):
    """Sample, mutate, cross over, enumerate, encode; subclasses add the string form, the torch
    module, and the op configurations (for latency prediction)."""

    name: str = ""

    def __init__(self, allowed: Sequence[Sequence[int]] | None = None) -> None:
        self.allowed: tuple[tuple[int, ...], ...] = tuple(
            tuple(a) for a in (allowed or [range(len(d.options)) for d in self.decisions])
        )
        for d, a in zip(self.decisions, self.allowed):
            if not a:
                raise InfeasibleError(f"{self.name}: no option of {d.name!r} is allowed")

    # ---- structure --------------------------------------------------------------------------
    @property
    @abstractmethod
    def decisions(self) -> tuple[Decision, ...]: ...

    def values(self, arch: Arch) -> dict[str, Any]:
        self.validate(arch)
        return {d.name: d.options[i] for d, i in zip(self.decisions, arch.choices)}

    def canonical(self, arch: Arch) -> Arch:
        """The canonical form of equivalent encodings (e.g. unused choices reset); identity by default."""
        return arch

    def validate(self, arch: Arch) -> None:
        if arch.space != self.name:
            raise HwnasError(f"architecture of space {arch.space!r} given to space {self.name!r}")
        decisions = self.decisions
        if len(arch.choices) != len(decisions):
            raise HwnasError(f"{self.name}: {len(arch.choices)} choices for {len(decisions)} decisions")
        for d, a, i in zip(decisions, self.allowed, arch.choices):
            if i not in a:
                raise HwnasError(f"{self.name}: option {i} of {d.name!r} is not allowed here (allowed: {list(a)})")

    @property
    def size(self) -> int:
        """Number of distinct encodings (an upper bound on distinct canonical architectures)."""
        return int(np.prod([len(a) for a in self.allowed], dtype=object))

    # ---- sampling and variation ---------------------------------------------------------------
    def make(self, choices: Sequence[int]) -> Arch:
        arch = self.canonical(Arch(self.name, tuple(int(c) for c in choices)))
        self.validate(arch)
        return arch

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.make([a[int(rng.integers(len(a)))] for a in self.allowed])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one decision that has an alternative, to another allowed option."""
        free = [i for i, a in enumerate(self.allowed) if len(a) > 1]
        if not free:
            return arch
        for _ in range(20):
            i = free[int(rng.integers(len(free)))]
            opts = [o for o in self.allowed[i] if o != arch.choices[i]]
            new = list(arch.choices)
            new[i] = opts[int(rng.integers(len(opts)))]
            child = self.make(new)
            if child != arch:
                return child
        return child

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each decision from either parent."""
        mask = rng.random(len(a.choices)) < 0.5
        return self.make([x if m else y for x, y, m in zip(a.choices, b.choices, mask)])

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        if self.size > limit:
            raise HwnasError(f"space {self.name!r} has {self.size} encodings, over the enumeration limit {limit}")
        seen: set[Arch] = set()
        for choices in itertools.product(*self.allowed):
            arch = self.make(choices)
            if arch not in seen:
                seen.add(arch)
                yield arch

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot vector over all decisions' options."""
        self.validate(arch)
        out = []
        for d, i in zip(self.decisions, arch.choices):
            v = np.zeros(len(d.options))
            v[i] = 1
            out.append(v)
        return np.concatenate(out)

    def features(self, arch: Arch) -> np.ndarray:
        """The input of a strategy's surrogate model: the one-hot encoding, to which a space adds
        features known to drive accuracy (e.g. :class:`NB201Space`: op counts and the convolutions on
        the longest path). Not decodable; use :meth:`encode` for a round trip."""
        return self.encode(arch)

    # ---- strings ------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        """Default compact form: ``name=value`` per decision, separated by commas."""
        self.validate(arch)
        return ",".join(f"{d.name}={d.options[i]}" for d, i in zip(self.decisions, arch.choices))

    def from_string(self, text: str) -> Arch:
        parts = dict(p.split("=", 1) for p in text.strip().split(",") if "=" in p)
        choices = []
        for d in self.decisions:
            if d.name not in parts:
                raise HwnasError(f"{self.name}: {text!r} has no value for {d.name!r}")
            match = [i for i, o in enumerate(d.options) if str(o) == parts[d.name]]
            if not match:
                raise HwnasError(f"{self.name}: {parts[d.name]!r} is not an option of {d.name!r} "
                                 f"(options: {', '.join(map(str, d.options))})")
            choices.append(match[0])
        return self.make(choices)

    # ---- models and costs ---------------------------------------------------------------------
    @abstractmethod
    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module: ...

    @abstractmethod
    def op_configs(self, arch: Arch) -> list[OpConfig]:
        """The op configurations whose latencies make up the model (for the predictor)."""

    def block_keys(self, arch: Arch) -> list[str] | None:
        """For weight inheritance: one key per block of ``build_module(arch)`` (its ``blocks.<i>``),
        the same key for the same layer of the space in every architecture, so that a child's
        blocks find their parent's when a layer is added or removed before them. ``None`` (the
        default): the module's own names already correspond between architectures."""
        return None

    def switched_ops(self, child: Arch, parent: Arch) -> list[str]:
        """For weight inheritance: the names of ``build_module(child)``'s modules that compute another
        operation than the parent's module of the same name, one that no initialisation from the
        parent's weights makes compute the same (NB201: an edge switched from pooling to a skip).
        Inheritance blends each from the parent's operation into the child's over the first steps
        (:func:`hwnas.search._inherit.blended`). Default: none."""
        return []

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        return (1, 3, 32, 32)

    def to_onnx(self, arch: Arch, seed: int = 0, classes: int = 10, name: str = "hwnas_model") -> Any:
        """The architecture's ONNX graph with weights drawn from ``seed`` (the global torch RNG is
        left as it was): what device measurements of the architecture time (latency does not
        depend on the weights' values)."""
        import torch

        from hwnas.profilers import module_to_onnx

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.build_module(arch, classes=classes).eval()
            return module_to_onnx(module, self.input_shape(arch), name=name)

    def params(self, arch: Arch) -> int:
        return sum(c.params() for c in self.op_configs(arch))

    def flops(self, arch: Arch) -> int:
        """Multiply-accumulates of one forward pass."""
        return sum(c.macs() for c in self.op_configs(arch))

    def peak_memory_mb(self, arch: Arch) -> float:
        """Largest input + output activation of any op, fp32."""
        peak = 0
        for c in self.op_configs(arch):
            peak = max(peak, sum(int(np.prod(s)) for s in c.input_shapes()) + int(np.prod(c.output_shape())))
        return 4 * peak / 1e6

    # ---- device constraints -------------------------------------------------------------------
    def option_allowed(self, decision: Decision, option: Any, constraints: DeviceConstraints) -> bool:
        """Whether a device with ``constraints`` can run this option; subclasses refine."""
        return True

    def restrict(self, constraints: DeviceConstraints) -> SearchSpace:
        """A copy without the options the device cannot run."""
        allowed = []
        for d, a in zip(self.decisions, self.allowed):
            keep = tuple(i for i in a if self.option_allowed(d, d.options[i], constraints))
            if not keep:
                raise InfeasibleError(f"{self.name}: the device allows no option of {d.name!r} "
                                      f"(options: {', '.join(map(str, d.options))})")
            allowed.append(keep)
        new = copy.copy(self)
        new.allowed = tuple(allowed)
        return new
