"""PNAS on the cell space: expansions, the surrogate's features, a real run on a few hundred
digits (resumed from its journal without training again), export measured, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.jobs import pnas_search
from hwnas.search.pnas import Pnas, PnasConfig, cell_features
from hwnas.search.spaces import CELL_OPS

TINY = {"blocks": 2, "channels": 4, "layers": 3, "resolution": 16}


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits200.npz"
    np.savez(path, x=d.images[:200], y=d.target[:200])
    return path


def _fake_pnas(ops=CELL_OPS, target=1.0, latency=lambda s, archs: [0.5] * len(archs)):
    others = {k: v for k, v in TINY.items() if k != "blocks"}
    return Pnas(others, 2, tuple(ops), PnasConfig(beam=2), lambda s, a: 0.5, latency, target)


def test_expansions_are_every_distinct_next_block() -> None:
    p = _fake_pnas(ops=("sep_conv_3x3", "max_pool_3x3"))
    cell = ((0, "sep_conv_3x3", 1, "max_pool_3x3"),)
    exp = p.expansions(cell)
    # inputs among 3 states, unordered pairs with their ops: 3 same-input pairs x 3 op multisets + 3 x 4
    assert len(exp) == len(set(exp)) == 3 * 3 + 3 * 4
    assert all(e[0] == cell[0] and len(e) == 2 for e in exp)
    f = cell_features(exp[0], 2)
    assert f.shape == (2 * 2 * (3 + len(CELL_OPS)),) and f.sum() == 8  # 4 (input, op) pairs, one-hot each


def test_a_target_nothing_meets_is_one_error() -> None:
    with pytest.raises(HwnasError, match="raise the target"):
        _fake_pnas(latency=lambda s, archs: [2.0] * len(archs)).run()


@pytest.mark.slow
def test_pnas_grows_cells_exports_and_resumes(trained, few_digits, tmp_path) -> None:
    opts = dict(target_ms=1e3, space_args=TINY, predictor=trained / "predictor", strategy_params={"beam": 2},
                epochs=1, dataset=str(few_digits), allow_fingerprint_mismatch=True, message=lambda m: None)
    trained_now = []

    def stop_after_three(label, done, total):
        trained_now.append(label)
        if len(trained_now) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pnas_search("cpu-ort", tmp_path / "p", export=False, progress=stop_after_three, **opts)
    kept = json.loads((tmp_path / "p" / "pnas.json").read_text())
    assert len(kept) == 3
    res = pnas_search("cpu-ort", tmp_path / "p", **opts)
    assert res["trained_cells"] == 4 and len(res["steps"]) == 1  # two of one block, two of two; none twice
    step = res["steps"][0]
    assert step["expansions"] > 2 and len(step["trained_accuracy"]) == 2
    assert res["predicted_ms"] <= 1e3 and res["measured_ms"] > 0 and (tmp_path / "p" / "model.onnx").exists()
    assert json.loads((tmp_path / "p" / "arch.json").read_text())["arch"] == res["arch"]
    whole = pnas_search("cpu-ort", tmp_path / "w", export=False, **opts)  # the same run, never interrupted
    assert whole["arch"] == res["arch"] and whole["steps"] == res["steps"]
    assert json.loads((tmp_path / "w" / "pnas.json").read_text()).keys() == json.loads(
        (tmp_path / "p" / "pnas.json").read_text()).keys()


@pytest.mark.parametrize("kw,words", [
    ({"strategy_params": {"beam": 0}}, "beam"),
    ({"strategy_params": {"nope": 1}}, "for pnas has no parameter .nope.; its parameters: beam, ensemble, hidden"),
    ({"target_ms": 0}, "target_ms"),
])
def test_bad_input_is_one_error(trained, tmp_path, kw, words) -> None:
    opts = dict(target_ms=1e3, space_args=TINY, predictor=trained / "predictor", epochs=1,
                allow_fingerprint_mismatch=True, message=lambda m: None, export=False)
    with pytest.raises(HwnasError, match=words):
        pnas_search("cpu-ort", tmp_path / "p", **{**opts, **kw})


def test_cli_pnas_needs_the_cell_space(capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "pnas", "--space", "nb201"])
    err = capsys.readouterr().err
    assert rc == 2 and "use --space cell" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_cli_pnas(trained, few_digits, tmp_path, capsys) -> None:
    from hwnas.cli import main

    args = ["search", "--strategy", "pnas", "--space", "cell", "--strategy-param", "beam=1", "--epochs", "1",
            "--target-ms", "1000", "--dataset", str(few_digits), "--predictor", str(trained / "predictor"),
            "--allow-fingerprint-mismatch", "--out", str(tmp_path / "p")]
    for k, v in TINY.items():
        args += ["--space-arg", f"{k}={v}"]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0 and "best cell:" in out and "measured" in out and (tmp_path / "p" / "model.onnx").exists(), out
