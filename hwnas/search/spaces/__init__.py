"""Search spaces, registered by name: ``nb201``, ``proxyless``, ``mlp``, ``mnasnet``, ``cell``.

>>> from hwnas.search.spaces import create_space
>>> space = create_space("nb201")
>>> a = space.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
>>> space.from_string(space.to_string(a)) == a
True
"""

from __future__ import annotations

from typing import Any

from hwnas._registry import Registry
from hwnas.search.spaces._cell import CELL_OPS, CellSpace, cell_count
from hwnas.search.spaces._base import Arch, Decision, InfeasibleError, SearchSpace
from hwnas.search.spaces._mlp import MLPSpace
from hwnas.search.spaces._mnasnet import MnasNetSpace
from hwnas.search.spaces._nb201 import NB201_OPS, NB201Space
from hwnas.search.spaces._proxyless import ProxylessSpace

__all__ = ["Arch", "Decision", "SearchSpace", "InfeasibleError", "NB201Space", "NB201_OPS", "ProxylessSpace",
           "MLPSpace", "MnasNetSpace", "CellSpace", "CELL_OPS", "cell_count", "create_space", "register_space", "list_spaces", "space_class", "space_settings",
           "space_names"]

_SPACES: Registry[type[SearchSpace]] = Registry("search space")
for _cls in (NB201Space, ProxylessSpace, MLPSpace, MnasNetSpace, CellSpace):
    _SPACES.register(_cls.name, _cls)


def register_space(cls: type[SearchSpace], *, replace: bool = False) -> type[SearchSpace]:
    """Register a :class:`SearchSpace` subclass under its ``name`` (usable as a decorator)."""
    return _SPACES.register(cls.name, cls, replace=replace)


def create_space(name: str, **kwargs: Any) -> SearchSpace:
    """The space ``name`` with its settings; an unknown name or setting lists the known ones."""
    known = space_settings(name)
    bad = [k for k in kwargs if k not in known]
    if bad:
        from hwnas.errors import HwnasError

        raise HwnasError(f"space {name!r} has no setting {bad[0]!r}; its settings: {', '.join(known)}")
    return _SPACES.get(name)(**kwargs)


def space_class(name: str) -> type[SearchSpace]:
    return _SPACES.get(name)


def space_settings(name: str) -> list[str]:
    """The settings ``create_space(name, ...)`` takes (its constructor's parameters)."""
    import inspect

    return [p for p in inspect.signature(_SPACES.get(name).__init__).parameters if p not in ("self", "allowed")]


def list_spaces(pattern: str = "*") -> list[str]:
    """Registered space names matching ``pattern`` (a glob)."""
    return _SPACES.names(pattern)


space_names = list_spaces
