"""Regularizers usable alone: DeCov (Cogswell et al., 2016) and the total coding rate (TCR).

Both are reductions of one view's auto-correlation: DeCov its off-diagonal energy
(:func:`redundancy._ops.off_diagonal_energy`), TCR its log-determinant
(:func:`redundancy._ops.half_logdet_identity_plus_gram`), each through the D×D or the N×N form, whichever is
smaller. VICReg's own variance and covariance terms are :func:`redundancy.vicreg_variance_loss` and
:func:`redundancy.vicreg_covariance_loss`. Under ``torch.distributed`` both are, by default, those of the batch
of all ranks, as :func:`redundancy.vicreg_loss` is.
"""

import dataclasses
from typing import Any

import torch

from redundancy import cost
from redundancy._batch import ProcessGroup
from redundancy._frame import POSITIVE
from redundancy._frame import Algorithm
from redundancy._frame import Correction
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import module_options
from redundancy._ops import half_logdet_identity_plus_gram
from redundancy._ops import off_diagonal_energy
from redundancy._ops.standardize import center

__all__ = ["DeCovLoss", "TotalCodingRate", "decov_loss", "total_coding_rate"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeCovOptions(Options):
    """The options of :func:`decov_loss`."""

    correction: Correction = 0
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TotalCodingRateOptions(Options):
    """The options of :func:`total_coding_rate`."""

    eps: float = dataclasses.field(default=0.2, metadata=POSITIVE)
    algorithm: Algorithm = "auto"
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None


DECOV = Loss("decov_loss", DeCovOptions, Views("h"))
TOTAL_CODING_RATE = Loss("total_coding_rate", TotalCodingRateOptions, Views("z"), min_rows=1)


def decov_loss(
    h: torch.Tensor,
    *,
    correction: Correction = 0,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""DeCov (Cogswell et al., 2016): half the off-diagonal energy of the activations' batch covariance.

    .. math::

        L = \frac12 \big(\lVert C \rVert_F^2 - \lVert \operatorname{diag} C \rVert_2^2\big), \qquad
        C = \frac{(h - \bar h)^\top (h - \bar h)}{N - \mathrm{correction}}.

    The paper divides by N (``correction=0``, the default). Computed through the D×D covariance or, when
    N < D, through the N×N Gram matrix of the centred activations; neither is returned.

    Args:
        h: hidden activations, shape ``(N, D)`` with ``N >= 2``.
        correction: ``0`` divides by ``N`` (paper), ``1`` by ``N - 1``.
        algorithm: ``"cross"`` (D×D), ``"gram"`` (N×N) or ``"auto"`` (``gram`` when N < D).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import decov_loss
        >>> h = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # two perfectly correlated units, variance 1
        >>> decov_loss(h)
        tensor(1.)
    """
    with DECOV.open(locals()) as call:
        options, batch = call.options, call.batch
        (h,) = batch.gather_in_dtype(call.inputs[0])
        n, d = h.shape
        chosen = cost.choose_autocorrelation_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
        energy = off_diagonal_energy(center(h), algorithm=chosen)
        divisor = n - options.correction  # an int (no float(): it would fix the batch size of a compiled graph)
        return call.finish(energy / (2 * divisor * divisor))


def total_coding_rate(
    z: torch.Tensor,
    *,
    eps: float = 0.2,
    algorithm: Algorithm = "auto",
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The total coding rate of a batch of embeddings (Ma et al., 2007; Yu et al., 2020; EMP-SSL, Tong et al., 2023).

    .. math::

        R(z) = \frac12 \log\det\Big(I_D + \frac{D}{N \epsilon} z^\top z\Big)
             = \frac12 \log\det\Big(I_N + \frac{D}{N \epsilon} z z^\top\Big),

    the second form (Sylvester's identity) being used when N < D. The log-determinant comes from a Cholesky
    factorization in float32 (float64 for float64 inputs). ``eps`` is the ε of the EMP-SSL code (and lightly's
    ``tcr_eps``), which is ε² of the papers. Maximize it (the TCR loss is :math:`-R`); the rows of ``z`` are
    usually L2-normalized first, as EMP-SSL does.

    Args:
        z: embeddings, shape ``(N, D)``.
        eps: the distortion ε, positive.
        algorithm: ``"cross"`` (D×D form), ``"gram"`` (N×N form) or ``"auto"`` (the smaller, ``gram`` when N < D).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks; N is then the global batch size) or each rank's own, as in
            :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import total_coding_rate
        >>> z = torch.nn.functional.normalize(torch.randn(32, 128), dim=1)
        >>> loss = -total_coding_rate(z)
        >>> loss.shape
        torch.Size([])
    """
    with TOTAL_CODING_RATE.open(locals()) as call:
        options, batch = call.options, call.batch
        (z,) = batch.gather_in_dtype(call.inputs[0])
        n, d = z.shape
        chosen = cost.choose_autocorrelation_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
        return call.finish(half_logdet_identity_plus_gram(z, alpha=d / (n * options.eps), algorithm=chosen))


class DeCovLoss(LossModule):
    r"""DeCov as a module; ``forward(h)`` is :func:`redundancy.decov_loss`.

    Example:
        >>> import pickle
        >>> import torch
        >>> from redundancy import DeCovLoss
        >>> criterion = pickle.loads(pickle.dumps(DeCovLoss(correction=1)))  # plain attributes pickle
        >>> criterion.correction
        1
        >>> criterion(torch.randn(64, 32, requires_grad=True)).backward()
    """

    loss = DECOV

    @module_options(DeCovOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.decov_loss` with this module's options."""
        return decov_loss(h, **self.options)


class TotalCodingRate(LossModule):
    r"""The total coding rate as a module; ``forward(z)`` is :func:`redundancy.total_coding_rate` (maximize it).

    Example:
        >>> import torch
        >>> from redundancy import TotalCodingRate
        >>> tcr = TotalCodingRate(eps=0.2)
        >>> z = torch.randn(64, 32, requires_grad=True)
        >>> (-tcr(z)).backward()
    """

    loss = TOTAL_CODING_RATE

    @module_options(TotalCodingRateOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.total_coding_rate` with this module's options."""
        return total_coding_rate(z, **self.options)
