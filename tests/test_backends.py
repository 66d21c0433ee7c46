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


def test_import_is_lazy_and_missing_triton_is_reported():
    """``import redundancy`` never imports Triton; without it auto works and explicit Triton says why."""
    result = _run_isolated(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError, as if it were not installed
        import torch, redundancy
        assert "triton" not in sys.modules or sys.modules["triton"] is None
        z = torch.randn(8, 4)
        redundancy.barlow_twins_loss(z, z, backend="auto")
        try:
            redundancy.barlow_twins_loss(z, z, backend="triton")
        except RuntimeError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "backend='triton' cannot run: triton is not installed" in result.stdout


def test_import_redundancy_does_not_import_triton():
    result = _run_isolated("import sys, redundancy; print('triton' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
