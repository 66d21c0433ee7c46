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
        gpu.main(["--shapes", "8x16", "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("algorithm", "n", "d"), [("cross", 2048, 1024), ("gram", 256, 8192)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_roofline_counts_the_products_of_the_kernels(algorithm, n, d, dtype):
    pytest.importorskip("triton")
    rows = gpu.roofline(n, d, dtype, algorithm)
    forward = sum(row["flops"] for row in rows if row["pass"] == "forward")
    backward = sum(row["flops"] for row in rows if row["pass"] == "backward")
    if algorithm == "cross":
        # The backward computes C once more (the forward keeps no D×D matrix): 2·N·D² beyond the cost model.
        assert forward == cost.barlow_twins_flops("cross", n, d, backward=False)
        assert backward == cost.barlow_twins_flops("cross", n, d) - forward + 2 * n * d * d
    else:
        assert backward == 4 * n * n * d  # (B Bᵀ) A and (A Aᵀ) B
        assert 2 * n * n * d <= forward <= 4 * n * n * d  # both Grams, tile pairs p <= q only
    # Tensor-core rates: half products at the bf16/fp16 rate (TF32 for a float32 matrix times a tile),
    # float32 as three TF32 products, float64 on the FP64 tensor cores.
    input_peak = {torch.bfloat16: 989.4e12, torch.float32: 494.7e12 / 3, torch.float64: 66.9e12}[dtype]
    accumulated_peak = 494.7e12 if dtype == torch.bfloat16 else input_peak
    for row in rows:
        assert row["peak_flops"] == (accumulated_peak if row["kernel"].endswith("gradient") else input_peak)
        assert row["seconds"] == max(row["flops"] / row["peak_flops"], row["bytes"] / 3.35e12)
        if row["kernel"] not in ("gram_sum", "merge_statistics"):  # every other kernel reads both views
            assert row["bytes"] >= 2 * n * d * torch.empty((), dtype=dtype).element_size()
        assert row["bound"] in ("compute", "memory")


def test_model_prints_every_kernel_at_the_benchmark_shapes(capsys):
    pytest.importorskip("triton")
    assert gpu.main(["--model", "--dtypes", "bfloat16"]) == 0
    output = capsys.readouterr().out
    for n, d in gpu.MODEL_SHAPES:
        assert f"N={n} D={d} bfloat16 ({cost.choose_algorithm(n, d)})" in output
    kernels = ("statistics", "difference", "cross_tile", "cross_gradient", "gram_tile", "gram_gradient")
    for kernel in (*kernels, "standardize_backward"):
        assert kernel in output
    assert output.count("total forward") == len(gpu.MODEL_SHAPES)


def _timed(median_ms):
    return {"time": {"full": {"median_ms": median_ms}}}


def test_decide_lists_only_classes_where_triton_won_every_shape():
    results = {
        "environment": {"gpu": "NVIDIA H100 80GB HBM3"},
        "results": [
            {"dtype": "bfloat16", "algorithm": "gram", "torch": _timed(2.0), "triton": _timed(1.0)},
            {"dtype": "bfloat16", "algorithm": "gram", "torch": _timed(3.0), "triton": _timed(2.0)},
            {"dtype": "bfloat16", "algorithm": "cross", "torch": _timed(2.0), "triton": _timed(1.0)},
            {"dtype": "bfloat16", "algorithm": "cross", "torch": _timed(1.0), "triton": _timed(1.5)},
            {"dtype": "float32", "algorithm": "gram", "torch": _timed(1.0), "triton": _timed(1.1)},
        ],
    }
    assert gpu.decide(results) == {("NVIDIA H100 80GB HBM3", "bfloat16", "gram")}


@pytest.mark.triton
@pytest.mark.slow
def test_check_passes_under_the_interpreter():
    """``--check`` (run on a GPU by benchmarks/gpu_check.sh) holds the kernels to the tests' tolerances; under the
    interpreter it runs the same comparisons on the CPU."""
    pytest.importorskip("triton")
    from redundancy._triton import interpreter_enabled

    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not set in this process")
    assert gpu.check(torch.device("cpu"), shapes=[(37, 70)]) == []
