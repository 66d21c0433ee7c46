"""The two Barlow Twins terms from the cheap summaries of C, shared by every algorithm.

With ``c`` the diagonal of C and ``C°`` the matrix C with its diagonal removed (the off-diagonal entries)::

    invariance = Σ_i (1 - c_i)²
    redundancy = Σ_{i≠j} (C_ij - t)² = ‖C°‖² - 2t ΣC° + t² D (D - 1)

``‖C°‖²`` is summed with the diagonal already excluded (the cross algorithm zeroes it in C; the Gram algorithm
forms C for its value when C is no larger than a Gram matrix), never as the difference ``‖C‖² - Σ c_i²``: near
convergence (C ≈ I, N ≥ D) that difference of two numbers close to D is mostly rounding, and can come out negative.

Gradient of ``u * invariance + w * redundancy`` with respect to C, written on C itself or on ``C°``::

    dC = 2w (C  - t 11ᵀ) + diag(g),    g_i = 2u (c_i - 1) - 2w (c_i - t)
       = 2w (C° - t 11ᵀ) + diag(g°),   g°_i = 2u (c_i - 1) + 2w t
"""

import torch

from redundancy._ops.reductions import sum_of_squares


def barlow_twins_terms_from_summaries(
    diagonal: torch.Tensor, frobenius_sq: torch.Tensor, total: torch.Tensor | None, target: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` from ``diag(C)``, ``‖C‖²`` and ``ΣC`` (``ΣC`` only read when ``target != 0``).

    The redundancy is the difference ``‖C‖² - Σ c_i²``, which cancels near convergence: for a backend whose
    ``‖C‖²`` comes accumulated in float64 or more precisely than C's entries. The ops of this package sum the
    off-diagonal entries themselves and call :func:`barlow_twins_terms_from_off_diagonal`.
    """
    dim = diagonal.shape[0]
    if dim == 1:  # no off-diagonal entries: exactly 0, not the rounding residue of ‖C‖² - c²
        return (diagonal - 1).square().sum(), torch.zeros_like(frobenius_sq)
    off_diagonal_sq = frobenius_sq - diagonal.dot(diagonal)
    off_diagonal_total = None if total is None else total - diagonal.sum()
    return barlow_twins_terms_from_off_diagonal(diagonal, off_diagonal_sq, off_diagonal_total, target)


def barlow_twins_terms_from_off_diagonal(
    diagonal: torch.Tensor, off_diagonal_sq: torch.Tensor, off_diagonal_total: torch.Tensor | None, target: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` from ``diag(C)``, ``‖C°‖²`` and ``ΣC°`` (``ΣC°`` only read when ``target != 0``)."""
    invariance = (diagonal - 1).square().sum()
    dim = diagonal.shape[-1]
    redundancy = off_diagonal_sq
    if target != 0.0:
        if off_diagonal_total is None:
            raise ValueError(f"target={target} needs the sum of the off-diagonal entries; none was given")
        redundancy = redundancy - 2.0 * target * off_diagonal_total + target * target * dim * (dim - 1)
    return invariance, redundancy


def off_diagonal_summaries_(
    product: torch.Tensor, *, total: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(diagonal, ‖P°‖², ΣP°)`` of a square ``product``, whose diagonal is zeroed in place (``P`` becomes ``P°``).

    ``ΣP°`` only with ``total``. The diagonal is a new tensor. Both sums are pairwise
    (:mod:`redundancy._ops.reductions`): D² terms in a few float32 accumulators would lose the small ones.
    """
    diagonal = product.diagonal().clone()
    product.diagonal().zero_()
    return diagonal, sum_of_squares(product), product.sum() if total else None


def diagonal_gradient(
    diagonal: torch.Tensor,
    grad_invariance: torch.Tensor,
    grad_redundancy: torch.Tensor,
    target: float,
    *,
    off_diagonal_product: bool = False,
) -> torch.Tensor:
    """``g`` of the module docstring (``g°`` with ``off_diagonal_product``): the diagonal correction of ``dC``."""
    g = (diagonal - 1).mul(2.0 * grad_invariance)
    if not off_diagonal_product:
        return g - (diagonal - target).mul(2.0 * grad_redundancy)
    if target != 0.0:
        g = g + grad_redundancy * (2.0 * target)
    return g


def view_gradient(
    left: torch.Tensor,
    right: torch.Tensor,
    other: torch.Tensor,
    g: torch.Tensor,
    *,
    scale: torch.Tensor | None = None,
    t_scale: torch.Tensor | None = None,
    overwrite_other: bool = False,
) -> torch.Tensor:
    """One view's gradient ``scale * (left @ right) + other * g - t_scale * rowsum(other) 1ᵀ``.

    ``left @ right`` is ``B Cᵀ`` (cross) or ``(B Bᵀ) A`` (Gram, with the scale already on the N×N ``left``) for
    view A, and symmetrically for B; ``scale`` is ``None`` when the product needs none, ``t_scale`` when the
    target is 0. Without ``scale`` the product is accumulated onto ``other * g`` by the matrix product itself
    (one pass over N×D fewer).

    The result is a new tensor, or ``other`` itself with ``overwrite_other`` (only without ``scale``, and only
    when ``other`` is neither ``left`` nor ``right`` and is not needed afterwards).
    """
    shift = other.sum(dim=1, keepdim=True).mul_(t_scale) if t_scale is not None else None
    if scale is None:
        grad = other.mul_(g) if overwrite_other else torch.mul(other, g)
        grad.addmm_(left, right)
    else:
        if overwrite_other:
            raise ValueError("overwrite_other needs scale=None: the product reads other")
        grad = torch.mm(left, right).mul_(scale).addcmul_(other, g)
    if shift is not None:
        grad.sub_(shift)
    return grad


def zero_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The incoming gradient of an output that was not used is ``None``: a zero of ``like``'s dtype then."""
    return grad if grad is not None else like.new_zeros(())


def view_gradients_differentiable(
    a: torch.Tensor,
    b: torch.Tensor,
    grad_invariance: torch.Tensor,
    grad_redundancy: torch.Tensor,
    target: float,
    *,
    algorithm: str,
    needs: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(dL/dA, dL/dB)`` of ``u * invariance + w * redundancy`` in differentiable torch operations (no in-place).

    The same closed form as the ops' own backward, for a backward that must itself be differentiable: through C
    (``"cross"``) or the two N×N Grams (``"gram"``).
    """
    n = a.shape[0]
    diagonal = (a * b).sum(dim=0) / n
    g = diagonal_gradient(diagonal, grad_invariance, grad_redundancy, target, off_diagonal_product=False) / n
    w = grad_redundancy * (2.0 / n)
    if algorithm == "cross":
        c = torch.mm(a.t(), b) / n
        products = (lambda: torch.mm(b, c.t()), lambda: torch.mm(a, c))
    else:
        products = (lambda: torch.mm(torch.mm(b, b.t()), a) / n, lambda: torch.mm(torch.mm(a, a.t()), b) / n)
    gradients: list[torch.Tensor | None] = []
    for need, product, other in zip(needs, products, (b, a), strict=True):
        if not need:
            gradients.append(None)
            continue
        grad = w * product() + other * g
        if target != 0.0:
            grad = grad - (w * target) * other.sum(dim=1, keepdim=True)
        gradients.append(grad)
    return gradients[0], gradients[1]
