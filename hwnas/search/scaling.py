"""EfficientNet's compound scaling on the ``proxyless`` chain: depth ``alpha ** phi``, width
``beta ** phi`` and resolution ``gamma ** phi`` scaled together, with alpha * beta^2 * gamma^2
close to 2 (each step of phi about doubles the FLOPs).

>>> from hwnas.search.spaces import ProxylessSpace
>>> base = ProxylessSpace(resolution=32, width=0.5, classes=10)
>>> c = Coefficients(1.2, 1.1, 1.15)
>>> round(c.flops_ratio, 3)
1.92
>>> space = scaled_space(base, c, 1.0)
>>> (space.resolution, round(space.width, 3), space.depth, space.stage_layers())
(37, 0.55, 1.2, [5, 5, 5, 5, 5, 2])
>>> arch = scale_arch(base, base.from_string("-".join(["k3e6"] * 21)), space)
>>> len(arch.choices) == len(space.decisions)
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from hwnas.errors import ArgumentError
from hwnas.search.spaces import Arch, ProxylessSpace

__all__ = ["Coefficients", "check_grid", "coefficient_grid", "scaled_space", "scale_arch"]


@dataclass(frozen=True)
class Coefficients:
    """Per unit of phi: depth ``alpha``, width ``beta``, resolution ``gamma`` (each >= 1)."""

    alpha: float
    beta: float
    gamma: float

    @property
    def flops_ratio(self) -> float:
        """The FLOPs multiplier of one step of phi: alpha * beta^2 * gamma^2."""
        return self.alpha * self.beta ** 2 * self.gamma ** 2

    def __str__(self) -> str:
        return f"alpha {self.alpha:g}, beta {self.beta:g}, gamma {self.gamma:g}"


def check_grid(step: float, flops_ratio: float, tolerance: float) -> None:
    """:func:`coefficient_grid`'s arguments in their ranges (an :class:`~hwnas.errors.ArgumentError`)."""
    if not 0 < step <= 1:
        raise ArgumentError("step", "takes a number in (0, 1]", step)
    if not 1 < flops_ratio <= 16:
        raise ArgumentError("flops_ratio", "takes a number in (1, 16]", flops_ratio)
    if not 0 < tolerance < flops_ratio - 1:
        raise ArgumentError("tolerance", f"takes a number in (0, {flops_ratio - 1:g})", tolerance)


def coefficient_grid(step: float = 0.05, flops_ratio: float = 2.0, tolerance: float = 0.1,
                     largest: float = 2.0) -> list[Coefficients]:
    """Every (alpha, beta, gamma) on a grid of ``step`` in [1, ``largest``] whose
    alpha * beta^2 * gamma^2 is within ``tolerance`` of ``flops_ratio`` (EfficientNet: step 0.05, 2)."""
    check_grid(step, flops_ratio, tolerance)
    values = np.round(np.arange(1.0, largest + 1e-9, step), 6)
    return [Coefficients(float(a), float(b), float(g)) for a, b, g in itertools.product(values, repeat=3)
            if abs(a * b * b * g * g - flops_ratio) <= tolerance]


def scaled_space(base: ProxylessSpace, c: Coefficients, phi: float) -> ProxylessSpace:
    """``base`` scaled by ``c`` to ``phi`` (resolution rounded to an integer, at least 8)."""
    return ProxylessSpace(resolution=max(8, round(base.resolution * c.gamma ** phi)), width=base.width * c.beta ** phi,
                          classes=base.classes, act=base.act.value, depth=base.depth * c.alpha ** phi)


def scale_arch(base: ProxylessSpace, arch: Arch, space: ProxylessSpace) -> Arch:
    """``arch`` of ``base`` stretched to ``space``'s layer counts: layer ``i`` of a stage of ``m``
    layers repeats the choice of the base stage's layer ``i * n // m`` (the first layer of a stage
    stays its first: never skipped)."""
    base.validate(arch)
    names = [d.options for d in base.decisions]
    choices, start = [], 0
    for n, m in zip(base.stage_layers(), space.stage_layers()):
        stage = [names[start + j][arch.choices[start + j]] for j in range(n)]
        choices += [stage[i * n // m] for i in range(m)]
        start += n
    return space.from_string("-".join(choices))
