"""Op-configuration sampling in the manner of nn-Meter: priors over realistic shapes, then more
samples around the configurations the model predicts worst."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.profilers._ops import Act, OpConfig, OpType

__all__ = ["sample_configs", "perturb", "DEFAULT_MIX", "MAX_MACS"]

MAX_MACS = 400_000_000  # keeps any single op's profiling under a second or so on a CPU
_ACTS = [Act.RELU, Act.RELU6, Act.HARDSWISH, Act.SILU]
#: how many samples of each op type per 100 (kernel types of CNNs weighted by how common they are)
DEFAULT_MIX = {
    OpType.CONV: 16, OpType.DWCONV: 16, OpType.PWCONV: 20, OpType.MBCONV: 12, OpType.SE: 6,
    OpType.ADD: 6, OpType.CONCAT: 4, OpType.MAXPOOL: 3, OpType.AVGPOOL: 2, OpType.GAP: 4,
    OpType.LINEAR: 4, OpType.ACT: 7,
}


def _channels(rng: np.random.Generator, lo: int = 8, hi: int = 1280) -> int:
    c = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    step = 8 if c >= 24 else 4
    return int(max(lo // 2, round(c / step) * step))


def _resolution(rng: np.random.Generator, lo: int = 3, hi: int = 224) -> int:
    return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def _one(op: OpType, rng: np.random.Generator, max_resolution: int) -> OpConfig:
    r = _resolution(rng, hi=max_resolution)
    act = _ACTS[int(rng.integers(len(_ACTS)))]
    s = int(rng.choice([1, 2], p=[0.75, 0.25]))
    if op is OpType.CONV:
        cin = 3 if rng.random() < 0.1 else _channels(rng, 8, 512)
        k = int(rng.choice([1, 3, 5, 7], p=[0.15, 0.6, 0.1, 0.15]))
        return OpConfig(op, cin, _channels(rng, 8, 512), r, r, kernel=k, stride=s, act=act)
    if op is OpType.DWCONV:
        return OpConfig(op, _channels(rng, 8, 1536), h=r, w=r, kernel=int(rng.choice([3, 5, 7])), stride=s, act=act)
    if op is OpType.PWCONV:
        a = Act.NONE if rng.random() < 0.4 else act
        return OpConfig(op, _channels(rng, 8, 1536), _channels(rng, 8, 1536), r, r, act=a)
    if op is OpType.MBCONV:
        cin = _channels(rng, 8, 320)
        residual = bool(rng.random() < 0.5) and s == 1
        cout = cin if residual else _channels(rng, 8, 320)
        return OpConfig(op, cin, cout, r, r, kernel=int(rng.choice([3, 5, 7])), stride=s,
                        expand=float(rng.choice([1, 3, 4, 6])), se=float(rng.choice([0.0, 0.25])), act=act,
                        residual=residual)
    if op is OpType.SE:
        return OpConfig(op, _channels(rng, 16, 1536), h=r, w=r, se=float(rng.choice([0.0417, 0.0625, 0.125, 0.25])))
    if op in (OpType.MAXPOOL, OpType.AVGPOOL):
        return OpConfig(op, _channels(rng, 8, 512), h=max(r, 3), w=max(r, 3), kernel=int(rng.choice([2, 3])), stride=2)
    if op is OpType.GAP:
        return OpConfig(op, _channels(rng, 8, 2048), h=r, w=r)
    if op is OpType.LINEAR:
        return OpConfig(op, _channels(rng, 16, 2048), _channels(rng, 8, 1000))
    if op is OpType.ADD:
        return OpConfig(op, _channels(rng, 8, 1024), h=r, w=r)
    if op is OpType.CONCAT:
        return OpConfig(op, _channels(rng, 8, 512), h=r, w=r, n_inputs=int(rng.choice([2, 2, 3, 4])))
    return OpConfig(OpType.ACT, _channels(rng, 8, 1024), h=r, w=r, act=_ACTS[int(rng.integers(len(_ACTS)))]
                    if rng.random() < 0.8 else Act.SIGMOID)


def sample_configs(n: int, seed: int = 0, mix: dict[OpType, int] | None = None, max_resolution: int = 224,
                   max_macs: int = MAX_MACS) -> list[OpConfig]:
    """``n`` distinct op configurations drawn from the priors, op types in proportion to ``mix``."""
    rng = np.random.default_rng(seed)
    mix = mix or DEFAULT_MIX
    types = list(mix)
    p = np.array([mix[t] for t in types], dtype=float)
    p /= p.sum()
    out: dict[OpConfig, None] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        cfg = _one(types[int(rng.choice(len(types), p=p))], rng, max_resolution)
        if cfg.macs() <= max_macs:
            out[cfg] = None
    return list(out)


def perturb(configs: Sequence[OpConfig], n: int, seed: int = 0, max_macs: int = MAX_MACS) -> list[OpConfig]:
    """New configurations near the given ones (channels and resolution scaled by up to +-50%)."""
    import dataclasses

    rng = np.random.default_rng(seed)
    out: dict[OpConfig, None] = {}
    seen = set(configs)
    tries = 0
    while len(out) < n and tries < 50 * n and configs:
        tries += 1
        base = configs[int(rng.integers(len(configs)))]
        f = lambda v: max(1, int(round(v * rng.uniform(0.6, 1.5))))  # noqa: E731
        r = max(3, f(base.h))
        kw: dict[str, object] = {"h": r, "w": r}
        if base.op in (OpType.CONV, OpType.PWCONV, OpType.LINEAR) or (base.op is OpType.MBCONV and not base.residual):
            kw["cin"] = max(4, f(base.cin) // 4 * 4) if base.cin != 3 else 3
            kw["cout"] = max(4, f(base.cout) // 4 * 4)
        else:
            c = max(4, f(base.cin) // 4 * 4)
            kw["cin"] = c
            if base.op is OpType.MBCONV:
                kw["cout"] = c
        if base.op is OpType.LINEAR:
            kw = {"cin": kw["cin"], "cout": kw["cout"]}
        try:
            cfg = dataclasses.replace(base, **kw)
        except ValueError:
            continue
        if cfg not in seen and cfg.macs() <= max_macs:
            out[cfg] = None
    return list(out)
