from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hwnas.devices import default_registry
from hwnas.profilers import ProfileStore
from hwnas.testing import FAST_POLICY

HAS_TVM = importlib.util.find_spec("tvm") is not None


@pytest.fixture
def registry():
    return default_registry()


@pytest.fixture
def store(tmp_path: Path):
    with ProfileStore(tmp_path / "profiles.sqlite") as s:
        yield s


@pytest.fixture
def fast_policy():
    return FAST_POLICY


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small real predictor: profiled on cpu-ort, calibrated on 5 measured whole models."""
    from hwnas.cli import main

    d = tmp_path_factory.mktemp("pred")
    rc = main(["predictor", "train", "--device", "cpu-ort", "--db", str(d / "p.sqlite"), "--out", str(d / "predictor"),
               "--samples", "40", "--adaptive", "10", "--quick", "--max-time-per-op", "0.03", "--no-drift-check",
               "--model-passes", "1", "--json"])
    assert rc == 0
    return d
