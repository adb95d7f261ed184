"""Compound scaling: the coefficient grid and scaled networks (pure), then the job on digits with
real proxy training, a real predictor and the export measured on ONNX Runtime; resume; bad input."""

from __future__ import annotations

import json

import pytest

from hwnas.errors import HwnasError
from hwnas.jobs import compound_scaling
from hwnas.search.scaling import Coefficients, coefficient_grid, scale_arch, scaled_space
from hwnas.search.spaces import ProxylessSpace

SMALL = {"resolution": 16, "width": 0.25}
FAST = {"grid_points": 2, "max_phi": 1.0, "phi_step": 0.5}


def test_grid_holds_efficientnets_constraint() -> None:
    grid = coefficient_grid()
    assert Coefficients(1.2, 1.1, 1.15) in grid and len(grid) > 20
    assert all(abs(c.flops_ratio - 2) <= 0.1 and min(c.alpha, c.beta, c.gamma) >= 1 for c in grid)
    with pytest.raises(HwnasError, match="tolerance"):
        coefficient_grid(tolerance=5)


def test_scaled_networks_grow_with_phi_and_keep_the_base_choices(trained) -> None:
    from hwnas.jobs import load_predictor

    base = ProxylessSpace(resolution=32, width=0.5, classes=10)
    arch = base.from_string("-".join(["k5e3", "zero", "k3e6", "k7e6"] * 5 + ["k3e3"]))
    c = Coefficients(1.2, 1.1, 1.15)
    assert scale_arch(base, arch, scaled_space(base, c, 0.0)) == arch
    pred = load_predictor("cpu-ort", path=trained / "predictor", allow_fingerprint_mismatch=True)
    flops, latency = [], []
    for phi in (0.0, 1.0, 2.0):
        space = scaled_space(base, c, phi)
        a = scale_arch(base, arch, space)
        assert space.from_string(space.to_string(a)) == a
        # every stage starts with the base stage's first layer (never skipped)
        layers = space.to_string(a).split("-")
        starts = [sum(space.stage_layers()[:i]) for i in range(6)]
        assert [layers[s] for s in starts] == ["k5e3"] * 5 + ["k3e3"]
        assert set(layers) == {"k5e3", "zero", "k3e6", "k7e6", "k3e3"}
        flops.append(space.flops(a))
        latency.append(pred.predict_architecture(space.op_configs(a)))
    assert flops[0] < flops[1] < flops[2] and latency[0] < latency[2]
    # one step of phi about doubles the FLOPs; above 2 on a network this small, since layer counts
    # are rounded up (EfficientNet's ceil: the one-layer last stage becomes two) and channels to 8s
    assert 1.6 < flops[1] / flops[0] < 3.5


def _run(trained, out, **kw):
    opts = dict(target_ms=1e3, space_args=SMALL, predictor=trained / "predictor", epochs=1, strategy_params=FAST,
                allow_fingerprint_mismatch=True, message=lambda m: None)
    opts.update(kw)
    return compound_scaling("cpu-ort", out, **opts)


@pytest.mark.slow
def test_compound_scaling_exports_a_measured_network_and_resumes(trained, tmp_path) -> None:
    seen = []

    def stop_after_first(label, done, total, *rest):
        seen.append(done)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trained, tmp_path / "cs", progress=stop_after_first)
    first = json.loads((tmp_path / "cs" / "grid.json").read_text())
    assert len(first) == 1 and 0 <= first[0]["accuracy"] <= 1
    res = _run(trained, tmp_path / "cs", progress=stop_after_first)
    assert seen == [1, 1, 2] and res["grid"][0] == first[0]  # the first grid point was not trained again
    assert res["phi"] == 1.0 and res["best"] in res["grid"]
    last = res["export"]["tries"][-1]
    assert res["export"]["meets_target_measured"] and 0 < last["measured_ms"] <= 1e3
    spec = json.loads((tmp_path / "cs" / "arch.json").read_text())
    assert spec["space_args"]["depth"] == pytest.approx(res["best"]["alpha"])
    assert (tmp_path / "cs" / "model.onnx").exists()
    assert json.loads((tmp_path / "cs" / "scaling.json").read_text())["phi"] == 1.0


def test_a_target_below_the_base_scales_nothing(trained, tmp_path, monkeypatch) -> None:
    from hwnas.jobs import _scaling

    monkeypatch.setattr(_scaling, "_grid_search", lambda *a, **k: [
        {"alpha": 1.2, "beta": 1.1, "gamma": 1.15, "accuracy": 0.5, "mflops": 1.0, "resolution": 18, "train_s": 0}])
    res = _run(trained, tmp_path / "cs", target_ms=1e-6)
    assert res["phi"] is None and "export" not in res and not (tmp_path / "cs" / "model.onnx").exists()


@pytest.mark.parametrize("kw,words", [
    ({"strategy_params": {"nope": 1}}, "its parameters: grid_points"),
    ({"strategy_params": {"grid_points": 0}}, "grid_points"),
    ({"strategy_params": {"phi_step": -1}}, "phi_step"),
    ({"base": "k3e6-k3e6"}, "21 layers"),
    ({"target_ms": 0}, "target_ms"),
    ({"strategy_params": {"flops_ratio": 1.7, "tolerance": 0.01, "grid_step": 0.5}}, "raise tolerance"),
])
def test_bad_input_is_one_error(trained, tmp_path, kw, words) -> None:
    with pytest.raises(HwnasError, match=words):
        _run(trained, tmp_path / "cs", **kw)


def test_cli_bad_base_and_space_are_one_line(capsys) -> None:
    from hwnas.cli import main

    for args, words in ((["--strategy", "compound-scaling", "--space", "nb201"], "scales a proxyless chain"),
                        (["--base", "k3e6"], "is for --strategy compound-scaling"),
                        (["--strategy", "compound-scaling", "--space", "proxyless", "--strategy-param", "grid_points=0"],
                         "--strategy-param grid_points takes a count >= 1"),
                        (["--strategy", "compound-scaling", "--space", "proxyless", "--strategy-param",
                          "flops_ratio=100"], "--strategy-param flops_ratio takes a number in (1, 16]")):
        rc = main(["search", *args])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and "Traceback" not in err, err


@pytest.mark.slow
def test_cli_compound_scaling(trained, tmp_path, capsys) -> None:
    from hwnas.cli import main

    rc = main(["search", "--strategy", "compound-scaling", "--space", "proxyless", "--space-arg", "resolution=16",
               "--space-arg", "width=0.25", "--strategy-param", "grid_points=1", "--strategy-param", "max_phi=0.5",
               "--epochs", "1", "--target-ms", "1000", "--predictor", str(trained / "predictor"),
               "--allow-fingerprint-mismatch", "--out", str(tmp_path / "cs")])
    out = capsys.readouterr().out
    assert rc == 0 and "measured" in out and (tmp_path / "cs" / "model.onnx").exists(), out
