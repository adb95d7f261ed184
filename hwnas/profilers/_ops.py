"""Op configurations: typed, immutable values with a compact string round trip.

>>> c = OpConfig.parse("mbconv_i24_o24_r56_k5_s1_e6_se0.25_arelu6_res")
>>> c.op, c.kernel, c.expand, c.residual
(<OpType.MBCONV: 'mbconv'>, 5, 6.0, True)
>>> OpConfig.parse(str(c)) == c
True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hwnas._optypes import OpType
from hwnas.errors import InvalidOpConfigError

__all__ = ["OpType", "Act", "OpConfig"]


class Act(str, Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"
    HARDSWISH = "hardswish"
    SIGMOID = "sigmoid"
    SILU = "silu"


# The fields each op type is described by, in string order. Other fields must keep their defaults.
_FIELDS: dict[OpType, tuple[str, ...]] = {
    OpType.CONV: ("cin", "cout", "hw", "kernel", "stride", "groups", "act"),
    OpType.DWCONV: ("cin", "hw", "kernel", "stride", "act"),
    OpType.PWCONV: ("cin", "cout", "hw", "act"),
    OpType.MBCONV: ("cin", "cout", "hw", "kernel", "stride", "expand", "se", "act", "residual"),
    OpType.SE: ("cin", "hw", "se"),
    OpType.MAXPOOL: ("cin", "hw", "kernel", "stride"),
    OpType.AVGPOOL: ("cin", "hw", "kernel", "stride"),
    OpType.GAP: ("cin", "hw"),
    OpType.LINEAR: ("cin", "cout"),
    OpType.ADD: ("cin", "hw", "n_inputs"),
    OpType.CONCAT: ("cin", "hw", "n_inputs"),
    OpType.ACT: ("cin", "hw", "act"),
}

_TOKEN = re.compile(r"^(se|res|i|o|r|k|s|g|e|a|n|b)(.*)$")


@dataclass(frozen=True)
class OpConfig:
    """One op (or block) with its input shape and hyper-parameters.

    Channels-first layout; ``h``/``w`` is the input resolution. Fields an op type does not use
    are normalised (e.g. a depthwise conv has ``cout == groups == cin``), so equal ops compare equal.
    """

    op: OpType
    cin: int
    cout: int = 0
    h: int = 1
    w: int = 1
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    expand: float = 1.0
    se: float = 0.0
    act: Act = Act.NONE
    residual: bool = False
    n_inputs: int = 2
    batch: int = 1

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "op", OpType(self.op))
            set_(self, "act", Act(self.act))
        except ValueError as exc:
            raise InvalidOpConfigError(
                f"{exc}; op types: {[t.value for t in OpType]}, activations: {[a.value for a in Act]}"
            ) from None
        set_(self, "expand", float(self.expand))
        set_(self, "se", float(self.se))
        op = self.op
        if op in (OpType.DWCONV, OpType.SE, OpType.MAXPOOL, OpType.AVGPOOL, OpType.GAP,
                  OpType.ADD, OpType.CONCAT, OpType.ACT):
            set_(self, "cout", self.cin * (self.n_inputs if op is OpType.CONCAT else 1))
        if op is OpType.DWCONV:
            set_(self, "groups", self.cin)
        if op is OpType.PWCONV:
            set_(self, "kernel", 1)
        if op is OpType.LINEAR:
            set_(self, "h", 1)
            set_(self, "w", 1)
        if self.cout == 0:
            set_(self, "cout", self.cin)
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> InvalidOpConfigError:
            return InvalidOpConfigError(f"invalid {self.op.value} configuration: {msg}")

        for name in ("cin", "cout", "h", "w", "kernel", "stride", "groups", "batch"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        used = set(_FIELDS[self.op]) | {"batch", "op", "h", "w"}
        if self.op in (OpType.DWCONV,):
            used |= {"cout", "groups"}
        if self.op in (OpType.PWCONV,):
            used |= {"kernel"}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, default in defaults.items():
            if name in used or name == "cout":
                continue
            if getattr(self, name) != default:
                raise bad(f"field {name!r} does not apply to {self.op.value}")
        if self.op is OpType.CONV and (self.cin % self.groups or self.cout % self.groups):
            raise bad(f"groups={self.groups} must divide cin={self.cin} and cout={self.cout}")
        if self.op is OpType.MBCONV:
            if self.expand < 1:
                raise bad(f"expand must be >= 1, got {self.expand}")
            if self.residual and (self.stride != 1 or self.cin != self.cout):
                raise bad("a residual needs stride 1 and cin == cout")
        if not 0.0 <= self.se <= 1.0:
            raise bad(f"se ratio must be in [0, 1], got {self.se}")
        if self.op is OpType.SE and self.se <= 0:
            raise bad("squeeze-excite needs se > 0")
        if self.op in (OpType.CONCAT, OpType.ADD) and self.n_inputs < 2:
            raise bad(f"{self.op.value} needs n_inputs >= 2")
        if self.op is OpType.ACT and self.act is Act.NONE:
            raise bad("an activation op needs an activation")
        if self.op in (OpType.MAXPOOL, OpType.AVGPOOL) and self.kernel < 2:
            raise bad("pooling needs kernel >= 2")

    # ---- shapes and costs -------------------------------------------------------------------
    @property
    def out_hw(self) -> tuple[int, int]:
        if self.op in (OpType.GAP, OpType.LINEAR):
            return (1, 1)
        if self.op in (OpType.CONV, OpType.DWCONV, OpType.MBCONV, OpType.MAXPOOL, OpType.AVGPOOL):
            p = self.kernel // 2
            return (
                (self.h + 2 * p - self.kernel) // self.stride + 1,
                (self.w + 2 * p - self.kernel) // self.stride + 1,
            )
        return (self.h, self.w)

    def input_shapes(self) -> list[tuple[int, ...]]:
        if self.op is OpType.LINEAR:
            return [(self.batch, self.cin)]
        shape = (self.batch, self.cin, self.h, self.w)
        n = self.n_inputs if self.op in (OpType.ADD, OpType.CONCAT) else 1
        return [shape] * n

    def output_shape(self) -> tuple[int, ...]:
        if self.op is OpType.LINEAR:
            return (self.batch, self.cout)
        return (self.batch, self.cout, *self.out_hw)

    @property
    def mid_channels(self) -> int:
        """Expanded channels of an MBConv block."""
        return int(round(self.cin * self.expand))

    @property
    def se_channels(self) -> int:
        return max(1, int(self.cin * self.se))

    # ---- string round trip ------------------------------------------------------------------
    def __str__(self) -> str:
        parts = [self.op.value]
        for name in _FIELDS[self.op]:
            if name == "cin":
                parts.append(f"i{self.cin}")
            elif name == "cout":
                parts.append(f"o{self.cout}")
            elif name == "hw":
                parts.append(f"r{self.h}" if self.h == self.w else f"r{self.h}x{self.w}")
            elif name == "kernel":
                parts.append(f"k{self.kernel}")
            elif name == "stride":
                parts.append(f"s{self.stride}")
            elif name == "groups":
                parts.append(f"g{self.groups}")
            elif name == "expand":
                parts.append(f"e{self.expand:g}")
            elif name == "se":
                if self.se or self.op is OpType.SE:
                    parts.append(f"se{self.se:g}")
            elif name == "act":
                parts.append(f"a{self.act.value}")
            elif name == "residual":
                if self.residual:
                    parts.append("res")
            elif name == "n_inputs":
                if self.op is OpType.CONCAT or self.n_inputs != 2:
                    parts.append(f"n{self.n_inputs}")
        if self.batch != 1:
            parts.append(f"b{self.batch}")
        return "_".join(parts)

    @classmethod
    def parse(cls, text: str) -> OpConfig:
        """Inverse of ``str(config)``."""
        text = text.strip()
        op_name, *tokens = text.split("_")
        try:
            op = OpType(op_name)
        except ValueError:
            raise InvalidOpConfigError(
                f"unknown op type {op_name!r} in {text!r}; known op types: "
                f"{', '.join(t.value for t in OpType)}"
            ) from None
        kw: dict[str, Any] = {}
        try:
            for tok in tokens:
                m = _TOKEN.match(tok)
                if not m:
                    raise ValueError(f"unknown token {tok!r}")
                key, val = m.groups()
                if key == "i":
                    kw["cin"] = int(val)
                elif key == "o":
                    kw["cout"] = int(val)
                elif key == "r":
                    h, _, w = val.partition("x")
                    kw["h"], kw["w"] = int(h), int(w or h)
                elif key == "k":
                    kw["kernel"] = int(val)
                elif key == "s":
                    kw["stride"] = int(val)
                elif key == "g":
                    kw["groups"] = int(val)
                elif key == "e":
                    kw["expand"] = float(val)
                elif key == "se":
                    kw["se"] = float(val)
                elif key == "a":
                    kw["act"] = Act(val)
                elif key == "res":
                    if val:
                        raise ValueError(f"unknown token {tok!r}")
                    kw["residual"] = True
                elif key == "n":
                    kw["n_inputs"] = int(val)
                elif key == "b":
                    kw["batch"] = int(val)
        except ValueError as exc:
            raise InvalidOpConfigError(f"cannot parse op configuration {text!r}: {exc}") from None
        if "cin" not in kw:
            raise InvalidOpConfigError(f"op configuration {text!r} needs input channels (i<N>)")
        return cls(op=op, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["op"], d["act"] = self.op.value, self.act.value
        return d

    def with_batch(self, batch: int) -> OpConfig:
        return dataclasses.replace(self, batch=batch)

    # ---- cost model inputs ------------------------------------------------------------------
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (batch included)."""
        ho, wo = self.out_hw
        b, k = self.batch, self.kernel
        op = self.op
        if op in (OpType.CONV, OpType.DWCONV, OpType.PWCONV):
            return b * ho * wo * self.cout * (self.cin // self.groups) * k * k
        if op is OpType.LINEAR:
            return b * self.cin * self.cout
        if op is OpType.SE:
            r = self.se_channels
            return b * (2 * self.cin * r + self.cin * self.h * self.w)
        if op is OpType.MBCONV:
            mid = self.mid_channels
            total = 0
            if mid != self.cin:
                total += self.h * self.w * self.cin * mid
            total += ho * wo * mid * k * k
            if self.se:
                total += 2 * mid * self.se_channels + mid * ho * wo
            total += ho * wo * mid * self.cout
            return b * total
        if op in (OpType.MAXPOOL, OpType.AVGPOOL):
            return b * self.cout * ho * wo * k * k
        return b * self.cout * ho * wo  # elementwise-like ops

    def params(self) -> int:
        op, k = self.op, self.kernel
        if op in (OpType.CONV, OpType.DWCONV, OpType.PWCONV):
            return self.cout * (self.cin // self.groups) * k * k + self.cout
        if op is OpType.LINEAR:
            return self.cin * self.cout + self.cout
        if op is OpType.SE:
            r = self.se_channels
            return 2 * self.cin * r + r + self.cin
        if op is OpType.MBCONV:
            mid = self.mid_channels
            p = 0
            if mid != self.cin:
                p += self.cin * mid + mid
            p += mid * k * k + mid
            if self.se:
                r = self.se_channels
                p += 2 * mid * r + r + mid
            p += mid * self.cout + self.cout
            return p
        return 0
