"""Reductions that need no temporary of their input's size: column dot products over the batch dimension, and the
sums of squares and of products of whole matrices, as accurate as a pairwise sum.

``torch.linalg.vecdot(x, y, dim=0)`` multiplies into a full N×D temporary and then sums it. On the CPU a fresh
temporary of several MiB costs more than the arithmetic: the allocator returns large freed blocks to the
operating system, and the next one is paid again in page faults (a temporary larger than glibc's mmap threshold,
such as the 64 MiB one at N=2048, D=8192, on every call). The reductions here accumulate row slabs into one small
buffer instead, which stays in cache.

While ``torch.compile`` or ``torch.export`` traces them they are the plain fused expression instead (the compiler needs
no slab loop, and a loop over the batch dimension would specialize the trace on the batch size).

**Accuracy of long sums.** A D×D matrix holds D² terms (67 million at D = 8192). ``flat.dot(flat)`` sums them on the
CPU in a handful of float32 accumulators (the BLAS's vector lanes): each accumulator ends up millions of times larger
than the terms it still adds, which lose most of their bits to rounding (a relative error of 1e-3 at D = 8192, where
torch's pairwise ``.square().sum()`` errs by 1e-7). :func:`sum_of_squares` and :func:`sum_of_products` never let a
float32 accumulator add more than one row or one slab column (at most a few thousand terms), and sum those partial
sums pairwise: the error of torch's pairwise sum, without its temporary.
"""

import torch

#: The accumulator holds about this many elements (2 MiB in float32), and at least :data:`MIN_SLAB_ROWS` rows.
SLAB_ELEMENTS = 1 << 19
#: Fewer rows per slab would spend more on per-call overhead than the smaller buffer saves.
MIN_SLAB_ROWS = 64


def slab_rows(n: int, d: int) -> int:
    """The number of rows :func:`column_dot` accumulates at a time for an ``n``×``d`` input.

    Example:
        >>> slab_rows(2048, 8192), slab_rows(2048, 128), slab_rows(10, 8192)
        (64, 2048, 10)
    """
    return min(n, max(MIN_SLAB_ROWS, SLAB_ELEMENTS // max(d, 1)))


def column_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Σ_n x[n] ⊙ y[n]``: the dot product of each column of ``x`` with the same column of ``y`` (a D-vector).

    Equal to ``torch.linalg.vecdot(x, y, dim=0)`` for real ``x, y`` of the same shape N×D, without its N×D
    temporary (zeros when N = 0, as for a rank that holds no rows of a distributed batch). Meant for the inside
    of the ops' own forward and backward, not for autograd.

    Example:
        >>> x, y = torch.randn(300, 5, dtype=torch.float64), torch.randn(300, 5, dtype=torch.float64)
        >>> torch.allclose(column_dot(x, y), (x * y).sum(dim=0))
        True
    """
    n, d = x.shape
    if torch.compiler.is_compiling() or isinstance(n, torch.SymInt):
        return (x * y).sum(dim=0)
    if n == 0:
        return x.new_zeros(d)
    rows = slab_rows(n, d)
    if rows == n:  # one slab: no slicing
        return torch.mul(x, y).sum(dim=0)
    accumulator = torch.mul(x[:rows], y[:rows])
    for start in range(rows, n, rows):
        stop = min(start + rows, n)
        accumulator[: stop - start].addcmul_(x[start:stop], y[start:stop])
    return accumulator.sum(dim=0)


def sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    """``Σ x²`` over every entry of ``x``, a vector or a matrix (its squared Frobenius norm), without a temporary.

    The norm of each row (one reduction, on any device), then the pairwise sum of their squares: as accurate as
    ``x.square().sum()`` (the module docstring), where ``x.view(-1).dot(x.view(-1))`` is not.

    Example:
        >>> x = torch.rand(3000, 3000, dtype=torch.float64)
        >>> torch.allclose(sum_of_squares(x), x.square().sum(), rtol=1e-13)
        True
    """
    return torch.linalg.vector_norm(x, dim=-1).square().sum()


def sum_of_products(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Σ x ⊙ y`` over every entry of two vectors or matrices of one shape (the Frobenius inner product
    ``⟨x, y⟩_F``), as accurate as ``(x * y).sum()`` (the module docstring), without its temporary.

    Matrices: on the CPU, the column sums of :func:`column_dot` (row slabs accumulated into one small buffer) summed
    pairwise; on other devices each row's dot product (one batched product) summed pairwise. Vectors: their product
    summed pairwise (a temporary of their own size). ``y`` may be ``x`` (then :func:`sum_of_squares`).

    Example:
        >>> x, y = torch.randn(3000, 700, dtype=torch.float64), torch.randn(3000, 700, dtype=torch.float64)
        >>> torch.allclose(sum_of_products(x, y), (x * y).sum(), rtol=1e-12)
        True
    """
    if y is x:
        return sum_of_squares(x)
    if x.dim() == 1:
        return torch.mul(x, y).sum()
    if x.device.type == "cpu":  # a batched product of 1×K by K×1 costs ~20 µs a row on the CPU
        return column_dot(x, y).sum()
    return row_dot(x, y).sum()


def row_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Σ_k x[:, k] ⊙ y[:, k]``: the dot product of each row of ``x`` with the same row of ``y`` (one batched matrix
    product, no temporary of their size).

    Example:
        >>> x, y = torch.randn(5, 300, dtype=torch.float64), torch.randn(5, 300, dtype=torch.float64)
        >>> torch.allclose(row_dot(x, y), (x * y).sum(dim=1))
        True
    """
    return torch.matmul(x.unsqueeze(-2), y.unsqueeze(-1)).view(x.shape[:-1])
