"""The obviously-correct Barlow Twins formula, with the official implementation's semantics.

This is the one reference of the project: tests, benchmarks and docs import it. It follows
``facebookresearch/barlowtwins`` ``main.py`` (``BatchNorm1d`` without affine parameters, ``C = bn(z1)ᵀ bn(z2) / N``,
the off-diagonal entries gathered explicitly) and its published variants, and is written for clarity, not speed:
it builds C, an off-diagonal copy of it and autograd's intermediates (several D×D tensors).

The rest of the family is transcribed the same way from the published formulas: VICReg from
``facebookresearch/vicreg`` ``main_vicreg.py`` (and the conventions of lightly and solo-learn as options), SIGReg and
LeJEPA from ``rbalestr-lab/lejepa``, MMCR from ``ThomasYerxa/mmcr``, the regularizers, losses and diagnostics from
their papers, each cited beside its function.
"""

from collections.abc import Sequence
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
    "lejepa_loss_reference",
    "lejepa_terms_reference",
    "mixed_barlow_twins_regularizer_reference",
    "mmcr_loss_reference",
    "mmcr_terms_reference",
    "sigreg_loss_reference",
    "spectral_contrastive_loss_reference",
    "total_coding_rate_reference",
    "vicreg_loss_reference",
    "vicreg_terms_reference",
]


# ------------------------------------------------------------------------------------------------ shared pieces
# The steps that several official codes write alike, each written once; every reference below reads as a
# transcription of its own code in terms of them.


def _upcast(upcast: bool, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in float64 when ``upcast`` (the ground truth of the tolerance tables), else as they are."""
    return tuple(tensor.double() for tensor in tensors) if upcast else tensors


def _std(x: torch.Tensor, *, correction: int, eps: float) -> torch.Tensor:
    """``sqrt(var + eps)`` per column, the variance divided by ``N - correction``."""
    return torch.sqrt(x.var(dim=0, correction=correction) + eps)


def _standardized(*views: torch.Tensor, correction: int, standardize: bool, eps: float) -> tuple[torch.Tensor, ...]:
    """Each view through :func:`batch_standardize_reference` (``BatchNorm1d`` without affine parameters)."""
    return tuple(
        batch_standardize_reference(view, correction=correction, standardize=standardize, eps=eps) for view in views
    )


def _centred(z: torch.Tensor) -> torch.Tensor:
    return z - z.mean(dim=0)


def _covariance(x: torch.Tensor, *, correction: int) -> torch.Tensor:
    """``xᵀx / (N - correction)`` of centred ``x``."""
    return (x.T @ x) / (x.shape[0] - correction)


def _off_diagonal_entries(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)]


def _variance_hinge(std: torch.Tensor, gamma: float) -> torch.Tensor:
    """VICReg's ``mean(relu(gamma - std))``."""
    return torch.relu(gamma - std).mean()


def _covariance_penalty(cov: torch.Tensor) -> torch.Tensor:
    """VICReg's ``Σ_{i≠j} cov_ij² / D``."""
    return _off_diagonal_entries(cov).pow(2).sum() / cov.shape[0]


# ------------------------------------------------------------------------------------------------ references


def batch_standardize_reference(
    z: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    """``(z - mean) / sqrt(var + eps)`` per column, the variance divided by ``N - correction``; ``z`` itself when
    ``standardize=False``.

    Example:
        >>> import torch
        >>> from redundancy.reference import batch_standardize_reference
        >>> z = torch.randn(16, 4, dtype=torch.float64) * 3 + 1
        >>> bn = torch.nn.BatchNorm1d(4, affine=False, dtype=torch.float64)  # the official code's, training
        >>> torch.allclose(batch_standardize_reference(z), bn(z))
        True
        >>> batch_standardize_reference(z, standardize=False) is z
        True
    """
    if not standardize:
        return z
    return (z - z.mean(dim=0)) / _std(z, correction=correction, eps=eps)


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
        >>> import torch
        >>> from redundancy.reference import barlow_twins_terms_reference
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, upcast=True)
        >>> invariance.dtype, bool(invariance > 0), bool(redundancy_term > 0)
        (torch.float64, True, True)
    """
    z1, z2 = _upcast(upcast, z1, z2)
    a, b = _standardized(z1, z2, correction=correction, standardize=standardize, eps=eps)
    c = a.T @ b / z1.shape[0]
    invariance = (1 - torch.diagonal(c)).pow(2).sum()
    redundancy = (_off_diagonal_entries(c) - off_diagonal_target).pow(2).sum()
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
        >>> import torch
        >>> from redundancy.reference import barlow_twins_loss_reference
        >>> z1, z2 = torch.randn(2, 32, 16, dtype=torch.float64)
        >>> bn = torch.nn.BatchNorm1d(16, affine=False, dtype=torch.float64)
        >>> c = bn(z1).T @ bn(z2) / 32  # facebookresearch/barlowtwins main.py
        >>> on_diag = (c.diagonal() - 1).pow(2).sum()
        >>> off_diag = c.pow(2).sum() - c.diagonal().pow(2).sum()
        >>> torch.allclose(barlow_twins_loss_reference(z1, z2), on_diag + 0.0051 * off_diag)
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
        >>> import torch
        >>> from redundancy.reference import vicreg_terms_reference
        >>> z = torch.randn(32, 16, dtype=torch.float64)
        >>> invariance, variance, _ = vicreg_terms_reference(z, z)
        >>> _, summed, _ = vicreg_terms_reference(z, z, variance_reduction="sum")  # solo-learn's
        >>> invariance.item(), torch.equal(summed, 2 * variance)
        (0.0, True)
    """
    z1, z2 = _upcast(upcast, z1, z2)
    invariance = torch.nn.functional.mse_loss(z1, z2)
    x1, x2 = _centred(z1), _centred(z2)
    std1, std2 = _std(x1, correction=correction, eps=eps), _std(x2, correction=correction, eps=eps)
    variance = _variance_hinge(std1, gamma) + _variance_hinge(std2, gamma)
    if variance_reduction == "mean":
        variance = variance / 2
    cov1, cov2 = _covariance(x1, correction=correction), _covariance(x2, correction=correction)
    covariance = _covariance_penalty(cov1) + _covariance_penalty(cov2)
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
        >>> import torch
        >>> from redundancy.reference import vicreg_loss_reference
        >>> views = torch.randn(2, 32, 16, dtype=torch.float64)
        >>> invariance_only = vicreg_loss_reference(*views, variance_weight=0.0, covariance_weight=0.0)
        >>> mse = torch.nn.functional.mse_loss(*views)
        >>> torch.allclose(invariance_only, 25 * mse)  # main_vicreg.py's sim_coeff = 25
        True
    """
    invariance, variance, covariance = vicreg_terms_reference(
        z1, z2, gamma=gamma, eps=eps, correction=correction, variance_reduction=variance_reduction, upcast=upcast
    )
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def effective_rank_reference(z: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    """RankMe (Garrido et al., 2023): ``exp(-Σ p log p)`` with ``p = σ / Σσ + eps``, σ the singular values of z.

    Example:
        >>> import torch
        >>> from redundancy.reference import effective_rank_reference
        >>> collapsed = torch.randn(64, 1, dtype=torch.float64) @ torch.randn(1, 8, dtype=torch.float64)
        >>> effective_rank_reference(collapsed).item() < 1.001  # rank one
        True
        >>> round(effective_rank_reference(torch.eye(8)).item(), 3)  # eight equal singular values
        8.0
    """
    singular_values = torch.linalg.svdvals(z.double())
    p = singular_values / singular_values.sum() + eps
    return torch.exp(torch.special.entr(p).sum())  # entr(p) = -p log p, 0 at p = 0


def cross_correlation_summary_reference(
    z1: torch.Tensor, z2: torch.Tensor, *, correction: int = 0, standardize: bool = True, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean_i C_ii, sqrt(mean_{i≠j} C_ij²))`` of the Barlow Twins cross-correlation, in float64.

    Example:
        >>> import torch
        >>> from redundancy.reference import cross_correlation_summary_reference
        >>> z = torch.randn(64, 8, dtype=torch.float64)
        >>> mean_diagonal, off_diagonal_rms = cross_correlation_summary_reference(z, z)
        >>> round(mean_diagonal.item(), 4)  # a view is perfectly correlated with itself
        1.0
    """
    z1, z2 = _upcast(True, z1, z2)
    a, b = _standardized(z1, z2, correction=correction, standardize=standardize, eps=eps)
    c = a.T @ b / z1.shape[0]
    off = _off_diagonal_entries(c)
    return torch.diagonal(c).mean(), off.pow(2).mean().sqrt() if off.numel() else torch.zeros((), dtype=c.dtype)


def decov_loss_reference(h: torch.Tensor, *, correction: int = 0, upcast: bool = False) -> torch.Tensor:
    """DeCov (Cogswell et al., 2016): ``½ (‖C‖_F² - ‖diag C‖²)`` with C the batch covariance of h (N - correction).

    Example:
        >>> import torch
        >>> from redundancy.reference import decov_loss_reference
        >>> h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # uncorrelated
        >>> decov_loss_reference(h).item(), decov_loss_reference(h[:, [0, 0]]).item()  # C_01 = 0, 1
        (0.0, 1.0)
    """
    (h,) = _upcast(upcast, h)
    covariance = _covariance(_centred(h), correction=correction)
    return 0.5 * (covariance.pow(2).sum() - torch.diagonal(covariance).pow(2).sum())


def total_coding_rate_reference(z: torch.Tensor, *, eps: float = 0.2, upcast: bool = False) -> torch.Tensor:
    """Total coding rate ``½ logdet(I_D + D / (N·eps) zᵀz)`` (the D×D form, ``torch.logdet``), as EMP-SSL writes it.

    Example:
        >>> import torch
        >>> from redundancy.reference import total_coding_rate_reference
        >>> z = torch.randn(16, 32, dtype=torch.float64)
        >>> identity = torch.eye(16, dtype=torch.float64)
        >>> gram_form = 0.5 * torch.logdet(identity + 32 / (16 * 0.2) * z @ z.T)  # Sylvester's identity
        >>> torch.allclose(total_coding_rate_reference(z), gram_form)
        True
    """
    (z,) = _upcast(upcast, z)
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
        >>> import torch
        >>> from redundancy.reference import mixed_barlow_twins_regularizer_reference
        >>> z1, z2 = torch.randn(2, 16, 8, dtype=torch.float64)
        >>> permutation = torch.randperm(16)
        >>> mixed_barlow_twins_regularizer_reference(z1, z2, z1, permutation, 1.0).item()  # α = 1: z1
        0.0
    """
    z1, z2, z_mixed = _upcast(upcast, z1, z2, z_mixed)
    n = z1.shape[0]
    a, b, m = _standardized(z1, z2, z_mixed, correction=correction, standardize=standardize, eps=eps)

    def mixup_error(view: torch.Tensor) -> torch.Tensor:  # cc_m_1 - cc_m_1_target (view a), cc_m_2 - ... (b)
        cc_m = m.T @ view / n
        cc_m_target = alpha * (a.T @ view) / n + (1 - alpha) * (b[permutation].T @ view) / n
        return (cc_m - cc_m_target).pow(2).sum()

    return scale * lambd * (mixup_error(a) + mixup_error(b))


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
        >>> import torch
        >>> from redundancy.reference import cca_ssg_loss_reference
        >>> z1, z2 = torch.randn(2, 32, 8, dtype=torch.float64)
        >>> h1, h2 = ((z - z.mean(0)) / z.std(0) for z in (z1, z2))  # the official standardization
        >>> torch.allclose(cca_ssg_loss_reference(z1, z2, lambd=0.0), -(h1 * h2).sum() / 32)  # -tr(C)
        True
    """
    z1, z2 = _upcast(upcast, z1, z2)
    n, d = z1.shape
    a, b = _standardized(z1, z2, correction=correction, standardize=standardize, eps=eps)
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
        >>> import torch
        >>> from redundancy.reference import spectral_contrastive_loss_reference
        >>> z1, z2 = torch.randn(2, 32, 8, dtype=torch.float64)
        >>> loss = spectral_contrastive_loss_reference(z1, z2, mu=0.01)
        >>> far = spectral_contrastive_loss_reference(10 * z1, z2, mu=0.01)  # rows beyond √mu: scaled to it
        >>> torch.allclose(loss, far)
        True
    """
    z1, z2 = _upcast(upcast, z1, z2)
    n, d = z1.shape
    root = mu**0.5

    def onto_ball(z: torch.Tensor) -> torch.Tensor:  # rows of norm at least root normalized to that norm
        inside = (torch.linalg.vector_norm(z, dim=1) < root).to(z.dtype).unsqueeze(1)
        return inside * z + (1 - inside) * torch.nn.functional.normalize(z, dim=1) * root

    z1, z2 = onto_ball(z1), onto_ball(z2)
    part1 = -2 * torch.mean(z1 * z2) * d
    square = (z1 @ z2.T) ** 2
    part2 = torch.mean(torch.triu(square, diagonal=1) + torch.tril(square, diagonal=-1)) * n / (n - 1)
    return (part1 + part2) / mu


def sigreg_loss_reference(
    z: torch.Tensor,
    directions: torch.Tensor | None = None,
    *,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
    upcast: bool = False,
) -> torch.Tensor:
    r"""SIGReg (Balestriero & LeCun, 2025): the Epps–Pulley statistic of random 1-D projections, as LeJEPA computes it.

    With ``a_m`` the columns of ``directions`` (D×M) divided by their norms, ``p_nm = z_n · a_m`` and the knots
    ``t_k = k·t_max/(K - 1)``, ``k = 0, ..., K - 1``:

    .. math::

        T_m = N \sum_k w_k \Big[\big(\tfrac1N \textstyle\sum_n \cos(t_k p_{nm}) - e^{-t_k^2/2}\big)^2
              + \big(\tfrac1N \textstyle\sum_n \sin(t_k p_{nm})\big)^2\Big],
        \qquad w_k = c_k\,\Delta t\, e^{-t_k^2/2},

    ``Δt = t_max/(K - 1)``, ``c_k = 2`` inside and ``1`` at both ends (the trapezoid rule on ``[0, t_max]``, doubled
    because the integrand is even in t), and the loss is the mean of ``T_m`` over the M slices (and over the views
    when ``z`` is ``(V, N, D)``: each view is tested on its own, N is the number of rows of one view).

    Each choice follows ``rbalestr-lab/lejepa`` (commit ``eddffdd``): the class ``SIGReg`` of ``MINIMAL.md`` (its
    knots ``linspace(0, 3, knots)``, the weights ``2·dt`` with ``dt`` at both ends times the window
    ``exp(-t²/2)``, which is also the target ``phi``; ``x_t = (proj @ A).unsqueeze(-1) * t``; the means over rows
    (``mean(-3)``); ``(err @ weights) * proj.size(-2)``; ``statistic.mean()``), the same lines as
    ``lejepa/univariate/epps_pulley.py`` ``EppsPulley`` (lines 72-78 the knots and weights, 83-99 the statistic,
    defaults ``t_max=3``, ``n_points=17``), and ``lejepa/multivariate/slicing.py`` ``SlicingUnivariateTest``
    (lines 140-142: the directions, ``reduction="mean"``, lines 148-149). ``num_slices=256`` is the minimal code's.

    Directions not given are drawn as the official code draws them: a ``(D, num_slices)`` matrix of standard
    normal float32 numbers from ``generator`` (on the generator's device; the default generator of ``z``'s device
    when ``None``, as ``MINIMAL.md`` does), each column divided by its Euclidean norm. The official
    ``SlicingUnivariateTest`` seeds its generator with its step counter, so its first call draws what
    ``torch.Generator().manual_seed(0)`` draws here.

    Constants are computed in the compute dtype (the official code builds them in float32 whatever the input):
    float64 inputs use float64 knots, window and weights.

    Args:
        z: ``(N, D)`` or ``(V, N, D)`` embeddings.
        directions: ``(D, M)``; columns need not be normalized.
        upcast: compute in float64; otherwise in ``z``'s dtype, as plain PyTorch code would.

    Example:
        >>> import torch
        >>> from redundancy.reference import sigreg_loss_reference
        >>> z = torch.randn(512, 8, dtype=torch.float64)
        >>> directions = torch.randn(8, 256, dtype=torch.float64)
        >>> gaussian = sigreg_loss_reference(z, directions)
        >>> shifted = sigreg_loss_reference(z + 1, directions)
        >>> bool(gaussian < 5 < 50 < shifted)  # of order 1 for Gaussian samples, else growing with N
        True
    """
    (z,) = _upcast(upcast, z)
    if directions is None:
        device = generator.device if generator is not None else z.device
        directions = torch.randn((z.shape[-1], num_slices), generator=generator, device=device, dtype=torch.float32)
    a = directions.to(device=z.device, dtype=z.dtype)
    a = a / a.norm(p=2, dim=0)
    t = torch.linspace(0, t_max, knots, dtype=z.dtype, device=z.device)
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, dtype=z.dtype, device=z.device)
    weights[[0, -1]] = dt
    window = torch.exp(-t.square() / 2.0)
    weights = weights * window
    x_t = (z @ a).unsqueeze(-1) * t  # (*, N, M, K)
    err = (x_t.cos().mean(-3) - window).square() + x_t.sin().mean(-3).square()
    statistic = (err @ weights) * z.size(-2)
    return statistic.mean()


def _stacked_views(views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return views if isinstance(views, torch.Tensor) else torch.stack(tuple(views))


def lejepa_terms_reference(
    views: torch.Tensor | Sequence[torch.Tensor],
    directions: torch.Tensor | None = None,
    *,
    global_views: int | None = None,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(invariance, sigreg)`` of LeJEPA, as the training loop of ``MINIMAL.md`` (``rbalestr-lab/lejepa``) computes
    them from the projections ``proj`` of shape ``(V, N, D)``.

    ``invariance = (proj.mean(0) - proj).square().mean()``: the squared distance of every view's embedding to the
    mean of the views, averaged over views, rows *and features* (a mean, not a sum, over the D coordinates).
    ``sigreg`` is :func:`sigreg_loss_reference` of all V views together (one set of directions, the mean over views).
    The minimal code makes no difference between global and local views: every view enters both terms and the
    centre. ``global_views=G`` takes the centre from the first G views only (the paper's multi-crop form, and
    lightly's ``LeJEPALoss``, which puts the global views first); every view still enters both terms.

    Example:
        >>> import torch
        >>> from redundancy.reference import lejepa_terms_reference
        >>> views = torch.randn(4, 64, 8, dtype=torch.float64)
        >>> invariance, sigreg = lejepa_terms_reference(views)
        >>> bool(invariance > 0), bool(sigreg > 0)
        (True, True)
    """
    (proj,) = _upcast(upcast, _stacked_views(views))
    centers = proj.mean(0) if global_views is None else proj[:global_views].mean(0)
    invariance = (centers - proj).square().mean()
    sigreg = sigreg_loss_reference(
        proj, directions, num_slices=num_slices, knots=knots, t_max=t_max, generator=generator
    )
    return invariance, sigreg


def lejepa_loss_reference(
    views: torch.Tensor | Sequence[torch.Tensor],
    directions: torch.Tensor | None = None,
    *,
    lamb: float = 0.02,
    global_views: int | None = None,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
    upcast: bool = False,
) -> torch.Tensor:
    """LeJEPA: ``lamb · sigreg + (1 - lamb) · invariance`` (``MINIMAL.md``: ``sigreg_loss * cfg.lamb + inv_loss *
    (1 - cfg.lamb)``; ``lamb=0.02`` is the value its recommended command line passes, ``+lamb=0.02``).

    Example:
        >>> import torch
        >>> from redundancy.reference import lejepa_loss_reference, lejepa_terms_reference
        >>> views = torch.randn(4, 64, 8, dtype=torch.float64)
        >>> directions = torch.randn(8, 256, dtype=torch.float64)
        >>> invariance, sigreg = lejepa_terms_reference(views, directions)
        >>> loss = lejepa_loss_reference(views, directions, lamb=0.1)
        >>> torch.allclose(loss, 0.1 * sigreg + 0.9 * invariance, rtol=1e-14)
        True
    """
    invariance, sigreg = lejepa_terms_reference(
        views,
        directions,
        global_views=global_views,
        num_slices=num_slices,
        knots=knots,
        t_max=t_max,
        generator=generator,
        upcast=upcast,
    )
    return sigreg * lamb + invariance * (1 - lamb)


def mmcr_terms_reference(
    views: torch.Tensor | Sequence[torch.Tensor], *, normalize: bool = True, upcast: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(local, global)`` nuclear norms of MMCR (Yerxa et al., 2023), as ``ThomasYerxa/mmcr`` ``loss_mmcr.py`` computes
    them: ``local = Σ_n ‖Z_n‖_*`` over the samples, ``Z_n`` the V×D matrix of sample n's views, and
    ``global = ‖C‖_*`` of the N×D centroids ``C_n = mean_v Z_n[v]``, every embedding first divided by its norm
    (``F.normalize``, eps 1e-12).

    ``normalize=False`` leaves the embeddings as they are (lightly's ``MMCRLoss``, which does not normalize them).

    ``views`` is ``(V, N, D)`` (or V tensors of shape ``(N, D)``). The official ``MMCR_Loss`` takes the ``(N·V, D)``
    matrix whose rows are grouped by sample (``einops.rearrange(z, "(B N) C -> B C N", N=n_aug)``), that is
    ``views.transpose(0, 1).reshape(N * V, D)``; lightly's ``MMCRLoss`` takes ``(N, V, D)`` tensors.

    Example:
        >>> import torch
        >>> from redundancy.reference import mmcr_terms_reference
        >>> views = torch.randn(2, 16, 8, dtype=torch.float64)
        >>> local, global_ = mmcr_terms_reference(views)
        >>> bool(global_ <= local / 2 ** 0.5)  # a centroid's norm: at most its views' over √V
        True
    """
    (z,) = _upcast(upcast, _stacked_views(views))
    per_sample = (torch.nn.functional.normalize(z, dim=-1) if normalize else z).transpose(0, 1)  # (N, V, D)
    centroids = per_sample.mean(dim=1)
    local = torch.linalg.svdvals(per_sample).sum()
    global_ = torch.linalg.svdvals(centroids).sum()
    return local, global_


def mmcr_loss_reference(
    views: torch.Tensor | Sequence[torch.Tensor], *, lmbda: float = 0.0, normalize: bool = True, upcast: bool = False
) -> torch.Tensor:
    """MMCR: ``lmbda · local / N - global`` (``loss_mmcr.py``: ``self.lmbda * local_nuc / batch_size - global_nuc``).

    ``lmbda=0.0`` is the default of both official training scripts (``pretrain_imagenet.py`` and
    ``pretrain_cifar_stl.py``, ``--lmbda``); the loss class itself has no default.

    Example:
        >>> import torch
        >>> from redundancy.reference import mmcr_terms_reference, mmcr_loss_reference
        >>> views = torch.randn(2, 16, 8, dtype=torch.float64)
        >>> local, global_ = mmcr_terms_reference(views)
        >>> torch.allclose(mmcr_loss_reference(views, lmbda=0.5), 0.5 * local / 16 - global_, rtol=1e-14)
        True
    """
    local, global_ = mmcr_terms_reference(views, normalize=normalize, upcast=upcast)
    return lmbda * local / _stacked_views(views).shape[1] - global_


def vicreg_variance_loss_reference(
    z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4, correction: int = 1, upcast: bool = False
) -> torch.Tensor:
    """``mean(relu(gamma - sqrt(var + eps)))`` of one view, the variance divided by ``N - correction``.

    Example:
        >>> import torch
        >>> from redundancy.reference import vicreg_variance_loss_reference
        >>> collapsed = torch.zeros(32, 16, dtype=torch.float64)
        >>> round(vicreg_variance_loss_reference(collapsed).item(), 12)  # γ - sqrt(eps) = 1 - 0.01
        0.99
    """
    (z,) = _upcast(upcast, z)
    return _variance_hinge(_std(z, correction=correction, eps=eps), gamma)


def vicreg_covariance_loss_reference(z: torch.Tensor, *, correction: int = 1, upcast: bool = False) -> torch.Tensor:
    """``Σ_{i≠j} cov_ij² / D`` of one view, ``cov = xᵀx / (N - correction)`` of the centred ``x``.

    Example:
        >>> import torch
        >>> from redundancy.reference import vicreg_covariance_loss_reference
        >>> z = torch.randn(32, 1, dtype=torch.float64).repeat(1, 2)  # one feature twice: cov_01 = var
        >>> torch.allclose(vicreg_covariance_loss_reference(z), z[:, 0].var() ** 2)  # 2 var² / D
        True
    """
    (z,) = _upcast(upcast, z)
    return _covariance_penalty(_covariance(_centred(z), correction=correction))


def _mean_over_pairs(reference, views, options: dict) -> torch.Tensor:
    """The mean of ``reference(views[u], views[v], **options)`` over the pairs ``u < v``, one pair at a time."""
    views = list(views.unbind(0)) if isinstance(views, torch.Tensor) else list(views)
    pairs = [(views[u], views[v]) for u in range(len(views)) for v in range(u + 1, len(views))]
    return torch.stack([reference(a, b, **options) for a, b in pairs]).mean()


def multiview_barlow_twins_loss_reference(views, **options) -> torch.Tensor:
    """The mean over the pairs ``u < v`` of :func:`barlow_twins_loss_reference` (same options), one pair at a time.

    Example:
        >>> import torch
        >>> from redundancy.reference import barlow_twins_loss_reference
        >>> from redundancy.reference import multiview_barlow_twins_loss_reference
        >>> views = torch.randn(2, 32, 16, dtype=torch.float64)  # one pair
        >>> torch.equal(multiview_barlow_twins_loss_reference(views), barlow_twins_loss_reference(*views))
        True
    """
    return _mean_over_pairs(barlow_twins_loss_reference, views, options)


def multiview_vicreg_loss_reference(views, **options) -> torch.Tensor:
    """The mean over the pairs ``u < v`` of :func:`vicreg_loss_reference` (same options), one pair at a time.

    Example:
        >>> import torch
        >>> from redundancy.reference import multiview_vicreg_loss_reference
        >>> from redundancy.reference import vicreg_loss_reference
        >>> a, b, c = torch.randn(3, 32, 16, dtype=torch.float64)
        >>> pairs = vicreg_loss_reference(a, b) + vicreg_loss_reference(a, c) + vicreg_loss_reference(b, c)
        >>> torch.allclose(multiview_vicreg_loss_reference([a, b, c]), pairs / 3)
        True
    """
    return _mean_over_pairs(vicreg_loss_reference, views, options)
