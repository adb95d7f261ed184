"""DARTS on the cell space: the expected latency is the predictor's, the derivation keeps two
inputs per node and meets a target, first and second order train (real training on a few
hundred digits), per-epoch resume, export measured on ONNX Runtime, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.jobs import darts_search, load_predictor
from hwnas.search.darts import DartsConfig, DartsSearch
from hwnas.search.spaces import CELL_OPS, CellSpace

TINY = {"blocks": 2, "channels": 4, "layers": 3, "resolution": 16}


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits200.npz"
    np.savez(path, x=d.images[:200], y=d.target[:200])
    return path


@pytest.fixture()
def pred(trained):
    return load_predictor("cpu-ort", path=trained / "predictor", allow_fingerprint_mismatch=True)


def _search(pred, few_digits, **cfg):
    from hwnas.search._evaluators import load_dataset

    space = CellSpace(**TINY)
    return DartsSearch(space, pred, DartsConfig(epochs=1, **cfg), load_dataset(str(few_digits), 16, 0))


def test_expected_latency_of_a_one_hot_distribution_is_near_the_derived_networks(pred, few_digits) -> None:
    s = _search(pred, few_digits, target_ms=1.0)
    with torch.no_grad():
        for kind in ("normal", "reduce"):  # all weight on sep_conv_3x3 from the cell inputs, none elsewhere
            a = torch.full_like(s.net.alpha[kind], -30.0)
            a[:, CELL_OPS.index("none")] = 30.0
            for e in (0, 1):
                a[e] = -30.0
                a[e, CELL_OPS.index("sep_conv_3x3")] = 30.0
            s.net.alpha[kind].copy_(a)
    arch = s.space.from_string(";".join(f"{k}=sep_conv_3x3~0+sep_conv_3x3~1|none~0+none~0"
                                        for k in ("normal", "reduce")))
    # edges 0 and 1 feed node 0, which keeps both (share 2/2): the expectation is that network's latency
    expected = float(s.latency.expected({k: s.net.probs(k) for k in ("normal", "reduce")}))
    assert expected == pytest.approx(s.predicted(arch), rel=0.1)


def test_derivation_keeps_two_inputs_per_node_and_meets_a_target(pred, few_digits) -> None:
    free = _search(pred, few_digits)
    arch = free.derive()
    assert "none" not in free.space.to_string(arch)  # DARTS's derivation never keeps a zero op
    tight = _search(pred, few_digits, target_ms=0.8 * free.predicted(arch))
    assert tight.predicted(tight.derive()) <= 0.8 * free.predicted(arch)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2])
def test_both_orders_move_the_architecture_and_stay_finite(pred, few_digits, order) -> None:
    s = _search(pred, few_digits, order=order, target_ms=0.2)
    before = {k: v.detach().clone() for k, v in s.net.alpha.items()}
    rec = s.run_epoch()
    assert np.isfinite(rec.train_loss) and np.isfinite(rec.arch_ce) and rec.expected_latency_ms > 0
    assert any(not torch.equal(before[k], s.net.alpha[k].detach()) for k in before)
    s.space.from_string(rec.derived_arch)  # the derived string is a valid architecture


def _run(trained, few_digits, out, **kw):
    opts = dict(target_ms=0.5, space_args=TINY, predictor=trained / "predictor", supernet_epochs=2, epochs=1,
                dataset=str(few_digits), allow_fingerprint_mismatch=True, message=lambda m: None)
    opts.update(kw)
    return darts_search("cpu-ort", out, **opts)


@pytest.mark.slow
def test_darts_exports_within_its_target_and_resumes_per_epoch(trained, few_digits, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append(done)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trained, few_digits, tmp_path / "d", progress=stop_after_first, export=False)
    res = _run(trained, few_digits, tmp_path / "d", progress=stop_after_first)
    assert seen == [1, 2] and res["supernet_epochs"] == 2  # epoch 1 was not trained again
    assert res["meets_target"] and 0 < res["measured_ms"] and (tmp_path / "d" / "model.onnx").exists()
    spec = json.loads((tmp_path / "d" / "arch.json").read_text())
    assert spec["space"] == "cell" and spec["arch"] == res["arch"]
    assert len((tmp_path / "d" / "epochs.csv").read_text().splitlines()) == 3
    with pytest.raises(HwnasError, match="other settings"):
        _run(trained, few_digits, tmp_path / "d", export=False, latency_lambda=0.5)


@pytest.mark.parametrize("kw,words", [
    ({"strategy_params": {"order": 3}}, "order is 1"),
    ({"strategy_params": {"nope": 1}}, "for darts has no parameter .nope.; its parameters: order, batch_size"),
    ({"strategy_params": {"epochs": 3}}, "for darts has no parameter .epochs."),
    ({"strategy_params": {"batch_size": "x"}}, "darts parameter batch_size takes an integer, got 'x'"),
    ({"strategy_params": {"weight_lr": True}}, "darts parameter weight_lr takes a number, got True"),
    ({"strategy_params": {"batch_size": 0}}, "darts batch_size takes an integer >= 1, got 0"),
    ({"strategy_params": {"arch_lr": -1.0}}, "darts arch_lr must be > 0"),
    ({"latency_loss": "cubic"}, "latency loss"),
    ({"supernet_epochs": 0}, "supernet_epochs"),
    ({"space_args": {"blocks": 0}}, "blocks"),
])
def test_bad_input_is_one_error(trained, few_digits, tmp_path, kw, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, few_digits, tmp_path / "d", export=False, **kw)


def test_cli_darts_needs_the_cell_or_the_proxyless_space(capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "darts", "--space", "mnasnet"])
    err = capsys.readouterr().err
    assert rc == 2 and "use --space cell" in err and "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("space", ["cell", "proxyless"])
def test_cli_darts(trained, few_digits, tmp_path, capsys, space) -> None:
    from hwnas.cli import main

    args = ["search", "--strategy", "darts", "--space", space, "--supernet-epochs", "1", "--epochs", "1",
            "--target-ms", "0.5" if space == "cell" else "1000", "--dataset", str(few_digits),
            "--predictor", str(trained / "predictor"), "--allow-fingerprint-mismatch", "--out", str(tmp_path / "d")]
    for k, v in (TINY if space == "cell" else {"resolution": 16, "width": 0.25}).items():
        args += ["--space-arg", f"{k}={v}"]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0 and "derived:" in out and "measured" in out and (tmp_path / "d" / "model.onnx").exists(), out


# ---- DARTS on the proxyless chain (first order: every allowed op weighted by softmax(alpha)) -------
def test_a_softmax_layer_is_the_weighted_sum_of_its_allowed_ops() -> None:
    from hwnas.search.proxyless import MixedLayer

    torch.manual_seed(0)
    ops = [torch.nn.Conv2d(2, 2, 1) for _ in range(4)]
    m = MixedLayer(ops, (0, 2, 3))
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.3, 5.0, -0.2, 1.0]))
    m.mode = "softmax"
    x = torch.randn(2, 2, 3, 3)
    p = torch.softmax(torch.tensor([0.3, -0.2, 1.0]), 0)
    want = p[0] * ops[0](x) + p[1] * ops[2](x) + p[2] * ops[3](x)  # op 1 is not allowed: weight 0
    torch.testing.assert_close(m(x), want)
    m(x).sum().backward()
    assert m.alpha.grad[[0, 2, 3]].abs().min() > 0 and m.alpha.grad[1] == 0


def test_a_softmax_architecture_step_moves_every_allowed_alpha(pred) -> None:
    from hwnas.search.proxyless import ProxylessConfig, ProxylessSearch
    from hwnas.search.spaces import ProxylessSpace

    space = ProxylessSpace(resolution=16, width=0.25, classes=4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 16, 16, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    s = ProxylessSearch(space, pred, ProxylessConfig(target_ms=0.5, latency_loss="additive", epochs=2, warmup_epochs=0,
                                                     relaxation="softmax", batch_size=32), (x, y, x, y, 4))
    before = [m.alpha.detach().clone() for m in s.net.mixed]
    s.weight_step(x[:32], y[:32])
    assert all(torch.equal(m.alpha.detach(), b) for m, b in zip(s.net.mixed, before))  # weights only
    s.arch_step(x[32:], y[32:])
    for m, b in zip(s.net.mixed, before):
        moved = (m.alpha.detach() != b).nonzero().flatten().tolist()
        assert moved == sorted(m.allowed)  # all allowed ops, not two sampled ones


@pytest.mark.slow
def test_darts_on_the_chain_exports_and_resumes(trained, few_digits, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append(done)
        if len(seen) == 1:
            raise KeyboardInterrupt

    kw = dict(space="proxyless", space_args={"resolution": 16, "width": 0.25}, target_ms=1e3, latency_loss="additive")
    with pytest.raises(KeyboardInterrupt):
        _run(trained, few_digits, tmp_path / "c", progress=stop_after_first, export=False, **kw)
    res = _run(trained, few_digits, tmp_path / "c", progress=stop_after_first, **kw)
    assert seen == [1, 2] and res["settings"]["strategy"] == "darts"
    assert res["settings"]["strategy_params"]["relaxation"] == "softmax" and res["meets_target"]
    assert res["measured_ms"] > 0 and (tmp_path / "c" / "model.onnx").exists()
    assert json.loads((tmp_path / "c" / "arch.json").read_text())["arch"] == res["best"]["arch"]


@pytest.mark.parametrize("params,words", [({"order": 2}, "first order"), ({"relaxation": "binary-gates"}, "softmax")])
def test_bad_chain_darts_settings_are_one_error(trained, few_digits, tmp_path, params, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, few_digits, tmp_path / "c", export=False, space="proxyless", strategy_params=params)


@pytest.mark.parametrize("kw,words", [({"batch_size": 0}, "softmax supernet batch_size takes an integer >= 1, got 0"),
                                      ({"arch_every": 0}, "arch_every takes an integer >= 1"),
                                      ({"weight_lr": 0.0}, "weight_lr must be > 0"),
                                      ({"arch_lr": -1.0}, "arch_lr must be > 0")])
def test_a_supernet_setting_out_of_range_is_one_error(kw, words) -> None:
    """Ranges the supernet config checks itself, before a search loads anything (types are checked
    by the jobs, from the config's field annotations)."""
    from hwnas.search.proxyless import ProxylessConfig

    with pytest.raises(HwnasError, match=words):
        ProxylessConfig(relaxation="softmax", warmup_epochs=0, **kw)
