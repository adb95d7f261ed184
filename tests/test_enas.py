"""ENAS (macro, proxyless chain): controller and shared weights trained for real on a few hundred
digits, the controller learns from the reward, per-epoch resume, export measured on ONNX Runtime,
bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.jobs import enas_search

SMALL = {"resolution": 32, "width": 0.35}
FAST = {"controller_steps": 4, "controller_batch": 4, "final_samples": 8}


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


def test_cli_enas_needs_the_proxyless_space(capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "enas", "--space", "cell"])
    err = capsys.readouterr().err
    assert rc == 2 and "use --space proxyless" in err and "Traceback" not in err, err


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
