"""Multi-fidelity search: successive halving and Hyperband schedules, training in rungs that
continue from checkpoints (real torch), promotions, the journal, resume mid-bracket, bad input.
Orchestration tests use hwnas.testing.FakeFidelityEvaluator (a named fake; never a number)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hwnas.errors import ArgumentError, HwnasError, UnknownNameError
from hwnas.jobs import multifidelity_schedule
from hwnas.search import (MultiFidelitySearch, Rung, RungJournal, create_space, create_strategy, hyperband_schedule,
                          successive_halving_schedule)
from hwnas.testing import FakeFidelityEvaluator


def _shape(brackets):  # noqa: ANN001, ANN202
    return [[(r.n, r.epochs) for r in rungs] for rungs in brackets]


def test_schedules() -> None:
    assert _shape(hyperband_schedule(9, 3)) == [[(9, 1), (3, 3), (1, 9)], [(5, 3), (1, 9)], [(3, 9)]]
    assert _shape(hyperband_schedule(27, 3))[0] == [(27, 1), (9, 3), (3, 9), (1, 27)]
    assert _shape([successive_halving_schedule(8, 2, 1, 8)]) == [[(8, 1), (4, 2), (2, 4), (1, 8)]]
    assert _shape([successive_halving_schedule(9, 3, 1, 5)]) == [[(9, 1), (3, 5)]]  # the last rung: max_epochs
    for method, params, match in (("hyperband", {"eta": 1}, "eta"), ("hyperband", {"max_epochs": 2}, "minimum"),
                                  ("successive-halving", {"n": 2}, "n"), ("hyperband", {"eta": 2.5}, "eta"),
                                  ("successive-halving", {"R": 9}, "no parameter 'R'")):
        with pytest.raises(ArgumentError, match=match):
            multifidelity_schedule(method, params)
    with pytest.raises(UnknownNameError, match="hyperband, successive-halving"):
        multifidelity_schedule("bohb", {})


def _run(tmp_path, ev, brackets, sampler="random", resume=True):  # noqa: ANN001, ANN202
    space = create_space("nb201")
    journal = RungJournal(tmp_path / "j.sqlite", {"s": sampler}, resume)
    mf = MultiFidelitySearch(space, create_strategy(sampler, space, seed=2), ev, lambda a: 1.0, brackets, journal,
                             tmp_path / "ckpt")
    try:
        return mf.run(), journal.results()
    finally:
        journal.close()


def test_successive_halving_promotes_the_best_and_continues_from_checkpoints(tmp_path) -> None:
    ev = FakeFidelityEvaluator()
    best, rows = _run(tmp_path, ev, [successive_halving_schedule(9, 3, 1, 9)])
    by_rung = [[r for r in rows if r.rung == k] for k in range(3)]
    assert [len(x) for x in by_rung] == [9, 3, 1]
    top3 = sorted(by_rung[0], key=lambda r: -r.accuracy)[:3]
    assert {r.arch for r in by_rung[1]} == {r.arch for r in top3}  # the best third promoted
    assert by_rung[2][0].arch == max(by_rung[1], key=lambda r: r.accuracy).arch
    assert best == by_rung[2][0] and best.epochs == 9
    assert ev.trained == 9 * 1 + 3 * 2 + 1 * 6  # promoted candidates continue: 21 epochs, not 9 + 9 + 9


@pytest.mark.parametrize("sampler", ["random", "bo"])
def test_a_killed_hyperband_run_resumes_at_its_rung(tmp_path, sampler) -> None:
    brackets = hyperband_schedule(9, 3)
    whole_best, whole = _run(tmp_path / "a", FakeFidelityEvaluator(), brackets, sampler)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", FakeFidelityEvaluator(stop_after=11), brackets, sampler)  # mid bracket 0, rung 1
    ev = FakeFidelityEvaluator()
    best, rows = _run(tmp_path / "b", ev, brackets, sampler)
    assert ev.calls == len(whole) - 11  # nothing journalled is trained again
    assert [(r.bracket, r.rung, r.arch, r.accuracy) for r in rows] == [(r.bracket, r.rung, r.arch, r.accuracy)
                                                                         for r in whole]
    assert (best.arch, best.accuracy, best.epochs) == (whole_best.arch, whole_best.accuracy, whole_best.epochs)


def test_journal_refuses_other_settings_and_needs_resume(tmp_path) -> None:
    _run(tmp_path, FakeFidelityEvaluator(), [successive_halving_schedule(3, 3, 1, 3)])
    with pytest.raises(HwnasError, match="settings differ"):
        RungJournal(tmp_path / "j.sqlite", {"s": "bo"})
    with pytest.raises(HwnasError, match="--resume"):
        RungJournal(tmp_path / "j.sqlite", {"s": "random"}, resume=False)


def test_an_evaluator_without_rungs_is_refused() -> None:
    space = create_space("nb201")
    with pytest.raises(HwnasError, match="cannot train in rungs"):
        MultiFidelitySearch(space, create_strategy("random", space), lambda a: 0.5, lambda a: 1.0,
                            [[Rung(0, 0, 3, 1)]], RungJournal(None, {}), None)


def test_training_in_rungs_equals_training_straight_through(tmp_path) -> None:
    from hwnas.search import ProxyTrainingEvaluator

    space = create_space("mlp")
    arch = space.sample(__import__("numpy").random.default_rng(0))
    ev = ProxyTrainingEvaluator(space, epochs=3)
    straight = ev.train_to(arch, 3, 3)
    ck = tmp_path / "c.pt"
    ev.train_to(arch, 1, 3, ck)
    assert ev.train_to(arch, 3, 3, ck) == straight
    assert ev.train(arch)[1] == straight  # the plain evaluator is the full-epoch rung


def test_a_constant_schedule_makes_a_rung_independent_of_the_full_length(tmp_path) -> None:
    """With a constant learning rate, 2 epochs of a 3-epoch training are 2 epochs of a 6-epoch one
    (with one-cycle they differ: the rate follows the full length); a bad schedule lists the known."""
    from hwnas.search import ProxyTrainingEvaluator

    space = create_space("mlp")
    arch = space.make([1, 1, 0, 0, 0, 0, 0])  # one that learns in 2 epochs (a deep one can stay at chance)
    const = ProxyTrainingEvaluator(space, epochs=3, schedule="constant")
    assert const.train_to(arch, 2, 3) == const.train_to(arch, 2, 6)
    ck = tmp_path / "c.pt"
    const.train_to(arch, 1, 6, ck)
    assert const.train_to(arch, 2, 6, ck) == const.train_to(arch, 2, 3)  # continued from a checkpoint too
    cycle = ProxyTrainingEvaluator(space, epochs=3)
    assert cycle.train_to(arch, 2, 3) != cycle.train_to(arch, 2, 6)
    with pytest.raises(UnknownNameError, match="constant, cosine, one-cycle"):
        ProxyTrainingEvaluator(space, schedule="nope")
    with pytest.raises(UnknownNameError, match="constant, cosine, one-cycle"):
        ProxyTrainingEvaluator(space, inherit_schedule="nope")


def test_an_inherited_child_trains_on_its_own_schedule() -> None:
    """``inherit_schedule`` sets the learning rate of a child trained from its parent's weights
    only: ``cosine`` starts at ``lr`` (no warm-up) and ends at 0; from-scratch training keeps
    ``schedule``."""
    from hwnas.search import ProxyTrainingEvaluator

    space = create_space("mlp")
    arch = space.make([1, 1, 0, 0, 0, 0, 0])
    ev = ProxyTrainingEvaluator(space, epochs=2, inherit_schedule="cosine")
    assert (ev.schedule, ev.inherit_schedule) == ("one-cycle", "cosine")
    assert ProxyTrainingEvaluator(space, schedule="constant").inherit_schedule == "constant"
    run = ev._start(arch, 2, ev.inherit_schedule)
    assert run.opt.param_groups[0]["lr"] == pytest.approx(ev.lr)
    run.epochs_to(2)
    assert run.opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    scratch = ev._start(arch, 2)
    assert scratch.opt.param_groups[0]["lr"] == pytest.approx(ev.lr * 5 / 25)  # one-cycle's warm-up start
    module, parent_acc = ev.train(arch)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    _, acc, stats = ev.train_inherited(arch, state, 1)
    assert stats.fraction == 1.0 and 0.0 <= acc <= 1.0


@pytest.mark.parametrize("args, match", [
    (["--strategy-param", "eta=1"], "--strategy-param eta takes an integer >= 2, got 1"),
    (["--strategy-param", "max_epochs=2"], "--strategy-param max_epochs is below the minimum"),
    (["--strategy-param", "restart=2"], "--strategy-param restart takes true or false"),
    (["--sampler", "nope"], "unknown sampler 'nope'. Known samplers: bo, evolution,"),
    (["--sampler", "proxyless"], "--sampler takes an ask/tell strategy (bo, evolution,"),
    (["--evaluator", "table"], "proxy evaluator"),
])
def test_bad_multifidelity_input_is_one_line_exit_2(tmp_path, args, match) -> None:
    """Named as the user gave it (a strategy parameter, not an option of its own); a search of its
    own as the sampler is said to be one, not "unknown"; one line (no blank line before it)."""
    r = subprocess.run([sys.executable, "-m", "hwnas", "search", "--space", "mlp", "--strategy", "hyperband",
                        "--target-ms", "1000", "--out", str(tmp_path / "r"), *args], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert match in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "r" / "journal.sqlite").exists()


@pytest.mark.slow
def test_cli_hyperband_with_proxy_training_writes_a_run_that_resumes(trained, tmp_path) -> None:
    from hwnas.cli import main

    args = ["search", "--space", "mlp", "--strategy", "hyperband", "--strategy-param", "max_epochs=3",
            "--sampler", "bo", "--target-ms", "1000", "--predictor", str(trained / "predictor"),
            "--out", str(tmp_path / "run"), "--json"]
    assert main(args) == 0
    import json

    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["best"]["arch"] and best["multi_fidelity"]["evaluations"] == 3 + 1 + 2  # 3x1 -> 1x3, 2x3
    assert (tmp_path / "run" / "rungs.csv").exists() and list((tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert main([*args, "--resume"]) == 0  # everything journalled: nothing trained again, the same best
    again = json.loads((tmp_path / "run" / "best.json").read_text())
    assert again["best"]["arch"] == best["best"]["arch"]
    assert main(args) == 2  # the run exists: --resume needed
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "<h2>Rungs</h2>" in (tmp_path / "run" / "report.html").read_text()


def test_restarted_rungs_train_from_scratch(tmp_path) -> None:
    from hwnas.search._multifidelity import schedule_text

    space = create_space("nb201")
    ev = FakeFidelityEvaluator()
    journal = RungJournal(tmp_path / "j.sqlite", {})
    mf = MultiFidelitySearch(space, create_strategy("random", space, seed=2), ev, lambda a: 1.0,
                             [successive_halving_schedule(9, 3, 1, 9)], journal, None, restart=True)
    mf.run()
    assert ev.trained == 9 * 1 + 3 * 3 + 1 * 9  # no checkpoint: every rung from scratch
    assert "27 training epochs" in schedule_text([successive_halving_schedule(9, 3, 1, 9)], restart=True)
    with pytest.raises(ArgumentError, match="restart"):
        multifidelity_schedule("hyperband", {"restart": 2})


def test_every_training_ends_with_batchnorm_statistics_re_estimated(tmp_path) -> None:
    """From scratch, in rungs and from a parent alike: the running statistics are the exact average
    over the training images, so inherited and from-scratch candidates are scored the same way."""
    import torch

    from hwnas.search import ProxyTrainingEvaluator

    space = create_space("nb201")
    arch = space.sample(np.random.default_rng(3))
    ev = ProxyTrainingEvaluator(space, epochs=1, resolution=8)
    module, acc = ev.train(arch)
    run = ev._start(arch, 1)
    run.epochs_to(1)
    stale = [m.running_mean.clone() for m in run.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert run.finish() == acc
    fresh = [m.running_mean for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert fresh and all(torch.equal(a, b) for a, b in zip(fresh, [m.running_mean for m in run.model.modules()
                                                                     if isinstance(m, torch.nn.BatchNorm2d)]))
    assert any(not torch.allclose(a, b) for a, b in zip(stale, fresh))  # the momentum averages lagged
    ck = tmp_path / "r.pt"
    assert ev.train_to(arch, 1, 1, ck) == acc  # a rung scores as a full training does


def test_the_report_of_a_multifidelity_run_shows_its_rungs(tmp_path) -> None:
    """The run directory as ``hwnas search --strategy hyperband`` writes it (a fake evaluator: the
    orchestration only), then ``hwnas report``: a Rungs section with a row per bracket and rung; a
    damaged rungs.csv is one line naming it."""
    from types import SimpleNamespace

    from hwnas.jobs._multifidelity import _write
    from hwnas.report import write_report
    from hwnas.search import RunDir

    brackets = hyperband_schedule(9, 3)
    _, rows = _run(tmp_path, FakeFidelityEvaluator(), brackets)
    s = SimpleNamespace(space=create_space("nb201"), limit_ms=1.0, predictor=None)
    _write(RunDir(tmp_path / "run"), s, rows, 9, {"space": "nb201", "strategy": "hyperband", "target_ms": 1.0}, brackets)
    page = write_report(tmp_path / "run").read_text()
    assert "<h2>Rungs</h2>" in page and page.count("data:image/png") >= 3
    assert page.count("<tr><td>") == sum(len(b) for b in brackets)  # 3 + 2 + 1 rungs
    assert "<tr><td>0</td><td>0</td><td>9</td><td>1</td>" in page  # bracket 0 starts with 9 candidates at 1 epoch
    (tmp_path / "run" / "rungs.csv").write_text("bracket,arch\n0,x\n")
    with pytest.raises(HwnasError, match=r"rungs.csv lacks the column\(s\) rung, epochs, accuracy"):
        write_report(tmp_path / "run", overwrite=True)
