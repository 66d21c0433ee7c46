"""The Triton backend: fused kernels for CUDA tensors, and the choice between it and the torch backend.

Nothing here imports Triton at ``import redundancy``. :mod:`redundancy._triton.ops` (the ``torch.library``
custom ops, torch only) is imported the first time a call selects the Triton backend, and
:mod:`redundancy._triton.launch` (the kernel launches, which import Triton) the first time an op runs.

``backend="auto"`` uses Triton only where a committed GPU benchmark measured the kernels ahead of the torch
backend: for the GPU, input dtype and algorithm listed in :data:`TRITON_FASTER` (``python -m benchmarks.gpu
--decide`` derives the entries from a results file), when Triton imports; everywhere else it uses the torch
backend, silently. ``backend="triton"`` raises an error naming what is missing. With the
environment variable ``TRITON_INTERPRET=1`` (set before Triton is imported) the kernels run on CPU tensors
through Triton's interpreter: that is how the test suite checks them without a GPU.
"""

import functools
import importlib
import importlib.util
import os

import torch

from redundancy._ops.standardize import Standardization

__all__ = [
    "TRITON_FASTER",
    "barlow_twins_terms_triton",
    "interpreter_enabled",
    "select_backend",
    "triton_unavailable_reason",
]

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


def _unsupported_dtype_reason(z: torch.Tensor) -> str:
    """Why the Triton kernels cannot take ``z``'s dtype (``""`` when they can)."""
    if z.dtype not in _SUPPORTED_DTYPES:
        return f"backend='triton' supports float16, bfloat16, float32 and float64 inputs, got {z.dtype}"
    return ""


def _unsupported_device_reason(z: torch.Tensor) -> str:
    """Why the installed Triton cannot run on ``z``'s device (``""`` when it can)."""
    if z.device.type != "cuda" and not (z.device.type == "cpu" and interpreter_enabled()):
        return (
            f"backend='triton' needs CUDA tensors, got device {z.device.type} "
            "(set TRITON_INTERPRET=1 to run the kernels on CPU for testing)"
        )
    return ""


#: ``(GPU name, dtype, algorithm)`` where a committed benchmark on that GPU (``benchmarks/results/gpu*/``) measured
#: the Triton kernels faster than the torch backend, forward and backward together, at every shape of that
#: algorithm's class. No GPU benchmark has been committed yet, so ``backend="auto"`` uses the torch backend on every
#: GPU. The GPU name is ``torch.cuda.get_device_name()``, the dtype e.g. ``"bfloat16"``, the algorithm the one the
#: loss computes (``"cross"`` or ``"gram"``).
TRITON_FASTER: frozenset[tuple[str, str, str]] = frozenset()


@functools.cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def _measured_faster(z: torch.Tensor, algorithm: str | None) -> bool:
    """Whether :data:`TRITON_FASTER` lists this GPU, ``z``'s dtype and the algorithm (by shape when ``None``)."""
    if not TRITON_FASTER:
        return False
    if algorithm is None or algorithm == "auto":
        from redundancy import cost

        algorithm = cost.choose_algorithm(*z.shape)
    index = z.device.index if z.device.index is not None else torch.cuda.current_device()
    return (_device_name(index), str(z.dtype).removeprefix("torch."), algorithm) in TRITON_FASTER


def select_backend(backend: str, z: torch.Tensor, *, algorithm: str | None = None) -> str:
    """The backend, ``"torch"`` or ``"triton"``, that computes the loss of views like ``z``.

    ``backend="auto"`` picks Triton only for CUDA tensors where :data:`TRITON_FASTER` lists the GPU, the dtype and
    ``algorithm`` (the algorithm ``cost.choose_algorithm`` picks for ``z``'s shape when not given).

    Raises:
        ValueError: ``backend="triton"`` with a dtype the kernels cannot take, or (Triton installed) on a device
            they cannot run on.
        RuntimeError: ``backend="triton"`` where Triton is not installed (whatever the device).
    """
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if z.device.type != "cuda" or z.dtype not in _SUPPORTED_DTYPES or not _measured_faster(z, algorithm):
            return "torch"
        return "torch" if triton_unavailable_reason() else "triton"
    # The input's own fault first; then what this machine lacks, installation before device (the interpreter
    # that runs the kernels on CPU tensors is part of Triton).
    reason = _unsupported_dtype_reason(z)
    if reason:
        raise ValueError(reason)
    reason = triton_unavailable_reason()
    if reason:
        raise RuntimeError(f"backend='triton' cannot run: {reason}")
    reason = _unsupported_device_reason(z)
    if reason:
        raise ValueError(reason)
    return "triton"


def barlow_twins_terms_triton(
    z1: torch.Tensor, z2: torch.Tensor, *, standardization: Standardization | None, target: float, algorithm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` of the raw views by the Triton kernels (after :func:`select_backend`).

    ``standardization`` standardizes each view over the batch (``None``: the views are used as they are);
    ``target`` is the off-diagonal target and ``algorithm`` ``"cross"`` or ``"gram"``.

    With N >= D the Gram kernels cannot separate the diagonal of C from ‖C‖² in float32 near convergence: the
    cross kernels give the same value exactly there, and are the cheaper ones, so ``"gram"`` runs them (as the
    torch op forms C there).
    """
    from redundancy._triton import ops

    if z1.dtype != z2.dtype:
        dtype = torch.promote_types(z1.dtype, z2.dtype)
        z1, z2 = z1.to(dtype), z2.to(dtype)
    if algorithm == "gram" and z1.shape[0] >= z1.shape[1]:
        algorithm = "cross"
    if standardization is None:
        standardize, correction, eps = False, 0, 0.0
    else:
        standardize, correction, eps = True, 1 if standardization.unbiased else 0, float(standardization.eps)
    outputs = ops.BarlowTwinsTermsFunction.apply(z1, z2, standardize, correction, eps, float(target), algorithm)
    return outputs[0], outputs[1]
