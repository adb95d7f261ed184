"""Few-shot adaptation: a new device's predictor from a source predictor and a few real whole-model
measurements (real ONNX Runtime, a real store), and the bad cases of `hwnas predictor adapt`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import hwnas
from hwnas import zoo
from hwnas.cli import main
from hwnas.jobs import Candidate, load_predictor
from hwnas.latency_models import AdaptedPredictor, TransferLatencyModel
from hwnas.latency_models._adapt import loo_errors, network_features, spread_order
from hwnas.profilers import OpConfig, ProfileStore
from hwnas.search.spaces import create_space

pytestmark = pytest.mark.slow


def _candidates() -> list[Candidate]:
    out = [Candidate(m.name, m.family, m.onnx) for m in (zoo.random_model(s, resolution=32, classes=10)
                                                          for s in range(4))]
    out += [Candidate(f"{f}-{w}", f, zoo.create(f, w, 32, 10).onnx) for f in ("mobilenetv2", "resnet")
            for w in (0.35, 0.75)]
    return out


@pytest.fixture(scope="module")
def adapted(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt")
    said: list[str] = []
    pred = hwnas.adapt_predictor("cpu-torch", [f"cpu-ort={trained / 'predictor'}"], samples=5, batch=2,
                                 candidates=_candidates(), store=d / "new.sqlite", out=d / "pred",
                                 max_time_per_op=0.03, model_passes=1, drift_check=False, message=said.append)
    return d, pred, said


def test_adapted_predictor_is_saved_loaded_and_predicts(adapted) -> None:
    d, pred, said = adapted
    assert (d / "pred" / "adapted.json").is_file() and len(pred.y) == 5
    assert any("leave-one-out MAPE" in s for s in said)  # reported after the batches with >= 3 networks
    again = load_predictor("cpu-torch", path=d / "pred")
    assert isinstance(again, AdaptedPredictor) and again.source_names == ["cpu-ort"]
    m = zoo.create("squeezenet", 0.5, 32, 10).onnx
    assert again.predict_onnx(m).latency_ms == pytest.approx(pred.predict_onnx(m).latency_ms)
    space = create_space("proxyless", resolution=32, width=0.35, classes=10)
    arch = space.sample(np.random.default_rng(0))
    assert again.predict_architecture(space.op_configs(arch)) > 0
    with pytest.raises(hwnas.HwnasError, match="no per-layer latency table"):
        again.layer_table(space.layer_options())
    assert again.views == pred.views == ("multiplicative", "parts") and again.G.shape == (5, 5)
    # the same arch through both paths: op configurations and its ONNX graph
    onnx_ms = again.predict_onnx(space.to_onnx(arch)).latency_ms
    assert onnx_ms == pytest.approx(again.predict_architecture(space.op_configs(arch)), rel=0.05)


def test_an_adapted_predictor_of_format_1_still_loads(adapted, tmp_path) -> None:
    """Saved before the parts view: no G, the multiplicative and additive views."""
    import json
    import shutil

    d, pred, _ = adapted
    old = tmp_path / "old"
    shutil.copytree(d / "pred", old)
    meta = json.loads((old / "adapted.json").read_text())
    meta["format"] = 1
    del meta["views"], meta["G"]
    (old / "adapted.json").write_text(json.dumps(meta))
    again = AdaptedPredictor.load(old)
    assert again.views == ("multiplicative", "additive") and again.G is None
    assert again.predict_onnx(zoo.create("squeezenet", 0.5, 32, 10).onnx).latency_ms > 0


@pytest.mark.parametrize("damage, says", [
    (lambda m: m.update(G=[row + [0.0] for row in m["G"]]), "G has (5, 6) where (5, 5) was expected"),
    (lambda m: m.update(S=[row + [1.0] for row in m["S"]]), "S has (5, 2) where (5, 1) was expected"),
    (lambda m: m.update(X=m["X"][:4]), "X has (4,) where (5,) was expected"),
    (lambda m: m["measured"][0].pop("latency_ms"), "damaged (KeyError"),
    (lambda m: m["measured"][0].update(latency_ms=-1.0), "not positive and finite"),
    (lambda m: m.update(views=["ratio"]), "unknown view 'ratio'"),
    (lambda m: m.update(G=None), "the parts view without G"),
    (lambda m: m.update(S="abc"), "damaged (ValueError"),
    (lambda m: m.update(fingerprint="abc"), "a fingerprint that is not a table"),
    (lambda m: m.update(X=[1, 2, 3, 4, 5]), "X is not a table"),
])
def test_a_damaged_adapted_predictor_is_one_line_and_left_as_it_was(adapted, tmp_path, capsys, damage, says) -> None:
    import json
    import shutil

    import onnx

    d, _, _ = adapted
    bad = tmp_path / "bad"
    shutil.copytree(d / "pred", bad)
    meta = json.loads((bad / "adapted.json").read_text())
    damage(meta)
    (bad / "adapted.json").write_text(json.dumps(meta))
    before = (bad / "adapted.json").read_bytes()
    m = tmp_path / "m.onnx"
    onnx.save(zoo.create("mobilenetv2", 0.5, 32, 10).onnx, str(m))
    capsys.readouterr()
    assert main(["predict", str(m), "--device", "cpu-torch", "--predictor", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "adapt again" in err and len(err.splitlines()) == 1, err
    assert (bad / "adapted.json").read_bytes() == before


def test_adapt_refuses_unknown_views(trained, tmp_path) -> None:
    with pytest.raises(hwnas.HwnasError, match="views takes one or more of multiplicative, additive, parts; got ratio"):
        hwnas.adapt_predictor("cpu-torch", [f"cpu-ort={trained / 'predictor'}"], views=("ratio",),
                              candidates=_candidates(), store=tmp_path / "s.sqlite", out=tmp_path / "p")
    assert not (tmp_path / "p").exists() and not (tmp_path / "s.sqlite").exists()


def test_adaptation_resumes_from_its_store(adapted, trained) -> None:
    d, pred, _ = adapted
    with ProfileStore(d / "new.sqlite") as st:
        before = len(st.model_measurements())
    hwnas.adapt_predictor("cpu-torch", [f"cpu-ort={trained / 'predictor'}"], samples=5, batch=5,
                          candidates=_candidates(), store=d / "new.sqlite", out=d / "pred2", max_time_per_op=0.03,
                          model_passes=1, drift_check=False)
    with ProfileStore(d / "new.sqlite") as st:
        assert len(st.model_measurements()) == before  # nothing measured again
    assert np.allclose(load_predictor("cpu-torch", path=d / "pred2").y, pred.y)


def test_search_and_predict_use_an_adapted_predictor(adapted, tmp_path, capsys) -> None:
    d, _, _ = adapted
    m = tmp_path / "m.onnx"
    import onnx

    onnx.save(zoo.create("mobilenetv2", 0.5, 32, 10).onnx, str(m))
    assert main(["predict", str(m), "--device", "cpu-torch", "--predictor", str(d / "pred"), "--json"]) == 0
    assert '"latency_ms"' in capsys.readouterr().out
    assert main(["predictor", "show", str(d / "pred")]) == 0
    assert '"kind": "adapted"' in capsys.readouterr().out


def test_spread_order_prefixes_cover_the_range_and_families() -> None:
    x = np.log(np.array([1, 1.1, 1.2, 5, 5.5, 20, 21, 22.0]))
    fam = ["a", "a", "b", "b", "c", "c", "a", "b"]
    order = spread_order(x, fam)
    assert sorted(order) == list(range(8))
    first3 = order[:3]
    assert {int(np.argmin(x)), int(np.argmax(x))} & set(first3)  # an end of the range early
    assert len({fam[i] for i in first3}) == 3


def test_loo_and_features() -> None:
    rng = np.random.default_rng(0)
    S = rng.uniform(1, 10, (12, 2))
    X = rng.normal(size=(12, 3))
    y = 3 * S[:, 0]
    G = np.column_stack([S[:, 0] * 0.6, S[:, 0] * 0.4, np.ones(12)])
    assert np.abs(loo_errors(X, S, y, views=("multiplicative", "additive"))).max() < 0.05
    assert np.abs(loo_errors(X, S, y, G)).max() < 0.05
    with pytest.raises(hwnas.HwnasError, match="at least 3"):
        loo_errors(X[:2], S[:2], y[:2], G[:2])
    with pytest.raises(ValueError, match="needs the latency's additive parts"):
        loo_errors(X, S, y)
    f = network_features([OpConfig.parse("conv_i16_o32_r14_k3_s1_arelu"), OpConfig.parse("dwconv_i32_r14_k3_s1_arelu")])
    assert f.shape == (7,) and f[3] == 2 and f[4] == 1 and f[5] == 1
    assert isinstance(TransferLatencyModel(), TransferLatencyModel)


def test_parts_view_finds_a_ratio_per_kind_of_work() -> None:
    """Dense work 2x faster, depthwise 1.2x slower, 0.05 ms per run: the parts view recovers it
    from 8 networks where one ratio for the whole network cannot."""
    rng = np.random.default_rng(1)
    dense, dw = rng.uniform(0.5, 5, 40), rng.uniform(0.1, 3, 40)
    S = (dense + dw)[:, None]
    G = np.column_stack([dense, dw, np.ones(40)])
    y = dense / 2 + 1.2 * dw + 0.05
    X = np.zeros((40, 1))
    parts = TransferLatencyModel(views=("parts",)).fit(X[:8], S[:8], y[:8], G[:8])
    assert np.allclose(parts.parts_, [0.5, 1.2, 0.05], rtol=1e-6)
    assert np.abs(parts.predict(X[8:], S[8:], G[8:]) / y[8:] - 1).max() < 1e-6
    whole = TransferLatencyModel(views=("multiplicative",)).fit(X[:8], S[:8], y[:8])
    assert np.abs(whole.predict(X[8:], S[8:]) / y[8:] - 1).max() > 0.1
    with pytest.raises(ValueError, match="views takes one or more of multiplicative, additive, parts"):
        TransferLatencyModel(views=("ratio",)).fit(X[:8], S[:8], y[:8], G[:8])


def _sha(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


@pytest.mark.parametrize("args,words", [
    (["--from", "cpu-ort", "--samples", "2"], "--samples takes a count >= 3, got 2"),
    (["--from", "cpu-ort-mt=/nonexistent/pred"], "no predictor at /nonexistent/pred"),
    (["--from", "cpu-torch"], "cannot be its own source"),
    (["--from", "nosuch"], "unknown device 'nosuch'"),
])
def test_bad_adapt_input_is_one_line_and_exit_2(args, words, tmp_path, capsys) -> None:
    store = tmp_path / "s.sqlite"
    rc = main(["predictor", "adapt", "--device", "cpu-torch", "--db", str(store), "--out", str(tmp_path / "p"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "p").exists()


def test_a_device_that_cannot_run_is_refused(trained, capsys) -> None:
    rc = main(["predictor", "adapt", "--device", "cuda-torch", "--from", f"cpu-ort={trained / 'predictor'}"])
    err = capsys.readouterr().err
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert rc == 2 and "cannot run here" in err


def test_mixed_random_networks_cover_the_block_kinds_a_family_alone_lacks() -> None:
    import collections

    import onnxruntime as ort
    import torch

    from hwnas import zoo
    from hwnas.latency_models._predictor import kernel_configs

    kinds: collections.Counter = collections.Counter()
    for seed in range(6):
        m = zoo.random_mixed_model(seed, resolution=64, classes=10)
        assert m.family == "mixed" and m.name == f"mixed-{seed}-r64"
        kinds.update({n.op_type for n in m.onnx.graph.node})
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            want = m.module(x).numpy()
        sess = ort.InferenceSession(m.onnx.SerializeToString(), providers=["CPUExecutionProvider"])
        assert np.allclose(sess.run(None, {"input": x.numpy()})[0], want, atol=1e-4)
        assert kernel_configs(m.onnx), "the predictors read its kernels"
    assert {"Concat", "Add", "MaxPool", "Mul"} <= set(kinds), kinds
    state = torch.random.get_rng_state()
    a, b = zoo.random_mixed_model(3), zoo.random_mixed_model(3)
    assert torch.equal(torch.random.get_rng_state(), state), "the global generator is untouched"
    assert a.name == b.name and a.onnx.SerializeToString() == b.onnx.SerializeToString()
    from hwnas.errors import HwnasError
    from hwnas.jobs import default_candidates

    with pytest.raises(HwnasError, match="mixed"):
        default_candidates(mixed=-1)
