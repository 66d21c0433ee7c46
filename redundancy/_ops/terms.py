"""The two Barlow Twins terms from the cheap summaries of C, shared by every algorithm.

With ``c`` the diagonal of C, ``‖C‖²`` its squared Frobenius norm and ``ΣC`` the sum of its entries::

    invariance = Σ_i (1 - c_i)²
    redundancy = Σ_{i≠j} (C_ij - t)² = (‖C‖² - Σ c_i²) - 2t (ΣC - Σ c_i) + t² D (D - 1)

Gradient of ``u * invariance + w * redundancy`` with respect to C::

    dC = 2w (C - t 11ᵀ) + diag(g),    g_i = 2u (c_i - 1) - 2w (c_i - t)
"""

import torch


def barlow_twins_terms_from_summaries(
    diagonal: torch.Tensor,
    frobenius_sq: torch.Tensor,
    total: torch.Tensor | None,
    target: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy)`` from ``diag(C)``, ``‖C‖²`` and ``ΣC`` (``ΣC`` only read when ``target != 0``)."""
    invariance = (diagonal - 1).square().sum()
    dim = diagonal.shape[0]
    if dim == 1:  # no off-diagonal entries: exactly 0, not the rounding residue of ‖C‖² - c²
        return invariance, torch.zeros_like(invariance)
    redundancy = frobenius_sq - diagonal.dot(diagonal)
    if target != 0.0:
        redundancy = redundancy - 2.0 * target * (total - diagonal.sum()) + target * target * dim * (dim - 1)
    return invariance, redundancy


def diagonal_gradient(
    diagonal: torch.Tensor, grad_invariance: torch.Tensor, grad_redundancy: torch.Tensor, target: float
) -> torch.Tensor:
    """``g`` of the module docstring: the diagonal correction of ``dC`` (a D-vector)."""
    return (diagonal - 1).mul(2.0 * grad_invariance) - (diagonal - target).mul(2.0 * grad_redundancy)


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
