"""ENAS (macro on the proxyless chain, micro on the cell space): controller and shared weights trained
for real on a few hundred digits, the controller learns from the reward, a cell path runs only its
own edges, per-epoch resume, export measured on ONNX Runtime, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.jobs import enas_search

SMALL = {"resolution": 32, "width": 0.35}
FAST = {"controller_steps": 4, "controller_batch": 4, "final_samples": 8}
TINY_CELL = {"blocks": 2, "channels": 4, "layers": 3, "resolution": 16}


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits300.npz"
    np.savez(path, x=d.images[:300], y=d.target[:300])
    return path


def _run(trained, few_digits, out, **kw):
    opts = dict(target_ms=1e3, space_args=SMALL, predictor=trained / "predictor", supernet_epochs=2, epochs=1,
                strategy_params=FAST, dataset=str(few_digits), allow_fingerprint_mismatch=True, message=lambda m: None)
    opts.update(kw)
    return enas_search("cpu-ort", out, **opts)


def test_the_controller_moves_towards_rewarded_paths(few_digits) -> None:
    """With the reward of a path made its count of 7x7 layers, REINFORCE raises that count."""
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.enas import EnasConfig, EnasSearch
    from hwnas.search.spaces import ProxylessSpace

    space = ProxylessSpace(16, 0.25, 10)
    s = EnasSearch(space, load_dataset(str(few_digits), 16, 0), EnasConfig(controller_steps=30, controller_batch=8,
                   controller_lr=0.05), lambda a: 1.0, 2.0)
    s._batch_accuracy = lambda a, x, y: space.to_string(a).count("k7") / 21  # noqa: SLF001 - the reward under test
    before = np.mean([space.to_string(a).count("k7") for a in s._sample(200)])
    s.train_controller()
    after = np.mean([space.to_string(a).count("k7") for a in s._sample(200)])
    assert after > before + 1.0, (before, after)


@pytest.mark.slow
def test_enas_exports_within_its_target_and_resumes_per_epoch(trained, few_digits, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append(done)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trained, few_digits, tmp_path / "e", progress=stop_after_first, export=False)
    res = _run(trained, few_digits, tmp_path / "e", progress=stop_after_first)
    assert seen == [1, 2] and res["epochs"] == 2 and len(res["history"]) == 2  # epoch 1 not trained again
    assert res["predicted_ms"] <= 1e3 and 0 <= res["shared_weights_acc"] <= 1 and res["measured_ms"] > 0
    spec = json.loads((tmp_path / "e" / "arch.json").read_text())
    assert spec["arch"] == res["arch"] and (tmp_path / "e" / "model.onnx").exists()
    with pytest.raises(HwnasError, match="other settings"):
        _run(trained, few_digits, tmp_path / "e", export=False, strategy_params={**FAST, "entropy": 0.1})


@pytest.mark.parametrize("kw,words", [
    ({"strategy_params": {"nope": 1}}, "its parameters: batch_size"),
    ({"strategy_params": {"controller_steps": 0}}, "controller_steps"),
    ({"target_ms": -1}, "target_ms"),
    ({"supernet_epochs": 0}, "supernet_epochs"),
])
def test_bad_input_is_one_error(trained, few_digits, tmp_path, kw, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, few_digits, tmp_path / "e", export=False, **kw)


@pytest.mark.slow
def test_an_unreachable_target_is_one_error(trained, few_digits, tmp_path) -> None:
    with pytest.raises(HwnasError, match="predicted within"):
        _run(trained, few_digits, tmp_path / "e", export=False, target_ms=1e-6, supernet_epochs=1)


def test_cli_enas_needs_the_proxyless_or_the_cell_space(capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "enas", "--space", "mnasnet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--space proxyless" in err and "--space cell" in err and "Traceback" not in err, err


def _cell_supernet(few_digits, seed=0):
    from hwnas.search._evaluators import load_dataset
    from hwnas.search.cell_supernet import CellSupernet
    from hwnas.search.ofa import OFAConfig
    from hwnas.search.spaces import CellSpace

    space = CellSpace(**TINY_CELL)
    return space, CellSupernet(space, load_dataset(str(few_digits), 16, 0), OFAConfig(epochs=1, seed=seed))


def test_a_cell_path_runs_only_its_own_edges(few_digits) -> None:
    """Changing the weights of an op the path does not use leaves its output alone; changing one it
    uses changes it; a training step on a path moves only that path's edges."""
    import torch

    space, sup = _cell_supernet(few_digits)
    arch = space.from_string("normal=sep_conv_3x3~0+dil_conv_3x3~1|max_pool_3x3~2+sep_conv_5x5~0;"
                             "reduce=sep_conv_3x3~1+skip_connect~0|avg_pool_3x3~2+dil_conv_5x5~1")
    net, x = sup.net, sup.train_data[0][:8]
    net.eval()
    net.set_mode("fixed", arch=arch)
    before = net(x)
    cell = net.cells[0]  # a normal cell: edges (node 0: inputs 0, 1), (node 1: inputs 0, 1, 2)
    unused, used = cell.edges[1][1][1].weight, cell.edges[1][2][1].weight  # sep 5x5 / dil 3x3 on input 1 of node 0
    with torch.no_grad():
        unused.add_(1.0)
    assert torch.equal(net(x), before)
    with torch.no_grad():
        used.add_(1.0)
    assert not torch.allclose(net(x), before)
    net.train()
    snapshot = {n: p.detach().clone() for n, p in net.named_parameters()}
    loss = torch.nn.functional.cross_entropy(net(x), sup.train_data[1][:8])
    sup.opt.zero_grad()
    loss.backward()
    sup.opt.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(p, snapshot[n])}
    assert "cells.0.edges.1.2.1.weight" in moved and "cells.0.edges.1.1.1.weight" not in moved


def test_single_path_training_draws_only_allowed_ops(few_digits) -> None:
    import torch

    from hwnas.search._evaluators import load_dataset
    from hwnas.search.cell_supernet import CellSupernet
    from hwnas.search.ofa import OFAConfig
    from hwnas.search.spaces import CELL_OPS, CellSpace

    full = CellSpace(**TINY_CELL)
    two = (CELL_OPS.index("skip_connect"), CELL_OPS.index("max_pool_3x3"))
    allowed = [two if "_op" in d.name else tuple(range(len(d.options))) for d in full.decisions]
    space = CellSpace(**TINY_CELL, allowed=allowed)
    sup = CellSupernet(space, load_dataset(str(few_digits), 16, 0), OFAConfig(epochs=1))
    g = torch.Generator().manual_seed(0)
    ops = set()
    for _ in range(30):
        sup.net.set_mode("single", g)
        ops |= {o for kind in ("normal", "reduce") for _, o1, _, o2 in sup.net.path[kind] for o in (o1, o2)}
    assert ops == set(two)
    loss = sup.train_epoch()
    assert np.isfinite(loss) and sup.epoch == 1


@pytest.mark.slow
def test_enas_micro_search_on_the_cell_space_exports_and_resumes(trained, few_digits, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append(done)
        if len(seen) == 1:
            raise KeyboardInterrupt

    kw = dict(space="cell", space_args=TINY_CELL, target_ms=1e3)
    with pytest.raises(KeyboardInterrupt):
        _run(trained, few_digits, tmp_path / "e", progress=stop_after_first, export=False, **kw)
    res = _run(trained, few_digits, tmp_path / "e", progress=stop_after_first, **kw)
    assert seen == [1, 2] and res["epochs"] == 2
    spec = json.loads((tmp_path / "e" / "arch.json").read_text())
    assert spec["space"] == "cell" and spec["resolution"] == 16 and spec["arch"].startswith("normal=")
    assert res["measured_ms"] > 0 and (tmp_path / "e" / "model.onnx").exists()


@pytest.mark.slow
def test_cli_enas(trained, few_digits, tmp_path, capsys) -> None:
    from hwnas.cli import main

    args = ["search", "--strategy", "enas", "--space", "proxyless", "--space-arg", "resolution=32", "--space-arg",
            "width=0.35", "--supernet-epochs", "1", "--epochs", "1", "--target-ms", "1000", "--dataset",
            str(few_digits), "--predictor", str(trained / "predictor"), "--allow-fingerprint-mismatch",
            "--out", str(tmp_path / "e")]
    for k, v in FAST.items():
        args += ["--strategy-param", f"{k}={v}"]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0 and "best path:" in out and "measured" in out and (tmp_path / "e" / "model.onnx").exists(), out
