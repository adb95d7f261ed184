from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import InvalidOpConfigError
from hwnas.profilers import OPSET, Act, OpConfig, OpType, build_module, build_onnx, build_sequence_onnx, op_set
from hwnas.profilers import mobilenetv2_layers, op_set_names, read_ops_file


@st.composite
def op_configs(draw):
    op = draw(st.sampled_from(list(OpType)))
    c = draw(st.sampled_from([4, 8, 12, 16]))
    r = draw(st.integers(3, 20))
    r2 = draw(st.one_of(st.just(r), st.integers(3, 20)))
    k = draw(st.sampled_from([3, 5, 7]))
    s = draw(st.sampled_from([1, 2]))
    act = draw(st.sampled_from([a for a in Act if a is not Act.NONE]))
    b = draw(st.sampled_from([1, 1, 2]))
    if op is OpType.CONV:
        g = draw(st.sampled_from([1, 2, 4]))
        return OpConfig(op, c, draw(st.sampled_from([4, 8, 16])), r, r2, kernel=k, stride=s, groups=g, act=act, batch=b)
    if op is OpType.DWCONV:
        return OpConfig(op, c, h=r, w=r2, kernel=k, stride=s, act=act, batch=b)
    if op is OpType.PWCONV:
        return OpConfig(op, c, 2 * c, r, r2, act=draw(st.sampled_from(list(Act))), batch=b)
    if op is OpType.MBCONV:
        e = draw(st.sampled_from([1, 3, 6]))
        se = draw(st.sampled_from([0.0, 0.25]))
        res = draw(st.booleans()) and s == 1
        return OpConfig(op, c, c if res else 2 * c, r, r2, kernel=k, stride=s, expand=e, se=se, act=act, residual=res, batch=b)
    if op is OpType.SE:
        return OpConfig(op, c, h=r, w=r2, se=0.25, batch=b)
    if op in (OpType.MAXPOOL, OpType.AVGPOOL):
        return OpConfig(op, c, h=r, w=r2, kernel=3, stride=s, batch=b)
    if op is OpType.LINEAR:
        return OpConfig(op, c, 10, batch=b)
    if op is OpType.CONCAT:
        return OpConfig(op, c, h=r, w=r2, n_inputs=draw(st.integers(2, 4)), batch=b)
    if op is OpType.ACT:
        return OpConfig(op, c, h=r, w=r2, act=act, batch=b)
    if op is OpType.ADD:
        return OpConfig(op, c, h=r, w=r2, n_inputs=draw(st.integers(2, 4)), batch=b)
    return OpConfig(op, c, h=r, w=r2, batch=b)


@given(op_configs())
@settings(max_examples=300, deadline=None)
def test_string_round_trip(cfg: OpConfig) -> None:
    text = str(cfg)
    assert OpConfig.parse(text) == cfg
    assert hash(OpConfig.parse(text)) == hash(cfg)
    assert " " not in text and text.startswith(cfg.op.value)


@given(op_configs())
@settings(max_examples=40, deadline=None)
def test_onnx_and_torch_agree(cfg: OpConfig) -> None:
    module = build_module(cfg, seed=3)
    model = build_onnx(cfg, module=module)
    assert model.opset_import[0].version == OPSET >= 17
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in cfg.input_shapes()]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {f"x{i}": x for i, x in enumerate(xs)})
    with torch.no_grad():
        t = module(*[torch.from_numpy(x) for x in xs]).numpy()
    assert y.shape == t.shape == cfg.output_shape()
    np.testing.assert_allclose(y, t, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("text", ["mbconv_i8_o8_r8_k5_s1_e6_se0.25_asilu_res", "conv_i8_o16_r8_k3_s2_g1_arelu6",
                                  "dwconv_i16_r8_k7_s1_ahardswish"])
def test_folding_batch_norms_keeps_the_function(text: str) -> None:
    """The torch runtime times ops with their batch norms folded, like the ONNX graphs it is compared with."""
    from hwnas.profilers._blocks import fold_batch_norms

    module = build_module(OpConfig.parse(text), seed=1)
    g = torch.Generator().manual_seed(0)
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        bn.weight.data.copy_(torch.randn(n, generator=g))
        bn.bias.data.copy_(torch.randn(n, generator=g))
    x = torch.randn(*OpConfig.parse(text).input_shapes()[0], generator=g)
    with torch.no_grad():
        before = module(x)
        folded = fold_batch_norms(module)
        after = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert before.abs().max() > 0.1
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo_i8", "unknown op type 'foo'"),
        ("conv_o8_r8_k3", "needs input channels"),
        ("conv_i8_o8_r8_k3_zz", "unknown token"),
        ("conv_i6_o8_r8_k3_s1_g4", "groups=4 must divide"),
        ("mbconv_i8_o16_r8_k3_s1_e6_res", "residual needs"),
        ("act_i8_r8_anone", "needs an activation"),
        ("gap_i8_r8_k3", "does not apply"),
        ("conv_i8_o8_r8_k3_s0", "stride must be >= 1"),
        ("conv_i8_o8_r8_k3_aswish", "swish"),
    ],
)
def test_invalid_configs_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidOpConfigError, match=message):
        OpConfig.parse(text)


def test_normalisation_makes_equal_ops_equal() -> None:
    a = OpConfig(OpType.DWCONV, 16, h=8, w=8, kernel=3)
    assert a.cout == a.groups == 16
    assert OpConfig(OpType.PWCONV, 8, 16, 4, 4) == OpConfig.parse("pwconv_i8_o16_r4_anone")
    assert OpConfig(OpType.CONCAT, 8, h=4, w=4, n_inputs=3).cout == 24


def test_costs_match_the_torch_module() -> None:
    for cfg in op_set("stability") + mobilenetv2_layers(96, 0.5, 10):
        # deployed parameters: batch norms fold into the convs
        n_params = sum(p.numel() for n, p in build_module(cfg).named_parameters() if ".bn." not in n)
        assert cfg.params() == n_params, cfg
        assert cfg.macs() > 0


def test_op_sets_and_files(tmp_path) -> None:
    assert {"micro", "stability", "mobilenetv2"} <= set(op_set_names())
    assert len(op_set("stability")) >= 30
    assert {c.op for c in op_set("micro")} == set(OpType)
    f = tmp_path / "ops.txt"
    f.write_text("# my ops\nconv_i8_o8_r8_k3_s1_g1_arelu\n\nact_i8_r8_arelu  # inline comment\n")
    assert [str(c) for c in read_ops_file(f)] == ["conv_i8_o8_r8_k3_s1_g1_arelu", "act_i8_r8_arelu"]
    j = tmp_path / "ops.json"
    j.write_text('["gap_i8_r4", "gap_i8_r4"]')
    assert [str(c) for c in read_ops_file(j)] == ["gap_i8_r4"]
    bad = tmp_path / "bad.txt"
    bad.write_text("gap_i8_r4\nconv_i8_q3\n")
    with pytest.raises(InvalidOpConfigError, match="bad.txt:2"):
        read_ops_file(bad)


def test_sequence_model_matches_torch() -> None:
    layers = mobilenetv2_layers(64, 0.35, classes=10)
    module, model = build_sequence_onnx(layers, dynamic_batch=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": x})
    with torch.no_grad():
        t = module(torch.from_numpy(x)).numpy()
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y, t, rtol=1e-3, atol=1e-4)
