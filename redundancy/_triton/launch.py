"""Kernel launches of the Triton backend: tile sizes, precisions, and the forward and backward passes.

Importing this module imports Triton; :mod:`redundancy._triton.ops` imports it the first time an op runs.
"""

import contextlib
import dataclasses

import torch
import triton
import triton.language as tl

from redundancy._ops.terms import barlow_twins_terms_from_summaries, diagonal_gradient
from redundancy._triton import interpreter_enabled, kernels
from redundancy._triton.ops import accumulation_dtype as _accumulation_dtype

_TRITON_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Fixed tile sizes and launch options (no autotuning, so the interpreter runs the same kernels)."""

    block_n: int
    block_d: int
    #: Columns of a view's gradient that one backward program owns (and so reduces over all rows).
    block_owned: int
    num_warps: int = 4
    num_stages: int = 2


#: Tiles on a GPU: 64×64 tiles of C or of the Grams, 64-row slabs of the inputs; 32 gradient columns per
#: backward program, so that D = 2048 already gives 2 × 64 programs.
GPU_CONFIG = BlockConfig(block_n=64, block_d=64, block_owned=32)
#: Tiles under ``TRITON_INTERPRET=1``: large tiles, so that few programs run one after the other.
INTERPRETER_CONFIG = BlockConfig(block_n=32, block_d=64, block_owned=64)


def block_config() -> BlockConfig:
    """The tile sizes of the next launch (the interpreter's when ``TRITON_INTERPRET=1``)."""
    return INTERPRETER_CONFIG if interpreter_enabled() else GPU_CONFIG


@dataclasses.dataclass(frozen=True)
class _Precision:
    acc: tl.dtype
    dot: tl.dtype
    dot_upcast: bool
    dot_precision: str
    product_precision: str


def _precision(dtype: torch.dtype) -> _Precision:
    """Accumulation and product dtypes for inputs of ``dtype`` (module docstring of :mod:`.kernels`)."""
    if dtype == torch.float64:
        return _Precision(tl.float64, tl.float64, False, "ieee", "ieee")
    if dtype == torch.float32:
        return _Precision(tl.float32, tl.float32, False, "ieee", "ieee")
    # The interpreter's tl.dot mishandles bfloat16 operands (kernels._dot_operand).
    upcast = dtype == torch.bfloat16 and interpreter_enabled()
    return _Precision(tl.float32, _TRITON_DTYPES[dtype], upcast, "ieee", "tf32")


def _on_device(z: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``z``'s GPU the current one: Triton launches on the current device, not on the tensors'."""
    return torch.cuda.device(z.device) if z.device.type == "cuda" else contextlib.nullcontext()


def _divisor(n: int, normalization: str) -> int:
    return n - 1 if normalization == "std" else n


# ---------------------------------------------------------------------------------------------- forward


def _statistics(z1: torch.Tensor, z2: torch.Tensor, normalization: str, eps: float) -> torch.Tensor:
    n, d = z1.shape
    config, precision = block_config(), _precision(z1.dtype)
    stats = torch.empty((5, d), dtype=_accumulation_dtype(z1.dtype), device=z1.device)
    kernels._statistics_kernel[(triton.cdiv(d, config.block_d),)](
        z1,
        z2,
        stats,
        n,
        d,
        *z1.stride(),
        *z2.stride(),
        eps,
        _divisor(n, normalization),
        STANDARDIZE=normalization != "none",
        BLOCK_N=config.block_n,
        BLOCK_D=config.block_d,
        ACC=precision.acc,
        num_warps=config.num_warps,
    )
    return stats


def forward(z1: torch.Tensor, z2: torch.Tensor, normalization: str, eps: float, target: float, algorithm: str):
    """``(invariance, redundancy, stats, gram_a, gram_b, row_sums)``, the outputs of the forward custom op."""
    with _on_device(z1):
        return _forward(z1, z2, normalization, eps, target, algorithm)


def _forward(z1: torch.Tensor, z2: torch.Tensor, normalization: str, eps: float, target: float, algorithm: str):
    n, d = z1.shape
    config, precision = block_config(), _precision(z1.dtype)
    acc_dtype = _accumulation_dtype(z1.dtype)
    stats = _statistics(z1, z2, normalization, eps)
    diagonal = stats[4]
    # Three distinct empty tensors where unused: custom-op outputs may not alias one another.
    gram_a, gram_b, row_sums = (z1.new_empty(0, dtype=acc_dtype) for _ in range(3))
    common = dict(
        STANDARDIZE=normalization != "none",
        BLOCK_N=config.block_n,
        BLOCK_D=config.block_d,
        ACC=precision.acc,
        DOT=precision.dot,
        DOT_UPCAST=precision.dot_upcast,
        DOT_PRECISION=precision.dot_precision,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    if algorithm == "cross":
        blocks = triton.cdiv(d, config.block_d)
        partials = torch.empty((blocks * blocks, 2), dtype=acc_dtype, device=z1.device)
        kernels._cross_forward_kernel[(blocks, blocks)](
            z1, z2, stats, partials, n, d, *z1.stride(), *z2.stride(), **common
        )
        frobenius_sq, total = partials.sum(dim=0).unbind()
    else:
        blocks = triton.cdiv(n, config.block_n)
        gram_a = torch.empty((n, n), dtype=acc_dtype, device=z1.device)
        gram_b = torch.empty((n, n), dtype=acc_dtype, device=z1.device)
        if target != 0.0:
            row_sums = torch.empty((2, n), dtype=acc_dtype, device=z1.device)
        partials = torch.empty(blocks * blocks, dtype=acc_dtype, device=z1.device)
        kernels._gram_forward_kernel[(blocks, blocks)](
            z1,
            z2,
            stats,
            gram_a,
            gram_b,
            partials,
            row_sums,
            n,
            d,
            *z1.stride(),
            *z2.stride(),
            ROW_SUMS=target != 0.0,
            **common,
        )
        frobenius_sq = partials.sum() / (n * n)
        total = row_sums[0].dot(row_sums[1]) / n if target != 0.0 else None
    invariance, redundancy = barlow_twins_terms_from_summaries(diagonal, frobenius_sq, total, target)
    return invariance, redundancy, stats, gram_a, gram_b, row_sums


# --------------------------------------------------------------------------------------------- backward


def _gradient_buffers(z: torch.Tensor, needed: bool, acc_dtype: torch.dtype, zeroed: bool):
    """``(work, dz)`` for one view: ``dz`` in the view's dtype, ``work`` the ``acc_dtype`` scratch (``dz`` itself
    when the dtypes agree); empty tensors when the gradient is not needed."""
    if not needed:
        return z.new_empty(0, dtype=acc_dtype), z.new_empty(0)
    dz = torch.empty(z.shape, dtype=z.dtype, device=z.device)
    work = dz if dz.dtype == acc_dtype else torch.empty(z.shape, dtype=acc_dtype, device=z.device)
    if zeroed:
        work.zero_()
    return work, dz


def backward(grad_invariance: torch.Tensor, grad_redundancy: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, *rest):
    """``(dz1, dz2)``, the outputs of the backward custom op (the arguments are those of :func:`_backward`)."""
    with _on_device(z1):
        return _backward(grad_invariance, grad_redundancy, z1, z2, *rest)


def _backward(
    grad_invariance: torch.Tensor,
    grad_redundancy: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    stats: torch.Tensor,
    gram_a: torch.Tensor,
    gram_b: torch.Tensor,
    row_sums: torch.Tensor,
    normalization: str,
    target: float,
    algorithm: str,
    needs_grad_z1: bool,
    needs_grad_z2: bool,
):
    n, d = z1.shape
    config, precision = block_config(), _precision(z1.dtype)
    acc_dtype = stats.dtype
    grad_invariance = grad_invariance.to(acc_dtype)
    grad_redundancy = grad_redundancy.to(acc_dtype)
    diagonal_grad = diagonal_gradient(stats[4], grad_invariance, grad_redundancy, target).div_(n).contiguous()
    coefficient = (grad_redundancy * (2.0 / n)).reshape(1)
    # The cross kernel accumulates into work over column blocks of the other view: it starts from zeros.
    zeroed = algorithm == "cross"
    work1, dz1 = _gradient_buffers(z1, needs_grad_z1, acc_dtype, zeroed)
    work2, dz2 = _gradient_buffers(z2, needs_grad_z2, acc_dtype, zeroed)
    views = int(needs_grad_z1) + int(needs_grad_z2)
    if views == 0:
        return dz1, dz2
    grid = (triton.cdiv(d, config.block_owned), views)
    first_view = 0 if needs_grad_z1 else 1
    common = dict(
        STANDARDIZE=normalization != "none",
        BLOCK_N=config.block_n,
        BLOCK_D=config.block_d,
        ACC=precision.acc,
        PRODUCT_PRECISION=precision.product_precision,
        BLOCK_OWNED=config.block_owned,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    scalars = (n, d, *z1.stride(), *z2.stride(), target, _divisor(n, normalization), first_view)
    if algorithm == "cross":
        kernels._cross_backward_kernel[grid](
            z1, z2, stats, diagonal_grad, coefficient, work1, work2, dz1, dz2, *scalars,
            DOT=precision.dot, DOT_UPCAST=precision.dot_upcast, DOT_PRECISION=precision.dot_precision, **common,
        )  # fmt: skip
    else:
        kernels._gram_backward_kernel[grid](
            z1, z2, stats, gram_a, gram_b, row_sums, diagonal_grad, coefficient, work1, work2, dz1, dz2, *scalars,
            ROW_SUMS=target != 0.0, **common,
        )  # fmt: skip
    return dz1, dz2
