"""Once-for-all: one supernet (real training on digits), a subnetwork per device within its
target from a real predictor, export measured on ONNX Runtime, resume per epoch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.jobs import once_for_all_search

SMALL = {"resolution": 32, "width": 0.35}
FAST = {"evaluations": 12, "population_size": 6, "bn_batches": 2, "accuracy_samples": 12, "predicted_evaluations": 40,
        "verify_top": 2}


def _run(trained, out, devices, **kw):
    pred = trained / "predictor"
    opts = dict(target_ms=[1e3], space_args=SMALL, predictors=[pred] * len(devices), supernet_epochs=2,
                strategy_params=FAST, epochs=1, resolution=16, allow_fingerprint_mismatch=True, message=lambda m: None)
    opts.update(kw)
    return once_for_all_search(devices, out, **opts)


@pytest.mark.slow
def test_one_supernet_gives_each_device_a_network(trained, tmp_path) -> None:
    res = _run(trained, tmp_path / "ofa", ["cpu-ort", "cpu-ort-mt"], target_ms=[1e3, 1e3], export=False)
    assert res["supernet"]["epochs"] == 2 and len(res["devices"]) == 2
    for row in res["devices"]:  # (exported and measured: test_cli_once_for_all_for_two_devices)
        assert row["meets_target"] and 0 <= row["supernet_acc"] <= 1
        spec = json.loads((tmp_path / "ofa" / row["device"] / "arch.json").read_text())
        assert spec["space"] == "proxyless" and spec["arch"] == row["arch"]
    # a later search reuses the trained supernet: no more training
    again = _run(trained, tmp_path / "ofa", ["cpu-ort"], export=False)
    assert again["supernet"]["train_s"] == res["supernet"]["train_s"]
    assert json.loads((tmp_path / "ofa" / "ofa.json").read_text())["devices"][0]["device"] == "cpu-ort"


@pytest.mark.slow
def test_a_killed_supernet_resumes_from_its_last_epoch(trained, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        if label.endswith("supernet"):
            seen.append(done)
            if done == 1 and len(seen) == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trained, tmp_path / "ofa", ["cpu-ort"], export=False, progress=stop_after_first, supernet_epochs=3)
    res = _run(trained, tmp_path / "ofa", ["cpu-ort"], export=False, progress=stop_after_first, supernet_epochs=3)
    assert seen == [1, 2, 3] and res["supernet"]["epochs"] == 3  # epoch 1 was not trained again
    # the accuracy read off the supernet is a real evaluation: above chance (10 classes) on digits
    assert res["devices"][0]["supernet_acc"] > 0.2
    # the accuracy table belongs to the supernet: a later search reuses it
    assert (tmp_path / "ofa" / "accuracy_table.json").exists()
    with pytest.raises(HwnasError, match="trained with"):  # a supernet trained otherwise is not reused
        _run(trained, tmp_path / "ofa", ["cpu-ort"], export=False, supernet_epochs=3,
             strategy_params={**FAST, "lr": 0.01})


@pytest.mark.parametrize("kw,words", [
    ({"target_ms": [1.0, 2.0]}, "one --target-ms for all devices or one per device"),
    ({"strategy_params": {"nope": 1}}, "for once-for-all has no parameter .nope.; its parameters: batch_size"),
    ({"strategy_params": {"epochs": 3}}, "for once-for-all has no parameter .epochs."),
    ({"strategy_params": {"strategy": 3}}, "once-for-all parameter strategy takes a name, got 3"),
    ({"strategy_params": {"evaluations": 0}}, "evaluations takes an integer >= 1"),
    ({"supernet_epochs": 0}, "supernet_epochs"),
    ({"strategy_params": {"accuracy_samples": 3}}, "at least 8"),
    ({"epochs": -1}, "epochs"),
])
def test_bad_input_is_one_error(trained, tmp_path, kw, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, tmp_path / "ofa", ["cpu-ort"], export=False, **kw)


def test_same_device_twice_is_refused(trained, tmp_path) -> None:
    with pytest.raises(HwnasError, match="different devices"):
        _run(trained, tmp_path / "ofa", ["cpu-ort", "cpu-ort"], export=False)


@pytest.mark.slow
def test_cli_once_for_all_for_two_devices(trained, tmp_path, capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "once-for-all", "--space", "proxyless", "--device", "cpu-ort", "--device",
               "cpu-ort-mt", "--space-arg", "resolution=32", "--space-arg", "width=0.35", "--target-ms", "1000",
               "--target-ms", "900", "--supernet-epochs", "1", "--epochs", "0", "--strategy-param", "evaluations=6",
               "--strategy-param", "accuracy_samples=10", "--strategy-param", "predicted_evaluations=30",
               "--strategy-param", "population_size=3", "--predictor", str(trained / "predictor"),
               "--allow-fingerprint-mismatch", "--out", str(tmp_path / "ofa"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["device"] for r in out["devices"]] == ["cpu-ort", "cpu-ort-mt"]
    assert all(r["measured_ms"] > 0 and (tmp_path / "ofa" / r["device"] / "model.onnx").exists() for r in out["devices"])
    assert [r["target_ms"] for r in out["devices"]] == [1000, 900]
    for r in out["devices"]:  # the supernet's own weights, not trained again: its accuracy, up to batch norm
        card = json.loads((tmp_path / "ofa" / r["device"] / "model_card.json").read_text())
        assert card["weights"] == "given" and card["trained_epochs"] == 0 and r["device_s"] > 0
        assert abs(card["accuracy"] - r["supernet_acc"]) < 0.15, (card["accuracy"], r["supernet_acc"])


@pytest.mark.parametrize("sharing", ["all", "none"])
def test_a_subnetwork_alone_computes_what_the_supernet_computes_on_its_path(sharing) -> None:
    import numpy as np
    import torch

    from hwnas.search.proxyless import Supernet, subnet_state
    from hwnas.search.spaces import ProxylessSpace

    space = ProxylessSpace(16, 0.35, 10)
    net = Supernet(space, 0, sharing)
    g = torch.Generator().manual_seed(0)
    for m in net.modules():  # batch norms away from their initial identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1, generator=g)
            m.running_var.uniform_(0.5, 2, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    net.eval()
    for arch in [space.sample(rng) for _ in range(4)]:
        net.set_mode("fixed", arch=arch)
        alone = space.build_module(arch, classes=10).eval()
        alone.load_state_dict(subnet_state(net, arch))
        with torch.no_grad():
            want, got = net(x), alone(x)
        assert want.abs().max() > 0.01 and len(alone.blocks) < len(net.blocks) + 1
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args,words", [
    (["--device", "cpu-ort", "--device", "cpu-ort-mt", "--strategy", "evolution"], "takes one device"),
    (["--target-ms", "1", "--target-ms", "2", "--strategy", "evolution"], "takes one target"),
    (["--strategy", "once-for-all", "--space", "nb201"], "once-for-all trains the proxyless space"),
    (["--strategy", "once-for-all", "--space", "proxyless", "--device", "nope"], "Known devices|known devices"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, args, words) -> None:
    import re

    from hwnas.cli import main

    rc = main(["search", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(words, err) and "Traceback" not in err, err


def _small_supernet(accuracy_samples):
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.ofa import OFAConfig, OnceForAll
    from hwnas.search.spaces import ProxylessSpace

    space = ProxylessSpace(16, 0.25, 10)
    cfg = OFAConfig(epochs=1, bn_batches=1, accuracy_samples=accuracy_samples, predicted_evaluations=30, verify_top=3,
                    evaluations=10, population_size=4)
    return space, OnceForAll(space, load_dataset("digits", 16, 0), cfg)


def test_the_accuracy_table_is_measured_once_and_continues_after_a_kill(tmp_path) -> None:
    space, ofa = _small_supernet(12)
    ofa.train_epoch()
    path = tmp_path / "accuracy_table.json"
    calls = []
    real = ofa.accuracy
    ofa.accuracy = lambda a: (calls.append(a), real(a))[1]

    def kill_at_11(i, n):
        if i == 11 and len(calls) == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ofa.accuracy_table(path, kill_at_11)
    assert len(calls) == 11  # the first 10 were saved
    table = ofa.accuracy_table(path)
    assert len(calls) == 13 and len(table) == 12  # only the two not saved were measured again
    assert all(0 <= acc <= 1 for _, acc in table)
    ofa.accuracy_table(path)
    assert len(calls) == 13  # measured once
    ofa.train_epoch()  # another state of the supernet: its table is measured again
    ofa.accuracy_table(path)
    assert len(calls) == 25


def test_a_predicted_search_scores_its_best_on_the_supernet() -> None:
    space, ofa = _small_supernet(16)
    ofa.train_epoch()
    table = ofa.accuracy_table()
    predict = ofa.accuracy_predictor(table)
    errors = [abs(predict(a) - acc) for a, acc in table]
    assert np.mean(errors) < np.std([acc for _, acc in table]) + 1e-9  # it learned its table
    real = []
    score = ofa.accuracy
    ofa.accuracy = lambda a: (real.append(a), score(a))[1]
    res = ofa.search("cpu-ort", space, lambda a: float(space.flops(a)), float(np.median([space.flops(a) for a, _ in table])),
                     predicted_accuracy=predict)
    assert len(real) == 3 and res.evaluations == 30  # only the verified top 3 ran on the supernet
    assert res.arch in {space.to_string(a) for a in real} and res.supernet_acc == score(space.from_string(res.arch))


@pytest.mark.slow
def test_a_network_measured_over_its_target_is_searched_again(trained, tmp_path) -> None:
    """A predictor that says a hundredth of its own figure (every network is within either target to
    it, so both runs choose the same first network): with the target well under what that network
    measures, it is measured over it, and the search runs again within the target scaled by
    predicted / measured."""
    from hwnas.jobs import load_predictor

    pred = load_predictor("cpu-ort", path=trained / "predictor", allow_fingerprint_mismatch=True)
    honest = pred.predict_architecture
    pred.predict_architecture = lambda cfgs: 0.01 * honest(cfgs)
    first = _run(trained, tmp_path / "a", ["cpu-ort"], predictors=[pred])["devices"][0]
    target = 0.5 * first["measured_ms"]  # well under it: measurements here vary by tens of percent
    said: list[str] = []
    row = _run(trained, tmp_path / "b", ["cpu-ort"], predictors=[pred], target_ms=[target],
               message=said.append)["devices"][0]
    a = row["attempts"]
    assert a[0]["arch"] == first["arch"] and a[0]["measured_ms"] > target
    again = [m for m in said if "searching again within" in m]
    limit = a[0]["latency_ms"] * target / a[0]["measured_ms"]
    assert again and f"{limit:.4g} ms" in again[0], said
    if len(a) > 1:  # searched again: within the scaled limit
        assert a[1]["search_limit_ms"] == pytest.approx(limit) and a[1]["latency_ms"] <= limit
    else:  # nothing this predictor puts within it: the network measured over is kept and said so
        assert any("nothing is predicted within" in m for m in said) and not row["meets_budget_measured"]
