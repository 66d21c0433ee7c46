"""The spectral contrastive loss (HaoChen et al., 2021), with its D×D Gram dual.

The repulsive term sums the squared similarities of all mismatched pairs,
``Σ_{i≠j} (z1_i · z2_j)² = ‖Z1 Z2ᵀ‖_F² - Σ_i (z1_i · z2_i)²``, and ``‖Z1 Z2ᵀ‖_F² = ⟨Z1ᵀZ1, Z2ᵀZ2⟩_F``: the N×N
matrix of pairwise products or two D×D Gram matrices (:func:`redundancy._ops.cross_product_energy` on the
transposed views). The defaults are those of ``jhaochenz96/spectral_contrastive_learning`` ``models/spectral.py``.
"""

import math
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._loss import ALGORITHMS, Loss, Options, choice_option, option, options_dataclass, real, takes_options_of
from redundancy._ops import cross_product_energy

__all__ = ["SpectralContrastiveTerms", "spectral_contrastive_loss", "spectral_contrastive_terms"]


class SpectralContrastiveTerms(NamedTuple):
    """The spectral contrastive loss and its two terms, as :func:`spectral_contrastive_terms` returns them.

    ``loss = (attraction + repulsion) / mu``; all three are 0-dim tensors and carry gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> loss, attraction, repulsion = spectral_contrastive_terms(z1, z2, mu=2.0)
        >>> torch.allclose(loss, (attraction + repulsion) / 2.0)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`spectral_contrastive_loss` returns it."""
    attraction: torch.Tensor
    """``-2/N Σ_i z1_i · z2_i`` (after the projection onto the ball)."""
    repulsion: torch.Tensor
    """``Σ_{i≠j} (z1_i · z2_j)² / (N (N - 1))``."""


@options_dataclass
class SpectralContrastiveOptions(Options):
    """The options of :func:`spectral_contrastive_loss` (documented there), declared once."""

    mu: float = option(1.0, real(positive=True))
    algorithm: str = choice_option("auto", ALGORITHMS)


def _project_onto_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rows of norm at least ``radius`` rescaled to norm ``radius``; the others unchanged."""
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return z * (radius / norms.clamp_min(1e-12)).clamp_max(1.0)


def _spectral_contrastive(options: SpectralContrastiveOptions, batch, z1, z2) -> SpectralContrastiveTerms:
    z1, z2 = batch.gather(z1.to(batch.dtype), z2.to(batch.dtype))
    n, d = z1.shape
    algorithm = options.algorithm
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)  # the N×N form when it is the smaller
    radius = math.sqrt(options.mu)
    a, b = _project_onto_ball(z1, radius), _project_onto_ball(z2, radius)
    matched = torch.linalg.vecdot(a, b, dim=1)
    # The op's "cross" form builds (aᵀ)ᵀ bᵀ = a bᵀ (N×N): this loss's "gram"; its "gram" form the D×D Grams.
    energy = cross_product_energy(a.t(), b.t(), algorithm="cross" if algorithm == "gram" else "gram")
    attraction = matched.sum() * (-2.0 / n)
    repulsion = (energy - matched.dot(matched)) / (n * (n - 1))
    return SpectralContrastiveTerms((attraction + repulsion) / options.mu, attraction, repulsion)


SPECTRAL_CONTRASTIVE = Loss(
    "spectral_contrastive_loss", SpectralContrastiveOptions, ("z1", "z2"), _spectral_contrastive
)


@takes_options_of(SPECTRAL_CONTRASTIVE)
def spectral_contrastive_terms(z1: torch.Tensor, z2: torch.Tensor, **options) -> SpectralContrastiveTerms:
    """The spectral contrastive loss together with its attraction and repulsion terms, for logging.

    Takes the same arguments as :func:`spectral_contrastive_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`SpectralContrastiveTerms` ``(loss, attraction, repulsion)``, each a 0-dim tensor with gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> torch.equal(spectral_contrastive_terms(z1, z2).loss, spectral_contrastive_loss(z1, z2))
        True
    """
    return SPECTRAL_CONTRASTIVE.run((z1, z2), options)


@takes_options_of(SPECTRAL_CONTRASTIVE)
def spectral_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, **options) -> torch.Tensor:
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
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks: the negatives of a row are the rows of all ranks) or each rank's own, as in
            :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise. :func:`spectral_contrastive_terms` gives
        its attraction and repulsion terms too.

    Example:
        >>> z = torch.nn.functional.normalize(torch.randn(32, 64), dim=1)
        >>> spectral_contrastive_loss(z, z) < spectral_contrastive_loss(z, z.roll(1, dims=0))
        tensor(True)
    """
    return SPECTRAL_CONTRASTIVE.run((z1, z2), options).loss
