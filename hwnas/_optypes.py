"""The op types hwnas profiles and predicts: the vocabulary device constraints and op
configurations share (a bottom-layer module: devices and profilers both import it)."""

from __future__ import annotations

from enum import Enum

__all__ = ["OpType"]


class OpType(str, Enum):
    CONV = "conv"  # k x k conv, any stride/groups, BN folded, optional activation
    DWCONV = "dwconv"  # depthwise k x k conv (groups = channels), BN folded, activation
    PWCONV = "pwconv"  # 1 x 1 conv, BN folded, activation
    MBCONV = "mbconv"  # inverted residual: expand, depthwise, optional SE, project, optional skip
    SE = "se"  # squeeze-excite
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GAP = "gap"  # global average pooling
    LINEAR = "linear"
    ADD = "add"
    CONCAT = "concat"
    ACT = "act"  # a stand-alone activation
