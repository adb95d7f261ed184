"""Search spaces, registered by name: ``nb201``, ``proxyless``, ``mlp``, ``mnasnet``.

>>> from hwnas.search.spaces import create_space
>>> space = create_space("nb201")
>>> a = space.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
>>> space.from_string(space.to_string(a)) == a
True
"""

from __future__ import annotations

from typing import Any

from hwnas._registry import Registry
from hwnas.search.spaces._base import Arch, Decision, InfeasibleError, SearchSpace
from hwnas.search.spaces._mlp import MLPSpace
from hwnas.search.spaces._mnasnet import MnasNetSpace
from hwnas.search.spaces._nb201 import NB201_OPS, NB201Space
from hwnas.search.spaces._proxyless import ProxylessSpace

__all__ = ["Arch", "Decision", "SearchSpace", "InfeasibleError", "NB201Space", "NB201_OPS", "ProxylessSpace",
           "MLPSpace", "MnasNetSpace", "create_space", "space_names"]

_SPACES: Registry[type[SearchSpace]] = Registry("search space")
for _cls in (NB201Space, ProxylessSpace, MLPSpace, MnasNetSpace):
    _SPACES.register(_cls.name, _cls)


def create_space(name: str, **kwargs: Any) -> SearchSpace:
    return _SPACES.get(name)(**kwargs)


def space_names() -> list[str]:
    return _SPACES.names()
