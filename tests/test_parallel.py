"""Parallel, asynchronous search (workers, retries, pending trials, resume) and Ray: a real local
Ray cluster (a head and a second node advertising a device), a device farm profile. The accuracy
is hwnas.testing.FakeEvaluator (a deterministic fake for orchestration; never a number)."""

from __future__ import annotations

import sqlite3

import pytest

from hwnas.errors import HwnasError
from hwnas.search import Journal, MnasReward, Search, create_space, create_strategy
from hwnas.search._parallel import run_trials
from hwnas.testing import FakeEvaluator


def _search(path, strategy="evolution", evaluator=None, resume=True, **kw):
    space = create_space("nb201")
    strat = create_strategy(strategy, space, seed=3, **({"population_size": 4, "tournament_size": 2}
                                                        if strategy == "evolution" else {}))
    journal = Journal(path, {"s": strategy}, resume)
    return Search(space, strat, lambda a: 1.0 + sum(a.choices) / 10, MnasReward(10.0, 0.0, -1.0), journal,
                  evaluator=evaluator or FakeEvaluator(), **kw)


def test_one_worker_is_the_sequential_search_draw_for_draw(tmp_path) -> None:
    s = _search(tmp_path / "a.sqlite")
    s.optimize(12)
    manual = _search(tmp_path / "b.sqlite")
    ev = FakeEvaluator()
    for _ in range(12):
        t = manual.ask()
        manual.tell(t, ev(manual.arch_of(t)))
    assert [t.arch for t in s.trials] == [t.arch for t in manual.trials]
    assert [t.number for t in s.trials] == list(range(12))


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "nsga2", "random"])
def test_pending_trials_are_never_proposed_twice(tmp_path, strategy) -> None:
    s = _search(tmp_path / "j.sqlite", strategy)
    asked = [s.ask() for _ in range(8)]  # eight in flight, none told
    assert len({t.arch for t in asked}) == 8
    ev = FakeEvaluator()
    for t in reversed(asked):  # told in another order than asked
        s.tell(t, ev(s.arch_of(t)))
    more = [s.ask() for _ in range(4)]
    assert not {t.arch for t in more} & {t.arch for t in asked}


def test_a_resumed_search_reruns_its_pending_trials_and_replays_out_of_order_tells(tmp_path) -> None:
    path = tmp_path / "j.sqlite"
    s = _search(path, resume=False)
    ev = FakeEvaluator()
    a, b, c = s.ask(), s.ask(), s.ask()
    s.tell(c, ev(s.arch_of(c)))
    s.tell(a, ev(s.arch_of(a)))
    s.close()  # b is pending: the run was killed while it trained
    r = _search(path)
    assert [t.number for t in r.pending_trials] == [b.number]
    assert [t.number for t in r.trials] == [a.number, c.number]
    r.optimize(6)
    assert sorted(t.number for t in r.trials) == list(range(6))
    assert len({t.arch for t in r.trials}) == 6 and b.arch in {t.arch for t in r.trials}
    r.close()
    again = _search(path)  # the journal replays (asks, out-of-order tells) to the same state
    assert [t.arch for t in again.trials] == [t.arch for t in r.trials] and not again.pending_trials
    again.close()


def test_a_failing_evaluation_is_retried_then_recorded_failed(tmp_path) -> None:
    s = _search(tmp_path / "ok.sqlite", evaluator=FakeEvaluator(fail_times=2, marker_dir=str(tmp_path)))
    s.optimize(3, retries=2)  # two failures each, the third attempt succeeds
    assert len(s.trials) == 3 and not s.failed_trials
    d = tmp_path / "bad"
    d.mkdir()
    bad = _search(tmp_path / "bad.sqlite", evaluator=FakeEvaluator(fail_times=9, marker_dir=str(d)))
    with pytest.raises(HwnasError, match="evaluations failed"):
        bad.optimize(5, retries=1)
    assert len(bad.failed_trials) == 3 and "fake failure" in bad.failed_trials[0].error
    states = dict(sqlite3.connect(tmp_path / "bad.sqlite").execute("SELECT number, state FROM trials").fetchall())
    assert set(states.values()) == {"failed"}, "a failed trial is recorded, never dropped"
    bad.close()
    resumed = _search(tmp_path / "bad.sqlite", evaluator=FakeEvaluator())
    assert len(resumed.failed_trials) == 3
    resumed.optimize(2)
    assert len(resumed.trials) == 2 and not {t.arch for t in resumed.trials} & {t.arch for t in resumed.failed_trials}


def test_bad_run_options_are_one_line(tmp_path) -> None:
    s = _search(tmp_path / "j.sqlite")
    for kw, match in (({"workers": 0}, "workers"), ({"retries": -1}, "retries"), ({"workers": True}, "workers")):
        with pytest.raises(HwnasError, match=match):
            s.optimize(2, **kw)
    with pytest.raises(HwnasError, match="unknown executor 'nope'.*local"):
        s.optimize(2, workers=2, executor="nope")
    with pytest.raises(HwnasError, match="must pickle"):
        _search(tmp_path / "k.sqlite", evaluator=lambda a: 0.5).optimize(2, workers=2)
    assert not s.trials


@pytest.mark.slow
def test_two_local_worker_processes(tmp_path) -> None:
    s = _search(tmp_path / "j.sqlite", evaluator=FakeEvaluator(seconds=0.5))
    s.optimize(6, workers=2, executor="local")
    assert len({t.arch for t in s.trials}) == 6
    events = sqlite3.connect(tmp_path / "j.sqlite").execute("SELECT kind FROM events ORDER BY seq").fetchall()
    kinds = [k for (k,) in events]
    assert kinds[:2] == ["ask", "ask"], "two trials were in flight at once"


@pytest.mark.slow
def test_a_worker_process_that_dies_loses_only_its_trial(tmp_path) -> None:
    s = _search(tmp_path / "j.sqlite", evaluator=FakeEvaluator(seconds=0.2, die_once=True, marker_dir=str(tmp_path)))
    run_trials(s, 5, [], workers=2, executor="local", retries=2)
    assert len({t.arch for t in s.trials}) == 5 and not s.failed_trials


# ---- Ray --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    from hwnas.testing import LocalRayCluster

    cluster = LocalRayCluster(head_cpus=2, node_cpus=1, node_resources={"hwnas-device:cpu-ort-mt": 1})
    yield cluster
    cluster.close()


@pytest.mark.slow
def test_ray_search_survives_a_killed_worker(tmp_path, ray_cluster) -> None:
    s = _search(tmp_path / "j.sqlite", evaluator=FakeEvaluator(seconds=0.3, die_once=True, marker_dir=str(tmp_path)))
    from hwnas.search import create_executor

    ex = create_executor("ray", workers=2, trial_cpus=1, address=ray_cluster.address)
    s.optimize(6, workers=2, executor=ex)
    assert (tmp_path / "died").exists(), "a worker process was killed mid-trial"
    assert len({t.arch for t in s.trials}) == 6 and not s.failed_trials
    s.close()
    assert len(_search(tmp_path / "j.sqlite").trials) == 6


@pytest.mark.slow
def test_ray_measures_a_device_on_the_node_that_holds_it(ray_cluster) -> None:
    import numpy as np
    import ray

    import hwnas
    from hwnas.jobs._farm import _placement, measure_on_ray

    space = create_space("nb201")
    measure = measure_on_ray(hwnas.get_device("cpu-ort-mt"), space, ray_cluster.address)
    assert _placement(ray, "cpu-ort-mt") == {"resources": {"hwnas-device:cpu-ort-mt": 1}}
    assert "scheduling_strategy" in _placement(ray, "cpu-ort"), "a device no node advertises stays here"
    assert measure(space.sample(np.random.default_rng(0))) > 0


@pytest.mark.slow
def test_two_devices_profiled_at_once_store_what_one_after_the_other_does(tmp_path, ray_cluster) -> None:
    from hwnas.jobs import profile_ops
    from hwnas.jobs._farm import profile_devices
    from hwnas.profilers import OpConfig, ProfileStore

    cfgs = [OpConfig.parse(s) for s in ("conv_i8_o8_r16_k3_s1_g1_arelu", "pwconv_i8_o16_r16_arelu",
                                        "dwconv_i16_r16_k3_s1_arelu", "conv_i8_o16_r8_k3_s2_g1_arelu")]
    ops = tmp_path / "ops.txt"
    ops.write_text("\n".join(map(str, cfgs)))
    seq = tmp_path / "seq.sqlite"
    for dev in ("cpu-ort", "cpu-ort-mt"):
        profile_ops(dev, ops_file=ops, store=seq, max_time_per_op=0.05, drift_check=False)
    farm = tmp_path / "farm.sqlite"
    res = profile_devices(["cpu-ort", "cpu-ort-mt"], configs=cfgs, store=farm, address=ray_cluster.address,
                          max_time_per_op=0.05, drift_check=False)
    assert not res.failed and all(d["measured"] == 4 for d in res.devices.values())

    def stored(path):
        with ProfileStore(path) as st:
            df = st.op_measurements()
        return df, set(zip(df.fingerprint_id, df.config_key, df.status))

    (a, keys_a), (b, keys_b) = stored(seq), stored(farm)
    assert keys_a == keys_b and len(keys_b) == 8
    for _, g in b.groupby("device_name"):  # one measurement at a time on each device
        g = g.sort_values("started_unix_s")
        assert (g.started_unix_s.iloc[1:].to_numpy() >= g.finished_unix_s.iloc[:-1].to_numpy()).all()
    again = profile_devices(["cpu-ort", "cpu-ort-mt"], configs=cfgs, store=farm, address=ray_cluster.address,
                            max_time_per_op=0.05, drift_check=False)
    assert all(d["measured"] == 0 and d["skipped"] == 4 for d in again.devices.values())


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["bo", "tpe"])
def test_cli_search_with_two_local_workers_and_a_model_based_strategy(trained, tmp_path, strategy) -> None:
    """The CLI end to end: worker processes started before the search loads, bo/tpe proposing while
    another trial is in flight, the journal complete and distinct; a larger budget resumes it."""
    from hwnas.cli import main
    from hwnas.search import create_space

    space = create_space("nb201")
    rows = ["index,arch_str,acc"] + [f"{i},{space.to_string(a)},{50 + (i % 40)}" for i, a in enumerate(space.enumerate())]
    (tmp_path / "acc.csv").write_text("\n".join(rows) + "\n")
    args = ["search", "--space", "nb201", "--evaluator", "table", "--accuracy-csv", str(tmp_path / "acc.csv"),
            "--accuracy-column", "acc", "--strategy", strategy, "--strategy-param", "initial=4", "--target-ms", "1000",
            "--verify", "0", "--predictor", str(trained / "predictor"), "--workers", "2", "--out", str(tmp_path / "run"),
            "--json"]
    assert main([*args, "--budget", "8"]) == 0
    assert main([*args, "--budget", "12", "--resume"]) == 0
    con = sqlite3.connect(tmp_path / "run" / "journal.sqlite")
    rows = con.execute("SELECT arch, state FROM trials").fetchall()
    con.close()
    assert len(rows) == 12 and {s for _, s in rows} == {"complete"} and len({a for a, _ in rows}) == 12
