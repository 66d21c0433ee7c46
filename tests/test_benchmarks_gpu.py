"""The pure-Python pieces of ``benchmarks.gpu`` (the measurements themselves need a GPU)."""

import argparse

import pytest
import torch

from benchmarks import gpu
from redundancy import cost


def test_parse_shape():
    assert gpu.parse_shape("256x8192") == (256, 8192)
    with pytest.raises(argparse.ArgumentTypeError, match="NxD"):
        gpu.parse_shape("256-8192")


@pytest.mark.parametrize("algorithm", ["cross", "gram"])
def test_mode_flops_split_the_full_count(algorithm):
    n, d = 1024, 2048
    forward, backward = gpu.mode_flops(algorithm, n, d, "forward"), gpu.mode_flops(algorithm, n, d, "backward")
    assert forward + backward == gpu.mode_flops(algorithm, n, d, "full") == cost.barlow_twins_flops(algorithm, n, d)
    assert forward == cost.barlow_twins_flops(algorithm, n, d, backward=False)


def test_main_without_cuda_exits_with_a_reason(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu.main(["--shapes", "8x16", "--json", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()
