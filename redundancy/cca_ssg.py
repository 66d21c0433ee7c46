"""The CCA-SSG loss (Zhang et al., 2021), on the shared primitives.

Each view is standardized (``A``, ``B``); the invariance term is ``-tr(AᵀB) / N`` (O(N·D)) and each view's
decorrelation term ``‖I - AᵀA / N‖_F² = Σ_i (1 - ‖A_i‖² / N)² + Σ_{i≠j} (AᵀA)_ij² / N²`` uses the off-diagonal
energy of :func:`redundancy._ops.off_diagonal_energy` (D×D or N×N form). The defaults are those of the
official code (``hengruizhang98/CCA-SSG``: ``z = (h - h.mean(0)) / h.std(0)``, ``λ = 1e-3``).
"""

import torch

from redundancy import cost
from redundancy._ops import off_diagonal_energy
from redundancy._ops._autocast import no_autocast
from redundancy.functional import (
    ALGORITHMS,
    NORMALIZATIONS,
    _check_choice,
    _check_real,
    _check_views,
    _compute_dtype,
    _standardize_view,
)

__all__ = ["cca_ssg_loss", "check_cca_ssg_options"]


def check_cca_ssg_options(*, lambd: float, normalization: str, eps: float, algorithm: str) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option (used by the Module too).

    Example:
        >>> check_cca_ssg_options(lambd="0.001", normalization="std", eps=0.0, algorithm="auto")
        Traceback (most recent call last):
            ...
        TypeError: lambd must be a real number, got str '0.001'
    """
    _check_real("lambd", lambd, nonnegative=True)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_real("eps", eps, nonnegative=True)
    _check_choice("algorithm", algorithm, ALGORITHMS)


def _decorrelation(a: torch.Tensor, algorithm: str) -> torch.Tensor:
    """``‖I - aᵀa / N‖_F²`` without forming the D×D matrix when the Gram form is chosen."""
    n = a.shape[0]
    diagonal = torch.linalg.vecdot(a, a, dim=0) / n
    return (1.0 - diagonal).square().sum() + off_diagonal_energy(a, algorithm=algorithm) / (n * n)


def cca_ssg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float = 1e-3,
    normalization: str = "std",
    eps: float = 0.0,
    algorithm: str = "auto",
) -> torch.Tensor:
    r"""The CCA-SSG loss (Zhang et al., 2021) of two embeddings of the same batch (of graph nodes).

    With ``A, B`` the standardized views:

    .. math::

        L = -\operatorname{tr}\Big(\frac{A^\top B}{N}\Big)
            + \lambda \Big( \Big\lVert I - \frac{A^\top A}{N} \Big\rVert_F^2
                          + \Big\lVert I - \frac{B^\top B}{N} \Big\rVert_F^2 \Big).

    The defaults reproduce the official code: unbiased standard deviation without ε (so
    :math:`(A^\top A / N)_{ii} = (N - 1) / N`), λ = 1e-3. When N < D the decorrelation terms are computed
    through N×N Gram matrices.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        lambd: λ, weight of the decorrelation terms.
        normalization: ``"std"`` (official), ``"batchnorm"`` or ``"none"``, as in
            :func:`redundancy.barlow_twins_loss`.
        eps: added to the variance before the square root (0 in the official code: a constant feature
            gives NaN, as there).
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < D).

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z = torch.randn(64, 8)
        >>> cca_ssg_loss(z, z) < cca_ssg_loss(z, torch.randn(64, 8))
        tensor(True)
    """
    check_cca_ssg_options(lambd=lambd, normalization=normalization, eps=eps, algorithm=algorithm)
    _check_views(z1, z2)
    n, d = z1.shape
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)
    dtype = _compute_dtype(z1, z2)
    with no_autocast(z1.device):
        a = _standardize_view(z1.to(dtype), normalization, eps)
        b = _standardize_view(z2.to(dtype), normalization, eps)
        invariance = -torch.linalg.vecdot(a, b, dim=0).sum() / n
        return invariance + (_decorrelation(a, algorithm) + _decorrelation(b, algorithm)) * lambd
