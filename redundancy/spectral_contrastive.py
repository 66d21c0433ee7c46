"""The spectral contrastive loss (HaoChen et al., 2021), with its D×D Gram dual.

The repulsive term sums the squared similarities of all mismatched pairs,
``Σ_{i≠j} (z1_i · z2_j)² = ‖Z1 Z2ᵀ‖_F² - Σ_i (z1_i · z2_i)²``, and ``‖Z1 Z2ᵀ‖_F² = ⟨Z1ᵀZ1, Z2ᵀZ2⟩_F``: the N×N
matrix of pairwise products or two D×D Gram matrices (:func:`redundancy._ops.cross_product_energy` on the
transposed views). The defaults are those of ``jhaochenz96/spectral_contrastive_learning`` ``models/spectral.py``.
"""

import math

import torch

from redundancy import cost
from redundancy._ops import cross_product_energy
from redundancy._ops._autocast import no_autocast
from redundancy.functional import ALGORITHMS, _check_choice, _check_real, _check_views, _compute_dtype

__all__ = ["check_spectral_contrastive_options", "spectral_contrastive_loss"]


def check_spectral_contrastive_options(*, mu: float, algorithm: str) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option (used by the Module too).

    Example:
        >>> check_spectral_contrastive_options(mu=1.0, algorithm="fast")
        Traceback (most recent call last):
            ...
        ValueError: algorithm must be one of ('auto', 'cross', 'gram'), got 'fast'
    """
    _check_real("mu", mu, nonnegative=True)
    if mu == 0:
        raise ValueError("mu must be positive (rows are projected onto the ball of radius sqrt(mu)), got 0")
    _check_choice("algorithm", algorithm, ALGORITHMS)


def _project_onto_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rows of norm at least ``radius`` rescaled to norm ``radius``; the others unchanged."""
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return z * (radius / norms.clamp_min(1e-12)).clamp_max(1.0)


def spectral_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, mu: float = 1.0, algorithm: str = "auto"
) -> torch.Tensor:
    r"""The spectral contrastive loss (HaoChen et al., 2021) of two embeddings of the same batch.

    Each row is first projected onto the ball of radius :math:`\sqrt{\mu}` (rows outside are rescaled), then

    .. math::

        L = \frac{1}{\mu} \Big( -\frac{2}{N} \sum_i z^{(1)}_i \cdot z^{(2)}_i
            + \frac{1}{N (N - 1)} \sum_{i \ne j} \big(z^{(1)}_i \cdot z^{(2)}_j\big)^2 \Big).

    The defaults reproduce the official code (μ = 1).

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        mu: μ, the squared radius of the projection and the divisor of the loss.
        algorithm: ``"cross"`` (two D×D Gram matrices ``Z1ᵀZ1``, ``Z2ᵀZ2``), ``"gram"`` (the N×N matrix
            ``Z1 Z2ᵀ``) or ``"auto"`` (the smaller: ``gram`` when N < D).

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z = torch.nn.functional.normalize(torch.randn(32, 64), dim=1)
        >>> spectral_contrastive_loss(z, z) < spectral_contrastive_loss(z, z.roll(1, dims=0))
        tensor(True)
    """
    check_spectral_contrastive_options(mu=mu, algorithm=algorithm)
    _check_views(z1, z2)
    n, d = z1.shape
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)  # the N×N form when it is the smaller
    dtype = _compute_dtype(z1, z2)
    radius = math.sqrt(mu)
    with no_autocast(z1.device):
        a = _project_onto_ball(z1.to(dtype), radius)
        b = _project_onto_ball(z2.to(dtype), radius)
        matched = torch.linalg.vecdot(a, b, dim=1)
        # The op's "cross" form builds (aᵀ)ᵀ bᵀ = a bᵀ (N×N): this loss's "gram"; its "gram" form the D×D Grams.
        energy = cross_product_energy(a.t(), b.t(), algorithm="cross" if algorithm == "gram" else "gram")
        attraction = matched.sum() * (-2.0 / n)
        repulsion = (energy - matched.dot(matched)) / (n * (n - 1))
        return (attraction + repulsion) / mu
