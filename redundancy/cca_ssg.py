"""The CCA-SSG loss (Zhang et al., 2021), on the shared primitives.

Each view is standardized (``A``, ``B``); the invariance term is ``-tr(AᵀB) / N`` (O(N·D)) and each view's
decorrelation term ``‖I - AᵀA / N‖_F² = Σ_i (1 - ‖A_i‖² / N)² + Σ_{i≠j} (AᵀA)_ij² / N²`` uses the off-diagonal
energy of :func:`redundancy._ops.off_diagonal_energy` (D×D or N×N form). The defaults are those of the
official code (``hengruizhang98/CCA-SSG``: ``z = (h - h.mean(0)) / h.std(0)``, ``λ = 1e-3``).
"""

import dataclasses
from typing import Any
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._frame import NONNEGATIVE
from redundancy._frame import Algorithm
from redundancy._frame import Correction
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import module_options
from redundancy._frame import same_arguments_as
from redundancy._ops import off_diagonal_energy
from redundancy._ops.standardize import standardization_of_options
from redundancy._ops.standardize import standardize_each

__all__ = ["CCASSGLoss", "CCASSGTerms", "cca_ssg_loss", "cca_ssg_terms"]


class CCASSGTerms(NamedTuple):
    """The CCA-SSG loss and its two terms, as :func:`cca_ssg_terms` returns them.

    ``loss = invariance + lambd * decorrelation``; all three are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import cca_ssg_terms
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> loss, invariance, decorrelation = cca_ssg_terms(z1, z2, lambd=0.01)
        >>> torch.allclose(loss, invariance + 0.01 * decorrelation)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`cca_ssg_loss` returns it."""
    invariance: torch.Tensor
    """``-tr(AᵀB) / N``."""
    decorrelation: torch.Tensor
    """``‖I - AᵀA / N‖_F² + ‖I - BᵀB / N‖_F²``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CCASSGOptions(Options):
    """The options of :func:`cca_ssg_loss` (documented there), declared once."""

    lambd: float = dataclasses.field(default=1e-3, metadata=NONNEGATIVE)
    correction: Correction = 1
    standardize: bool = True
    eps: float = dataclasses.field(default=0.0, metadata=NONNEGATIVE)
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


CCA_SSG = Loss("cca_ssg_loss", CCASSGOptions, Views("z1", "z2"))


def _decorrelation(a: torch.Tensor, algorithm: str) -> torch.Tensor:
    """``‖I - aᵀa / N‖_F²`` without forming the D×D matrix when the Gram form is chosen."""
    n = a.shape[0]
    diagonal = torch.linalg.vecdot(a, a, dim=0) / n
    return (1.0 - diagonal).square().sum() + off_diagonal_energy(a, algorithm=algorithm) / (n * n)


def _cca_ssg_terms(options: CCASSGOptions, batch: GlobalBatch, z1: torch.Tensor, z2: torch.Tensor) -> CCASSGTerms:
    z1, z2 = batch.gather_in_dtype(z1, z2)
    n, d = z1.shape
    algorithm = cost.choose_autocorrelation_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
    a, b = standardize_each((z1, z2), standardization_of_options(options))
    invariance = -torch.linalg.vecdot(a, b, dim=0).sum() / n
    decorrelation = _decorrelation(a, algorithm) + _decorrelation(b, algorithm)
    return CCASSGTerms(invariance + decorrelation * options.lambd, invariance, decorrelation)


def cca_ssg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambd: float = 1e-3,
    correction: Correction = 1,
    standardize: bool = True,
    eps: float = 0.0,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
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
        correction: the variance divisor ``N - correction`` of the standardization: ``1`` (unbiased, official)
            or ``0`` (biased, as ``BatchNorm1d``).
        standardize: standardize each view (``True``) or use the inputs as they are (``False``).
        eps: added to the variance before the square root (0 in the official code: a constant feature
            gives NaN, as there).
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < D).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        The loss, a 0-dim tensor, float64 for float64 inputs and float32 otherwise; :func:`cca_ssg_terms` gives
        its terms too.

    Example:
        >>> import torch
        >>> from redundancy import cca_ssg_loss, cca_ssg_terms
        >>> z = torch.randn(64, 8)
        >>> cca_ssg_loss(z, z) < cca_ssg_loss(z, torch.randn(64, 8))
        tensor(True)
        >>> terms = cca_ssg_terms(z, z, lambd=0.5)
        >>> torch.allclose(terms.loss, terms.invariance + 0.5 * terms.decorrelation)
        True
    """
    return cca_ssg_terms(**locals()).loss  # every argument, by name


@same_arguments_as(cca_ssg_loss, CCASSGTerms)
def cca_ssg_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> CCASSGTerms:
    """The CCA-SSG loss together with its invariance and decorrelation terms, for logging.

    Takes the arguments of :func:`cca_ssg_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`CCASSGTerms` ``(loss, invariance, decorrelation)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import cca_ssg_loss, cca_ssg_terms
        >>> z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> torch.equal(cca_ssg_terms(z1, z2).loss, cca_ssg_loss(z1, z2))
        True
    """
    with CCA_SSG.open(dict(options, z1=z1, z2=z2)) as call:
        return call.finish(_cca_ssg_terms(call.options, call.batch, *call.inputs))


class CCASSGLoss(LossModule):
    r"""The CCA-SSG loss as a module; ``forward(z1, z2)`` is :func:`redundancy.cca_ssg_loss`.

    Example:
        >>> import torch
        >>> from redundancy import CCASSGLoss
        >>> criterion = CCASSGLoss(lambd=5e-4)
        >>> criterion.lambd = 1e-3  # an option is a plain attribute: set it during training
        >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
        >>> criterion(z1, z2).backward()
    """

    loss = CCA_SSG

    @module_options(CCASSGOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.cca_ssg_loss` with this module's options."""
        return cca_ssg_loss(z1, z2, **self.options)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> CCASSGTerms:
        """The loss with its terms, as :func:`redundancy.cca_ssg_terms` returns them."""
        return cca_ssg_terms(z1, z2, **self.options)
