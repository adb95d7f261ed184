"""Weight inheritance: a child network starts from its parent's trained weights (Net2Net-style,
function-preserving where the structure allows) and trains for fewer epochs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.errors import HwnasError
from hwnas.search.spaces._base import Arch, SearchSpace

__all__ = ["inherit_weights", "block_correspondence", "blended", "blend_steps", "InheritStats", "InheritingEvaluator"]


@dataclass(frozen=True)
class InheritStats:
    """How much of a child came from its parent: parameter elements copied, layers initialised as
    identities (new depth), the child's parameter elements in all, and its modules blended in from
    the parent's operation (:func:`blended`)."""

    copied: int
    identity_layers: int
    total: int
    blended_layers: int = 0

    @property
    def fraction(self) -> float:
        return self.copied / self.total if self.total else 0.0


def _weighted(module: Any) -> bool:
    import torch.nn as nn

    return isinstance(module, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d))


def _heads(child: Any, parent_state: dict[str, Any]) -> tuple[str | None, str | None]:
    """The classifier of each: the last Linear layer (matched to each other whatever their names)."""
    import torch.nn as nn

    c = [n for n, m in child.named_modules() if isinstance(m, nn.Linear)]
    p = [k[: -len(".weight")] for k, v in parent_state.items() if k.endswith(".weight") and v.dim() == 2]
    return (c[-1] if c else None), (p[-1] if p else None)


def _overlap(dst: Any, src: Any) -> int:
    """Copy ``src`` into ``dst`` where they overlap: leading output and input channels, kernels
    centred (a larger kernel gets the parent's in its centre, zeros around: the same function). A
    layer with more inputs than its parent gets zero weights from the extra inputs (the new units
    of a widened layer before it add nothing at first: Net2Net's function-preserving widening, with
    zero outgoing weights instead of divided copies). Returns the elements copied."""
    import torch

    if dst.dim() != src.dim():
        return 0
    n = [min(d, s) for d, s in zip(dst.shape, src.shape)]
    idx_dst = [slice(0, k) for k in n[:2]] + [slice((d - k) // 2, (d - k) // 2 + k) for d, k in zip(dst.shape[2:], n[2:])]
    idx_src = [slice(0, k) for k in n[:2]] + [slice((s - k) // 2, (s - k) // 2 + k) for s, k in zip(src.shape[2:], n[2:])]
    with torch.no_grad():
        if dst.dim() >= 2 and dst.shape[1] > src.shape[1]:
            dst[:, src.shape[1]:] = 0
        if dst.dim() == 4 and tuple(dst.shape[2:]) != tuple(src.shape[2:]):
            dst[: n[0], : n[1]] = 0  # the kernel's ring around the parent's centre
        dst[tuple(idx_dst)] = src[tuple(idx_src)].to(dst.dtype)
    return int(torch.Size(n).numel())


def _identity(module: Any) -> None:
    """Initialise a new Linear or Conv2d as the identity on its overlapping channels (Net2Net's
    deepening: with a ReLU after a ReLU, the same function when the widths agree)."""
    import torch
    import torch.nn as nn

    with torch.no_grad():
        module.weight.zero_()
        n = min(module.weight.shape[0], module.weight.shape[1])
        if isinstance(module, nn.Linear):
            module.weight[:n, :n] = torch.eye(n)
        else:
            kh, kw = module.weight.shape[2:]
            module.weight[torch.arange(n), torch.arange(n), kh // 2, kw // 2] = 1.0
        if module.bias is not None:
            module.bias.zero_()


def block_correspondence(space: SearchSpace, child: Arch, parent: Arch) -> dict[str, str | None] | None:
    """Each of ``child``'s blocks (``blocks.<i>``) to its parent's block of the same layer
    (``SearchSpace.block_keys``), ``None`` for a layer the parent lacks; ``None`` altogether where the
    space's module names already correspond."""
    ck, pk = space.block_keys(child), space.block_keys(parent)
    if ck is None or pk is None:
        return None
    where = {k: i for i, k in enumerate(pk)}
    return {f"blocks.{i}": (f"blocks.{where[k]}" if k in where else None) for i, k in enumerate(ck)}


def _source_name(name: str, blocks: dict[str, str | None] | None) -> tuple[str | None, str | None]:
    """The parent's name for the child's module ``name``, and the child's block it lies in where the
    parent lacks that block (``blocks``: :func:`block_correspondence`)."""
    head = ".".join(name.split(".")[:2])
    if not blocks or head not in blocks:
        return name, None
    src = blocks[head]
    return (None, head) if src is None else (src + name[len(head):], None)


def _zero_residual_branches(block: Any) -> int:
    """In a new block, every residual unit (a module with ``residual`` set: output = input + branch)
    gets its branch's last BatchNorm scale and shift zeroed, so that the unit starts as the identity
    (Net2Net's deepening for residual networks; "zero-gamma"). Returns the units so started."""
    import torch
    import torch.nn as nn

    n = 0
    for m in block.modules():
        if getattr(m, "residual", False) is True:
            bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm) and b.affine]
            if bns:
                with torch.no_grad():
                    bns[-1].weight.zero_()
                    bns[-1].bias.zero_()
                n += 1
    return n


def inherit_weights(child: Any, parent_state: dict[str, Any],
                    blocks: dict[str, str | None] | None = None) -> InheritStats:
    """Start ``child`` (a torch module) from ``parent_state`` (its parent's trained ``state_dict``):
    layers matched by name (the classifiers, the last Linear of each, to each other; ``blocks`` from
    :func:`block_correspondence` renames a chain's blocks where layers were added or removed), each
    tensor copied on its overlap (:func:`_overlap`); a block the parent lacks starts as the identity
    where it is residual (:func:`_zero_residual_branches`); any other Linear or Conv2d the parent
    lacks starts as an identity (:func:`_identity`); anything else keeps its fresh initialisation."""
    head_c, head_p = _heads(child, parent_state)
    copied = identities = 0
    zeroed = {name: _zero_residual_branches(m) for name, m in child.named_modules()
              if blocks and name in blocks and blocks[name] is None}
    identities += sum(zeroed.values())
    for name, module in child.named_modules():
        if not _weighted(module):
            continue
        src, new_block = _source_name(name, blocks)
        if new_block is not None and zeroed[new_block]:
            continue  # a residual unit already started as the identity: its layers keep their fresh weights
        src = head_p if name == head_c else (None if src is None or src == head_p else src)
        copied_here, identity = _inherit_module(module, src, parent_state)
        copied += copied_here
        identities += identity
    total = sum(p.numel() for p in child.parameters())
    return InheritStats(copied, identities, total)


def _inherit_module(module: Any, src: str | None, parent_state: dict[str, Any]) -> tuple[int, int]:
    """Copy one module's parameters from the parent's ``src`` (elements copied, 0), or start an
    unmatched Linear/Conv2d as an identity (0, 1)."""
    import torch.nn as nn

    # parameters only: a parent's BatchNorm statistics describe the parent's activations (a
    # child's differ; copied, they left nb201 children at chance accuracy after training)
    if src is None or f"{src}.weight" not in parent_state:
        if isinstance(module, (nn.Linear, nn.Conv2d)) and (module.groups if isinstance(module, nn.Conv2d) else 1) == 1:
            _identity(module)
            return 0, 1
        return 0, 0
    copied = 0
    for key, t in dict(module.named_parameters(recurse=False)).items():
        p = parent_state.get(f"{src}.{key}")
        if p is not None:
            copied += _overlap(t.data, p)
    return copied, 0


class _Blend(nn.Module):
    """``(1 - a) * old(x) + a * new(x)``, ``a`` rising linearly from 0 to 1 over ``steps``
    training forward passes (``old`` frozen); at ``a = 1``, ``new`` alone."""

    def __init__(self, old: nn.Module, new: nn.Module, steps: int) -> None:
        super().__init__()
        self.old, self.new, self.steps, self.t = old, new, steps, 0
        for p in old.parameters():
            p.requires_grad_(False)

    def forward(self, x: Any) -> Any:
        a = min(1.0, self.t / self.steps) if self.steps > 0 else 1.0
        if self.training:
            self.t += 1
        return self.new(x) if a >= 1.0 else (1.0 - a) * self.old(x) + a * self.new(x)


def _set_module(root: Any, name: str, module: Any) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(root.get_submodule(owner) if owner else root, attr, module)


@contextmanager
def blended(child: Any, parent: Any, names: Sequence[str], steps: int) -> Iterator[int]:
    """Within the block, each of ``child``'s modules ``names`` (a switched operation:
    :meth:`SearchSpace.switched_ops`) computes a blend of ``parent``'s module of the same name
    (its trained weights, frozen) and its own, moving from the parent's to its own over ``steps``
    training steps: the child starts with its parent's function and ends as itself (a gradual
    network morphism where no initialisation preserves the function). On leaving, the child holds
    its own modules only. Yields the number of modules blended."""
    own = {n: child.get_submodule(n) for n in names}
    for n, m in own.items():
        _set_module(child, n, _Blend(parent.get_submodule(n), m, steps))
    try:
        yield len(own)
    finally:
        for n, m in own.items():
            _set_module(child, n, m)


def blend_steps(epochs: int, steps_per_epoch: int) -> int:
    """How long a switched operation blends: one epoch, or half the training where that is shorter."""
    return min(steps_per_epoch, epochs * steps_per_epoch // 2)


class InheritingEvaluator:
    """An accuracy evaluator for a strategy that breeds children (``parent_of``): a child whose
    parent's trained weights are in ``weights_dir`` trains ``epochs`` epochs from them
    (:func:`inherit_weights`); any other candidate trains from scratch with ``base``'s epochs. Every
    trained network's weights are saved there for its own children. Runs in this process (the
    parent map is the strategy's)."""

    def __init__(self, base: Any, weights_dir: str | Path, epochs: int, parent_of: Callable[[Arch], Arch | None],
                 space: SearchSpace) -> None:
        if not getattr(base, "supports_inheritance", False):
            raise HwnasError(f"the evaluator {type(base).__name__} cannot start from a parent's weights "
                             "(--inherit needs the proxy evaluator)")
        self.base, self.dir, self.epochs, self.parent_of, self.space = base, Path(weights_dir), epochs, parent_of, space
        self.inherited: dict[Arch, InheritStats] = {}

    def _path(self, arch: Arch) -> Path:
        import zlib

        return self.dir / f"{zlib.crc32(self.space.to_string(arch).encode()):08x}.pt"

    def __call__(self, arch: Arch) -> float:
        import torch

        parent = self.parent_of(arch)
        path = None if parent is None else self._path(parent)
        if path is not None and path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            module, acc, stats = self.base.train_inherited(arch, state, self.epochs, parent=parent)
            self.inherited[arch] = stats
        else:
            module, acc = self.base.train(arch)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(arch).with_suffix(".tmp")
        torch.save({k: v.cpu() for k, v in module.state_dict().items()}, tmp)
        tmp.replace(self._path(arch))
        return acc
