"""Regularizers usable alone: DeCov (Cogswell et al., 2016) and the total coding rate (TCR).

Both are reductions of one view's auto-correlation: DeCov its off-diagonal energy
(:func:`redundancy._ops.off_diagonal_energy`), TCR its log-determinant
(:func:`redundancy._ops.half_logdet_identity_plus_gram`), each through the D×D or the N×N form, whichever is
smaller. VICReg's own variance and covariance terms are :func:`redundancy.vicreg_variance_loss` and
:func:`redundancy.vicreg_covariance_loss`. Under ``torch.distributed`` both are, by default, those of the batch
of all ranks, as :func:`redundancy.vicreg_loss` is.
"""

import torch

from redundancy import cost
from redundancy._loss import ALGORITHMS, Loss, Options, choice_option, option, options_dataclass, real, takes_options_of
from redundancy._ops import half_logdet_identity_plus_gram, off_diagonal_energy
from redundancy.vicreg import center, correction_option

__all__ = ["decov_loss", "total_coding_rate"]


@options_dataclass
class DeCovOptions(Options):
    """The options of :func:`decov_loss`."""

    correction: int = correction_option(0)
    algorithm: str = choice_option("auto", ALGORITHMS)


@options_dataclass
class TotalCodingRateOptions(Options):
    """The options of :func:`total_coding_rate`."""

    eps: float = option(0.2, real(positive=True))
    algorithm: str = choice_option("auto", ALGORITHMS)


def _decov(options: DeCovOptions, batch, h: torch.Tensor) -> torch.Tensor:
    (h,) = batch.gather(h.to(batch.dtype))
    n, d = h.shape
    algorithm = cost.choose_autocorrelation_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
    energy = off_diagonal_energy(center(h), algorithm=algorithm)
    divisor = n - options.correction  # an int (no float(): it would fix the batch size of a compiled graph)
    return energy / (2 * divisor * divisor)


def _total_coding_rate(options: TotalCodingRateOptions, batch, z: torch.Tensor) -> torch.Tensor:
    (z,) = batch.gather(z.to(batch.dtype))
    n, d = z.shape
    algorithm = cost.choose_autocorrelation_algorithm(n, d) if options.algorithm == "auto" else options.algorithm
    return half_logdet_identity_plus_gram(z, alpha=d / (n * options.eps), algorithm=algorithm)


DECOV = Loss("decov_loss", DeCovOptions, ("h",), _decov)
TOTAL_CODING_RATE = Loss("total_coding_rate", TotalCodingRateOptions, ("z",), _total_coding_rate, min_rows=1)


@takes_options_of(DECOV)
def decov_loss(h: torch.Tensor, **options) -> torch.Tensor:
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
        >>> h = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # two perfectly correlated units, variance 1
        >>> decov_loss(h)
        tensor(1.)
    """
    return DECOV.run((h,), options)


@takes_options_of(TOTAL_CODING_RATE)
def total_coding_rate(z: torch.Tensor, **options) -> torch.Tensor:
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
        >>> z = torch.nn.functional.normalize(torch.randn(32, 128), dim=1)
        >>> loss = -total_coding_rate(z)
        >>> loss.shape
        torch.Size([])
    """
    return TOTAL_CODING_RATE.run((z,), options)
