"""Weight inheritance: children start from their parent's trained weights (Net2Net-style widening
and deepening keep the parent's function), evolution with ``inherit_epochs``, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hwnas.errors import ArgumentError, HwnasError
from hwnas.search import create_space
from hwnas.search._inherit import inherit_weights


@pytest.mark.parametrize("parent, child, identities", [
    ([1, 1, 0, 0, 0, 0, 0], [1, 3, 0, 0, 0, 0, 0], 0),  # the first hidden layer widened 32 -> 128
    ([1, 1, 0, 0, 0, 0, 0], [2, 1, 0, 0, 0, 0, 0], 1),  # one hidden layer more (16 wide): an identity
    ([1, 1, 0, 0, 0, 0, 0], [2, 3, 0, 2, 0, 0, 0], 1),  # wider and deeper at once
])
def test_widening_and_deepening_keep_the_parents_function(parent, child, identities) -> None:
    space = create_space("mlp")
    torch.manual_seed(0)
    p = space.build_module(space.make(parent), resolution=64)
    c = space.build_module(space.make(child), resolution=64)
    stats = inherit_weights(c, p.state_dict())
    x = torch.randn(8, 64)
    assert torch.allclose(p(x), c(x), atol=1e-5)
    assert stats.identity_layers == identities and 0 < stats.fraction <= 1


def test_a_larger_kernel_gets_the_parents_in_its_centre() -> None:
    torch.manual_seed(0)
    p = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.BatchNorm2d(8))
    c = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 5, padding=2), torch.nn.BatchNorm2d(8))
    inherit_weights(c, p.state_dict())
    assert torch.equal(c[1].running_var, torch.ones(8))  # running statistics are not inherited
    x = torch.randn(2, 4, 9, 9)  # training mode: BatchNorm on the batch's statistics
    assert torch.allclose(p(x), c(x), atol=1e-5)


def test_evolution_children_inherit_and_bad_options(tmp_path) -> None:
    from hwnas.jobs import create_search
    from hwnas.latency_models import FlopsLinearModel, LatencyPredictor
    from hwnas.profilers import OpConfig

    ops = [OpConfig.parse(s) for s in ("pwconv_i16_o32_r16_arelu", "dwconv_i32_r16_k3_s1_arelu",
                                       "conv_i16_o16_r32_k3_s1_g1_arelu")]
    pred = LatencyPredictor(FlopsLinearModel().fit(ops, [0.05, 0.03, 0.2]))
    kw = {"target_ms": 1e6, "predictor": pred, "epochs": 2, "seed": 1}
    s = create_search("mlp", "cpu-ort", strategy="evolution", inherit_epochs=1, storage=tmp_path / "run",
                      strategy_params={"population_size": 3, "tournament_size": 3}, **kw)
    s.optimize(6)
    assert s.evaluator.inherited, "children after the first population inherit"
    child = next(iter(s.evaluator.inherited))
    assert s.strategy.parent_of(child) is not None
    assert len(list((tmp_path / "run" / "weights").glob("*.pt"))) == 6
    assert s.settings["inherit_epochs"] == 1
    with pytest.raises(ArgumentError, match="workers"):
        s.optimize(8, workers=2)
    with pytest.raises(ArgumentError, match="breeds children"):
        create_search("mlp", "cpu-ort", strategy="random", inherit_epochs=1, **kw)
    with pytest.raises(HwnasError, match="proxy evaluator"):
        create_search("mlp", "cpu-ort", strategy="evolution", inherit_epochs=1, evaluator=lambda a: 0.5, **kw)
    with pytest.raises(ArgumentError, match="inherit_epochs"):
        create_search("mlp", "cpu-ort", strategy="evolution", inherit_epochs=0, **kw)


@pytest.mark.parametrize("args, match", [(["--inherit", "0"], "--inherit takes a count >= 1, got 0"), (["--inherit", "1", "--workers", "2"], "one worker")])
def test_bad_inherit_on_the_command_line_is_one_line(tmp_path, args, match) -> None:
    r = subprocess.run([sys.executable, "-m", "hwnas", "search", "--space", "mlp", "--strategy", "evolution",
                        "--target-ms", "1000", "--out", str(tmp_path / "r"), *args], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and match in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("change", [
    {"s1l1": "zero"},  # the parent skips a layer the child has: the blocks after it shift in the chain
    {"s1l2": "k5e6"},  # wider and a larger kernel
])
def test_proxyless_children_find_their_parents_layers_and_new_blocks_start_as_identities(change) -> None:
    """A proxyless layer switched on (from ``zero``) or changed keeps the parent's function: the
    blocks after an added layer inherit from the same layers of the parent, not from the block at
    the same position in the chain, and the added residual block starts as the identity."""
    from hwnas.search._inherit import block_correspondence

    space = create_space("proxyless", resolution=32, width=0.35)
    names = [d.name for d in space.decisions]
    parent = space.from_string("-".join("k3e3" for _ in names))
    child = space.make([d.options.index(change.get(d.name, "k3e3")) for d in space.decisions])
    parent, child = (child, parent) if "zero" in change.values() else (parent, child)  # the child adds the layer
    torch.manual_seed(0)
    p = space.build_module(parent, resolution=32)
    c = space.build_module(child, resolution=32)
    blocks = block_correspondence(space, child, parent)
    assert sum(v is None for v in blocks.values()) == (1 if "zero" in change.values() else 0)
    stats = inherit_weights(c, p.state_dict(), blocks)
    x = torch.randn(4, 3, 32, 32)  # training mode: BatchNorm on the batch's statistics
    assert torch.allclose(p(x), c(x), atol=1e-4)
    # matched by position in the chain instead, the added layer shifts every later block
    shifted = space.build_module(child, resolution=32)
    inherit_weights(shifted, p.state_dict())
    if "zero" in change.values():
        assert stats.identity_layers == 1
        assert not torch.allclose(p(x), shifted(x), atol=1e-2)


def test_mnasnet_layers_added_to_a_block_keep_the_later_blocks_weights() -> None:
    """An mnasnet block one layer longer: the layers after it inherit from the parent's same layers,
    and the added layer (a residual one) starts as the identity."""
    from hwnas.search._inherit import block_correspondence

    space = create_space("mnasnet")
    text = "r96_w0.5|" + "|".join(["mb3_k3_se0_id_n+0_f1.0"] * 7)
    parent = space.from_string(text)
    child = space.from_string(text.replace("|mb3_k3_se0_id_n+0_f1.0", "|mb3_k3_se0_id_n+1_f1.0", 3))
    torch.manual_seed(0)
    p, c = space.build_module(parent), space.build_module(child)
    blocks = block_correspondence(space, child, parent)
    assert sum(v is None for v in blocks.values()) == 3
    stats = inherit_weights(c, p.state_dict(), blocks)
    assert stats.identity_layers == 3
    x = torch.randn(2, 3, 96, 96)
    assert torch.allclose(p(x), c(x), atol=1e-4)


@pytest.mark.slow
def test_the_inheriting_evaluator_matches_a_proxyless_childs_layers_to_its_parents(tmp_path) -> None:
    """``--inherit`` in a proxyless search: the evaluator hands the parent to the training, so a
    child one layer deeper starts as its parent (the added block an identity)."""
    from hwnas.search import ProxyTrainingEvaluator
    from hwnas.search._inherit import InheritingEvaluator

    space = create_space("proxyless", resolution=16, width=0.35)
    parent = space.from_string("-".join(["k3e3"] + ["zero" if d.name == "s2l1" else "k3e3" for d in space.decisions[1:]]))
    child = space.from_string("-".join("k3e3" for _ in space.decisions))
    base = ProxyTrainingEvaluator(space, epochs=1, resolution=16)
    ev = InheritingEvaluator(base, tmp_path / "w", 1, {child: parent}.get, space)
    ev(parent)
    ev(child)
    stats = ev.inherited[child]
    assert stats.identity_layers == 1 and stats.fraction > 0.9


def test_a_switched_nb201_edge_blends_from_the_parents_operation_into_the_childs() -> None:
    from hwnas.search._inherit import blend_steps, blended

    space = create_space("nb201", channels=4, cells_per_stage=1)
    parent = space.from_string("|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|")
    child = space.from_string("|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    # edge 0 switches pooling -> skip; edge 2's 1x1 -> 3x3 keeps the function (kernel in the centre)
    assert space.switched_ops(child, parent) == ["2.edges.0", "4.edges.0", "6.edges.0"]
    assert space.switched_ops(parent, parent) == []
    torch.manual_seed(0)
    p, c = space.build_module(parent), space.build_module(child)
    inherit_weights(c, p.state_dict())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad(), blended(c, p, space.switched_ops(child, parent), steps=2) as n:
        assert n == 3
        assert torch.allclose(c(x), p(x), atol=1e-5), "the first step computes the parent's function"
        c(x)
        ref = space.build_module(child)
        ref.load_state_dict(c.state_dict(), strict=False)
        assert torch.allclose(c(x), ref(x), atol=1e-5), "after the blend, the child's own"
    assert type(c[2].edges[0]).__name__ == "Identity", "the child holds its own modules afterwards"
    assert not any(k.startswith("2.edges.0.old") for k in c.state_dict())
    assert blend_steps(0, 28) == 0 and blend_steps(1, 28) == 14 and blend_steps(8, 28) == 28


def test_an_nb201_child_trained_from_its_parent_reports_the_blended_edges() -> None:
    from hwnas.search import ProxyTrainingEvaluator

    space = create_space("nb201", channels=4, cells_per_stage=1)
    parent = space.from_string("|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|")
    child = space.from_string("|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|")
    ev = ProxyTrainingEvaluator(space, epochs=1, resolution=8)
    module, _ = ev.train(parent)
    _, acc, stats = ev.train_inherited(child, module.state_dict(), 1, parent=parent)
    assert stats.blended_layers == 3 and 0.0 <= acc <= 1.0
    _, _, untrained = ev.train_inherited(child, module.state_dict(), 0, parent=parent)
    assert untrained.blended_layers == 0, "no training, no blend: the child itself"
