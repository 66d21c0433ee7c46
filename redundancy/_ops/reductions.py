"""Column reductions over the batch dimension that need no N×D temporary.

``torch.linalg.vecdot(x, y, dim=0)`` multiplies into a full N×D temporary and then sums it. On the CPU a fresh
temporary of several MiB costs more than the arithmetic: the allocator returns large freed blocks to the
operating system, and the next one is paid again in page faults (a temporary larger than glibc's mmap threshold,
such as the 64 MiB one at N=2048, D=8192, on every call). The reductions here accumulate row slabs into one small
buffer instead, which stays in cache.

While ``torch.compile`` or ``torch.export`` traces them they are the plain fused expression instead (the compiler needs
no slab loop, and a loop over the batch dimension would specialize the trace on the batch size).
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
