"""The Triton backend: fused kernels for CUDA tensors, and the choice between it and the torch backend.

Nothing here imports Triton at ``import redundancy``. :mod:`redundancy._triton.ops` (the ``torch.library``
custom ops, torch only) is imported the first time a call selects the Triton backend, and
:mod:`redundancy._triton.launch` (the kernel launches, which import Triton) the first time an op runs.

``backend="auto"`` uses Triton for CUDA tensors of a supported dtype when Triton imports, and the torch
backend otherwise, silently. ``backend="triton"`` raises an error naming what is missing. With the
environment variable ``TRITON_INTERPRET=1`` (set before Triton is imported) the kernels run on CPU tensors
through Triton's interpreter: that is how the test suite checks them without a GPU.
"""

import importlib
import importlib.util
import os

import torch

__all__ = ["barlow_twins_terms_triton", "interpreter_enabled", "select_backend", "triton_unavailable_reason"]

_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to interpret kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def _triton_found() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError, AttributeError):
        return False


#: Whether a ``triton`` package is on the path (found without importing it, at ``import redundancy``).
_TRITON_FOUND = _triton_found()
_NOT_INSTALLED = "triton is not installed; install the 'triton' extra (pip install 'redundancy[triton]')"
#: The outcome of the first real ``import triton``: ``[""]`` on success, ``[reason]`` on failure.
_IMPORT_OUTCOME: list[str] = []


def triton_unavailable_reason() -> str:
    """Why the Triton backend cannot run here (``""`` when it can).

    Eagerly, the first call imports Triton (and so learns of a broken installation too). Inside a
    ``torch.compile`` trace nothing is imported: the outcome of an earlier eager call is used, or else
    whether the package is on the path.
    """
    if not _IMPORT_OUTCOME:
        if torch.compiler.is_compiling():
            return "" if _TRITON_FOUND else _NOT_INSTALLED
        try:
            importlib.import_module("triton")
        except ImportError as error:
            _IMPORT_OUTCOME.append(f"{_NOT_INSTALLED} ({error})")
        else:
            _IMPORT_OUTCOME.append("")
    return _IMPORT_OUTCOME[0]


def _unsupported_reason(z: torch.Tensor) -> str:
    """Why the Triton kernels cannot run on ``z`` (``""`` when they can)."""
    if z.device.type != "cuda" and not (z.device.type == "cpu" and interpreter_enabled()):
        return (
            f"backend='triton' needs CUDA tensors, got device {z.device.type} "
            "(set TRITON_INTERPRET=1 to run the kernels on CPU for testing)"
        )
    if z.dtype not in _SUPPORTED_DTYPES:
        return f"backend='triton' supports float16, bfloat16, float32 and float64 inputs, got {z.dtype}"
    return ""


def select_backend(backend: str, z: torch.Tensor) -> str:
    """The backend, ``"torch"`` or ``"triton"``, that computes the loss of views like ``z``.

    Raises:
        ValueError: ``backend="triton"`` with tensors the kernels cannot take (device or dtype).
        RuntimeError: ``backend="triton"`` where Triton is not installed.
    """
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if z.device.type != "cuda" or z.dtype not in _SUPPORTED_DTYPES:
            return "torch"
        return "torch" if triton_unavailable_reason() else "triton"
    reason = _unsupported_reason(z)
    if reason:
        raise ValueError(reason)
    reason = triton_unavailable_reason()
    if reason:
        raise RuntimeError(f"backend='triton' cannot run: {reason}")
    return "triton"


def barlow_twins_terms_triton(
    z1: torch.Tensor, z2: torch.Tensor, *, normalization: str, eps: float, target: float, algorithm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` of the raw views by the Triton kernels (after :func:`select_backend`)."""
    from redundancy._triton import ops

    if z1.dtype != z2.dtype:
        dtype = torch.promote_types(z1.dtype, z2.dtype)
        z1, z2 = z1.to(dtype), z2.to(dtype)
    return ops.barlow_twins_terms(z1, z2, normalization=normalization, eps=eps, target=target, algorithm=algorithm)
