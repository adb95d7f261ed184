from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.devices import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.search import MnasReward, pareto_front, reward_preset
from hwnas.search.spaces import InfeasibleError, create_space, space_names
from hwnas.search.strategies import strategy_names
from hwnas.testing import check_space, check_strategy

SMALL = {"nb201": {"channels": 4, "cells_per_stage": 1, "resolution": 8}, "proxyless": {"resolution": 64, "width": 0.35},
         "mlp": {}, "cell": {"blocks": 2, "channels": 4, "layers": 3, "resolution": 16}}


@pytest.mark.parametrize("name", space_names())
def test_spaces_pass_the_space_suite(name) -> None:
    check_space(create_space(name, **SMALL.get(name, {})))


@pytest.mark.parametrize("name", space_names())
def test_spaces_build_modules(name) -> None:
    space = create_space(name, **SMALL.get(name, {}))
    arch = space.sample(np.random.default_rng(1))
    m = space.build_module(arch, classes=7)
    with torch.no_grad():
        y = m(torch.randn(*space.input_shape(arch)))
    assert tuple(y.shape) == (1, 7)


@pytest.mark.parametrize("name", strategy_names())
def test_strategies_pass_the_strategy_suite(name) -> None:
    check_strategy(name, create_space("nb201"))


def test_evolution_widens_when_every_neighbour_of_its_parent_was_seen() -> None:
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    evo = create_strategy("evolution", space, seed=3, population_size=30, tournament_size=30)
    first = [evo.ask() for _ in range(30)]
    for i, a in enumerate(first):
        evo.tell(a, 1.0 if i == 29 else 0.0)  # the newest of the initial population is the best
    best = first[-1]
    distance = lambda a: sum(x != y for x, y in zip(a.choices, best.choices))  # noqa: E731
    neighbours = {space.make([o if j == i else c for j, c in enumerate(best.choices)])
                  for i, opts in enumerate(space.allowed) for o in opts if o != best.choices[i]}
    assert len(neighbours) == 24  # 6 edges, 4 other ops each
    children = []
    for _ in range(len(neighbours - set(first)) + 5):  # the best stays the parent throughout
        child = evo.ask()
        evo.tell(child, 0.0)
        children.append(child)
    k = len(neighbours - set(first))
    assert set(children[:k]) == neighbours - set(first)  # first every neighbour not yet seen...
    assert len(set(children)) == len(children) and best not in children
    assert {distance(c) for c in children[k:]} == {2}  # ...then wider steps instead of a stall


def test_nb201_strings_match_the_dataset_format() -> None:
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    space = create_space("nb201")
    assert space.to_string(space.from_string(s)) == s
    assert len(list(space.enumerate())) == space.size == 15625
    with pytest.raises(HwnasError, match="unknown NAS-Bench-201 op 'conv_9x9'"):
        space.from_string(s.replace("avg_pool_3x3", "conv_9x9"))


def test_nb201_surrogate_features_add_op_counts_and_conv_depth() -> None:
    space = create_space("nb201")
    # 0 -conv3-> 1 -conv3-> 2 -conv1-> 3 (three convolutions deep), the other edges skip or none
    s = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    arch = space.from_string(s)
    f = space.features(arch)
    onehot = space.encode(arch)
    assert np.array_equal(f[:len(onehot)], onehot)
    counts = dict(zip(("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"), f[30:35]))
    assert counts == {"none": 2, "skip_connect": 1, "nor_conv_1x1": 1, "nor_conv_3x3": 2, "avg_pool_3x3": 0}
    assert f[35] == 3
    dead = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert space.features(dead)[35] == -1  # no live path from the input to the output


def test_restrict_removes_what_the_device_cannot_run() -> None:
    nb = create_space("nb201").restrict(DeviceConstraints(allowed_op_types=("conv", "add", "act", "gap", "linear")))
    ops = {space_op for a in nb.enumerate() for space_op in nb.ops(a)}
    assert "avg_pool_3x3" not in ops and nb.size == 4 ** 6
    px = create_space("proxyless").restrict(DeviceConstraints(allowed_kernel_sizes=(3, 5)))
    assert not any("k7" in px.to_string(px.sample(np.random.default_rng(i))) for i in range(50))
    with pytest.raises(InfeasibleError, match="allows no option"):
        create_space("proxyless").restrict(DeviceConstraints(allowed_op_types=("conv",), allowed_kernel_sizes=(9,)))


def test_mnas_reward_and_pareto() -> None:
    soft, hard = reward_preset("soft", 10.0), reward_preset("hard", 10.0)
    assert hard(0.8, 5.0) == 0.8 and hard(0.8, 20.0) == pytest.approx(0.4)
    assert soft(0.8, 5.0) > 0.8 > soft(0.8, 20.0)
    np.testing.assert_allclose(MnasReward(10, -0.07, -0.07).many(np.array([0.8]), np.array([20.0])), [soft(0.8, 20.0)])
    front = pareto_front([0.9, 0.8, 0.95, 0.7], [5.0, 3.0, 9.0, 4.0])
    assert front.tolist() == [1, 0, 2]
    with pytest.raises(HwnasError, match="Known reward presets: hard, soft"):
        reward_preset("medium", 1.0)


@pytest.mark.slow
def test_search_on_digits_with_resume(trained, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["search", "--space", "mlp", "--strategy", "evolution", "--target-ms", "1.0", "--epochs", "1",
            "--predictor", str(trained / "predictor"), "--out", str(out), "--json"]
    assert main([*args, "--budget", "4"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n_trials"] == 4 and first["best"]["accuracy"] > 0.1
    # the latency is predicted for the networks trained and measured: the dataset's 10 classes
    assert first["settings"]["space_args"] == {"classes": 10}
    for f in ("journal.sqlite", "best.json", "trials.csv", "pareto.csv", "pareto.png"):
        assert (out / f).exists()
    assert main([*args, "--budget", "6"]) == 2  # the run exists: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--budget", "6", "--resume"]) == 0
    capsys.readouterr()
    rows = sqlite3.connect(out / "journal.sqlite").execute("SELECT number, arch FROM trials ORDER BY number").fetchall()
    assert [r[0] for r in rows] == list(range(6)) and len({r[1] for r in rows}) == 6
    assert main([*args, "--budget", "6", "--resume", "--seed", "3"]) == 2  # other settings: refused
    assert "settings differ" in capsys.readouterr().err


@pytest.mark.slow
def test_search_table_evaluator_nb201(trained, tmp_path, capsys) -> None:
    csv = tmp_path / "acc.csv"
    space = create_space("nb201")
    rows = ["index,arch_str,acc"] + [f"{i},{space.to_string(a)},{50 + (i % 40)}" for i, a in enumerate(space.enumerate())]
    csv.write_text("\n".join(rows) + "\n")
    rc = main(["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", str(csv), "--accuracy-column",
               "acc", "--strategy", "random", "--budget", "30", "--target-ms", "1000", "--predictor",
               str(trained / "predictor"), "--out", str(tmp_path / "r"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["n_trials"] == 30 and r["best"]["accuracy"] > 0.5
    # the incumbent was measured on cpu-ort (real ONNX Runtime) before it was trusted
    assert 1 <= r["device_measurements"] <= 5 and 0 < r["best"]["measured_latency_ms"] <= 1000
    rows = sqlite3.connect(tmp_path / "r" / "journal.sqlite").execute("SELECT arch FROM measurements").fetchall()
    assert r["best"]["arch"] in {a for (a,) in rows}
    # --verify 0 trusts the predictor: nothing measured
    rc = main(["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", str(csv), "--accuracy-column",
               "acc", "--strategy", "random", "--budget", "10", "--target-ms", "1000", "--verify", "0", "--predictor",
               str(trained / "predictor"), "--out", str(tmp_path / "r0"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["device_measurements"] == 0 and r["best"]["measured_latency_ms"] is None


@pytest.mark.slow
def test_search_pareto_objective_measures_the_front_and_resumes(trained, tmp_path, capsys) -> None:
    """``--objective pareto``: nsga2 told (accuracy, -latency); the front in best.json and
    pareto.csv, ``--verify`` members of it measured on cpu-ort (real ONNX Runtime) at the end, in
    the journal, so a resumed run measures nothing again."""
    csv = tmp_path / "acc.csv"
    space = create_space("nb201")
    gain = {"nor_conv_3x3": 4, "nor_conv_1x1": 2, "avg_pool_3x3": 1, "skip_connect": 1, "none": 0}
    rows = ["index,arch_str,acc"] + [f"{i},{space.to_string(a)},{50 + sum(gain[o] for o in space.ops(a)) + i % 3}"
                                     for i, a in enumerate(space.enumerate())]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "p"
    args = ["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", str(csv), "--accuracy-column",
            "acc", "--objective", "pareto", "--strategy", "nsga2", "--strategy-param", "population_size=8",
            "--budget", "24", "--target-ms", "1000", "--verify", "3", "--predictor", str(trained / "predictor"),
            "--out", str(out), "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    front = r["pareto_front"]
    assert r["n_trials"] == 24 and r["settings"]["objective"] == "pareto" and len(front) >= 2
    lat = [f["latency_ms"] for f in front]
    acc = [f["accuracy"] for f in front]
    assert lat == sorted(lat) and acc == sorted(acc)  # a front: faster is less accurate
    measured = [f for f in front if f["measured_latency_ms"] is not None]
    assert len(measured) == min(3, len(front)) and all(f["measured_latency_ms"] > 0 for f in measured)
    assert {f["arch"] for f in measured} >= {front[0]["arch"], front[-1]["arch"]}  # spread: both ends
    table = __import__("pandas").read_csv(out / "pareto.csv")
    assert "measured_latency_ms" in table and table["measured_latency_ms"].notna().sum() == len(measured)
    con = sqlite3.connect(out / "journal.sqlite")
    assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == len(measured)
    assert main([*args, "--resume"]) == 0  # finished: nothing evaluated or measured again
    again = json.loads(capsys.readouterr().out)
    assert again["pareto_front"] == front
    assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == len(measured)
    # export a member of the front (0 the fastest, -1 the most accurate); bad indices exit 2
    export = ["export", "--run", str(out), "--no-train", "--predictor", str(trained / "predictor"), "--json"]
    assert main([*export, "--front", "-1", "-o", str(tmp_path / "m" / "model.onnx")]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["arch"] == front[-1]["arch"] and card["measured_latency_ms"] > 0
    assert main([*export, "--front", str(len(front)), "-o", str(tmp_path / "n.onnx")]) == 2
    assert f"the run's front has {len(front)} members" in capsys.readouterr().err
    assert main(["export", "--arch", str(out / "best.json"), "--front", "0", "-o", str(tmp_path / "n.onnx")]) == 2
    assert "--front picks a member of a run's front: give --run DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_search_bad_input(trained, tmp_path, capsys) -> None:
    base = ["search", "--predictor", str(trained / "predictor"), "--out", str(tmp_path / "x"), "--budget", "2",
            "--epochs", "1"]
    assert main([*base, "--strategy", "annealing"]) == 2
    assert ("Known strategies: bo, compound-scaling, darts, enas, evolution, grid, guided-evolution, hyperband, "
            "hypernetwork, nsga2, "
            "once-for-all, pnas, ppo, proxyless, random, reinforce, successive-halving, tpe" in capsys.readouterr().err)
    assert main([*base, "--objective", "paretto"]) == 2
    assert "Known objectives: mnas, pareto. Did you mean: pareto?" in capsys.readouterr().err
    assert main([*base, "--objective", "pareto", "--strategy", "evolution"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--objective pareto needs a multi-objective strategy (grid, nsga2, random, tpe); evolution takes one" in err
    assert main([*base, "--space", "nasnet"]) == 2
    assert "Known search spaces" in capsys.readouterr().err
    assert main([*base, "--space-arg", "depth=3"]) == 2
    assert "has no setting 'depth'" in capsys.readouterr().err
    assert main([*base, "--strategy-param", "swarm=3"]) == 2
    err = capsys.readouterr().err
    assert "--strategy-param for guided-evolution has no parameter 'swarm'" in err and "population_size, tournament_size" in err
    assert main([*base, "--verify", "-1"]) == 2
    assert "--verify takes a count >= 0, got -1" in capsys.readouterr().err
    assert main([*base, "--qualify-band", "1.5"]) == 2
    assert "--qualify-band takes a fraction in [0, 1], got 1.5" in capsys.readouterr().err
    assert main([*base, "--strategy", "proxyless", "--space", "nb201"]) == 2
    assert "use --space proxyless" in capsys.readouterr().err
    assert main([*base, "--space", "nb201", "--target-ms", "0.0001"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no architecture of 'nb201' meets the limits" in err and "smallest predicted latency" in err


@pytest.mark.slow
def test_sigkilled_search_resumes_without_repeats(trained, tmp_path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hwnas", "search", "--space", "mlp", "--strategy", "random", "--target-ms", "1.0",
           "--epochs", "3", "--predictor", str(trained / "predictor"), "--out", str(out), "--budget", "12"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120

    def count() -> int:
        try:
            return sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True).execute(
                "SELECT COUNT(*) FROM trials").fetchone()[0]
        except sqlite3.Error:
            return 0

    while count() < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = count()
    assert 3 <= done < 12
    r = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = sqlite3.connect(out / "journal.sqlite").execute("SELECT arch FROM trials ORDER BY number").fetchall()
    assert len(rows) == 12 and len(set(rows)) == 12


def test_datasets(tmp_path) -> None:
    from hwnas.search._evaluators import load_dataset

    xt, yt, xv, yv, k = load_dataset("digits", resolution=16)
    assert k == 10 and xt.shape[1:] == (3, 16, 16) and len(yv) > 300
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.random.rand(50, 8, 8).astype(np.float32), y=np.arange(50) % 5)
    assert load_dataset(str(npz))[4] == 5
    img = tmp_path / "imgs"
    from PIL import Image

    for c in ("cat", "dog"):
        (img / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((np.random.rand(10, 10, 3) * 255).astype(np.uint8)).save(img / c / f"{i}.png")
    assert load_dataset(str(img), resolution=8)[0].shape[1:] == (3, 8, 8)
    with pytest.raises(HwnasError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(HwnasError, match="never downloads|needs torchvision"):
        load_dataset(f"cifar10:{tmp_path}")
    # the class count alone (what hwnas search gives a space's head) agrees with the loaded data
    from hwnas.search._evaluators import dataset_classes

    assert [dataset_classes(d) for d in ("digits", str(npz), str(img))] == [10, 5, 2]
    with pytest.raises(HwnasError, match="unknown dataset"):
        dataset_classes("imagenet")


def run_search(space, strategy, evaluate, latency, reward, budget, journal, measure=None, measure_budget=0,  # noqa: ANN001, ANN201
               limit_ms=None, on_measured=None, qualify_ms=None, objective="mnas"):
    """The search loop (:class:`hwnas.search.Search`) over an evaluator, as the tests drive it."""
    from hwnas.search import Search

    search = Search(space, strategy, latency, reward, journal, evaluator=evaluate, limit_ms=limit_ms, measure=measure,
                    verify=measure_budget, qualify_ms=qualify_ms, objective=objective,
                    on_measured=[on_measured] if on_measured else ())
    return search.optimize(budget)


def test_incumbents_are_measured_before_they_are_trusted(tmp_path) -> None:
    """The run loop with a deterministic fake device (never used for a number): every other
    architecture measures 30% over its prediction."""
    from hwnas.search import Journal
    from hwnas.search import Limits, best_and_front, feasibility
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    limit = 1.0
    predicted = lambda a: 0.5 + 0.5 * (sum(a.choices) % 7) / 7  # noqa: E731  within the limit: 0.5..0.93
    measured: dict = {}
    latency = lambda a: measured.get(a, predicted(a))  # noqa: E731
    calls = []

    def fake_device(a):  # noqa: ANN001, ANN202
        calls.append(a)
        return predicted(a) * (1.3 if sum(a.choices) % 2 else 1.0)

    def run(budget: int, resume: bool) -> tuple[list, Journal]:
        measured.clear()
        journal = Journal(tmp_path / "j.sqlite", {"s": 1}, resume)
        strat = create_strategy("random", space, seed=0, feasible=feasibility(space, Limits(limit), latency))
        trials = run_search(space, strat, lambda a: float(sum(a.choices)) + 0.01 * a.choices[0], latency,
                            MnasReward(limit, 0.0, -1.0), budget, journal, measure=fake_device, measure_budget=6,
                            limit_ms=limit, on_measured=measured.__setitem__)
        return trials, journal

    trials, journal = run(25, False)
    m = {a: ms for a, _, ms in journal.measurements()}
    assert len(calls) == len(m) and 1 <= len(m) <= 6
    best, _ = best_and_front(trials, limit, m)
    assert best.arch in m and m[best.arch] <= limit  # the answer was measured, and is within the limit
    over = {a for a, ms in m.items() if ms > limit}
    assert over  # some incumbents were disqualified by their measurement...
    naive, _ = best_and_front(trials, limit)
    assert naive.arch in over and best.reward <= naive.reward  # ...the predictor alone would have returned one
    journal.close()
    n = len(calls)
    trials2, journal2 = run(25, True)  # resume: measurements replayed at the same points, none repeated
    assert len(calls) == n and [t.arch for t in trials2] == [t.arch for t in trials]
    journal2.close()


def test_borderline_architectures_are_qualified_by_their_measurement(tmp_path) -> None:
    """The run loop with a deterministic fake device (never used for a number) whose predictor
    over-predicts every architecture by 8%, and accuracy that grows with latency: with
    ``qualify_ms``, architectures predicted up to 10% over the limit are proposed while
    measurements are left, measured when they are the best, and a measured one within the limit is
    returned; without it, the search never sees them."""
    from hwnas.search import Journal
    from hwnas.search._run import Limits, best_and_front, feasibility
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    limit, budget, verify = 1.0, 40, 8
    predicted = lambda a: 0.6 + 0.5 * (sum(a.choices) % 13) / 12  # noqa: E731  0.6..1.1
    true = lambda a: predicted(a) / 1.08  # noqa: E731
    accuracy = lambda a: predicted(a) + 0.001 * a.choices[0]  # noqa: E731

    def run(name: str, qualify_ms: float | None) -> tuple[object, dict]:
        measured: dict = {}
        latency = lambda a: measured.get(a, predicted(a))  # noqa: E731
        within = feasibility(space, Limits(limit), latency)
        loose = feasibility(space, Limits(qualify_ms or limit), latency)
        feasible = lambda a: within(a) or (len(measured) < verify and loose(a))  # noqa: E731
        journal = Journal(tmp_path / f"{name}.sqlite", {"s": name}, False)
        strat = create_strategy("random", space, seed=0, feasible=feasible)
        trials = run_search(space, strat, accuracy, latency, MnasReward(limit, 0.0, -1.0), budget, journal,
                            measure=true, measure_budget=verify, limit_ms=limit, qualify_ms=qualify_ms,
                            on_measured=measured.__setitem__)
        m = {a: ms for a, _, ms in journal.measurements()}
        journal.close()
        return best_and_front(trials, limit, m)[0], m

    plain, m0 = run("plain", None)
    qualified, m1 = run("qualified", limit * 1.1)
    assert plain.latency_ms <= limit and all(predicted(space.from_string(a)) <= limit for a in m0)
    assert len(m1) <= verify and qualified.arch in m1 and m1[qualified.arch] <= limit
    assert qualified.latency_ms > limit  # predicted over the limit, measured within it
    assert qualified.reward == pytest.approx(qualified.accuracy)  # its reward at the measured latency
    assert qualified.accuracy > plain.accuracy


def test_strategy_is_told_the_reward_at_the_limit_and_at_the_measured_latency(tmp_path) -> None:
    """With a deterministic fake device (never used for a number) that measures every other
    architecture 30% over its prediction and predicts some borderline (up to 8% over the limit):
    the strategy learns each trial's reward at its measured latency where the incumbent check
    measured it, never penalised beyond the limit; the journal keeps the MNAS reward, recomputed at
    the measurement; a resumed run is told exactly what an uninterrupted one was."""
    from hwnas.search import Journal
    from hwnas.search._run import Limits, feasibility, strategy_reward
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    limit = 1.0
    predicted = lambda a: 0.6 + 0.48 * (sum(a.choices) % 11) / 10  # noqa: E731  0.6..1.08
    device = lambda a: predicted(a) * (1.3 if sum(a.choices) % 2 else 0.95)  # noqa: E731
    accuracy = lambda a: float(sum(a.choices)) + 0.01 * a.choices[0]  # noqa: E731
    reward = MnasReward(limit, 0.0, -1.0)

    def run(name: str, budget: int, resume: bool = False) -> tuple[list, list, dict]:
        measured: dict = {}
        latency = lambda a: measured.get(a, predicted(a))  # noqa: E731
        within = feasibility(space, Limits(limit), latency)
        loose = feasibility(space, Limits(limit * 1.1), latency)
        journal = Journal(tmp_path / f"{name}.sqlite", {"s": 1}, resume)
        strat = create_strategy("evolution", space, seed=0, population_size=10, tournament_size=10,
                                feasible=lambda a: within(a) or (len(measured) < 20 and loose(a)))
        told = []
        tell = strat.tell
        strat.tell = lambda a, r: (told.append((space.to_string(a), r)), tell(a, r))
        trials = run_search(space, strat, accuracy, latency, reward, budget, journal, measure=device,
                            measure_budget=20, limit_ms=limit, qualify_ms=limit * 1.1,
                            on_measured=measured.__setitem__)
        m = {a: ms for a, _, ms in journal.measurements()}
        stored = dict(journal.conn.execute("SELECT arch, reward FROM trials").fetchall())
        journal.close()
        return trials, told, m, stored

    trials, told, m, stored = run("whole", 30)
    assert any(ms > limit for ms in m.values()) and any(t.latency_ms > limit for t in trials)
    for t, (arch, r) in zip(trials, told):
        assert arch == t.arch and r == strategy_reward(reward, t.accuracy, m.get(t.arch, t.latency_ms), limit)
        assert r == pytest.approx(t.accuracy)  # hard preset, capped at the limit: the accuracy
        lat = m.get(t.arch, t.latency_ms)
        assert stored[t.arch] == pytest.approx(reward(t.accuracy, lat)) == t.reward  # penalised over the limit
    assert any(t.reward < t.accuracy for t in trials)
    assert strategy_reward(reward, 0.9, 2.0, None) == reward(0.9, 2.0) == 0.45  # no limit: the reward itself
    assert strategy_reward(reward, 0.9, 2.0, limit) == 0.9
    _, told_a, _, _ = run("resumed", 12)
    _, told_b, _, _ = run("resumed", 30, resume=True)
    assert told_b == told and told_a == told[:12]


def _ask_tell(strategy, reward, n: int) -> list:
    """Drive a strategy for ``n`` ask/tell rounds; the architectures asked, in order."""
    asked = []
    for _ in range(n):
        a = strategy.ask()
        asked.append(a)
        strategy.tell(a, reward(a))
    return asked


def test_guided_evolution_spends_evaluations_on_the_children_its_surrogate_ranks_best() -> None:
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    weights = np.array([0.0, 0.2, 0.6, 1.0, 0.1])  # a learnable, additive toy objective over the edges

    def reward(arch) -> float:
        return float(weights[list(arch.choices)].sum())

    def mean_reward(name: str, seed: int) -> float:
        rewards = [reward(a) for a in _ask_tell(create_strategy(name, space, seed=seed), reward, 40)]
        return float(np.mean(rewards[20:]))  # the climb after the random initial population

    plain = [mean_reward("evolution", seed) for seed in range(4)]
    guided = [mean_reward("guided-evolution", seed) for seed in range(4)]
    assert np.mean(guided) > np.mean(plain) + 0.3, (plain, guided)
    # candidates=1 is plain evolution, draw for draw
    a, b = create_strategy("evolution", space, seed=5), create_strategy("guided-evolution", space, seed=5, candidates=1)
    for _ in range(30):
        x, y = a.ask(), b.ask()
        assert x == y
        a.tell(x, reward(x))
        b.tell(y, reward(y))


def test_guided_evolution_explore_screens_random_newcomers_beside_the_children() -> None:
    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    weights = np.array([0.0, 0.2, 0.6, 1.0, 0.1])
    feasible = lambda a: a.choices[0] != 3  # noqa: E731  (a constraint: no conv3x3 on the first edge)

    def reward(arch) -> float:
        return float(weights[list(arch.choices)].sum())

    def run(seed: int, explore: int) -> tuple[list, list]:
        s = create_strategy("guided-evolution", space, seed=seed, feasible=feasible, explore=explore)
        screened = []
        pick = s._surrogate_best
        s._surrogate_best = lambda children: (screened.append(list(children)), pick(children))[1]
        return _ask_tell(s, reward, 30), screened

    asked, screened = run(3, 50)
    assert asked == run(3, 50)[0]  # seeded
    assert all(feasible(a) for a in asked) and len(set(asked)) == len(asked)
    assert all(feasible(c) and c not in asked[:20] for cands in screened for c in cands)

    def far(cands: list, population: list) -> int:  # two or more edges from every population member
        return sum(all(sum(x != y for x, y in zip(c.choices, p.choices)) >= 2 for p in population) for c in cands)

    assert all(len(c) > 40 and far(c, asked[:20]) > 10 for c in screened[:1])  # 20 children + ~50 newcomers
    plain = run(3, 0)[1]
    assert all(len(c) <= 20 for c in plain)
    with pytest.raises(ValueError, match="explore"):
        create_strategy("guided-evolution", space, explore=-1)


def test_guided_evolution_kappa_picks_by_ensemble_optimism() -> None:
    """kappa > 0: the screened candidate with the largest mean + kappa * std over an ensemble of
    bagged surrogates is proposed; seeded; kappa = 0 is the single surrogate's argmax."""
    from hwnas.search.strategies import create_strategy
    from hwnas.search.strategies._simple import surrogate_regressor

    space = create_space("nb201")
    weights = np.array([0.0, 0.2, 0.6, 1.0, 0.1])

    def reward(arch) -> float:
        return float(weights[list(arch.choices)].sum())

    def run(kappa: float) -> tuple[list, list]:
        s = create_strategy("guided-evolution", space, seed=4, explore=30, kappa=kappa)
        checks = []
        pick = s._surrogate_best

        def spy(children):
            chosen = pick(children)
            X, y = np.stack(s._told_x), np.asarray(s._told_y)
            F = np.stack([space.features(c) for c in children])
            preds = np.stack([surrogate_regressor(s.seed + k).fit(X, y).predict(F) for k in range(s.ENSEMBLE)])
            expected = preds.mean(0) + kappa * preds.std(0) if kappa else preds[0]
            checks.append(children[int(np.argmax(expected))] == chosen)
            return chosen

        s._surrogate_best = spy
        return _ask_tell(s, reward, 28), checks

    asked, checks = run(2.0)
    assert len(checks) == 8 and all(checks)
    assert asked == run(2.0)[0] and len(set(asked)) == len(asked)
    plain, plain_checks = run(0.0)
    assert all(plain_checks) and plain[:20] == asked[:20]  # the random start is the same
    assert create_strategy("guided-evolution", space).kappa == 1.0 and create_strategy("evolution", space).kappa == 0
    with pytest.raises(ValueError, match="kappa"):
        create_strategy("guided-evolution", space, kappa=-0.5)


def test_guided_evolution_explore_where_little_is_feasible() -> None:
    """Newcomers are drawn in bounded time and never fail the ask when feasible ones are rare."""
    import time

    from hwnas.search.strategies import create_strategy

    space = create_space("nb201")
    # feasible: a conv3x3 on the first three edges (1 in 125 cells), so random draws rarely hit
    feasible = lambda a: all(c == 3 for c in a.choices[:3])  # noqa: E731
    s = create_strategy("guided-evolution", space, seed=0, feasible=feasible, population_size=5,
                        tournament_size=5, explore=50)
    t0 = time.perf_counter()
    asked = []
    for i in range(40):
        a = s.ask()
        assert feasible(a) and a not in asked
        asked.append(a)
        s.tell(a, float(i % 7))
    assert time.perf_counter() - t0 < 60


def test_nsga2_ranks_and_crowding() -> None:
    from hwnas.search.strategies._pareto import crowding_distance, non_dominated_ranks

    v = np.array([[3, -1], [2, -2], [1, -3], [2, -1], [1, -1], [0, -4]], float)  # maximise both
    # [3,-1] dominates [2,-1], which dominates [2,-2] and [1,-1]; [0,-4] is last
    assert non_dominated_ranks(v).tolist() == [0, 2, 3, 1, 2, 4]
    d = crowding_distance(np.array([[0, 3], [1, 2], [2, 1.5], [3, 0]], float))
    assert np.isinf(d[0]) and np.isinf(d[3]) and d[1] == pytest.approx(2 / 3 + 1.5 / 3)


def test_nsga2_finds_a_better_front_than_random_at_the_same_budget() -> None:
    """Two conflicting objectives on NB201 (a 'capacity' score from the convolutions and its cost):
    over five seeds the hypervolume regret of NSGA-II's evaluated front is below random search's,
    and its parents are the non-dominated of everything told, rank by rank."""
    from hwnas.search import pareto_front
    from hwnas.search.strategies import create_strategy
    from hwnas.search.strategies._pareto import non_dominated_ranks

    space = create_space("nb201")
    weight = {"nor_conv_3x3": 9.0, "nor_conv_1x1": 3.0, "avg_pool_3x3": 1.0, "skip_connect": 0.5, "none": 0.0}

    def values(arch):  # noqa: ANN001, ANN202
        ops = space.ops(arch)
        gain = sum(np.sqrt(weight[o]) * (1 + 0.3 * i) for i, o in enumerate(ops))
        cost = sum(weight[o] for o in ops) + 0.2 * sum(i * (o != "none") for i, o in enumerate(ops))
        return gain, cost

    every = np.array([values(a) for a in space.enumerate()])
    lo, hi = every.min(0), every.max(0)

    def hypervolume(points) -> float:  # noqa: ANN001
        p = (np.asarray(points) - lo) / (hi - lo)
        hv = best = 0.0
        for i in pareto_front(p[:, 0], p[:, 1]):
            hv += (p[i, 0] - best) * (1 - p[i, 1])
            best = p[i, 0]
        return hv

    whole = hypervolume(every)
    regret: dict[str, list[float]] = {"nsga2": [], "random": []}
    for seed in range(5):
        for name in regret:
            s = create_strategy(name, space, seed=seed)
            seen = []
            for _ in range(120):
                a = s.ask()
                seen.append(values(a))
                s.tell(a, (seen[-1][0], -seen[-1][1]))
            regret[name].append(1 - hypervolume(seen) / whole)
            if name == "nsga2":
                nsga2 = s
    assert np.mean(regret["nsga2"]) < 0.85 * np.mean(regret["random"])
    ranks = non_dominated_ranks(np.array(nsga2._values))
    parent_ranks = ranks[nsga2._parents]
    assert len(nsga2._parents) == 20 and list(parent_ranks) == sorted(parent_ranks)
    assert set(np.flatnonzero(ranks == 0)) <= set(nsga2._parents) or (ranks == 0).sum() > 20


def test_proxy_training_evaluator_trains_at_a_searched_resolution(tmp_path) -> None:
    """mnasnet searches the input resolution: each architecture trains at its own (the dataset
    resized once per resolution), not at --resolution (which raised 'a searched decision')."""
    from hwnas.devices import DeviceConstraints
    from hwnas.search._evaluators import ProxyTrainingEvaluator

    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, x=rng.random((40, 8, 8), dtype=np.float32), y=np.arange(40) % 4)
    space = create_space("mnasnet").restrict(DeviceConstraints(max_input_resolution=128))
    ev = ProxyTrainingEvaluator(space, str(data), epochs=1, resolution=16)
    a96 = space.make([0, *space.sample(rng).choices[1:]])  # resolution options: 96, 128
    a128 = space.make([1, *space.sample(rng).choices[1:]])
    assert space.input_shape(a96)[-1] == 96 and space.input_shape(a128)[-1] == 128
    for arch in (a96, a128):
        assert 0.0 <= ev(arch) <= 1.0
    assert sorted(ev._at) == [96, 128] and ev._at[128][0].shape[1:] == (3, 128, 128)
