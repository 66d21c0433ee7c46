"""The Barlow Twins terms and the VICReg covariance energy when the features are split over ranks.

Each rank of a feature group holds all N rows of its own columns (D_p of the D features, at ``offset``), standardized
or centred per feature, which needs nothing from the other ranks. What crosses the columns is summed over the group
(:class:`redundancy._batch.FeatureShards`):

- **gram**: ``‖AᵀB‖² = ⟨A Aᵀ, B Bᵀ⟩`` and ``A Aᵀ = Σ_p A_p A_pᵀ``: each rank forms the N×N Gram of each view's
  columns, and one all-reduce sums them together with the per-feature parts (the invariance, ``Σ c_i²``). The
  backward needs nothing more: ``dA_p = (2w/N²) (B Bᵀ) A_p + B_p diag(g_p) / N`` reads the summed Gram and the
  rank's own columns. The off-diagonal energy is the difference ``⟨A Aᵀ, B Bᵀ⟩ / N² - Σ c_i²``, which cancels
  near convergence when D ≤ N (see :mod:`redundancy._ops.gram`): there a requested ``"gram"`` takes the cross
  form below, whose value does not cancel (:func:`terms_algorithm`; one process likewise forms C when D ≤ N), and
  ``algorithm="auto"`` takes the Gram path for N well below D only.
- **cross**: the second view's columns are gathered (every rank then holds B, N×D; of several views, every view
  but the first is gathered once) and each rank forms its block row
  ``C_p = A_pᵀ B / N`` (D_p×D) of C, whose off-diagonal entries are summed directly (the diagonal block's diagonal
  is at column ``offset``): no cancellation. Scalars are summed over the group; the gathered view's gradient is
  summed over the group in backward (each rank's block row reads every column of B).

Both are written in differentiable torch operations over the two collectives of
:class:`~redundancy._batch.FeatureShards`, whose backwards are exact because every rank ends with the same loss.
Their long sums (of N×N Grams, of block rows of C) are pairwise (:mod:`redundancy._ops.reductions`).
"""

import torch

from redundancy._ops.products import symmetric_gram
from redundancy._ops.reductions import sum_of_products
from redundancy._ops.reductions import sum_of_squares


class _Gram(torch.autograd.Function):
    """``x xᵀ`` (N×N) from its lower block-triangle, with the backward ``(g + gᵀ) x``: one N×N×D product.

    Autograd's own backward of ``x @ x.t()`` differentiates both factors, two products of the same size.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return symmetric_gram(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad + grad.t()) @ x


def gram(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` with a backward of one matrix product (see :class:`_Gram`)."""
    return _Gram.apply(x)


class _Inner(torch.autograd.Function):
    """``⟨x, y⟩_F`` summed pairwise without a temporary (:func:`~redundancy._ops.reductions.sum_of_products`), with
    the backward ``(g y, g x)``, itself differentiable."""

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum_of_products(x, y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y = ctx.saved_tensors
        return grad * y, grad * x


def inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Σ x ⊙ y`` of two matrices of one shape, differentiable (see :class:`_Inner`)."""
    return _Inner.apply(x, y)


def terms_algorithm(algorithm: str, n: int, dim: int) -> str:
    """The algorithm that computes the terms of ``n`` rows of ``dim`` features: ``"gram"`` takes the cross form
    when D ≤ N, where the Gram difference cancels near convergence (float32 then misses the off-diagonal energy
    entirely, or makes it negative). Every rank of the grid has the same N and D, so all take the same path.

    Example:
        >>> terms_algorithm("gram", 256, 32), terms_algorithm("gram", 32, 256), terms_algorithm("cross", 32, 256)
        ('cross', 'gram', 'cross')
    """
    return "cross" if algorithm == "gram" and dim <= n else algorithm


def _block_off_diagonal(product: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(diagonal, off)``: the diagonal entries of a block row of a square matrix, and the block without them.

    ``product`` holds rows ``offset .. offset + D_p`` of a D×D matrix; its diagonal entries are ``product[i,
    offset + i]``. ``off`` is a new tensor (differentiable) with those entries zeroed.
    """
    diagonal = product.diagonal(offset=offset)
    return diagonal, product.diagonal_scatter(torch.zeros_like(diagonal), offset=offset)


def barlow_twins_terms_over_features(
    views: list[torch.Tensor], *, target: float, features, algorithm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` of the full views, of which ``views`` (N×D_p, standardized) are this rank's columns.

    For V views, each term is the mean over the V(V-1)/2 pairs ``u < v``; the V views share their Grams (the Gram
    path) or their gathered columns (the cross path). ``features`` is the
    :class:`~redundancy._batch.FeatureShards` of the columns; both terms are those of the full N×D views and
    are the same on every rank of the feature group.
    """
    n, dim, count = views[0].shape[0], features.dim, len(views)
    pairs = [(u, v) for u in range(count) for v in range(u + 1, count)]
    with_target = target != 0.0
    if algorithm == "gram":
        diagonals = [torch.linalg.vecdot(views[u], views[v], dim=0) / n for u, v in pairs]
        parts = [
            torch.stack([(c - 1).square().sum() for c in diagonals]),
            torch.stack([c.square().sum() for c in diagonals]),
        ]
        if with_target:
            parts += [torch.stack([view.sum(dim=1) for view in views]), torch.stack([c.sum() for c in diagonals])]
        invariance, diagonal_sq, *totals, grams = features.sum(*parts, torch.stack([gram(x) for x in views]))
        off_diagonal_sq = torch.stack([inner(grams[u], grams[v]) for u, v in pairs]) / (n * n) - diagonal_sq
        if with_target:
            row_sums, diagonal_total = totals
            off_diagonal_total = torch.stack([(row_sums[u] * row_sums[v]).sum() for u, v in pairs]) / n - diagonal_total
    elif algorithm == "cross":
        gathered = {v: features.gather_columns(views[v]) for v in range(1, count)}
        blocks = [_block_off_diagonal(views[u].t() @ gathered[v] / n, features.offset) for u, v in pairs]
        parts = [
            torch.stack([(c - 1).square().sum() for c, _ in blocks]),
            torch.stack([o.square().sum() for _, o in blocks]),
        ]
        if with_target:
            parts.append(torch.stack([o.sum() for _, o in blocks]))
        invariance, off_diagonal_sq, *totals = features.sum(*parts)
        if with_target:
            (off_diagonal_total,) = totals
    else:
        raise ValueError(f"algorithm must be 'cross' or 'gram', got {algorithm!r}")
    redundancy = off_diagonal_sq
    if with_target:
        redundancy = redundancy - 2.0 * target * off_diagonal_total + target * target * dim * (dim - 1)
    return invariance.mean(), redundancy.mean()


def off_diagonal_energy_parts(x: torch.Tensor, *, features, algorithm: str) -> list[torch.Tensor]:
    """This rank's parts of ``Σ_{i≠j} (XᵀX)_ij²`` of the full X, of which ``x`` (N×D_p) holds its columns.

    Sum the parts over the feature group (with the caller's other parts, in one all-reduce) and pass the sums to
    :func:`off_diagonal_energy_from_parts`. ``"gram"``: the N×N Gram of the columns and ``Σ_i (x_iᵀx_i)²``;
    ``"cross"``: the off-diagonal energy of the block row ``x_pᵀ X`` (the columns are gathered first).
    """
    if algorithm == "gram":
        squares = torch.linalg.vecdot(x, x, dim=0)
        return [gram(x), squares.square().sum()]
    if algorithm == "cross":
        _, off = _block_off_diagonal(x.t() @ features.gather_columns(x), features.offset)
        return [off.square().sum()]
    raise ValueError(f"algorithm must be 'cross' or 'gram', got {algorithm!r}")


def off_diagonal_energy_from_parts(parts: list[torch.Tensor], *, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} (XᵀX)_ij²`` from the parts of :func:`off_diagonal_energy_parts` summed over the feature group."""
    if algorithm == "gram":
        gram, diagonal_sq = parts
        return sum_of_squares(gram) - diagonal_sq
    (energy,) = parts
    return energy
