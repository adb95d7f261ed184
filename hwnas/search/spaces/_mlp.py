"""MLPs for tabular data: 1-6 hidden layers, each of a chosen width."""

from __future__ import annotations

from typing import Any

from torch import nn

from hwnas.errors import HwnasError
from hwnas.profilers._ops import Act, OpConfig, OpType
from hwnas.search.spaces._base import Arch, Decision, SearchSpace, check_setting

__all__ = ["MLPSpace"]

WIDTHS = (16, 32, 64, 128, 256, 512)
MAX_DEPTH = 6


class MLPSpace(SearchSpace):
    """String: the hidden widths joined by ``-``, e.g. ``128-64``. ``input_dim`` features in."""

    name = "mlp"

    def __init__(self, input_dim: int = 64, classes: int = 10, allowed: Any = None) -> None:
        check_setting("mlp", "input_dim", input_dim, int, 1, 1_000_000)
        check_setting("mlp", "classes", classes, int, 2, 100_000)
        self.input_dim, self.classes = input_dim, classes
        super().__init__(allowed)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return (Decision("depth", tuple(range(1, MAX_DEPTH + 1))),
                *(Decision(f"width{i}", WIDTHS) for i in range(MAX_DEPTH)))

    def canonical(self, arch: Arch) -> Arch:
        depth = arch.choices[0] + 1
        unused = tuple(self.allowed[i + 1][0] for i in range(depth, MAX_DEPTH))
        return Arch(arch.space, arch.choices[: 1 + depth] + unused)

    def widths(self, arch: Arch) -> list[int]:
        self.validate(arch)
        depth = arch.choices[0] + 1
        return [WIDTHS[i] for i in arch.choices[1: 1 + depth]]

    def to_string(self, arch: Arch) -> str:
        return "-".join(str(w) for w in self.widths(arch))

    def from_string(self, text: str) -> Arch:
        try:
            widths = [int(w) for w in text.strip().split("-")]
        except ValueError:
            raise HwnasError(f"an mlp architecture is hidden widths joined by '-', got {text!r}") from None
        if not 1 <= len(widths) <= MAX_DEPTH or any(w not in WIDTHS for w in widths):
            raise HwnasError(f"an mlp has 1-{MAX_DEPTH} hidden layers of widths {WIDTHS}, got {text!r}")
        return self.make([len(widths) - 1, *(WIDTHS.index(w) for w in widths), *([0] * (MAX_DEPTH - len(widths)))])

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        return (1, self.input_dim)

    def build_module(self, arch: Arch, classes: int = 10, resolution: int | None = None) -> nn.Module:
        layers: list[nn.Module] = []
        cin = self.input_dim if resolution is None else resolution
        for w in self.widths(arch):
            layers += [nn.Linear(cin, w), nn.ReLU()]
            cin = w
        layers.append(nn.Linear(cin, classes))
        return nn.Sequential(*layers)

    def op_configs(self, arch: Arch) -> list[OpConfig]:
        out, cin = [], self.input_dim
        for w in self.widths(arch):
            out += [OpConfig(OpType.LINEAR, cin, w), OpConfig(OpType.ACT, w, act=Act.RELU)]
            cin = w
        return out + [OpConfig(OpType.LINEAR, cin, self.classes)]
