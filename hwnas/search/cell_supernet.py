"""Single-path shared weights over the ``cell`` space (ENAS's micro search, and once-for-all-style
scoring of cells): DARTS's search network, whose every edge holds every op, run one path at a
time: each training batch a pair of cells (normal and reduction) drawn uniformly among the
options the device allows, and a cell pair scored with the weights it shares with all others.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.search.darts import _KINDS, _op_decision, _SearchNetwork
from hwnas.search.ofa import OnceForAll
from hwnas.search.spaces import CELL_OPS, Arch, CellSpace

__all__ = ["CellSupernet"]


class _PathNetwork(_SearchNetwork):
    """The search network with :class:`~hwnas.search.proxyless.Supernet`'s path interface."""

    def __init__(self, space: CellSpace, classes: int, seed: int) -> None:
        masks = {k: np.array([i in space.allowed[_op_decision(space, k)] for i in range(len(CELL_OPS))])
                 for k in _KINDS}
        super().__init__(space, classes, masks, seed)
        self.space = space

    def set_mode(self, mode: str, g: torch.Generator | None = None, arch: Arch | None = None) -> None:
        """``single``: a path drawn with ``g`` uniformly among the allowed options; ``fixed``: ``arch``."""
        if mode == "single":
            arch = self.space.make([allowed[int(torch.randint(len(allowed), (1,), generator=g))]
                                    for allowed in self.space.allowed])
        elif mode != "fixed" or arch is None:
            raise HwnasError(f"a cell supernet runs one path: mode 'single' or 'fixed' with an arch, not {mode!r}")
        self.set_path(self.space, arch)

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alpha.values())


class CellSupernet(OnceForAll):
    """:class:`~hwnas.search.ofa.OnceForAll`'s training, checkpoints and batch-norm-recalibrated
    :meth:`accuracy`, on the cell space's shared search network."""

    def _make_net(self, classes: int) -> nn.Module:
        if not isinstance(self.space, CellSpace):
            raise HwnasError(f"a cell supernet takes the cell space, not {type(self.space).__name__}")
        return _PathNetwork(self.space, classes, self.cfg.seed)
