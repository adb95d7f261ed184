"""PNAS (progressive neural architecture search) on the ``cell`` space.

Cells grow one block at a time. Step 1 trains ``beam`` cells of one block (all of them when there
are fewer); each later step expands every kept cell by one block in every way (two inputs among
the states so far, two ops), drops the expansions the device's predictor puts over the target,
ranks the rest by a surrogate fitted to every cell trained so far, and trains the best ``beam``.
The surrogate is an ensemble of small MLPs on the cells' encodings padded to the largest size
(PNAS's MLP-ensemble variant), so one model ranks cells of every size. As in PNAS one cell
structure serves as both the normal and the reduction cell.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.spaces import CELL_OPS, Arch, CellSpace

__all__ = ["PnasConfig", "Pnas", "cell_features"]

Block = tuple[int, str, int, str]


@dataclass(frozen=True)
class PnasConfig:
    beam: int = 8  # cells trained per step (PNAS's K)
    ensemble: int = 5
    hidden: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("beam", "ensemble", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HwnasError(f"pnas {name} takes an integer >= 1, got {value!r}")


def cell_features(blocks: tuple[Block, ...], max_blocks: int) -> np.ndarray:
    """One-hot inputs and ops of each block, zero for the blocks a smaller cell lacks."""
    n_in, n_op = max_blocks + 1, len(CELL_OPS)
    out = np.zeros(max_blocks * 2 * (n_in + n_op))
    for b, (i1, o1, i2, o2) in enumerate(blocks):
        for h, (i, o) in enumerate(((i1, o1), (i2, o2))):
            base = (2 * b + h) * (n_in + n_op)
            out[base + i] = 1.0
            out[base + n_in + CELL_OPS.index(o)] = 1.0
    return out


class Pnas:
    """One PNAS run: ``evaluate(space, arch)`` trains a cell network and returns its accuracy,
    ``latency(space, archs)`` predicts their ms (one call for many: the expansions of a step); ``journal`` (a JSON file) keeps every trained cell,
    so a killed run continues without training any of them again."""

    def __init__(self, space_args: dict[str, Any], max_blocks: int, allowed_ops: tuple[str, ...], config: PnasConfig,
                 evaluate: Callable[[CellSpace, Arch], float],
                 latency: Callable[[CellSpace, list[Arch]], Any],
                 target_ms: float, journal: str | Path | None = None) -> None:
        self.space_args, self.max_blocks, self.ops = space_args, max_blocks, allowed_ops
        self.cfg, self.evaluate, self.latency, self.target_ms = config, evaluate, latency, target_ms
        self.journal = Path(journal) if journal is not None else None
        self.trained: dict[str, dict[str, Any]] = json.loads(self.journal.read_text()) if (
            self.journal is not None and self.journal.exists()) else {}
        self.steps: list[dict[str, Any]] = []

    def space(self, blocks: int) -> CellSpace:
        return CellSpace(blocks=blocks, **self.space_args)

    def arch_of(self, blocks: tuple[Block, ...]) -> Arch:
        """The network whose normal and reduction cells are both ``blocks``."""
        choices = [x for i1, o1, i2, o2 in blocks for x in (i1, CELL_OPS.index(o1), i2, CELL_OPS.index(o2))]
        return self.space(len(blocks)).make(choices * 2)

    def expansions(self, cell: tuple[Block, ...]) -> list[tuple[Block, ...]]:
        """``cell`` with one more block, every way (canonical, distinct)."""
        n = len(cell) + 2
        out = {}
        for i1, i2 in itertools.combinations_with_replacement(range(n), 2):
            for o1, o2 in itertools.product(self.ops, repeat=2):
                new = self.space(len(cell) + 1).cells(self.arch_of((*cell, (i1, o1, i2, o2))))["normal"]
                out[new] = None
        return list(out)

    # ---- the steps -----------------------------------------------------------------------------
    def _train(self, cells: list[tuple[Block, ...]], on_trained: Callable[[int, int], None]) -> None:
        for k, cell in enumerate(cells):
            space, arch = self.space(len(cell)), self.arch_of(cell)
            key = space.to_string(arch)
            if key not in self.trained:
                self.trained[key] = {"blocks": [list(b) for b in cell], "accuracy": float(self.evaluate(space, arch)),
                                     "latency_ms": float(self.latency(space, [arch])[0])}
                if self.journal is not None:
                    tmp = self.journal.with_suffix(".tmp")
                    tmp.write_text(json.dumps(self.trained, indent=1))
                    tmp.replace(self.journal)
            on_trained(k + 1, len(cells))

    def _surrogate(self, blocks: int) -> Any:
        """An ensemble fitted to the cells trained before the step that grows cells to ``blocks``
        (those with fewer blocks): a resumed run's journal may already hold some of this step's
        cells, which the uninterrupted run had not seen when it ranked them."""
        from sklearn.neural_network import MLPRegressor

        rows = [r for r in self.trained.values() if len(r["blocks"]) < blocks]
        x = np.array([cell_features(tuple(tuple(b) for b in r["blocks"]), self.max_blocks) for r in rows])
        y = np.array([r["accuracy"] for r in rows])
        rng = np.random.default_rng(self.cfg.seed + len(rows))
        models = []
        for m in range(self.cfg.ensemble):
            idx = rng.integers(0, len(y), len(y))  # bootstrap: the members disagree where data is thin
            models.append(MLPRegressor(hidden_layer_sizes=(self.cfg.hidden,), alpha=1e-3, max_iter=2000, random_state=self.cfg.seed + m)
                          .fit(x[idx], y[idx]))
        return lambda cells: np.mean([mo.predict(np.array([cell_features(c, self.max_blocks) for c in cells]))
                                      for mo in models], axis=0)

    def _feasible(self, cells: list[tuple[Block, ...]]) -> list[tuple[Block, ...]]:
        """Those predicted within the target (cells of one size: one batched prediction)."""
        if not cells:
            return []
        ms = self.latency(self.space(len(cells[0])), [self.arch_of(c) for c in cells])
        return [c for c, t in zip(cells, ms) if t <= self.target_ms]

    def run(self, on_trained: Callable[[int, int, int], None] | None = None) -> tuple[Arch, float]:
        """All steps up to ``max_blocks``; the most accurate trained cell of full size within the
        target (its network and accuracy)."""
        report = (lambda b: (lambda k, n: on_trained(b, k, n))) if on_trained else (lambda b: (lambda k, n: None))
        first = self._feasible([((i1, o1, i2, o2),) for i1, i2 in itertools.combinations_with_replacement(range(2), 2)
                                for o1, o2 in itertools.product(self.ops, repeat=2)])
        first = list(dict.fromkeys(self.space(1).cells(self.arch_of(c))["normal"] for c in first))
        if not first:
            raise HwnasError(f"pnas: no cell of one block is predicted within {self.target_ms} ms; raise the target")
        rng = np.random.default_rng(self.cfg.seed)
        beam = [first[i] for i in rng.permutation(len(first))[: self.cfg.beam]]
        self._train(beam, report(1))
        for b in range(2, self.max_blocks + 1):
            surrogate = self._surrogate(b)
            cands = self._feasible([e for c in beam for e in self.expansions(c)])
            if not cands:
                raise HwnasError(f"pnas: no cell of {b} blocks grown from the kept ones is predicted within "
                                 f"{self.target_ms} ms; raise the target")
            predicted = surrogate(cands)
            order = np.argsort(-predicted)[: self.cfg.beam]
            beam = [cands[i] for i in order]
            self._train(beam, report(b))
            actual = [self.trained[self.space(b).to_string(self.arch_of(c))]["accuracy"] for c in beam]
            self.steps.append({"blocks": b, "expansions": len(cands), "surrogate_predicted": predicted[order].tolist(),
                               "trained_accuracy": actual})
        best = max(beam, key=lambda c: self.trained[self.space(len(c)).to_string(self.arch_of(c))]["accuracy"])
        arch = self.arch_of(best)
        return arch, self.trained[self.space(len(best)).to_string(arch)]["accuracy"]
