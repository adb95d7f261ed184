"""Feature extraction: one extractor per op type, a shared column schema.

Every extractor fills the shape columns and the cost columns (MACs, parameters, bytes read and
written, arithmetic intensity) plus the columns specific to its op type; columns an op type does not
use stay 0. Bump ``FEATURE_SCHEMA_VERSION`` whenever a column's meaning changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["FEATURE_SCHEMA_VERSION", "FEATURE_NAMES", "op_features", "feature_matrix"]

FEATURE_SCHEMA_VERSION = 1
_BYTES = 4  # fp32

FEATURE_NAMES = [
    "cin", "cout", "h", "w", "ho", "wo", "kernel", "stride", "groups", "expand", "se", "act", "residual",
    "n_inputs", "batch", "macs", "params", "bytes_in", "bytes_out", "bytes_weights", "intensity",
    "in_elems", "out_elems",
    # op-type specific
    "cin_per_group", "mid", "expand_macs", "dw_macs", "project_macs", "se_channels", "window_elems",
]
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_ACT_CODE = {a: i for i, a in enumerate(Act)}

Extractor = Callable[[OpConfig, dict[str, float]], None]
_EXTRACTORS: dict[OpType, Extractor] = {}


def _extractor(*ops: OpType) -> Callable[[Extractor], Extractor]:
    def wrap(fn: Extractor) -> Extractor:
        for op in ops:
            _EXTRACTORS[op] = fn
        return fn

    return wrap


@_extractor(OpType.CONV, OpType.DWCONV, OpType.PWCONV)
def _conv(c: OpConfig, f: dict[str, float]) -> None:
    f["cin_per_group"] = c.cin // c.groups


@_extractor(OpType.MBCONV)
def _mbconv(c: OpConfig, f: dict[str, float]) -> None:
    mid = c.mid_channels
    ho, wo = c.out_hw
    f["mid"] = mid
    f["expand_macs"] = c.h * c.w * c.cin * mid if mid != c.cin else 0
    f["dw_macs"] = ho * wo * mid * c.kernel * c.kernel
    f["project_macs"] = ho * wo * mid * c.cout
    f["se_channels"] = c.se_channels if c.se else 0


@_extractor(OpType.SE)
def _se(c: OpConfig, f: dict[str, float]) -> None:
    f["se_channels"] = c.se_channels


@_extractor(OpType.MAXPOOL, OpType.AVGPOOL)
def _pool(c: OpConfig, f: dict[str, float]) -> None:
    f["window_elems"] = c.kernel * c.kernel


@_extractor(OpType.GAP, OpType.LINEAR, OpType.ADD, OpType.CONCAT, OpType.ACT)
def _plain(c: OpConfig, f: dict[str, float]) -> None:
    """No columns beyond the shared ones."""


def op_features(cfg: OpConfig) -> dict[str, float]:
    """The feature row of one op configuration."""
    ho, wo = cfg.out_hw
    in_elems = sum(int(np.prod(s)) for s in cfg.input_shapes())
    out_elems = int(np.prod(cfg.output_shape()))
    params = cfg.params()
    macs = cfg.macs()
    bytes_in, bytes_out, bytes_w = _BYTES * in_elems, _BYTES * out_elems, _BYTES * params
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(
        cin=cfg.cin, cout=cfg.cout, h=cfg.h, w=cfg.w, ho=ho, wo=wo, kernel=cfg.kernel, stride=cfg.stride,
        groups=cfg.groups, expand=cfg.expand, se=cfg.se, act=_ACT_CODE[cfg.act], residual=float(cfg.residual),
        n_inputs=cfg.n_inputs if cfg.op in (OpType.ADD, OpType.CONCAT) else 1, batch=cfg.batch,
        macs=macs, params=params, bytes_in=bytes_in, bytes_out=bytes_out, bytes_weights=bytes_w,
        intensity=macs / max(1, bytes_in + bytes_out + bytes_w), in_elems=in_elems, out_elems=out_elems,
    )
    _EXTRACTORS[cfg.op](cfg, f)
    return f


def feature_matrix(configs: Sequence[OpConfig]) -> np.ndarray:
    """``(n, len(FEATURE_NAMES))`` float64 matrix."""
    out = np.zeros((len(configs), len(FEATURE_NAMES)))
    for i, c in enumerate(configs):
        out[i] = list(op_features(c).values())
    return out
