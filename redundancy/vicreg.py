"""VICReg (Bardes et al., 2022) and its variance and covariance regularizers, on the shared primitives.

Each view ``z`` (N×D) is centred per feature over the batch, ``X = z - mean_n z``; from ``X`` come the
per-feature standard deviation ``s_i = sqrt(Σ_n X_ni² / (N - c) + ε)`` and the off-diagonal energy of the
covariance ``Σ_{i≠j} Cov_ij²`` with ``Cov = XᵀX / (N - c)`` (:func:`redundancy._ops.off_diagonal_energy`, through
the D×D or the N×N product, whichever is cheaper). The defaults are those of the official implementation,
``facebookresearch/vicreg`` ``main_vicreg.py``.

Under ``torch.distributed`` (``distributed="global"``, the default, with more than one rank in ``group``) every
rank gathers the rows of all ranks (:meth:`redundancy.distributed.GlobalBatch.gather`, one all-gather of the
views) and evaluates the formula above on the concatenated batch: the invariance, the variances and the
covariances are those of the global batch and every rank returns the same value, with the gradient convention
of :func:`redundancy.barlow_twins_loss`.
"""

from typing import Any, NamedTuple

import torch

from redundancy import cost
from redundancy import distributed as distributed_ops
from redundancy._loss import (
    ALGORITHMS,
    Loss,
    Options,
    choice_option,
    correction_option,
    option,
    options_dataclass,
    real,
    takes_options_of,
)
from redundancy._ops import off_diagonal_energy
from redundancy._ops.feature_shards import (
    off_diagonal_energy_from_parts,
    off_diagonal_energy_parts,
    terms_algorithm,
)

__all__ = [
    "VICRegTerms",
    "vicreg_covariance_loss",
    "vicreg_loss",
    "vicreg_terms",
    "vicreg_variance_loss",
]

VARIANCE_REDUCTIONS = ("mean", "sum")


class VICRegTerms(NamedTuple):
    """The VICReg loss and its three terms, as :func:`vicreg_terms` returns them.

    ``loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance``;
    the terms are unweighted. All four are 0-dim tensors and carry gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> loss, invariance, variance, covariance = vicreg_terms(z1, z2)
        >>> torch.allclose(loss, 25 * invariance + 25 * variance + 1 * covariance)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`vicreg_loss` returns it."""
    invariance: torch.Tensor
    """Mean squared difference of the two views, over the N·D entries."""
    variance: torch.Tensor
    """Hinge on the per-feature standard deviation, averaged over features and over (or summed across) views."""
    covariance: torch.Tensor
    """Off-diagonal energy of each view's covariance divided by D, summed over the two views."""


# ------------------------------------------------------------------------------------------------ options


@options_dataclass
class VICRegOptions(Options):
    """The options of :func:`vicreg_loss` (documented there), declared once."""

    invariance_weight: float = option(25.0, real(nonnegative=True))
    variance_weight: float = option(25.0, real(nonnegative=True))
    covariance_weight: float = option(1.0, real(nonnegative=True))
    gamma: float = option(1.0, real(nonnegative=True))
    eps: float = option(1e-4, real(nonnegative=True))
    correction: int = correction_option(1)
    variance_reduction: str = choice_option("mean", VARIANCE_REDUCTIONS)
    algorithm: str = choice_option("auto", ALGORITHMS)
    feature_group: Any = option(
        None,
        distributed_ops.check_group,
        encode=distributed_ops.feature_group_size,
        decode=distributed_ops.describe_feature_group,
    )


@options_dataclass
class VICRegVarianceOptions(Options):
    """The options of :func:`vicreg_variance_loss`."""

    gamma: float = option(1.0, real(nonnegative=True))
    eps: float = option(1e-4, real(nonnegative=True))
    correction: int = correction_option(1)


@options_dataclass
class VICRegCovarianceOptions(Options):
    """The options of :func:`vicreg_covariance_loss`."""

    correction: int = correction_option(1)
    algorithm: str = choice_option("auto", ALGORITHMS)


# ---------------------------------------------------------------------------------- shared computations


def center(z: torch.Tensor) -> torch.Tensor:
    """``z - mean_n z``: the one place a view's batch mean is taken (already upcast ``z``).

    Centred twice, as :mod:`redundancy._ops.standardize` does: ``z`` minus its rounded mean (a shift, without
    gradient), then minus the mean of that, which removes the rounding error of the first (as large as the spread
    of a column whose offset is 1e7 times its spread in float32).
    """
    centered = z - z.mean(dim=0).detach()
    return centered.sub_(centered.mean(dim=0))


def _feature_hinges(x: torch.Tensor, divisor: int, gamma: float, eps: float) -> torch.Tensor:
    """``relu(γ - sqrt(Σ_n x_ni² / divisor + ε))`` of each feature i of centred ``x``."""
    variance = torch.linalg.vecdot(x, x, dim=0) / divisor
    return torch.relu(gamma - torch.sqrt(variance + eps))


def _variance_hinge(x: torch.Tensor, divisor: int, gamma: float, eps: float) -> torch.Tensor:
    """``mean_i relu(γ - sqrt(Σ_n x_ni² / divisor + ε))`` of centred ``x``."""
    return _feature_hinges(x, divisor, gamma, eps).mean()


def _covariance_penalty(x: torch.Tensor, divisor: int, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} Cov_ij² / D`` with ``Cov = xᵀx / divisor`` of centred ``x``."""
    n, d = x.shape
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)
    return off_diagonal_energy(x, algorithm=algorithm) / (divisor * divisor * d)  # ints: no float() in a trace


def _vicreg(options: VICRegOptions, batch, z1: torch.Tensor, z2: torch.Tensor) -> VICRegTerms:
    if batch.features is not None:
        return vicreg_over_features(options, batch, z1, z2)
    z1, z2 = batch.gather(z1.to(batch.dtype), z2.to(batch.dtype))
    divisor = batch.count - options.correction  # N >= 2 and correction <= 1: never 0
    invariance = (z1 - z2).square().mean()
    x1, x2 = center(z1), center(z2)
    gamma, eps = options.gamma, options.eps
    variance = _variance_hinge(x1, divisor, gamma, eps) + _variance_hinge(x2, divisor, gamma, eps)
    if options.variance_reduction == "mean":
        variance = variance / 2
    covariance = _covariance_penalty(x1, divisor, options.algorithm) + _covariance_penalty(
        x2, divisor, options.algorithm
    )
    loss = (
        invariance * options.invariance_weight
        + variance * options.variance_weight
        + covariance * options.covariance_weight
    )
    return VICRegTerms(loss, invariance, variance, covariance)


def vicreg_over_features(options: VICRegOptions, batch, *views: torch.Tensor) -> VICRegTerms:
    """The terms of two views (or the mean over the pairs of several) when the features are split over
    ``feature_group``: each rank gathers the rows of its columns (over ``group``); the per-feature parts stay
    local, and one all-reduce over the feature group sums them with the covariance energy's parts
    (:mod:`redundancy._ops.feature_shards`). Each pair's mean squared difference comes from the views' distances
    to their mean, and each view's variance hinge and covariance energy, computed once, count for the V - 1 pairs
    it belongs to (as in :func:`redundancy.multiview_vicreg_loss`)."""
    features = batch.features
    algorithm = options.algorithm
    if algorithm == "auto":
        algorithm = cost.choose_feature_parallel_algorithm(
            batch.count, batch.dim, batch.world_size, features.world_size, batch.dtype, loss="vicreg"
        )
    algorithm = terms_algorithm(algorithm, batch.count, batch.dim)
    views = batch.gather(*(z.to(batch.dtype) for z in views))
    count = len(views)
    divisor = batch.count - options.correction
    mean_view = torch.stack(views).mean(dim=0)
    distances = torch.stack([(z - mean_view).square().sum() for z in views]).sum()
    centred = [center(z) for z in views]
    hinges = torch.cat([_feature_hinges(x, divisor, options.gamma, options.eps) for x in centred]).sum()
    energy_parts = [off_diagonal_energy_parts(x, features=features, algorithm=algorithm) for x in centred]
    size = len(energy_parts[0])
    distances, hinges, *summed = features.sum(distances, hinges, *(part for parts in energy_parts for part in parts))
    energies = torch.stack(
        [off_diagonal_energy_from_parts(summed[v * size : (v + 1) * size], algorithm=algorithm) for v in range(count)]
    ).sum()
    dim, pairs = batch.dim, count * (count - 1) // 2
    # Σ_{u<v} ‖z_u - z_v‖² = V Σ_v ‖z_v - z̄‖², and a view belongs to V - 1 of the P pairs.
    invariance = distances * (count / pairs) / (batch.count * dim)
    variance = hinges * ((1.0 if options.variance_reduction == "mean" else 2.0) / count) / dim
    covariance = energies * (2.0 / count) / (divisor * divisor * dim)
    loss = (
        invariance * options.invariance_weight
        + variance * options.variance_weight
        + covariance * options.covariance_weight
    )
    return VICRegTerms(loss, invariance, variance, covariance)


def _vicreg_variance(options: VICRegVarianceOptions, batch, z: torch.Tensor) -> torch.Tensor:
    (z,) = batch.gather(z.to(batch.dtype))
    return _variance_hinge(center(z), batch.count - options.correction, options.gamma, options.eps)


def _vicreg_covariance(options: VICRegCovarianceOptions, batch, z: torch.Tensor) -> torch.Tensor:
    (z,) = batch.gather(z.to(batch.dtype))
    return _covariance_penalty(center(z), batch.count - options.correction, options.algorithm)


VICREG = Loss("vicreg_loss", VICRegOptions, ("z1", "z2"), _vicreg)
VICREG_VARIANCE = Loss("vicreg_variance_loss", VICRegVarianceOptions, ("z",), _vicreg_variance)
VICREG_COVARIANCE = Loss("vicreg_covariance_loss", VICRegCovarianceOptions, ("z",), _vicreg_covariance)


# ------------------------------------------------------------------------------------------------ public


@takes_options_of(VICREG)
def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, **options) -> VICRegTerms:
    r"""The VICReg loss together with its invariance, variance and covariance terms, for logging.

    Takes the same arguments as :func:`vicreg_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`VICRegTerms` ``(loss, invariance, variance, covariance)``, each a 0-dim tensor with gradients.

    Example:
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> t = vicreg_terms(z1, z2)
        >>> torch.allclose(t.loss, 25 * t.invariance + 25 * t.variance + t.covariance)
        True
    """
    return VICREG.run((z1, z2), options)


@takes_options_of(VICREG)
def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, **options) -> torch.Tensor:
    r"""The VICReg loss (Bardes et al., 2022) of two embeddings of the same batch.

    With :math:`X^{(v)}` the view :math:`z^{(v)}` centred per feature over the batch,
    :math:`\mathrm{Cov}^{(v)} = X^{(v)\top} X^{(v)} / (N - c)` and
    :math:`s^{(v)}_i = \sqrt{\mathrm{Cov}^{(v)}_{ii} + \epsilon}`:

    .. math::

        L = \lambda \frac{1}{ND} \sum_{n,i} (z^{(1)}_{ni} - z^{(2)}_{ni})^2
          + \mu \frac{1}{2} \sum_{v=1}^{2} \frac{1}{D} \sum_i \max(0, \gamma - s^{(v)}_i)
          + \nu \sum_{v=1}^{2} \frac{1}{D} \sum_{i \ne j} \big(\mathrm{Cov}^{(v)}_{ij}\big)^2.

    The defaults reproduce ``facebookresearch/vicreg`` ``main_vicreg.py`` (λ, μ, ν = 25, 25, 1; ε = 1e-4;
    γ = 1; unbiased covariance, c = 1; the variance term averaged over the two views). The covariance term is
    computed through the D×D covariance or, when N < D, through the N×N Gram matrix; neither is returned.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``, floating point.
        z2: embeddings of the second view, same shape and device as ``z1``.
        invariance_weight: λ, weight of the mean squared difference (official ``sim_coeff``).
        variance_weight: μ, weight of the variance hinge (official ``std_coeff``).
        covariance_weight: ν, weight of the covariance penalty (official ``cov_coeff``).
        gamma: γ, target standard deviation of each feature.
        eps: ε, added to the variance before the square root.
        correction: ``1`` divides the variance and covariance by ``N - 1`` (official), ``0`` by ``N``.
        variance_reduction: ``"mean"`` halves the sum of the two views' variance hinges (official, lightly);
            ``"sum"`` keeps the sum (solo-learn's ``vicreg_loss_func``).
        algorithm: ``"cross"`` (D×D covariance, 4·N·D² FLOPs per view), ``"gram"`` (N×N Gram matrix,
            4·N²·D FLOPs per view) or ``"auto"`` (``gram`` when N < D).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one
            rank, the loss of the batch of all ranks: the mean squared difference, the variances and the
            covariances of the concatenated batch, the same value on every rank; every rank gathers the views of
            all ranks, 2·N·D elements) or ``"local"`` (each rank's own batch, as ``main_vicreg.py`` computes the
            invariance term). Without ``torch.distributed``, or with one rank, both are the single-process loss
            and nothing is communicated.
        gradient_convention: ``"global"`` (after DDP's gradient averaging, parameter gradients equal those of one
            process training on the concatenated batch; input gradients are W times ``∂L/∂z`` of this rank's
            rows) or ``"official"`` (``∂L/∂z`` itself, 1/W of the former), as in
            :func:`redundancy.barlow_twins_loss`.
        group: the process group of the global batch; ``None`` for the default group.
        feature_group: the ranks that hold the other features of this rank's rows, as in
            :func:`redundancy.barlow_twins_loss`; the covariance term then comes from the N×N Grams summed over
            them, or from each rank's block row of the covariance (``algorithm``).

    Shape:
        As :func:`redundancy.barlow_twins_loss`: ``(N, D)`` views, each rank's ``(N_r, D)`` rows of the global
        batch, its ``(N_r, D_p)`` block with ``feature_group``, or DTensors; output ``()``.

    Returns:
        The loss, a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z1, z2 = torch.randn(64, 32), torch.randn(64, 32)
        >>> loss = vicreg_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return VICREG.run((z1, z2), options).loss


@takes_options_of(VICREG_VARIANCE)
def vicreg_variance_loss(z: torch.Tensor, **options) -> torch.Tensor:
    r"""VICReg's variance regularizer of one view: a hinge on each feature's standard deviation.

    .. math::

        v(z) = \frac{1}{D} \sum_i \max\Big(0,\ \gamma - \sqrt{\mathrm{Var}(z_{:,i}) + \epsilon}\Big),

    with the variance over the batch divided by ``N - correction``. :func:`vicreg_loss` uses the average of
    this over its two views.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        gamma: γ, target standard deviation.
        eps: ε, added to the variance before the square root.
        correction: ``1`` (unbiased variance, official) or ``0`` (biased).
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> vicreg_variance_loss(torch.zeros(8, 4))  # collapsed: every std is sqrt(eps)
        tensor(0.9900)
    """
    return VICREG_VARIANCE.run((z,), options)


@takes_options_of(VICREG_COVARIANCE)
def vicreg_covariance_loss(z: torch.Tensor, **options) -> torch.Tensor:
    r"""VICReg's covariance regularizer of one view: the off-diagonal energy of its covariance, over D.

    .. math::

        c(z) = \frac{1}{D} \sum_{i \ne j} \mathrm{Cov}(z)_{ij}^2, \qquad
        \mathrm{Cov}(z) = \frac{(z - \bar z)^\top (z - \bar z)}{N - \mathrm{correction}}.

    :func:`vicreg_loss` uses the sum of this over its two views. No D×D matrix is formed when N < D.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: ``1`` (divide by ``N - 1``, official) or ``0`` (by ``N``).
        algorithm: ``"cross"``, ``"gram"`` or ``"auto"``, as in :func:`vicreg_loss`.
        distributed, gradient_convention, group: the batch of all ranks under ``torch.distributed`` (every rank
            gathers the rows of all ranks) or each rank's own, as in :func:`redundancy.barlow_twins_loss`.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z = torch.randn(16, 1).repeat(1, 3)  # three copies of one feature
        >>> v = z.var(dim=0)[0]
        >>> torch.allclose(vicreg_covariance_loss(z), 6 * v**2 / 3)
        True
    """
    return VICREG_COVARIANCE.run((z,), options)
