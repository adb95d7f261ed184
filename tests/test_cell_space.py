"""The NASNet/DARTS/PNAS cell space: its count, canonical form, strings, network and restriction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.devices import DeviceConstraints
from hwnas.errors import HwnasError
from hwnas.search.spaces import CELL_OPS, InfeasibleError, cell_count, create_space

ARCH = ("normal=sep_conv_3x3~0+sep_conv_3x3~1|skip_connect~0+sep_conv_5x5~2|dil_conv_3x3~1+avg_pool_3x3~3|"
        "none~0+max_pool_3x3~4;reduce=max_pool_3x3~0+max_pool_3x3~1|skip_connect~2+max_pool_3x3~1|"
        "dil_conv_5x5~0+skip_connect~2|skip_connect~2+avg_pool_3x3~4")


def test_size_is_the_pnas_count() -> None:
    assert cell_count(1) == 2 ** 2 * 8 ** 2 and cell_count(2) == (2 ** 2 * 64) * (3 ** 2 * 64)
    for b in (1, 2, 5):
        assert create_space("cell", blocks=b).size == cell_count(b) ** 2
    assert len(create_space("cell", blocks=5).decisions) == 2 * 5 * 4


def test_canonical_form_and_string_round_trip() -> None:
    sp = create_space("cell")
    a = sp.from_string(ARCH)
    assert sp.from_string(sp.to_string(a)) == a
    cells = sp.cells(a)
    assert cells["normal"][3] == (0, "none", 4, "max_pool_3x3")
    swapped = sp.from_string(ARCH.replace("skip_connect~0+sep_conv_5x5~2", "sep_conv_5x5~2+skip_connect~0"))
    assert swapped == a  # a block's two halves in either order are one architecture
    renamed = sp.from_string(ARCH.replace("none~0+max_pool_3x3~4", "none~3+max_pool_3x3~4"))
    assert renamed == a  # a zero op's input does not matter


@pytest.mark.parametrize("text,words", [
    ("garbage", "not a cell architecture string"),
    ("normal=sep_conv_3x3~0", "has 1 blocks, the space 4"),
    (ARCH.replace("sep_conv_5x5", "conv_7x7"), "unknown cell op 'conv_7x7'"),
    (ARCH.replace("avg_pool_3x3~3", "avg_pool_3x3~9"), "not allowed"),
    (ARCH.split("|", 1)[0] + ";reduce=" + ARCH.split("reduce=")[1], "has 1 blocks"),
])
def test_bad_strings_say_what_is_wrong(text, words) -> None:
    with pytest.raises(HwnasError, match=words):
        create_space("cell").from_string(text)


def test_network_runs_and_op_configs_follow_it() -> None:
    sp = create_space("cell", channels=8, layers=5, resolution=32)
    a = sp.from_string(ARCH)
    with torch.no_grad():
        assert tuple(sp.build_module(a, classes=10)(torch.randn(2, 3, 32, 32)).shape) == (2, 10)
    weights = sum(p.numel() for n, p in sp.build_module(a).named_parameters() if p.dim() > 1 or "head.2" in n)
    assert abs(sp.params(a) - weights) / weights < 0.05  # convs and the classifier (+ folded BN biases)
    assert sp.reduction_layers() == (1, 3)


def test_restriction_drops_what_the_device_cannot_run() -> None:
    sp = create_space("cell", blocks=2).restrict(DeviceConstraints(allowed_op_types=("dwconv", "pwconv", "maxpool")))
    kept = {sp.decisions[1].options[i] for i in sp.allowed[1]}
    assert "avg_pool_3x3" not in kept and {"sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"} <= kept
    sp5 = create_space("cell", blocks=2).restrict(DeviceConstraints(allowed_kernel_sizes=(3,)))
    assert not any("5x5" in sp5.decisions[1].options[i] for i in sp5.allowed[1])
    rng = np.random.default_rng(0)
    assert all(sp.cells(sp.sample(rng)) for _ in range(10))
    assert len(CELL_OPS) == 8
    with pytest.raises(HwnasError, match="blocks"):
        create_space("cell", blocks=0)
    assert InfeasibleError
