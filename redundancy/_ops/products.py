"""The symmetric product ``X Xᵀ`` computed from its lower block-triangle.

BLAS has a symmetric rank-k update (``syrk``) but PyTorch does not expose it, and ``torch.mm(x, x.t())``
computes both triangles. Splitting the rows of X into k blocks and multiplying each block only by itself and the
blocks after it costs ``(1 + 1/k)·N²·D`` FLOPs instead of ``2·N²·D``; the upper triangle is a copy of the lower
one (O(N²) work). Each product is one block column of the Gram, ``X[i:] X[i:j]ᵀ`` (tall and narrow), which the
CPU's BLAS runs a little faster than the same block as a row, ``X[i:j] X[i:]ᵀ``. Small products (fewer than
:data:`MIN_SPLIT_WORK` multiply-adds) stay whole, and blocks have at least :data:`MIN_BLOCK_ROWS` rows, so that
every product still runs at full matrix-product speed. While ``torch.compile`` or ``torch.export`` traces it,
the product is one ``torch.mm`` (the split depends on the batch size, which a dynamic-shape trace keeps symbolic).
"""

import itertools

import torch

#: Row blocks smaller than this are not worth a product of their own.
MIN_BLOCK_ROWS = 64
#: At most this many row blocks (k): the saving ``(k-1)/(2k)`` is already 3/8 at k = 4.
MAX_BLOCKS = 4
#: Products of fewer multiply-adds (N²·D) than this are left whole: the blocks' overhead would eat the saving.
MIN_SPLIT_WORK = 2**26


def symmetric_blocks(n: int, d: int) -> int:
    """The number k of row blocks :func:`symmetric_gram` uses for an ``n``×``d`` input.

    Example:
        >>> [symmetric_blocks(n, 8192) for n in (32, 128, 256, 2048)], symmetric_blocks(256, 512)
        ([1, 2, 4, 4], 1)
    """
    if n * n * d < MIN_SPLIT_WORK:
        return 1
    return max(1, min(MAX_BLOCKS, n // MIN_BLOCK_ROWS))


def symmetric_gram_flops(n: int, d: int) -> int:
    """FLOPs of :func:`symmetric_gram` for an ``n``×``d`` input: ``(1 + 1/k)·n²·d`` for k row blocks.

    Example:
        >>> symmetric_gram_flops(256, 8), symmetric_gram_flops(1024, 8192) / (2 * 1024 * 1024 * 8192)
        (1048576, 0.625)
    """
    bounds = _block_bounds(n, symmetric_blocks(n, d))
    return sum(2 * (stop - start) * (n - start) * d for start, stop in bounds)


def _block_bounds(n: int, blocks: int) -> list[tuple[int, int]]:
    edges = [round(i * n / blocks) for i in range(blocks + 1)]
    return list(itertools.pairwise(edges))


def symmetric_gram(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` (N×N) for ``x`` of shape N×D, from the lower block-triangle (not differentiable).

    Example:
        >>> x = torch.randn(300, 1024, dtype=torch.float64)
        >>> torch.allclose(symmetric_gram(x), x @ x.T)
        True
    """
    n, d = x.shape
    if torch.compiler.is_compiling() or isinstance(n, torch.SymInt):
        return torch.mm(x, x.t())
    blocks = symmetric_blocks(n, d)
    if blocks == 1:
        return torch.mm(x, x.t())
    gram = x.new_empty(n, n)
    for start, stop in _block_bounds(n, blocks):
        column_block = torch.mm(x[start:], x[start:stop].t())  # (n-start) × (stop-start): the diagonal block and below
        gram[start:, start:stop] = column_block
        gram[start:stop, stop:] = column_block[stop - start :].t()
    return gram
