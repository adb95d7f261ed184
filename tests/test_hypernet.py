"""The SMASH-style hypernetwork: weights generated from the encoding (they differ between
architectures and depend on the generator), real training on a few hundred digits, the search
journaled and resumed, export measured on ONNX Runtime, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.jobs import hypernetwork_search
from hwnas.search.hypernet import HyperConfig, HyperNet
from hwnas.search.spaces import ProxylessSpace

SMALL = {"resolution": 32, "width": 0.35}
FAST = {"candidates": 4, "top_k": 2}


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits300.npz"
    np.savez(path, x=d.images[:300], y=d.target[:300])
    return path


def test_generated_weights_depend_on_the_architecture() -> None:
    space = ProxylessSpace(16, 0.25, 10)
    net = HyperNet(space, rank=4, hidden=16)
    with torch.no_grad():
        net.generator[2].weight.normal_()  # a generator that has learned something
    rng = np.random.default_rng(0)
    a, b = space.sample(rng), space.sample(rng)
    za, zb = (net.generator(torch.as_tensor(space.encode(x), dtype=torch.float32)) for x in (a, b))
    assert not torch.allclose(za, zb)
    x = torch.randn(4, 3, 16, 16)
    assert net(x, a).shape == (4, 10) and not torch.allclose(net(x, a), net(x, b))
    with pytest.raises(HwnasError, match="rank"):
        HyperConfig(rank=0)


def _run(trained, few_digits, out, **kw):
    opts = dict(target_ms=1e3, space_args=SMALL, predictor=trained / "predictor", supernet_epochs=2, epochs=1,
                strategy_params=FAST, dataset=str(few_digits), allow_fingerprint_mismatch=True, message=lambda m: None)
    opts.update(kw)
    return hypernetwork_search("cpu-ort", out, **opts)


@pytest.mark.slow
def test_hypernetwork_search_exports_and_resumes(trained, few_digits, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append((label, done))
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trained, few_digits, tmp_path / "h", progress=stop_after_first, export=False)
    res = _run(trained, few_digits, tmp_path / "h", progress=stop_after_first)
    hyper = [d for label, d in seen if label == "hypernetwork"]
    assert hyper == [1, 2] and res["hypernet_epochs"] == 2  # epoch 1 was not trained again
    assert len(res["trained"]) == 2 and res["trained"][0]["generated_acc"] >= res["trained"][1]["generated_acc"]
    assert res["measured_ms"] > 0 and (tmp_path / "h" / "model.onnx").exists()
    assert len(json.loads((tmp_path / "h" / "trained.json").read_text())) == 2
    with pytest.raises(HwnasError, match="other settings"):
        _run(trained, few_digits, tmp_path / "h", export=False, strategy_params={**FAST, "rank": 4})


@pytest.mark.parametrize("kw,words", [
    ({"strategy_params": {"nope": 1}}, "for hypernetwork has no parameter .nope.; its parameters: candidates, top_k"),
    ({"strategy_params": {"candidates": 0}}, "hypernetwork parameter candidates takes an integer >= 1"),
    ({"strategy_params": {"top_k": 0}}, "top_k"),
    ({"target_ms": 1e-9}, "raise the target"),
])
def test_bad_input_is_one_error(trained, few_digits, tmp_path, kw, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, few_digits, tmp_path / "h", export=False, supernet_epochs=1, **kw)


def test_cli_hypernetwork_needs_the_proxyless_space(capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "hypernetwork", "--space", "cell"])
    err = capsys.readouterr().err
    assert rc == 2 and "use --space proxyless" in err and "Traceback" not in err, err
