"""The obviously-correct Barlow Twins formula, with the official implementation's semantics.

This is the one reference of the project: tests, benchmarks and docs import it. It follows
``facebookresearch/barlowtwins`` ``main.py`` (``BatchNorm1d`` without affine parameters, ``C = bn(z1)ᵀ bn(z2) / N``,
the off-diagonal entries gathered explicitly) and its published variants, and is written for clarity, not speed:
it builds C, an off-diagonal copy of it and autograd's intermediates (several D×D tensors).

The rest of the family is transcribed the same way from the published formulas: VICReg from
``facebookresearch/vicreg`` ``main_vicreg.py`` (and the conventions of lightly and solo-learn as options), the
regularizers, losses and diagnostics from their papers, each cited beside its function.
"""

from typing import Literal

import torch

__all__ = [
    "barlow_twins_loss_reference",
    "barlow_twins_terms_reference",
    "batch_standardize_reference",
    "cca_ssg_loss_reference",
    "cross_correlation_summary_reference",
    "decov_loss_reference",
    "effective_rank_reference",
    "mixed_barlow_twins_regularizer_reference",
    "spectral_contrastive_loss_reference",
    "total_coding_rate_reference",
    "vicreg_loss_reference",
    "vicreg_terms_reference",
]


def batch_standardize_reference(
    z: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    """``(z - mean) / sqrt(var + eps)`` per column, the variance divided by ``N - correction``; ``z`` itself when
    ``standardize=False``.

    Example:
        >>> z = torch.randn(16, 4, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(batch_standardize_reference(z), redundancy.batch_standardize(z), rtol=1e-12)
        True
    """
    if not standardize:
        return z
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, correction=correction) + eps)


def barlow_twins_terms_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    eps: float = 1e-5,
    correction: int = 0,
    standardize: bool = True,
    off_diagonal_target: float = 0.0,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, redundancy) = (Σ_i (1 - C_ii)², Σ_{i≠j} (C_ij - t)²)``.

    Args:
        upcast: compute in float64 (the ground truth for the tolerance tables); otherwise in the inputs' dtype,
            as plain PyTorch code would.

    Example:
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, upcast=True)
        >>> invariance.dtype, bool(invariance > 0), bool(redundancy_term > 0)
        (torch.float64, True, True)
    """
    if upcast:
        z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = batch_standardize_reference(z1, correction=correction, standardize=standardize, eps=eps)
    b = batch_standardize_reference(z2, correction=correction, standardize=standardize, eps=eps)
    c = a.T @ b / n
    invariance = (1 - torch.diagonal(c)).pow(2).sum()
    off_diagonal_mask = ~torch.eye(d, dtype=torch.bool, device=c.device)
    redundancy = (c[off_diagonal_mask] - off_diagonal_target).pow(2).sum()
    return invariance, redundancy


def barlow_twins_loss_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float | Literal["auto"] = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    correction: int = 0,
    standardize: bool = True,
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
    weight = 1.0 / z1.shape[1] if lambd == "auto" else lambd
    invariance, redundancy = barlow_twins_terms_reference(
        z1,
        z2,
        eps=eps,
        correction=correction,
        standardize=standardize,
        off_diagonal_target=off_diagonal_target,
        upcast=upcast,
    )
    return scale * (invariance + weight * redundancy)


def _off_diagonal_entries(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)]


def vicreg_terms_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    gamma: float = 1.0,
    eps: float = 1e-4,
    correction: int = 1,
    variance_reduction: str = "mean",
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(invariance, variance, covariance)`` of VICReg, as ``main_vicreg.py`` computes them.

    ``invariance = mse(z1, z2)``; each view is centred, ``std = sqrt(var + eps)`` (divisor ``N - correction``),
    ``variance = mean(relu(gamma - std1)) / 2 + mean(relu(gamma - std2)) / 2`` (no ``/ 2`` for
    ``variance_reduction="sum"``, solo-learn), ``cov = xᵀx / (N - correction)`` and
    ``covariance = Σ_{i≠j} cov1_ij² / D + Σ_{i≠j} cov2_ij² / D``.

    Example:
        >>> z1, z2 = torch.randn(32, 16, dtype=torch.float64), torch.randn(32, 16, dtype=torch.float64)
        >>> import redundancy
        >>> terms = redundancy.vicreg_terms(z1, z2)
        >>> expected = vicreg_terms_reference(z1, z2)
        >>> all(torch.allclose(a, b, rtol=1e-12) for a, b in zip(terms[1:], expected))
        True
    """
    if upcast:
        z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    invariance = torch.nn.functional.mse_loss(z1, z2)
    x1, x2 = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
    std1 = torch.sqrt(x1.var(dim=0, correction=correction) + eps)
    std2 = torch.sqrt(x2.var(dim=0, correction=correction) + eps)
    variance = torch.relu(gamma - std1).mean() + torch.relu(gamma - std2).mean()
    if variance_reduction == "mean":
        variance = variance / 2
    cov1 = (x1.T @ x1) / (n - correction)
    cov2 = (x2.T @ x2) / (n - correction)
    covariance = _off_diagonal_entries(cov1).pow(2).sum() / d + _off_diagonal_entries(cov2).pow(2).sum() / d
    return invariance, variance, covariance


def vicreg_loss_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    correction: int = 1,
    variance_reduction: str = "mean",
    upcast: bool = False,
) -> torch.Tensor:
    """``invariance_weight · invariance + variance_weight · variance + covariance_weight · covariance``.

    The options mean what they mean in :func:`redundancy.vicreg_loss`.

    Example:
        >>> z1, z2 = torch.randn(32, 16, dtype=torch.float64), torch.randn(32, 16, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(vicreg_loss_reference(z1, z2), redundancy.vicreg_loss(z1, z2), rtol=1e-12)
        True
    """
    invariance, variance, covariance = vicreg_terms_reference(
        z1, z2, gamma=gamma, eps=eps, correction=correction, variance_reduction=variance_reduction, upcast=upcast
    )
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def effective_rank_reference(z: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    """RankMe (Garrido et al., 2023): ``exp(-Σ p log p)`` with ``p = σ / Σσ + eps``, σ the singular values of z.

    Example:
        >>> z = torch.randn(64, 8, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(effective_rank_reference(z), redundancy.effective_rank(z), rtol=1e-10)
        True
    """
    singular_values = torch.linalg.svdvals(z.double())
    p = singular_values / singular_values.sum() + eps
    return torch.exp(torch.special.entr(p).sum())  # entr(p) = -p log p, 0 at p = 0


def cross_correlation_summary_reference(
    z1: torch.Tensor, z2: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean_i C_ii, sqrt(mean_{i≠j} C_ij²))`` of the Barlow Twins cross-correlation, in float64.

    Example:
        >>> z = torch.randn(64, 8, dtype=torch.float64)
        >>> mean_diagonal, off_diagonal_rms = cross_correlation_summary_reference(z, z)
        >>> round(mean_diagonal.item(), 4)  # a view is perfectly correlated with itself
        1.0
    """
    z1, z2 = z1.double(), z2.double()
    a = batch_standardize_reference(z1, correction=correction, standardize=standardize, eps=eps)
    b = batch_standardize_reference(z2, correction=correction, standardize=standardize, eps=eps)
    c = a.T @ b / z1.shape[0]
    off = _off_diagonal_entries(c)
    return torch.diagonal(c).mean(), off.pow(2).mean().sqrt() if off.numel() else torch.zeros((), dtype=c.dtype)


def decov_loss_reference(h: torch.Tensor, *, correction: int = 0, upcast: bool = False) -> torch.Tensor:
    """DeCov (Cogswell et al., 2016): ``½ (‖C‖_F² - ‖diag C‖²)`` with C the batch covariance of h (N - correction).

    Example:
        >>> h = torch.randn(32, 16, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(decov_loss_reference(h), redundancy.decov_loss(h), rtol=1e-12)
        True
    """
    if upcast:
        h = h.double()
    centred = h - h.mean(dim=0)
    covariance = centred.T @ centred / (h.shape[0] - correction)
    return 0.5 * (covariance.pow(2).sum() - torch.diagonal(covariance).pow(2).sum())


def total_coding_rate_reference(z: torch.Tensor, *, eps: float = 0.2, upcast: bool = False) -> torch.Tensor:
    """Total coding rate ``½ logdet(I_D + D / (N·eps) zᵀz)`` (the D×D form, ``torch.logdet``), as EMP-SSL writes it.

    Example:
        >>> z = torch.randn(16, 32, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(total_coding_rate_reference(z), redundancy.total_coding_rate(z), rtol=1e-10)
        True
    """
    if upcast:
        z = z.double()
    n, d = z.shape
    identity = torch.eye(d, dtype=z.dtype, device=z.device)
    return 0.5 * torch.logdet(identity + d / (n * eps) * z.T @ z)


def mixed_barlow_twins_regularizer_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_mixed: torch.Tensor,
    permutation: torch.Tensor,
    alpha: float,
    *,
    lambd: float = 0.005,
    scale: float = 5.0,
    correction: int = 1,
    standardize: bool = True,
    eps: float = 0.0,
    upcast: bool = False,
) -> torch.Tensor:
    """Mixed Barlow Twins (Bandara et al., 2023) as ``wgcban/mix-bt`` ``main.py`` writes it, four D×D matrices.

    ``scale · lambd · (‖C(M, A) - α C(A, A) - (1-α) C(B[π], A)‖² + ‖C(M, B) - α C(A, B) - (1-α) C(B[π], B)‖²)``.

    Example:
        >>> z1, z2, z_mixed = (torch.randn(16, 8, dtype=torch.float64) for _ in range(3))
        >>> permutation = torch.randperm(16)
        >>> import redundancy
        >>> value = redundancy.mixed_barlow_twins_regularizer(z1, z2, z_mixed, permutation, 0.3)
        >>> torch.allclose(mixed_barlow_twins_regularizer_reference(z1, z2, z_mixed, permutation, 0.3), value)
        True
    """
    if upcast:
        z1, z2, z_mixed = z1.double(), z2.double(), z_mixed.double()
    n = z1.shape[0]
    a = batch_standardize_reference(z1, correction=correction, standardize=standardize, eps=eps)
    b = batch_standardize_reference(z2, correction=correction, standardize=standardize, eps=eps)
    m = batch_standardize_reference(z_mixed, correction=correction, standardize=standardize, eps=eps)
    cc_m_1 = m.T @ a / n
    cc_m_1_target = alpha * (a.T @ a) / n + (1 - alpha) * (b[permutation].T @ a) / n
    cc_m_2 = m.T @ b / n
    cc_m_2_target = alpha * (a.T @ b) / n + (1 - alpha) * (b[permutation].T @ b) / n
    return scale * lambd * ((cc_m_1 - cc_m_1_target).pow(2).sum() + (cc_m_2 - cc_m_2_target).pow(2).sum())


def cca_ssg_loss_reference(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float = 1e-3,
    correction: int = 1,
    standardize: bool = True,
    eps: float = 0.0,
    upcast: bool = False,
) -> torch.Tensor:
    """CCA-SSG (Zhang et al., 2021) as the official code writes it: ``-tr(C) + λ (‖I - C1‖² + ‖I - C2‖²)``.

    Example:
        >>> z1, z2 = torch.randn(32, 8, dtype=torch.float64), torch.randn(32, 8, dtype=torch.float64)
        >>> import redundancy
        >>> torch.allclose(cca_ssg_loss_reference(z1, z2), redundancy.cca_ssg_loss(z1, z2), rtol=1e-12)
        True
    """
    if upcast:
        z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = batch_standardize_reference(z1, correction=correction, standardize=standardize, eps=eps)
    b = batch_standardize_reference(z2, correction=correction, standardize=standardize, eps=eps)
    c, c1, c2 = a.T @ b / n, a.T @ a / n, b.T @ b / n
    identity = torch.eye(d, dtype=c.dtype, device=c.device)
    return -torch.diagonal(c).sum() + lambd * ((identity - c1).pow(2).sum() + (identity - c2).pow(2).sum())


def spectral_contrastive_loss_reference(
    z1: torch.Tensor, z2: torch.Tensor, *, mu: float = 1.0, upcast: bool = False
) -> torch.Tensor:
    """Spectral contrastive loss (HaoChen et al., 2021) as ``models/spectral.py`` of the official code writes it.

    Rows of norm at least ``sqrt(mu)`` are normalized to that norm; ``part1 = -2 · mean(z1 ⊙ z2) · D``,
    ``part2 = mean of the off-diagonal-masked (z1 z2ᵀ)² · N / (N - 1)``; the loss is ``(part1 + part2) / mu``.

    Example:
        >>> z1, z2 = torch.randn(32, 8, dtype=torch.float64), torch.randn(32, 8, dtype=torch.float64)
        >>> import redundancy
        >>> expected = spectral_contrastive_loss_reference(z1, z2)
        >>> torch.allclose(expected, redundancy.spectral_contrastive_loss(z1, z2), rtol=1e-12)
        True
    """
    if upcast:
        z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    root = mu**0.5
    inside1 = (torch.linalg.vector_norm(z1, dim=1) < root).to(z1.dtype).unsqueeze(1)
    inside2 = (torch.linalg.vector_norm(z2, dim=1) < root).to(z2.dtype).unsqueeze(1)
    z1 = inside1 * z1 + (1 - inside1) * torch.nn.functional.normalize(z1, dim=1) * root
    z2 = inside2 * z2 + (1 - inside2) * torch.nn.functional.normalize(z2, dim=1) * root
    part1 = -2 * torch.mean(z1 * z2) * d
    square = (z1 @ z2.T) ** 2
    part2 = torch.mean(torch.triu(square, diagonal=1) + torch.tril(square, diagonal=-1)) * n / (n - 1)
    return (part1 + part2) / mu


def vicreg_variance_loss_reference(
    z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4, correction: int = 1, upcast: bool = False
) -> torch.Tensor:
    """``mean(relu(gamma - sqrt(var + eps)))`` of one view, the variance divided by ``N - correction``.

    Example:
        >>> import redundancy
        >>> z = torch.randn(32, 16, dtype=torch.float64)
        >>> torch.allclose(vicreg_variance_loss_reference(z), redundancy.vicreg_variance_loss(z), rtol=1e-12)
        True
    """
    if upcast:
        z = z.double()
    return torch.relu(gamma - torch.sqrt(z.var(dim=0, correction=correction) + eps)).mean()


def vicreg_covariance_loss_reference(z: torch.Tensor, *, correction: int = 1, upcast: bool = False) -> torch.Tensor:
    """``Σ_{i≠j} cov_ij² / D`` of one view, ``cov = xᵀx / (N - correction)`` of the centred ``x``.

    Example:
        >>> import redundancy
        >>> z = torch.randn(32, 16, dtype=torch.float64)
        >>> torch.allclose(vicreg_covariance_loss_reference(z), redundancy.vicreg_covariance_loss(z), rtol=1e-12)
        True
    """
    if upcast:
        z = z.double()
    x = z - z.mean(dim=0)
    cov = (x.T @ x) / (z.shape[0] - correction)
    return _off_diagonal_entries(cov).pow(2).sum() / z.shape[1]


def _pairs(views) -> list[tuple[torch.Tensor, torch.Tensor]]:
    views = list(views.unbind(0)) if isinstance(views, torch.Tensor) else list(views)
    return [(views[u], views[v]) for u in range(len(views)) for v in range(u + 1, len(views))]


def multiview_barlow_twins_loss_reference(views, **options) -> torch.Tensor:
    """The mean over the pairs ``u < v`` of :func:`barlow_twins_loss_reference` (same options), one pair at a time.

    Example:
        >>> import redundancy
        >>> views = torch.randn(3, 32, 16, dtype=torch.float64)
        >>> expected = multiview_barlow_twins_loss_reference(views)
        >>> torch.allclose(expected, redundancy.multiview_barlow_twins_loss(views), rtol=1e-12)
        True
    """
    return torch.stack([barlow_twins_loss_reference(a, b, **options) for a, b in _pairs(views)]).mean()


def multiview_vicreg_loss_reference(views, **options) -> torch.Tensor:
    """The mean over the pairs ``u < v`` of :func:`vicreg_loss_reference` (same options), one pair at a time.

    Example:
        >>> import redundancy
        >>> views = torch.randn(3, 32, 16, dtype=torch.float64)
        >>> torch.allclose(multiview_vicreg_loss_reference(views), redundancy.multiview_vicreg_loss(views), rtol=1e-12)
        True
    """
    return torch.stack([vicreg_loss_reference(a, b, **options) for a, b in _pairs(views)]).mean()
