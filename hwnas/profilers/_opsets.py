"""Named sets of op configurations (``hwnas profile --space NAME``) and op files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hwnas._registry import Registry
from hwnas.errors import HwnasError, InvalidOpConfigError
from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["op_set", "op_set_names", "list_op_sets", "register_op_set", "op_set_doc", "read_ops_file", "mobilenetv2_layers"]

_SETS: Registry[Callable[[], list[OpConfig]]] = Registry("op set")


def _dedupe(cfgs: list[OpConfig]) -> list[OpConfig]:
    return list(dict.fromkeys(cfgs))


@_SETS.decorator("micro")
def _micro() -> list[OpConfig]:
    """One small configuration of every op type and activation (seconds to profile)."""
    P = OpConfig.parse
    return [
        P("conv_i8_o16_r16_k3_s1_g1_arelu"),
        P("conv_i8_o16_r16_k3_s2_g2_asilu"),
        P("dwconv_i16_r16_k3_s1_arelu6"),
        P("pwconv_i16_o24_r8_ahardswish"),
        P("mbconv_i16_o16_r8_k3_s1_e3_se0.25_arelu6_res"),
        P("se_i16_r8_se0.25"),
        P("maxpool_i8_r16_k3_s2"),
        P("avgpool_i8_r16_k3_s2"),
        P("gap_i16_r8"),
        P("linear_i16_o10"),
        P("add_i8_r16"),
        P("concat_i8_r16_n2"),
        P("act_i8_r16_asigmoid"),
    ]


@_SETS.decorator("stability")
def _stability() -> list[OpConfig]:
    """36 fixed, mobile-sized configurations (the profiler stability benchmark's set)."""
    cfgs = []
    for c, r in ((16, 56), (32, 28), (64, 14)):
        cfgs += [
            OpConfig(OpType.CONV, c, 2 * c, r, r, kernel=3, stride=1, act=Act.RELU),
            OpConfig(OpType.CONV, c, 2 * c, r, r, kernel=3, stride=2, act=Act.RELU6),
            OpConfig(OpType.DWCONV, c, h=r, w=r, kernel=3, act=Act.RELU6),
            OpConfig(OpType.DWCONV, c, h=r, w=r, kernel=5, stride=2, act=Act.HARDSWISH),
            OpConfig(OpType.PWCONV, c, 2 * c, r, r, act=Act.RELU),
            OpConfig(OpType.MBCONV, c, c, r, r, kernel=3, expand=6, act=Act.RELU6, residual=True),
            OpConfig(OpType.MBCONV, c, 2 * c, r, r, kernel=5, stride=2, expand=3, se=0.25, act=Act.SILU),
            OpConfig(OpType.SE, c, h=r, w=r, se=0.25),
            OpConfig(OpType.MAXPOOL, c, h=r, w=r, kernel=3, stride=2),
            OpConfig(OpType.AVGPOOL, c, h=r, w=r, kernel=3, stride=2),
            OpConfig(OpType.ADD, c, h=r, w=r),
            OpConfig(OpType.ACT, c, h=r, w=r, act=Act.HARDSWISH),
        ]
    return cfgs


# MobileNetV2 (Sandler et al. 2018): expansion t, channels c, repeats n, first stride s.
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenetv2_layers(resolution: int = 224, width: float = 1.0, classes: int = 1000) -> list[OpConfig]:
    """The layer chain of MobileNetV2 at a resolution and width multiplier, as op configs."""

    def ch(c: float) -> int:
        return max(8, int(c * width + 4) // 8 * 8)

    r = resolution
    stem = ch(32)
    layers = [OpConfig(OpType.CONV, 3, stem, r, r, kernel=3, stride=2, act=Act.RELU6)]
    r = layers[-1].out_hw[0]
    cin = stem
    for t, c, n, s in _MBV2:
        cout = ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            cfg = OpConfig(OpType.MBCONV, cin, cout, r, r, kernel=3, stride=stride, expand=t,
                           act=Act.RELU6, residual=stride == 1 and cin == cout)
            layers.append(cfg)
            r, cin = cfg.out_hw[0], cout
    last = max(1280, ch(1280)) if width > 1.0 else 1280
    layers.append(OpConfig(OpType.PWCONV, cin, last, r, r, act=Act.RELU6))
    layers.append(OpConfig(OpType.GAP, last, h=r, w=r))
    layers.append(OpConfig(OpType.LINEAR, last, classes))
    return layers


@_SETS.decorator("mobilenetv2")
def _mbv2() -> list[OpConfig]:
    """The distinct layers of MobileNetV2-1.0 at 224x224."""
    return _dedupe(mobilenetv2_layers(224, 1.0))


@_SETS.decorator("mobilenetv2-small")
def _mbv2_small() -> list[OpConfig]:
    """The distinct layers of MobileNetV2-0.5 at 96x96 with 10 classes (the quickstart's model)."""
    return _dedupe(mobilenetv2_layers(96, 0.5, classes=10))


def op_set(name: str) -> list[OpConfig]:
    return _SETS.get(name)()


def register_op_set(name: str, build: Callable[[], list[OpConfig]], *, replace: bool = False) -> Callable[[], list[OpConfig]]:
    """Register ``build() -> [OpConfig, ...]`` as the op set ``name`` (its docstring describes it)."""
    return _SETS.register(name, build, replace=replace)


def list_op_sets(pattern: str = "*") -> list[str]:
    return _SETS.names(pattern)


op_set_names = list_op_sets


def op_set_doc(name: str) -> str:
    return (_SETS.get(name).__doc__ or "").strip()


def read_ops_file(path: str | Path) -> list[OpConfig]:
    """Op configurations from a file: a JSON list of strings, or one string per line (``#`` comments)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HwnasError(f"ops file not found: {path}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise HwnasError(f"cannot read ops file {path}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HwnasError(f"ops file {path} is not valid JSON: {exc}") from None
        lines = [(i + 1, str(s)) for i, s in enumerate(items)]
    else:
        lines = [(i + 1, ln.split("#", 1)[0].strip()) for i, ln in enumerate(text.splitlines())]
        lines = [(n, s) for n, s in lines if s]
    cfgs = []
    for n, s in lines:
        try:
            cfgs.append(OpConfig.parse(s))
        except InvalidOpConfigError as exc:
            raise InvalidOpConfigError(f"{path}:{n}: {exc}") from None
    if not cfgs:
        raise HwnasError(f"ops file {path} holds no op configurations")
    return _dedupe(cfgs)
