"""The obviously-correct Barlow Twins formula, with the official implementation's semantics.

This is the one reference of the project: tests, benchmarks and docs import it. It follows
``facebookresearch/barlowtwins`` ``main.py`` (``BatchNorm1d`` without affine parameters, ``C = bn(z1)ᵀ bn(z2) / N``,
the off-diagonal entries gathered explicitly) and its published variants, and is written for clarity, not speed:
it builds C, an off-diagonal copy of it and autograd's intermediates (several D×D tensors).
"""

import torch

__all__ = ["barlow_twins_loss_reference", "barlow_twins_terms_reference", "batch_standardize_reference"]


def batch_standardize_reference(z: torch.Tensor, *, normalization: str = "batchnorm", eps: float = 1e-5):
    """``(z - mean) / sqrt(var + eps)`` per column; biased variance for ``"batchnorm"``, unbiased for ``"std"``."""
    if normalization == "none":
        return z
    unbiased = normalization == "std"
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=unbiased) + eps)


def barlow_twins_terms_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    eps: float = 1e-5,
    normalization: str = "batchnorm",
    off_diagonal_target: float = 0.0,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy) = (Σ_i (1 - C_ii)², Σ_{i≠j} (C_ij - t)²)``.

    Args:
        upcast: compute in float64 (the ground truth for the tolerance tables); otherwise in the inputs' dtype,
            as plain PyTorch code would.
    """
    if upcast:
        z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    c = batch_standardize_reference(z1, normalization=normalization, eps=eps).T @ batch_standardize_reference(
        z2, normalization=normalization, eps=eps
    )
    c = c / n
    invariance = (1 - torch.diagonal(c)).pow(2).sum()
    off_diagonal_mask = ~torch.eye(d, dtype=torch.bool, device=c.device)
    redundancy = (c[off_diagonal_mask] - off_diagonal_target).pow(2).sum()
    return invariance, redundancy


def barlow_twins_loss_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float | str = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    normalization: str = "batchnorm",
    off_diagonal_target: float = 0.0,
    upcast: bool = False,
) -> torch.Tensor:
    """``scale * (Σ_i (1 - C_ii)² + lambd · Σ_{i≠j} (C_ij - t)²)``.

    The options mean what they mean in :func:`redundancy.barlow_twins_loss`.

    Example:
        >>> z1, z2 = torch.randn(32, 16, dtype=torch.float64), torch.randn(32, 16, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(barlow_twins_loss_reference(z1, z2), redundancy.barlow_twins_loss(z1, z2), rtol=1e-12)
        True
    """
    if lambd == "auto":
        lambd = 1.0 / z1.shape[1]
    invariance, redundancy = barlow_twins_terms_reference(
        z1, z2, eps=eps, normalization=normalization, off_diagonal_target=off_diagonal_target, upcast=upcast
    )
    return scale * (invariance + lambd * redundancy)
