"""The spectral contrastive loss (HaoChen et al., 2021), with its D×D Gram dual.

The repulsive term sums the squared similarities of all mismatched pairs,
``Σ_{i≠j} (z1_i · z2_j)² = ‖Z1 Z2ᵀ‖_F² - Σ_i (z1_i · z2_i)²``, and ``‖Z1 Z2ᵀ‖_F² = ⟨Z1ᵀZ1, Z2ᵀZ2⟩_F``: the N×N
matrix of pairwise products or two D×D Gram matrices (:func:`redundancy._ops.cross_product_energy` on the
transposed views). The defaults are those of ``jhaochenz96/spectral_contrastive_learning`` ``models/spectral.py``.
"""

import dataclasses
import math
from typing import Any
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._frame import POSITIVE
from redundancy._frame import Algorithm
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import module_options
from redundancy._frame import same_arguments_as
from redundancy._ops import cross_product_energy

__all__ = [
    "SpectralContrastiveLoss",
    "SpectralContrastiveTerms",
    "spectral_contrastive_loss",
    "spectral_contrastive_terms",
]


class SpectralContrastiveTerms(NamedTuple):
    """The spectral contrastive loss and its two terms, as :func:`spectral_contrastive_terms` returns them.

    ``loss = (attraction + repulsion) / mu``; all three are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import spectral_contrastive_terms
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpectralContrastiveOptions(Options):
    """The options of :func:`spectral_contrastive_loss` (documented there), declared once."""

    mu: float = dataclasses.field(default=1.0, metadata=POSITIVE)
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


SPECTRAL_CONTRASTIVE = Loss("spectral_contrastive_loss", SpectralContrastiveOptions, Views("z1", "z2"))


def _project_onto_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rows of norm at least ``radius`` rescaled to norm ``radius``; the others unchanged."""
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return z * (radius / norms.clamp_min(1e-12)).clamp_max(1.0)


def _spectral_contrastive_terms(
    options: SpectralContrastiveOptions, batch: GlobalBatch, z1: torch.Tensor, z2: torch.Tensor
) -> SpectralContrastiveTerms:
    z1, z2 = batch.gather_in_dtype(z1, z2)
    n, d = z1.shape
    algorithm: str = options.algorithm
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


def spectral_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    mu: float = 1.0,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
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
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks: the negatives of a row are the rows of all ranks) or each rank's own, as in
            :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise. :func:`spectral_contrastive_terms` gives
        its attraction and repulsion terms too.

    Example:
        >>> import torch
        >>> from redundancy import spectral_contrastive_loss
        >>> z = torch.nn.functional.normalize(torch.randn(32, 64), dim=1)
        >>> spectral_contrastive_loss(z, z) < spectral_contrastive_loss(z, z.roll(1, dims=0))
        tensor(True)
    """
    return spectral_contrastive_terms(**locals()).loss  # every argument, by name


@same_arguments_as(spectral_contrastive_loss, SpectralContrastiveTerms)
def spectral_contrastive_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> SpectralContrastiveTerms:
    """The spectral contrastive loss together with its attraction and repulsion terms, for logging.

    Takes the arguments of :func:`spectral_contrastive_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`SpectralContrastiveTerms` ``(loss, attraction, repulsion)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import spectral_contrastive_loss, spectral_contrastive_terms
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> torch.equal(spectral_contrastive_terms(z1, z2).loss, spectral_contrastive_loss(z1, z2))
        True
    """
    with SPECTRAL_CONTRASTIVE.open(dict(options, z1=z1, z2=z2)) as call:
        return call.finish(_spectral_contrastive_terms(call.options, call.batch, *call.inputs))


class SpectralContrastiveLoss(LossModule):
    r"""The spectral contrastive loss as a module; ``forward(z1, z2)`` is :func:`redundancy.spectral_contrastive_loss`.

    Example:
        >>> import torch
        >>> from redundancy import SpectralContrastiveLoss
        >>> projector = torch.nn.Linear(32, 16)
        >>> criterion = SpectralContrastiveLoss(mu=1.0)
        >>> x1, x2 = torch.randn(64, 32), torch.randn(64, 32)  # two augmentations of a batch, as features
        >>> criterion(projector(x1), projector(x2)).backward()
        >>> projector.weight.grad.shape
        torch.Size([16, 32])
    """

    loss = SPECTRAL_CONTRASTIVE

    @module_options(SpectralContrastiveOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.spectral_contrastive_loss` with this module's options."""
        return spectral_contrastive_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> SpectralContrastiveTerms:
        """The loss with its terms, as :func:`redundancy.spectral_contrastive_terms` returns them."""
        return spectral_contrastive_terms(z1, z2, **self.options)
