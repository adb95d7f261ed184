from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwnas import zoo
from hwnas.devices import default_registry
from hwnas.errors import HwnasError
from hwnas.latency_models import (
    Calibration, FallbackWarning, LatencyPredictor, LightGBMLatencyModel, TransferLatencyModel, create_latency_model,
    decompose_onnx, encode_nb201, latency_model_names, op_features, sample_configs,
)
from hwnas.latency_models._features import _EXTRACTORS
from hwnas.profilers import Act, OpConfig, OpType, Profiler, ProfileStore
from hwnas.testing import FAST_POLICY, check_latency_model


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Real ONNX Runtime measurements of ~60 small op configurations."""
    configs = [c for c in sample_configs(400, seed=3) if c.macs() < 2_000_000][:60]
    configs += [OpConfig.parse(f"pwconv_i{c}_o{c}_r8_arelu") for c in (8, 16, 24, 32, 48, 64)]
    db = tmp_path_factory.mktemp("lm") / "p.sqlite"
    with ProfileStore(db) as store:
        p = Profiler(default_registry().get("cpu-ort"), FAST_POLICY, store)
        p.profile_ops(configs)
        from hwnas.latency_models import training_data

        cfgs, y = training_data(store, p.fingerprint)
    return cfgs, y, p.fingerprint


@pytest.mark.parametrize("name", latency_model_names())
def test_latency_models_pass_the_check_suite(name, measured, tmp_path) -> None:
    cfgs, y, fp = measured
    other = dataclasses.replace(fp, cpu_model="Some Other CPU")
    drop = {OpType.AVGPOOL}  # leave one op type out, to exercise the fallback
    keep = [i for i, c in enumerate(cfgs) if c.op not in drop]
    check_latency_model(create_latency_model(name), [cfgs[i] for i in keep], y[keep], fp, other, tmp_path)


def test_every_op_type_has_a_feature_extractor() -> None:
    assert set(_EXTRACTORS) == set(OpType)
    f = op_features(OpConfig.parse("mbconv_i24_o24_r56_k5_s1_e6_se0.25_arelu6_res"))
    assert f["mid"] == 144 and f["dw_macs"] == 56 * 56 * 144 * 25 and f["intensity"] > 0


def test_lightgbm_beats_flops_on_held_out_ops(measured) -> None:
    from hwnas.latency_models import out_of_fold

    cfgs, y, _ = measured
    err = {}
    for name in ("lightgbm", "flops"):
        p = out_of_fold(create_latency_model(name), cfgs, y)
        err[name] = float(np.median(np.abs(p - y) / y))
    assert err["lightgbm"] < err["flops"]


def test_unknown_model_name_lists_known() -> None:
    with pytest.raises(HwnasError, match="Known latency models: flops, lightgbm, lut"):
        create_latency_model("xgboost")


def _graph(nodes, inits, x_shape, y_name, y_shape):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, y_shape)],
                          initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_decompose_conv_bn_act_and_silu() -> None:
    rng = np.random.default_rng(0)
    inits = {"W": rng.standard_normal((16, 8, 3, 3)), "s": np.ones(16), "b": np.zeros(16), "m": np.zeros(16),
             "v": np.ones(16), "W2": rng.standard_normal((16, 1, 3, 3))}
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W2"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2], group=16, name="dw"),
        helper.make_node("Sigmoid", ["d"], ["sg"], name="sig"),
        helper.make_node("Mul", ["d", "sg"], ["y"], name="mul"),
    ]
    ks = decompose_onnx(_graph(nodes, inits, [1, 8, 16, 16], "y", [1, 16, 8, 8]))
    assert [str(k.config) for k in ks] == ["conv_i8_o16_r16_k3_s1_g1_arelu", "dwconv_i16_r16_k3_s2_asilu"]
    assert ks[0].nodes == ("conv", "bn", "relu") and ks[1].nodes == ("dw", "sig", "mul")


def test_decompose_se_linear_views_and_unknown() -> None:
    rng = np.random.default_rng(0)
    inits = {"W1": rng.standard_normal((4, 16, 1, 1)), "B1": np.zeros(4), "W2": rng.standard_normal((16, 4, 1, 1)),
             "B2": np.zeros(16), "Wf": rng.standard_normal((10, 16)), "Bf": np.zeros(10)}
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Conv", ["g", "W1", "B1"], ["c1"], name="se_reduce"),
        helper.make_node("Relu", ["c1"], ["r1"], name="se_relu"),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], name="se_expand"),
        helper.make_node("Sigmoid", ["c2"], ["s"], name="se_gate"),
        helper.make_node("Mul", ["x", "s"], ["se_out"], name="se_mul"),
        helper.make_node("GlobalAveragePool", ["se_out"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "Wf", "Bf"], ["logits"], transB=1, name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1, name="softmax"),
    ]
    ks = decompose_onnx(_graph(nodes, inits, [1, 16, 8, 8], "y", [1, 10]))
    assert [(k.kind, k.label) for k in ks] == [
        ("op", "se_i16_r8_se0.28125"), ("op", "gap_i16_r8"), ("view", "Flatten"), ("op", "linear_i16_o10"),
        ("unknown", "Softmax")]
    assert ks[0].config.se_channels == 4 and ks[-1].elements == 10


def test_fusion_rules_match_onnxruntime() -> None:
    """Our conv kernels are ORT's Conv kernels: ORT fuses each Conv with its activation."""
    from hwnas.profilers import Profiler

    m = zoo.create("mobilenetv2", 0.35, 64)
    ours = [k for k in decompose_onnx(m.onnx) if k.config is not None and k.config.op in (OpType.CONV, OpType.DWCONV, OpType.PWCONV)]
    prof = Profiler(default_registry().get("cpu-ort"), FAST_POLICY).profile_model(m.onnx, breakdown_runs=1)
    ort_convs = [n for n in prof.breakdown if n.op_type in ("Conv", "FusedConv")]
    assert len(ort_convs) == len(ours)
    assert not [n for n in prof.breakdown if n.op_type in ("Clip", "Relu")]  # all activations fused


@pytest.mark.parametrize("family", zoo.family_names())
def test_zoo_families_decompose_fully(family) -> None:
    m = zoo.create(family, 0.35, 64)
    ks = decompose_onnx(m.onnx)
    assert not [k for k in ks if k.kind == "unknown"]
    n_conv_nodes = sum(n.op_type == "Conv" for n in m.onnx.graph.node)
    se = sum(k.config.op is OpType.SE for k in ks if k.config)
    assert sum(k.config.op in (OpType.CONV, OpType.DWCONV, OpType.PWCONV) for k in ks if k.config) == n_conv_nodes - 2 * se


def test_predictor_whole_model_calibration_and_batch(measured, tmp_path) -> None:
    cfgs, y, fp = measured
    p = LatencyPredictor(LightGBMLatencyModel(n_estimators=50).fit(cfgs, y, fp))
    m = zoo.create("mobilenetv2", 0.35, 64)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        raw = p.predict_onnx(m.onnx)
    assert raw.latency_ms > 0 and not raw.calibrated and raw.n_units == len([k for k in raw.kernels if k.kind != "view"])
    # calibration fitted on synthetic "measurements" recovers a known scale + per-unit overhead
    from hwnas.latency_models._decompose import expand_kernels

    units = [list(cfgs[i:i + 6]) for i in range(0, 64, 4)]  # 16 models: the full 5-term fit
    kernels = [expand_kernels(u) for u in units]
    sums = [p.predict_configs(k).latency_ms.sum() for k in kernels]
    truth = [0.8 * s - 0.003 * len(k) + 0.02 for s, k in zip(sums, kernels)]
    cal = p.calibrate(units, truth)
    assert cal.calibration.fitted and cal.calibration.train_mape < 0.02
    np.testing.assert_allclose([cal.predict_architecture(u) for u in units], truth, rtol=0.03)
    # batch prediction == one by one, and the layer table agrees
    archs = [cfgs[:5], cfgs[5:9], cfgs[2:7]]
    np.testing.assert_allclose(cal.predict_architectures(archs), [cal.predict_architecture(a) for a in archs])
    table = cal.layer_table([[[cfgs[0]], [cfgs[1]]], [[cfgs[2]], []]])
    np.testing.assert_allclose(table.predict(np.array([[0, 0], [1, 1]])),
                               [cal.predict_architecture([cfgs[0], cfgs[2]]), cal.predict_architecture([cfgs[1]])])
    # a raw table recalibrated equals the table built from the calibrated predictor
    raw_table = p.layer_table([[[cfgs[0]], [cfgs[1]]], [[cfgs[2]], []]])
    idx = np.array([[0, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(raw_table.with_calibration(cal.calibration).predict(idx), table.predict(idx))
    assert not np.allclose(raw_table.predict(idx), table.predict(idx))
    cal.save(tmp_path / "pred")
    again = LatencyPredictor.load(tmp_path / "pred", fp)
    assert again.calibration == cal.calibration
    with pytest.raises(HwnasError, match="at least 5"):
        Calibration.fit([1, 2], [1, 1], [0, 0], [0, 0], [1, 2])


def test_unknown_kernel_gets_an_explicit_fallback(measured) -> None:
    cfgs, y, fp = measured
    p = LatencyPredictor(LightGBMLatencyModel(n_estimators=20).fit(cfgs, y, fp))
    model = _graph([helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")], {}, [1, 1000], "y", [1, 1000])
    with pytest.warns(FallbackWarning, match="Softmax has no hwnas op type"):
        r = p.predict_onnx(model)
    (k,) = r.kernels
    assert k.fallback and k.latency_ms > 0 and r.latency_ms > 0


def test_nb201_encoding_and_transfer() -> None:
    e = encode_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    assert e.shape == (36,) and e[:30].sum() == 6 and e[-1] == 2
    with pytest.raises(ValueError, match="unknown NAS-Bench-201 op"):
        encode_nb201("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(300, 6)).astype(float)
    S = np.column_stack([1 + X @ [1, 2, 3, 1, 0.5, 0.2], 2 + X @ [1.5, 2, 2, 1, 1, 0.1]]) * rng.lognormal(0, 0.01, (300, 2))
    y = 0.5 + X @ [0.6, 1.1, 1.6, 0.5, 0.3, 0.1]
    m = TransferLatencyModel().fit(X[:10], S[:10], y[:10])
    from scipy import stats

    assert stats.spearmanr(y[10:], m.predict(X[10:], S[10:])).statistic > 0.95


def test_transfer_fit_is_robust_to_a_few_measurements_no_source_explains() -> None:
    """Like pixel3's cells without a live path (run in 0.05 ms against ~10 ms): three of 60 training
    latencies a hundred times smaller bend a plain ridge fit; the Huber-reweighted one ignores them."""
    rng = np.random.default_rng(3)
    X = rng.integers(0, 2, size=(400, 6)).astype(float)
    S = np.column_stack([3 + X @ [1, 2, 3, 1, 0.5, 0.2], 4 + X @ [1.5, 2, 2, 1, 1, 0.1]]) * rng.lognormal(0, 0.01, (400, 2))
    y = 0.8 * S[:, 0] + 0.3 * S[:, 1]
    y_train = y[:60].copy()
    y_train[:3] /= 100
    errs = {}
    for iters in (0, 3):
        m = TransferLatencyModel(robust_iters=iters).fit(X[:60], S[:60], y_train)
        errs[iters] = np.abs(m.predict(X[60:], S[60:]) / y[60:] - 1)
    assert np.mean(errs[3] <= 0.02) > 0.95 and np.mean(errs[0] <= 0.02) < 0.5


def test_architecture_path_matches_the_onnx_path(measured) -> None:
    """Blocks expand into exactly the kernels the ONNX decomposition finds, so predicting an
    architecture from its op configurations equals predicting its exported graph."""
    from hwnas.latency_models._decompose import expand_kernels
    from hwnas.profilers import build_onnx, build_sequence_onnx, mobilenetv2_layers

    for cfg in [c for c in sample_configs(300, seed=5) if c.op is OpType.MBCONV][:25]:
        assert expand_kernels([cfg]) == [k.config for k in decompose_onnx(build_onnx(cfg)) if k.kind == "op"], cfg
    cfgs, y, fp = measured
    p = LatencyPredictor(LightGBMLatencyModel(n_estimators=30).fit(cfgs, y, fp),
                         Calibration(1.1, -0.01, 0.002, 0.05, 0.03, per_silu_ms=0.02, hardswish_scale=-0.09,
                                     n_models=20))
    # SiLU activations, which the calibration counts, and HardSwish ones, whose time it scales, in both paths
    layers = [dataclasses.replace(c, act=Act.SILU if i % 4 == 1 else Act.HARDSWISH)
              if c.op is OpType.MBCONV and i % 2 else c for i, c in enumerate(mobilenetv2_layers(64, 0.35, classes=10))]
    assert {c.act for c in layers} >= {Act.SILU, Act.HARDSWISH}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = p.predict_architecture(layers)
        b = p.predict_onnx(build_sequence_onnx(layers)[1]).latency_ms
    assert a == pytest.approx(b, rel=1e-9)


def test_calibration_fits_a_per_silu_term_only_when_models_have_silu() -> None:
    rng = np.random.default_rng(1)
    s, n, b, w = rng.uniform(1, 10, 30), rng.integers(10, 60, 30), rng.uniform(0, 5, 30), rng.uniform(0, 3, 30)
    q = rng.integers(0, 40, 30)
    m = 0.9 * s + 0.004 * n + 0.02 * b + 0.07 * w + 0.1 + 0.019 * q
    cal = Calibration.fit(s, n, b, w, m, q)
    assert cal.per_silu_ms == pytest.approx(0.019, rel=1e-6) and cal.train_mape < 1e-9
    assert cal.apply(s, n, b, w, q) == pytest.approx(m, rel=1e-9)
    none = Calibration.fit(s, n, b, w, m - 0.019 * q, np.zeros(30))
    assert none.per_silu_ms == 0.0 and none.scale == pytest.approx(0.9, rel=1e-6)
    # a predictor saved before the term existed loads with it at 0
    assert Calibration(**{k: v for k, v in dataclasses.asdict(cal).items() if k != "per_silu_ms"}).per_silu_ms == 0


def test_calibration_fits_a_hardswish_scale_only_when_models_have_hardswish() -> None:
    rng = np.random.default_rng(2)
    s, n, b, w = rng.uniform(1, 10, 30), rng.integers(10, 60, 30), rng.uniform(0, 5, 30), rng.uniform(0, 3, 30)
    q, h = rng.integers(0, 40, 30), s * rng.uniform(0, 1, 30) * (rng.random(30) < 0.4)  # HardSwish ops' ms
    m = 1.05 * s + 0.004 * n + 0.02 * b + 0.07 * w + 0.1 + 0.019 * q - 0.09 * h
    cal = Calibration.fit(s, n, b, w, m, q, h)
    assert cal.hardswish_scale == pytest.approx(-0.09, rel=1e-6) and cal.per_silu_ms == pytest.approx(0.019, rel=1e-6)
    assert cal.apply(s, n, b, w, q, h) == pytest.approx(m, rel=1e-9)
    # without SiLU in any model the HardSwish term still lands in its own field
    only = Calibration.fit(s, n, b, w, m - 0.019 * q, None, h)
    assert only.per_silu_ms == 0.0 and only.hardswish_scale == pytest.approx(-0.09, rel=1e-6)
    none = Calibration.fit(s, n, b, w, m + 0.09 * h, q, np.zeros(30))
    assert none.hardswish_scale == 0.0 and none.scale == pytest.approx(1.05, rel=1e-6)
    # two models with HardSwish are too few to set a term: it stays 0, their residuals stay visible
    two = np.where(np.arange(30) < 2, 1.0 + s, 0.0)
    m2 = m + 0.09 * h - 0.5 * two
    few = Calibration.fit(s, n, b, w, m2, q, two)
    assert few.hardswish_scale == 0.0 and few.per_silu_ms == pytest.approx(0.019, rel=0.05)
    assert Calibration.fit(s, n, b, w, m2 - 0.5 * np.where(np.arange(30) == 2, 1.0 + s, 0.0), q,
                           np.where(np.arange(30) < 3, 1.0 + s, 0.0)).hardswish_scale == pytest.approx(-0.5, rel=1e-6)
    # a predictor saved before the term existed loads with it at 0
    old = {k: v for k, v in dataclasses.asdict(cal).items() if k != "hardswish_scale"}
    assert Calibration(**old).hardswish_scale == 0


def test_calibration_never_predicts_negative_latency() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(1, 10, 8)
    m = 0.5 * s - 2.0 + rng.normal(0, 0.01, 8)  # an offset that would go below zero for small models
    m = np.maximum(m, 0.1)
    few = Calibration.fit(s, np.full(8, 10), np.ones(8), np.ones(8), m)
    assert few.scale >= 0 and few.offset_ms >= 0
    s2 = rng.uniform(1, 10, 20)
    many = Calibration.fit(s2, rng.integers(5, 50, 20), rng.uniform(0, 5, 20), rng.uniform(0, 5, 20), 0.5 * s2 - 0.4)
    tiny = many.apply(np.array([0.01]), np.array([200]), np.array([0.0]), np.array([0.0]))
    assert tiny[0] >= Calibration.MIN_FRACTION * 0.01 > 0


def test_the_mb_term_counts_the_layout_ops_and_old_calibrations_are_refused(measured, tmp_path) -> None:
    """ONNX Runtime reorders a conv's or pool's input and output around the op timed alone, not in
    a model: the calibration's MB term counts those ops' tensors only."""
    import json

    from hwnas.latency_models._predictor import _terms
    from hwnas.errors import HwnasError

    conv, pool = OpConfig.parse("pwconv_i16_o32_r8_arelu"), OpConfig.parse("maxpool_i32_r8_k2_s2")
    add, act = OpConfig.parse("add_i32_r8"), OpConfig.parse("act_i32_r8_asilu")
    mb = lambda *cs: _terms(list(cs), np.ones(len(cs)))[0]  # noqa: E731
    elems = lambda c: np.prod(c.input_shapes()[0]) + np.prod(c.output_shape())  # noqa: E731
    assert mb(conv) == pytest.approx(elems(conv) * 4 / 1e6) and mb(pool) == pytest.approx(elems(pool) * 4 / 1e6)
    assert mb(add) == mb(act) == 0.0 and mb(conv, add, pool, act) == pytest.approx(mb(conv) + mb(pool))
    assert _terms([act], np.array([0.3]))[2:] == (1.0, 0.0)
    hsw = OpConfig.parse("pwconv_i16_o32_r8_ahardswish")
    assert _terms([conv, hsw, act], np.array([0.1, 0.25, 0.3]))[2:] == (1.0, 0.25)  # HardSwish ops' predicted ms
    cfgs, y, fp = measured
    p = LatencyPredictor(LightGBMLatencyModel(n_estimators=20).fit(cfgs, y, fp),
                         Calibration(1.0, 0.0, -0.02, 0.05, 0.0, n_models=20))
    d = p.save(tmp_path / "pred")
    assert LatencyPredictor.load(d).calibration == p.calibration
    meta = json.loads((d / "predictor.json").read_text())
    del meta["calibration_terms_version"]  # as saved before version 2
    (d / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(HwnasError, match="calibration terms version 1.*train the predictor again"):
        LatencyPredictor.load(d)


def test_what_an_op_model_learned_is_saved_with_it(measured, tmp_path) -> None:
    from hwnas.latency_models import load_latency_model

    cfgs, y, fp = measured
    m = create_latency_model("lightgbm").fit(cfgs, y, fp, op_time="kernel")
    m.save(tmp_path / "k")
    assert m.op_time == "kernel" and load_latency_model(tmp_path / "k", fp).op_time == "kernel"
    assert create_latency_model("lut").fit(cfgs, y, fp).op_time == "e2e"


def test_lightgbm_linear_base_carries_the_trend_beyond_the_profiled_sizes(measured, tmp_path) -> None:
    """Trees alone predict a constant past the largest op they saw; the linear cost base does not."""
    from hwnas.latency_models import load_latency_model

    cfgs, y, fp = measured
    # a cost-like latency on pointwise convs of growing width (real shapes, a known trend)
    train = [OpConfig.parse(f"pwconv_i{c}_o{c}_r16_arelu") for c in range(8, 136, 8)]
    big = [OpConfig.parse(f"pwconv_i{c}_o{c}_r16_arelu") for c in (256, 384)]

    def truth(cs):
        return np.array([0.01 + 2e-5 * c.macs() / 1e3 for c in cs])

    lin = LightGBMLatencyModel(min_child_samples=2).fit(train, truth(train), fp)
    tree = LightGBMLatencyModel(min_child_samples=2, base="none").fit(train, truth(train), fp)
    err_lin = np.abs(lin.predict(big) / truth(big) - 1)
    err_tree = np.abs(tree.predict(big) / truth(big) - 1)
    assert err_lin.max() < 0.1 and err_tree.min() > 0.5, (err_lin, err_tree)
    # saved and loaded with its coefficients; a model saved before the base existed still loads
    lin.save(tmp_path / "lin")
    np.testing.assert_allclose(load_latency_model(tmp_path / "lin", fp).predict(big), lin.predict(big))
    tree.save(tmp_path / "old")
    import json

    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["params"]["base"], meta["state"]["base_coef"]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    old = load_latency_model(tmp_path / "old", fp)
    assert old.base == "none"
    np.testing.assert_allclose(old.predict(big), tree.predict(big))
    for coef in ("x", [1.0, 2.0], [1.0, float("nan"), 0.0]):  # the fallback's coefficients damaged
        meta["fallback_coef"] = coef
        (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
        with pytest.raises(HwnasError, match="damaged fallback_coef"):
            load_latency_model(tmp_path / "old", fp)
    with pytest.raises(HwnasError, match="unknown base 'cubic'.*linear, none"):
        LightGBMLatencyModel(base="cubic").fit(cfgs, y, fp)


def test_select_op_time_keeps_the_op_time_the_whole_models_follow(measured) -> None:
    """``auto``: each op time's model is calibrated on the whole models, and the one whose calibration
    predicts a left-out model best is kept. Here the whole models' latencies follow the first op
    time exactly (a calibration of its op sums); the second is the same ops' times scrambled."""
    from hwnas.latency_models import kernel_units, select_op_time
    from hwnas.profilers import MeasuredModel

    cfgs, y, fp = measured
    rng = np.random.default_rng(0)
    data = {"e2e": (cfgs, y), "kernel": (cfgs, y * rng.lognormal(0, 0.6, len(y)))}
    truth = LatencyPredictor(LightGBMLatencyModel().fit(cfgs, y, fp))
    models = [zoo.create(f, w, r) for f in ("mobilenetv2", "resnet", "squeezenet") for w in (0.25, 0.5) for r in (32, 48)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms = [1.2 * truth.predict_onnx(m.onnx).op_sum_ms + 0.05 for m in models]
        pred, choice = select_op_time(data, fp, [MeasuredModel(m.name, m.onnx, t) for m, t in zip(models, ms)])
    assert choice.op_time == "e2e" and choice.n_models == len(models)
    assert choice.loo["e2e"]["mape"] < 0.01 < choice.loo["kernel"]["mape"] and choice.loo["e2e"]["acc10"] == 1.0
    assert pred.model.training_summary_["op_time"] == "e2e"
    assert pred.model.training_summary_["op_time_selection"]["op_time"] == "e2e"
    assert pred.calibration.fitted and pred.calibration.scale == pytest.approx(1.2, rel=0.05)
    assert "op time e2e, chosen by leave-one-out over 12 calibration models" in choice.summary()
    with pytest.raises(HwnasError, match="at least 6 measured models"):
        truth.calibration_loo([kernel_units(m.onnx) for m in models[:5]], ms[:5])


def test_the_heldout_sets_are_disjoint_from_each_other_and_the_calibration() -> None:
    from hwnas.latency_models import HELDOUT_SETS, calibration_models, evaluation_models

    sets = {h: {m.name for m in evaluation_models(quick=True, heldout=h)} for h in HELDOUT_SETS}
    assert {n for n in sets["second"] if n.startswith("random-")} == {"random-2000-r128", "random-2001-r96"}
    cal = {m.name for m in calibration_models(quick=True)}
    assert {m.family for m in evaluation_models(quick=True, heldout="third")} == {"random", "mnasnet", "efficientnet",
                                                                                 "squeezenet"}
    names = list(sets.values()) + [cal]
    assert all(not a & b for i, a in enumerate(names) for b in names[i + 1:])
    with pytest.raises(HwnasError, match="unknown held-out set 'fourth'; known: first, second, third"):
        evaluation_models(heldout="fourth")
