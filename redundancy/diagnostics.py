"""Collapse diagnostics for logging: effective rank, per-feature spread, a summary of the cross-correlation.

Each is computed without gradients (under :func:`torch.no_grad`, outputs detached) and without a D×D tensor
unless one is asked for: the effective rank works on the smaller of the two Gram matrices, the cross-correlation
summary uses the cheaper of the cross and Gram forms of :mod:`redundancy._ops` and keeps only scalars.
"""

from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._frame import Correction
from redundancy._ops import cross_correlation_terms
from redundancy._ops import gram_terms
from redundancy._ops._autocast import no_autocast
from redundancy._ops.standardize import standardization_of
from redundancy._ops.standardize import standardize_each
from redundancy._ops.terms import off_diagonal_summaries_
from redundancy._validation import check_bool
from redundancy._validation import check_correction
from redundancy._validation import check_embedding
from redundancy._validation import check_real
from redundancy._validation import check_standardization
from redundancy._validation import check_views
from redundancy._validation import compute_dtype
from redundancy.correlation import cross_correlation

__all__ = ["CrossCorrelationSummary", "cross_correlation_summary", "effective_rank", "feature_std"]


class CrossCorrelationSummary(NamedTuple):
    """What :func:`cross_correlation_summary` returns; 0-dim tensors without gradients.

    Example:
        >>> import torch
        >>> from redundancy import cross_correlation_summary
        >>> z1, z2 = torch.randn(64, 8), torch.randn(64, 8)
        >>> mean_diagonal, off_diagonal_rms, matrix = cross_correlation_summary(z1, z2, return_matrix=True)
        >>> torch.allclose(mean_diagonal, matrix.diagonal().mean()), tuple(matrix.shape)
        (True, (8, 8))
    """

    mean_diagonal: torch.Tensor
    """The mean diagonal of C, ``mean_i C_ii``, 1 when the two views agree perfectly feature by feature."""
    off_diagonal_rms: torch.Tensor
    """The root mean square of the off-diagonal entries of C, ``sqrt(mean_{i≠j} C_ij²)``, 0 when the features
    are decorrelated across views (and when D = 1)."""
    matrix: torch.Tensor | None
    """The D×D matrix C itself, only when ``return_matrix=True``; otherwise ``None``."""


@torch.no_grad()
def effective_rank(z: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    r"""The effective rank of a batch of embeddings, RankMe (Garrido et al., 2023).

    With :math:`\sigma_k` the singular values of ``z`` (N×D, not centred),

    .. math::

        p_k = \frac{\sigma_k}{\sum_j \sigma_j} + \epsilon, \qquad
        \mathrm{RankMe}(z) = \exp\Big(-\sum_k p_k \log p_k\Big),

    between 1 (collapse onto one direction) and :math:`\min(N, D)` (all directions equally used), up to the ε
    terms. The singular values come from the eigenvalues of the smaller Gram matrix (``zᵀz`` or ``z zᵀ``,
    min(N, D)² elements), in float32 (float64 for float64 inputs).

    Args:
        z: embeddings, shape ``(N, D)``.
        eps: ε added to each normalized singular value (RankMe's ``1e-7``).

    Returns:
        A 0-dim tensor without gradient; NaN when ``z`` holds a NaN or an infinity.

    Example:
        >>> import torch
        >>> from redundancy import effective_rank
        >>> z = torch.eye(6)[:, :4] * 3.0  # four equal singular values
        >>> round(effective_rank(z, eps=0.0).item(), 4)
        4.0
    """
    check_real("eps", eps, nonnegative=True)
    check_embedding("z", z, min_rows=1)
    n, d = z.shape
    with no_autocast(z.device):
        z = z.detach().to(compute_dtype(z))
        gram = torch.mm(z, z.t()) if n < d else torch.mm(z.t(), z)
        # The eigensolver raises on non-finite input: it gets zeros, and the result is NaN (no host read, so that
        # torch.compile traces it whole).
        finite = torch.isfinite(gram).all()
        singular_values = torch.linalg.eigvalsh(torch.where(finite, gram, 0.0)).clamp_min_(0).sqrt_()
        p = singular_values / singular_values.sum() + eps
        rank = torch.exp(torch.special.entr(p).sum())  # entr(p) = -p log p, 0 at p = 0
        return torch.where(finite, rank, float("nan"))


@torch.no_grad()
def feature_std(z: torch.Tensor, *, correction: Correction = 1, normalize: bool = False) -> torch.Tensor:
    r"""The standard deviation of each feature over the batch, a D-vector (dimensional collapse shows as zeros).

    With ``normalize=True`` each row is first scaled to unit L2 norm, the SimSiam collapse indicator (Chen & He,
    2021): without collapse the entries are close to :math:`1/\sqrt{D}`, with collapse close to 0.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: ``1`` divides by ``N - 1``, ``0`` by ``N``.
        normalize: L2-normalize each row first.

    Returns:
        A tensor of shape ``(D,)`` without gradient, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import feature_std
        >>> feature_std(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
        tensor([1.4142, 0.0000])
    """
    check_correction("correction", correction)
    check_bool("normalize", normalize)
    check_embedding("z", z, min_rows=2)
    with no_autocast(z.device):
        z = z.detach().to(compute_dtype(z))
        if normalize:
            z = torch.nn.functional.normalize(z, dim=1)
        return z.std(dim=0, correction=correction)


@torch.no_grad()
def cross_correlation_summary(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    correction: Correction = 0,
    standardize: bool = True,
    eps: float = 1e-5,
    return_matrix: bool = False,
) -> CrossCorrelationSummary:
    r"""The mean diagonal and the off-diagonal RMS of the Barlow Twins cross-correlation C, for logging.

    .. math::

        \bar c = \frac{1}{D} \sum_i C_{ii}, \qquad
        r = \sqrt{\frac{1}{D(D-1)} \sum_{i \ne j} C_{ij}^2}, \qquad C = A^\top B / N,

    with ``A, B`` the views standardized as :func:`redundancy.barlow_twins_loss` does. Without
    ``return_matrix`` no D×D tensor is formed when ``N < GRAM_CROSSOVER·D`` (the Gram form is used, N×N).

    Args:
        z1, z2, correction, standardize, eps: as in :func:`redundancy.cross_correlation`, which gives C.
        return_matrix: also return C (D×D).

    Returns:
        :class:`CrossCorrelationSummary` ``(mean_diagonal, off_diagonal_rms, matrix)``, without gradients.

    Example:
        >>> import torch
        >>> from redundancy import cross_correlation_summary
        >>> z = torch.randn(512, 8)
        >>> summary = cross_correlation_summary(z, z)
        >>> round(summary.mean_diagonal.item(), 3), summary.off_diagonal_rms.item() < 0.1, summary.matrix
        (1.0, True, None)
    """
    check_standardization(standardize, correction, eps)
    standardization = standardization_of(standardize=standardize, correction=correction, eps=eps)
    check_bool("return_matrix", return_matrix)
    check_views(("z1", "z2"), (z1, z2))
    n, d = z1.shape
    if return_matrix:
        matrix = cross_correlation(z1.detach(), z2.detach(), correction=correction, standardize=standardize, eps=eps)
        mean_diagonal = matrix.diagonal().mean()
        # Summed without the diagonal (‖C‖² - Σc² would cancel near C = I), which is zeroed in place and put back: no
        # second D×D tensor.
        diagonal, off_diagonal_sq, _ = off_diagonal_summaries_(matrix, total=False)
        matrix.diagonal().copy_(diagonal)
    else:
        matrix = None
        dtype = compute_dtype(z1, z2)
        with no_autocast(z1.device):
            a, b = standardize_each((z1.detach().to(dtype), z2.detach().to(dtype)), standardization)
            compute_terms = gram_terms if cost.choose_algorithm(n, d) == "gram" else cross_correlation_terms
            _, off_diagonal_sq = compute_terms(a, b, target=0.0)
            mean_diagonal = torch.linalg.vecdot(a, b, dim=0).mean() / n
    pairs = d * (d - 1)
    off_diagonal_rms = (off_diagonal_sq.clamp_min(0) / pairs).sqrt() if pairs else torch.zeros_like(mean_diagonal)
    return CrossCorrelationSummary(mean_diagonal, off_diagonal_rms, matrix)
