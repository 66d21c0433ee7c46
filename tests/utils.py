"""Helpers shared by the tests: the dtype tolerance table, relative comparisons and torchrun launches (gloo groups of
spawned processes: :func:`benchmarks.common.spawn_gloo`)."""

import subprocess
import sys

import torch

#: Input dtype -> relative tolerance of the loss against the float64 reference evaluated on the same
#: (already rounded) inputs. The torch backend accumulates half-precision inputs in float32, so every dtype
#: is held to float32 accuracy; the loss is a sum of D + D(D-1) squares, hence the D-independent bound.
LOSS_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-5, torch.float16: 1e-5}

#: Input dtype -> (rtol, atol) of input gradients against the float64 reference's gradients, after the
#: reference gradient is rounded to that dtype (half-precision gradients come back in their own dtype).
GRAD_TOL = {
    torch.float64: (1e-8, 0.0),
    torch.float32: (1e-4, 1e-6),
    torch.bfloat16: (2e-2, 1e-4),
    torch.float16: (2e-3, 1e-5),
}


#: The three standardizations of the views, by name: the options that ask for each.
STANDARDIZATIONS = {"biased": {"correction": 0}, "unbiased": {"correction": 1}, "none": {"standardize": False}}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``|actual - expected| / |expected|`` in float64 (the max-norm for tensors)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300)).item()


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str = "value") -> None:
    error = relative_error(actual, expected)
    assert error <= rtol, f"{what}: relative error {error:.3e} > {rtol:.1e}"


# The gloo teardown abort of torch 2.13 (see benchmarks.common.spawn_gloo): a torchrun launch that reports it is
# repeated; any other failure, or the same abort three times, still fails the test.
_TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(arguments: list[str], *, env: dict, timeout: float, attempts: int = 3):
    """``python -m torch.distributed.run --standalone ARGUMENTS``, repeated only after the teardown abort above."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
    for _ in range(attempts):
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if completed.returncode == 0 or _TEARDOWN_ABORT not in completed.stderr:
            return completed
    return completed
