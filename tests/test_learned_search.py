"""Learned controllers (REINFORCE, PPO) and ProxylessNAS supernet search."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.errors import HwnasError
from hwnas.latency_models import LatencyPredictor
from hwnas.search.proxyless import (LatencyTable, ProxylessConfig, ProxylessSearch, Supernet, factorised_scores,
                                    latency_term)
from hwnas.search.spaces import MLPSpace, ProxylessSpace, create_space
from hwnas.search.strategies import create_strategy


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_controllers_learn_a_toy_objective(name) -> None:
    space = create_space("nb201")
    best = np.array([3, 1, 4, 1, 0, 2])  # reward: share of decisions equal to these

    def reward(arch) -> float:
        return float(np.mean(np.array(arch.choices) == best))

    s = create_strategy(name, space, seed=0)
    rewards = []
    for _ in range(200):
        a = s.ask()
        rewards.append(reward(a))
        s.tell(a, rewards[-1])
    # uniform sampling scores 0.2 on average
    assert np.mean(rewards[-50:]) > max(0.4, np.mean(rewards[:50]) + 0.1), (np.mean(rewards[:50]), np.mean(rewards[-50:]))
    assert s.history and len(s.history) >= 15  # updates on batches of 10 (plus free infeasible samples)


def test_controllers_propose_only_feasible_and_can_learn_from_infeasible_draws() -> None:
    space = create_space("nb201")
    feasible = lambda a: a.choices[0] < 2  # noqa: E731 - 60% of the draws are infeasible at first
    updates = {}
    for learn in (False, True):
        s = create_strategy("reinforce", space, seed=1, feasible=feasible, learn_infeasible=learn, batch_size=5)
        for _ in range(60):
            a = s.ask()
            assert feasible(a)
            s.tell(a, 1.0 + 0.01 * a.choices[1])
        updates[learn] = len(s.history)
    # 60 tells make 12 updates; infeasible draws, when learnt from, add more without evaluations
    assert updates[False] == 12 and updates[True] > 12


def test_ppo_gae_matches_returns() -> None:
    from hwnas.search.strategies import PPOController

    p = PPOController(create_space("nb201"), seed=0, gamma=1.0, lam=1.0)
    adv, ret = p.gae(np.array([2.0, -1.0]), np.zeros((2, 6)))
    np.testing.assert_allclose(ret, np.array([[2.0] * 6, [-1.0] * 6]))


@pytest.fixture(scope="module")
def tiny(trained):
    pred = LatencyPredictor.load(trained / "predictor", None, True)
    space = ProxylessSpace(resolution=16, width=0.25, classes=4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 16, 16, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return pred, space, (x[:64], y[:64], x[64:], y[64:], 4)


@pytest.mark.slow
def test_expected_latency_is_the_table_weighted_sum(tiny) -> None:
    pred, space, _ = tiny
    table = LatencyTable(pred, space)
    rng = np.random.default_rng(0)
    probs = []
    for a in space.allowed:
        p = np.zeros(7)
        p[list(a)] = rng.dirichlet(np.ones(len(a)))
        probs.append(torch.tensor(p, requires_grad=True))
    e = table.expected(probs)
    t = table.table
    n = len(space.decisions)
    sums = []
    for arr in (t.ms, t.units, t.io_mb, t.weight_mb, t.silu, t.hardswish_ms):
        fixed = sum(arr[i, 0] for i in range(arr.shape[0]) if not 2 <= i < 2 + n)
        sums.append(fixed + sum(float(probs[i].detach().numpy() @ arr[2 + i, :7]) for i in range(n)))
    assert float(e.detach()) == pytest.approx(float(t.calibration.apply(*sums)), rel=1e-9)
    e.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in probs)
    # a one-hot distribution is exactly the architecture's batch prediction
    arch = space.sample(rng)
    onehot = [torch.nn.functional.one_hot(torch.tensor(c), 7).double() for c in arch.choices]
    assert float(table.expected(onehot)) == pytest.approx(table.of(space, arch), rel=1e-9)
    assert table.of(space, arch) == pytest.approx(pred.predict_architecture(space.op_configs(arch)), rel=1e-6)


@pytest.mark.slow
def test_weight_step_runs_and_trains_one_path(tiny) -> None:
    pred, space, data = tiny
    s = ProxylessSearch(space, pred, ProxylessConfig(target_ms=1.0, epochs=2, warmup_epochs=0, batch_size=32), data)
    calls: dict[int, int] = {}
    hooks = [op.register_forward_hook(lambda m, i, o, k=id(op): calls.__setitem__(k, calls.get(k, 0) + 1))
             for m in s.net.mixed for op in m.ops]
    s.weight_step(*data[:2])
    for h in hooks:
        h.remove()
    for m in s.net.mixed:  # exactly one candidate ran per layer, and only it has gradients
        ran = [i for i, op in enumerate(m.ops) if calls.get(id(op))]
        assert ran == [m.active]
        active = {id(p) for p in m.ops[m.active].parameters()}  # shared weights belong to it too
        for i, op in enumerate(m.ops):
            grads = [p.grad for p in op.parameters() if id(p) not in active]
            if i != m.active:
                assert all(g is None or not g.any() for g in grads)
    assert all(m.alpha.grad is None or not m.alpha.grad.any() for m in s.net.mixed)


@pytest.mark.slow
def test_arch_step_reaches_alpha_and_keeps_unsampled_probabilities(tiny) -> None:
    pred, space, data = tiny
    s = ProxylessSearch(space, pred, ProxylessConfig(target_ms=0.01, latency_loss="none", epochs=2,
                                                     warmup_epochs=0, batch_size=32), data)
    before = [m.probs().detach().clone() for m in s.net.mixed]
    weights = [p.detach().clone() for p in s.net.weight_parameters()]
    s.arch_step(*data[:2])
    changed = 0
    for m, b in zip(s.net.mixed, before):
        p = m.probs().detach()
        i, j = m.pair
        others = [k for k in range(len(p)) if k not in (i, j) and b[k] > 0]
        torch.testing.assert_close(p[others], b[others], rtol=1e-5, atol=1e-7)  # rescaled: unsampled kept
        changed += int(not torch.allclose(p, b))
    assert changed > 0, "the binary-gate gradient must reach alpha"
    assert all(torch.equal(a, b) for a, b in zip(weights, [p.detach() for p in s.net.weight_parameters()]))


@pytest.mark.slow
def test_latency_loss_pulls_expected_latency_down(tiny) -> None:
    pred, space, data = tiny
    e = []
    for t in (None, 1e-3):
        s = ProxylessSearch(space, pred, ProxylessConfig(target_ms=t, latency_loss="additive", lam=5.0, epochs=3,
                                                         warmup_epochs=1, batch_size=32, arch_lr=0.1), data)
        arch = s.run()
        space.validate(arch)
        e.append(s.records[-1].expected_latency_ms)
    assert e[1] < e[0]
    assert float(latency_term(ProxylessConfig(target_ms=2.0, latency_loss="multiplicative", beta=0.6),
                              torch.tensor(1.0), torch.tensor(1.0))) < 1.0


def test_absolute_latency_loss_pulls_towards_the_target_from_both_sides() -> None:
    cfg = ProxylessConfig(target_ms=1.0, latency_loss="absolute", lam=1.0)
    for e, sign in ((0.5, -1.0), (1.5, 1.0)):  # below T: more latency lowers the loss; above: less
        x = torch.tensor(e, requires_grad=True)
        latency_term(cfg, torch.tensor(0.3), x).backward()
        assert float(torch.sign(x.grad)) == sign
    for form in ("additive", "multiplicative"):  # the published forms only ever push down
        x = torch.tensor(0.5, requires_grad=True)
        latency_term(dataclasses.replace(cfg, latency_loss=form), torch.tensor(0.3), x).backward()
        assert float(x.grad) > 0


@pytest.mark.slow
def test_supernet_derives_a_valid_restricted_architecture(tiny) -> None:
    from hwnas.devices import DeviceConstraints

    _, space, _ = tiny
    sp = space.restrict(DeviceConstraints(allowed_kernel_sizes=(3,)))
    net = Supernet(sp)
    arch = net.derive()
    sp.validate(arch)
    assert all(o in ("k3e3", "k3e6", "zero") for o in sp.to_string(arch).split("-"))


@pytest.mark.parametrize("sharing", ["all", "none"])
def test_weight_sharing_slices_one_set_of_weights(sharing) -> None:
    space = ProxylessSpace(resolution=16, width=0.25, classes=4)
    net = Supernet(space, 0, sharing)
    layer = net.mixed[1]  # a residual layer: 6 MBConv candidates and zero
    weights = [{id(p) for p in op.parameters() if p.dim() == 4} for op in layer.ops[:6]]
    if sharing == "none":
        assert len(set.union(*weights)) == 6 * len(weights[0])
        return
    assert len(set.union(*weights)) == 3 and all(w == weights[0] for w in weights)
    k3e3 = layer.ops[0]
    c = k3e3.cfg
    assert (c.kernel, c.expand) == (3, 3)
    x = torch.randn(4, c.cin, c.h, c.w)
    assert torch.equal(k3e3(x), x)  # a residual candidate starts as the identity
    torch.nn.init.ones_(k3e3.bn_project.weight)
    k3e3(x).square().mean().backward()
    g = k3e3.shared.dw.grad  # only the first cin * 3 channels and the centre 3 x 3 of the 7 x 7
    assert g[: c.mid_channels, :, 2:5, 2:5].abs().sum() > 0
    assert g[c.mid_channels:].abs().sum() == 0 and g[:, :, :2].abs().sum() == 0 and g[:, :, :, 5:].abs().sum() == 0
    with pytest.raises(HwnasError, match="weight sharing"):
        Supernet(space, 0, "some")


@pytest.mark.slow
def test_constrained_derivation_is_the_most_likely_architecture_within_the_target(tiny) -> None:
    pred, space, _ = tiny
    table = LatencyTable(pred, space)
    rng = np.random.default_rng(3)
    mask = [np.where(np.isin(np.arange(7), a), 0.0, -np.inf) for a in space.allowed]
    lp = [torch.log_softmax(torch.tensor(rng.normal(0, 1.0, 7) + m), 0).numpy() for m in mask]
    argmax = space.make([int(np.argmax(v)) for v in lp])
    fastest = space.make([int(np.argmin(np.where(np.isfinite(v), table.layer_ms()[i, :7], np.inf)))
                          for i, v in enumerate(lp)])

    def ll(a):
        return sum(v[c] for v, c in zip(lp, a.choices))

    lo, hi = table.of(space, fastest), table.of(space, argmax)
    assert lo < hi
    assert table.constrained_argmax(space, lp, hi * 1.01) == argmax  # the argmax when it is within T
    # nothing meets T: the fastest (among equally fast options, the more likely)
    assert table.of(space, table.constrained_argmax(space, lp, lo * 0.5)) == pytest.approx(lo, rel=1e-9)
    t = (lo + hi) / 2
    arch = table.constrained_argmax(space, lp, t)
    assert table.of(space, arch) <= t
    near = []  # architectures a few changes away from it and from the fastest
    for start in (arch, fastest):
        for _ in range(1500):
            a = start
            for _ in range(int(rng.integers(1, 5))):
                a = space.mutate(a, rng)
            near.append(a)
    feasible = [a for a in near if table.of(space, a) <= t]
    assert len(feasible) > 100 and ll(arch) >= max(ll(a) for a in feasible)
    for i, v in enumerate(lp):  # no single change raises the likelihood within T
        for j in np.flatnonzero(np.isfinite(v)):
            if v[j] > v[arch.choices[i]]:
                c = list(arch.choices)
                c[i] = int(j)
                assert table.of(space, space.make(c)) > t


@pytest.mark.slow
def test_constrained_derivation_is_exact_against_brute_force(tiny) -> None:
    """Five layers free (seven options each where allowed), the rest fixed: the derivation equals
    the best of every combination within T, at several T; the additive split of the calibrated
    latency reproduces the table's prediction."""
    import itertools

    pred, space, _ = tiny
    table = LatencyTable(pred, space)
    lin, fixed, raw, raw_fixed = table.layer_costs()
    rng = np.random.default_rng(7)
    free = sorted(rng.choice(len(space.allowed), 5, replace=False).tolist())
    lp = []
    for i, a in enumerate(space.allowed):
        v = np.full(7, -np.inf)
        if i in free:
            v[list(a)] = rng.normal(0, 1.0, len(a))
        else:
            v[int(rng.choice(list(a)))] = 0.0
        lp.append(v)
    fixed_choice = [int(np.argmax(v)) for v in lp]
    combos = []
    for picks in itertools.product(*[np.flatnonzero(np.isfinite(lp[i])) for i in free]):
        c = list(fixed_choice)
        for i, j in zip(free, picks):
            c[i] = int(j)
        combos.append(c)
    lat = np.array([table.of(space, space.make(c)) for c in combos])
    split = np.array([max(fixed + sum(lin[i, j] for i, j in enumerate(c)),
                          table.calibration.MIN_FRACTION * (raw_fixed + sum(raw[i, j] for i, j in enumerate(c))))
                      for c in combos])
    np.testing.assert_allclose(split, lat, rtol=1e-9)
    ll = np.array([sum(v[j] for v, j in zip(lp, c)) for c in combos])
    for q in (5, 25, 50, 90):
        t = float(np.percentile(lat, q))
        arch = table.constrained_argmax(space, lp, t)
        assert table.of(space, arch) <= t
        assert sum(v[j] for v, j in zip(lp, arch.choices)) == pytest.approx(ll[lat <= t].max(), abs=1e-9)


@pytest.mark.slow
def test_factorised_derivation_keeps_a_layer_unless_zero_holds_half(tiny) -> None:
    pred, space, data = tiny
    n = len(space.decisions)
    skippable = [i for i, d in enumerate(space.decisions) if "zero" in d.options]
    # zero holds 30% of every skippable layer; the six MBConv options split the rest (k5e6 ahead)
    p_keep = np.array([0.10, 0.10, 0.10, 0.16, 0.12, 0.12])
    probs = [np.append(p_keep * (0.7 / p_keep.sum()), 0.3) if i in skippable else p_keep / p_keep.sum()
             for i in range(n)]
    lp = [np.log(v) for v in probs]
    argmax = [int(np.argmax(v)) for v in lp]
    assert all(space.decisions[i].options[argmax[i]] == "zero" for i in skippable)  # the split vote
    scores = factorised_scores(space, lp)
    best = [int(np.argmax(v)) for v in scores]
    assert all(space.decisions[i].options[best[i]] == "k5e6" for i in range(n))
    # zero with more than half the mass is kept; relative MBConv order is the distribution's
    v = factorised_scores(space, [np.log(np.append(p_keep * (0.4 / p_keep.sum()), 0.6))] * n)[skippable[0]]
    assert int(np.argmax(v)) == 6 and np.argsort(v[:6]).tolist() == np.argsort(p_keep, kind="stable").tolist()
    # through the search: no target -> the unconstrained reading; a target -> within it
    s = ProxylessSearch(space, pred, ProxylessConfig(target_ms=None, epochs=2, warmup_epochs=1), data)
    with torch.no_grad():
        for m, v in zip(s.net.mixed, lp):
            m.alpha.copy_(torch.tensor(v, dtype=m.alpha.dtype))
    assert s.derive().choices == tuple(best) and s.derive("argmax").choices == tuple(argmax)
    assert s.derive("constrained").choices == tuple(argmax)  # no target: the most likely architecture
    s.supernet_accuracy(s.derive())  # the supernet runs the derived path, not the argmax
    assert [m.fixed for m in s.net.mixed] == list(best)
    full = s.latency.of(space, s.derive())
    t = 0.9 * full
    s.cfg = dataclasses.replace(s.cfg, target_ms=t)
    arch = s.derive()
    assert s.latency.of(space, arch) <= t < full
    assert s.latency.of(space, arch) > s.latency.of(space, s.derive("argmax"))  # fewer layers skipped
    with pytest.raises(HwnasError, match="factorised"):
        s.derive("nope")


@pytest.mark.slow
def test_cli_proxyless_run_directory_and_resume(trained, tmp_path, capsys) -> None:
    out = tmp_path / "px"
    args = ["search", "--strategy", "proxyless", "--space", "proxyless", "--space-arg", "resolution=16",
            "--space-arg", "width=0.25", "--space-arg", "classes=10", "--predictor", str(trained / "predictor"),
            "--target-ms", "0.5", "--supernet-epochs", "2", "--warmup-epochs", "1", "--epochs", "1",
            "--resolution", "16", "--out", str(out), "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["strategy"] == "proxyless" and "meets_target" in res
    for f in ("journal.sqlite", "best.json", "epochs.csv", "proxyless.png", "supernet.pt", "trials.csv"):
        assert (out / f).exists(), f
    best = json.loads((out / "best.json").read_text())
    space = ProxylessSpace(resolution=16, width=0.25, classes=10)
    space.validate(space.from_string(best["best"]["arch"]))
    assert main(args) == 2  # exists: needs --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # finished: nothing repeated
    again = json.loads(capsys.readouterr().out)
    assert again["best"]["arch"] == best["best"]["arch"]


@pytest.mark.slow
def test_cli_controller_search(trained, tmp_path, capsys) -> None:
    assert main(["search", "--strategy", "reinforce", "--space", "mlp", "--predictor", str(trained / "predictor"),
                 "--target-ms", "5", "--budget", "3", "--epochs", "1", "--strategy-param", "batch_size=2",
                 "--out", str(tmp_path / "r"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_trials"] == 3 and r["settings"]["strategy"] == "reinforce" and r["space"] == "mlp"
    import pandas as pd

    archs = list(pd.read_csv(tmp_path / "r" / "trials.csv")["arch"])
    assert len(set(archs)) == 3 and all(MLPSpace().from_string(a) for a in archs)  # three valid, distinct MLPs
