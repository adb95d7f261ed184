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
