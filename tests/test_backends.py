"""Choosing between the torch and Triton backends: silent fallback for auto, clear errors for explicit Triton."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import redundancy
from redundancy._triton import select_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_auto_on_cpu_is_torch_even_when_interpreting(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("auto", torch.randn(4, 3)) == "torch"
    assert select_backend("torch", torch.randn(4, 3)) == "torch"


def test_explicit_triton_on_cpu_without_interpreter_names_the_reason(monkeypatch):
    """With Triton installed, CPU tensors outside the interpreter are refused naming CUDA and the interpreter
    (without Triton, the error says that it is not installed: the next test but one)."""
    pytest.importorskip("triton", reason="the message for CPU tensors where Triton is installed")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"backend='triton' needs CUDA tensors, got device cpu .*TRITON_INTERPRET=1"):
        redundancy.barlow_twins_loss(z, z, backend="triton")


def test_explicit_triton_with_unsupported_dtype_names_it(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    z = torch.randn(8, 4).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"float16, bfloat16, float32 and float64 .*float8_e4m3fn"):
        select_backend("triton", z)


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the working tree's package first on the path."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TRITON_INTERPRET": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


def test_missing_triton_leaves_auto_working_and_explicit_triton_says_why():
    """Without Triton the package imports, ``backend="auto"`` computes the loss, explicit Triton names the reason.

    (That ``import redundancy`` does not import Triton where it is installed is the next test.)
    """
    result = _run_isolated(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError, as if it were not installed
        import torch, redundancy, redundancy.reference
        z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
        expected = redundancy.reference.barlow_twins_loss_reference(z1, z2)
        print("auto equals the reference:", torch.allclose(redundancy.barlow_twins_loss(z1, z2), expected))
        try:
            redundancy.barlow_twins_loss(z1, z2, backend="triton")
        except RuntimeError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "auto equals the reference: True" in result.stdout
    assert "backend='triton' cannot run: triton is not installed" in result.stdout


def test_import_redundancy_does_not_import_triton():
    result = _run_isolated("import sys, redundancy; print('triton' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
