"""``hwnas search --strategy successive-halving|hyperband``: a multi-fidelity run directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.devices import Device
from hwnas.errors import ArgumentError, HwnasError, UnknownNameError
from hwnas.jobs._common import Progress, no_progress, strategy_params_named
from hwnas.jobs._search import check_ask_tell, create_search
from hwnas.search import RunDir, SearchSpace, Trial
from hwnas.search._multifidelity import (MULTI_FIDELITY, MultiFidelitySearch, Rung, RungJournal, RungResult,
                                         hyperband_schedule, schedule_text, successive_halving_schedule)

__all__ = ["multifidelity_search", "multifidelity_schedule"]


def multifidelity_schedule(method: str, params: dict[str, Any] | None = None) -> list[list[Rung]]:
    """The brackets of ``method`` (``successive-halving`` or ``hyperband``) with ``params`` (unknown
    names list the known ones; eta < 2 or epochs too few for one promotion: ArgumentError)."""
    if method not in MULTI_FIDELITY:
        raise UnknownNameError("multi-fidelity method", method, list(MULTI_FIDELITY))
    known = MULTI_FIDELITY[method]
    bad = [k for k in (params or {}) if k not in known]
    if bad:
        raise ArgumentError("strategy_params", f"for {method} has no parameter {bad[0]!r}; its parameters: "
                            f"{', '.join(known)}")
    p = {**known, **(params or {})}
    with strategy_params_named(method):
        if not isinstance(p["restart"], bool):
            raise ArgumentError("restart", "takes true or false", p["restart"])
        if method == "hyperband":
            return hyperband_schedule(p["max_epochs"], p["eta"], p["min_epochs"])
        return [successive_halving_schedule(p["n"], p["eta"], p["min_epochs"], p["max_epochs"])]


def multifidelity_search(method: str, space: str | SearchSpace, device: str | Device, predictor: Any,
                         out: str | Path, *, target_ms: float, params: dict[str, Any] | None = None,
                         sampler: str = "random", sampler_params: dict[str, Any] | None = None,
                         space_args: dict[str, Any] | None = None, dataset: str = "digits",
                         resolution: int | None = None, seed: int = 0, resume: bool = False, train_device: str = "cpu",
                         allow_fingerprint_mismatch: bool = False, progress: Progress = no_progress,
                         message: Callable[[str], None] = print) -> dict[str, Any]:
    """Successive halving or Hyperband with proxy training in rungs (each candidate continues from
    its checkpoint in ``out/checkpoints``), candidates from the strategy ``sampler`` within the
    device's limits (as :func:`create_search` finds them). Prints the bracket schedule first. Writes
    ``journal.sqlite`` (every rung), ``rungs.csv``, and ``best.json``/``trials.csv`` over the
    candidates trained to the full epochs (``hwnas export --run`` reads them); returns best.json's
    content. ``resume`` continues a killed run at the rung it was in."""
    brackets = multifidelity_schedule(method, params)
    check_ask_tell(sampler, "sampler")  # a search of its own cannot propose a bracket's candidates
    max_epochs = max(r.epochs for rungs in brackets for r in rungs)
    run = RunDir(out)
    _check_run_dir(run, resume)
    s = create_search(space, device, target_ms=target_ms, predictor=predictor, strategy=sampler, evaluator="proxy",
                      storage=None, seed=seed, verify=0, space_args=space_args, strategy_params=sampler_params,
                      dataset=dataset, epochs=max_epochs, resolution=resolution, train_device=train_device,
                      allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    settings = {**s.settings, "strategy": method, "sampler": sampler, "multi_fidelity": dict(params or {})}
    run.path.mkdir(parents=True, exist_ok=True)
    journal = RungJournal(run.journal, settings, resume)
    message(schedule_text(brackets, bool((params or {}).get("restart", False))))
    total = sum(r.n for rungs in brackets for r in rungs)
    done = [0]

    def on_result(r: RungResult, _: bool) -> None:
        done[0] += 1
        progress(f"{method} on {s.space.name}", done[0], total,
                 f"bracket {r.bracket} rung {r.rung}: {r.epochs} ep acc {r.accuracy:.3f}")

    try:
        restart = bool((params or {}).get("restart", False))
        mf = MultiFidelitySearch(s.space, s.strategy, s.evaluator, s.latency, brackets, journal,
                                 None if restart else run.path / "checkpoints", restart)
        mf.run(on_result)
        return _write(run, s, journal.results(), max_epochs, settings, brackets, restart)
    finally:
        journal.close()


def _check_run_dir(run: RunDir, resume: bool) -> None:
    if run.path.is_file():
        raise HwnasError(f"--out {run.path} is a file")
    if not run.has_journal():
        if resume:
            raise HwnasError(f"{run.path} holds no multi-fidelity journal to resume")
        return
    con = sqlite3.connect(run.journal)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        raise HwnasError(f"{run.journal} is not an SQLite journal") from None
    finally:
        con.close()
    if "mf_settings" not in tables:
        raise HwnasError(f"{run.path} holds another kind of run (no multi-fidelity rungs); choose another --out")


def _write(run: RunDir, s: Any, results: list[RungResult], max_epochs: int, settings: dict[str, Any],
           brackets: list[list[Rung]], restart: bool = False) -> dict[str, Any]:
    import pandas as pd

    from hwnas._files import atomic_write_text
    from hwnas.search import best_and_front

    atomic_write_text(run.rungs_csv, pd.DataFrame([r.__dict__ for r in results]).to_csv(index=False))
    full = [r for r in results if r.epochs == max_epochs]
    trials = [_trial(i, r, s, settings) for i, r in enumerate(full)]
    best, front = best_and_front(trials, s.limit_ms)
    extra = {"multi_fidelity": {"schedule": [[r.__dict__ for r in rungs] for rungs in brackets],
                                "evaluations": len(results),
                                "epochs_trained": sum(r.epochs for r in results) if restart else _epochs_trained(results),
                                "seconds": sum(r.seconds for r in results)}}
    target = settings.get("target_ms") or max((t.latency_ms for t in trials), default=0.0)
    return run.write(s.space.name, trials, best, front, settings, target, getattr(s.predictor, "fingerprint", None),
                     extra)


def _trial(number: int, r: RungResult, s: Any, settings: dict[str, Any]) -> Trial:
    arch = s.space.from_string(r.arch)
    return Trial(number, r.arch, r.accuracy, r.latency_ms, r.accuracy, s.space.params(arch), s.space.flops(arch),
                 r.seconds, settings=settings)


def _epochs_trained(results: list[RungResult]) -> int:
    """Epochs actually trained: a promoted candidate continues from its previous rung."""
    before: dict[tuple[int, str], int] = {}
    total = 0
    for r in sorted(results, key=lambda r: (r.bracket, r.rung)):
        total += r.epochs - before.get((r.bracket, r.arch), 0)
        before[(r.bracket, r.arch)] = r.epochs
    return total
