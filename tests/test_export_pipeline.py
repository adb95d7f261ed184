"""Export (ONNX parity, model card, refusals), the end-to-end pipeline on a tiny budget, the report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

from hwnas.cli import main
from hwnas.devices import DeviceConstraints, default_registry
from hwnas.errors import HwnasError
from hwnas.deploy import ArchSpec, check_parity, export_architecture, load_arch_spec
from hwnas.search.spaces import create_space
from hwnas.testing import FAST_POLICY

CARD_KEYS = {"arch", "accuracy", "params", "flops", "predicted_latency_ms", "measured_latency_ms", "budget_ms",
             "device", "fingerprint", "versions"}


def _spec(space_name: str = "proxyless", seed: int = 0, **args) -> ArchSpec:
    args = args or {"resolution": 16, "width": 0.25, "classes": 10}
    sp = create_space(space_name, **args)
    return ArchSpec(space_name, sp.to_string(sp.sample(np.random.default_rng(seed))), args, budget_ms=50.0,
                    resolution=16)


@pytest.mark.parametrize("space_name,args", [("proxyless", {}), ("nb201", {"channels": 8, "cells_per_stage": 1, "resolution": 16})])
def test_export_untrained_parity_and_card(tmp_path, space_name, args) -> None:
    if space_name == "nb201":
        import inspect

        from hwnas.search.spaces import NB201Space

        known = inspect.signature(NB201Space.__init__).parameters
        args = {k: v for k, v in args.items() if k in known}
    dev = default_registry().get("cpu-ort")
    res = export_architecture(_spec(space_name, **args), dev, tmp_path / "m.onnx", None, train=False,
                              dynamic_batch=True, policy=FAST_POLICY)
    model = onnx.load(str(res.onnx_path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    card = json.loads(res.card_path.read_text())
    assert CARD_KEYS <= set(card)
    assert card["measured_latency_ms"] > 0 and card["parity_max_abs_diff"] < 1e-3
    assert card["versions"]["onnxruntime"] and card["fingerprint"]["runtime"]
    assert card["meets_budget"] == (card["measured_latency_ms"] <= 50.0)


def test_parity_failure_is_an_error() -> None:
    import torch

    sp = create_space("proxyless", resolution=16, width=0.25, classes=10)
    arch = sp.sample(np.random.default_rng(0))
    m = sp.build_module(arch).eval()
    model = m.to_onnx()
    with torch.no_grad():  # change the torch weights after export: the two must disagree
        for p in m.parameters():
            p.add_(0.5)
    with pytest.raises(HwnasError, match="disagree"):
        check_parity(model, m, sp.input_shape(arch))


def test_export_refuses_what_the_device_cannot_run(tmp_path) -> None:
    dev = default_registry().get("cpu-ort")
    spec = _spec()
    spec = dataclasses.replace(spec, arch="-".join(["k7e6"] * 21))
    small = dataclasses.replace(dev, constraints=DeviceConstraints(allowed_kernel_sizes=(3, 5)))
    with pytest.raises(HwnasError, match="cannot run this architecture"):
        export_architecture(spec, small, tmp_path / "m.onnx", train=False)
    few = dataclasses.replace(dev, constraints=DeviceConstraints(max_params=1000))
    with pytest.raises(HwnasError, match="allows 1,000 parameters"):
        export_architecture(spec, few, tmp_path / "m.onnx", train=False)
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_bad_input(tmp_path, capsys) -> None:
    assert main(["export", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "exactly one of --run" in capsys.readouterr().err
    assert main(["export", "--run", str(tmp_path / "nope"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "a.json").write_text('{"space": "proxyless", "arch": "k3e3"}')
    assert main(["export", "--arch", str(tmp_path / "a.json"), "-o", str(tmp_path / "m.onnx"), "--no-train"]) == 2
    assert "21 layers" in capsys.readouterr().err
    with pytest.raises(HwnasError, match="needs 'space' and 'arch'"):
        (tmp_path / "b.json").write_text("{}")
        load_arch_spec(tmp_path / "b.json")


def test_calibration_models_spread_over_the_latency_range() -> None:
    """The pipeline's whole models cover the space's fast tail (many skipped layers) and its slow end,
    not only the middle where uniform samples cluster."""
    from hwnas.jobs import spread_archs as _spread_archs

    space = create_space("proxyless", resolution=32, width=0.35, classes=10)
    zero = [d.options.index("zero") if "zero" in d.options else -1 for d in space.decisions]

    def n_zero(a):
        return sum(c == z for c, z in zip(a.choices, zero))

    def raw_ms(archs):  # a stand-in latency: layers kept, heavier options slower
        return np.array([sum(0.0 if c == z else 1.0 + 0.1 * c for c, z in zip(a.choices, zero)) for a in archs])

    picked = _spread_archs(space, raw_ms, 8, seed=0, pool=400)
    assert len(set(picked)) == 8
    ms = raw_ms(picked)
    assert list(ms) == sorted(ms)
    rng = np.random.default_rng(1)
    uniform = raw_ms([space.sample(rng) for _ in range(400)])
    assert ms[0] < np.quantile(uniform, 0.01) and ms[-1] > np.quantile(uniform, 0.99)
    assert n_zero(picked[0]) >= 10 and n_zero(picked[-1]) <= 1
    assert _spread_archs(space, raw_ms, 8, seed=0, pool=400) == picked  # seeded


def test_search_budget_leaves_the_quickstart_room_and_refuses_an_impossible_user_budget() -> None:
    from hwnas.jobs import search_budget

    probe = np.linspace(1.0, 2.0, 101)  # predicted latencies of sampled architectures
    # a quiet device: the quantile, less the margin, still keeps part of the space
    budget, limit, raised = search_budget(probe, 0.05, None, 0.4)
    assert budget == pytest.approx(1.4) and limit == pytest.approx(1.4 / 1.05) and not raised
    # a 30% margin still keeps more than the fastest 5% at the 40% quantile: not raised
    assert search_budget(probe, 0.3, None, 0.4)[2] is False
    # at the 20% quantile it would keep almost nothing (limit 0.92 < every architecture): the limit
    # keeps the fastest 2.5% instead
    budget, limit, raised = search_budget(probe, 0.3, None, 0.2)
    assert raised and limit == pytest.approx(1.025) and budget == pytest.approx(1.025 * 1.3)
    assert (probe <= limit).mean() > 0.02
    # a budget the user gave is kept, or refused with the smallest predicted latency
    assert search_budget(probe, 0.3, 1.5, 0.4) == (1.5, pytest.approx(1.5 / 1.3), False)
    with pytest.raises(HwnasError, match="the smallest found is 1.000 ms"):
        search_budget(probe, 0.3, 1.1, 0.4)
