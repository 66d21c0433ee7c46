"""VICReg (Bardes et al., 2022) and its variance and covariance regularizers, on the shared primitives.

Each view ``z`` (N×D) is centred per feature over the batch, ``X = z - mean_n z``; from ``X`` come the
per-feature standard deviation ``s_i = sqrt(Σ_n X_ni² / (N - c) + ε)`` and the off-diagonal energy of the
covariance ``Σ_{i≠j} Cov_ij²`` with ``Cov = XᵀX / (N - c)`` (:func:`redundancy._ops.off_diagonal_energy`, through
the D×D or the N×N product, whichever is cheaper). The defaults are those of the official implementation,
``facebookresearch/vicreg`` ``main_vicreg.py``.

Under ``torch.distributed`` (``distributed="global"``, the default, with more than one rank in ``group``) every
rank gathers the rows of all ranks (:func:`redundancy.distributed.gather_global_batch`, one all-gather of the
views) and evaluates the formula above on the concatenated batch: the invariance, the variances and the
covariances are those of the global batch and every rank returns the same value, with the gradient convention
of :func:`redundancy.barlow_twins_loss` (:func:`redundancy.distributed.apply_gradient_convention`).
"""

from typing import NamedTuple

import torch

from redundancy import cost
from redundancy import distributed as distributed_ops
from redundancy._ops import off_diagonal_energy
from redundancy._ops._autocast import no_autocast
from redundancy.functional import (
    ALGORITHMS,
    _check_choice,
    _check_distributed_options,
    _check_embedding,
    _check_real,
    _check_views,
    _compute_dtype,
    _is_global,
)

__all__ = [
    "VICRegTerms",
    "check_vicreg_options",
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


# --------------------------------------------------------------------------------------------- validation


def _check_correction(correction: object) -> None:
    if isinstance(correction, bool) or not isinstance(correction, int) or correction not in (0, 1):
        raise ValueError(f"correction must be 0 (divide by N) or 1 (divide by N - 1), got {correction!r}")


def check_vicreg_options(
    *,
    invariance_weight: float,
    variance_weight: float,
    covariance_weight: float,
    gamma: float,
    eps: float,
    correction: int,
    variance_reduction: str,
    algorithm: str,
    distributed: str = "global",
    gradient_convention: str = "global",
    group: object = None,
) -> None:
    """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option (used by the Module too).

    Example:
        >>> check_vicreg_options(invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0, gamma=1.0,
        ...     eps=1e-4, correction=1, variance_reduction="median", algorithm="auto")
        Traceback (most recent call last):
            ...
        ValueError: variance_reduction must be one of ('mean', 'sum'), got 'median'
    """
    _check_real("invariance_weight", invariance_weight, nonnegative=True)
    _check_real("variance_weight", variance_weight, nonnegative=True)
    _check_real("covariance_weight", covariance_weight, nonnegative=True)
    _check_real("gamma", gamma, nonnegative=True)
    _check_real("eps", eps, nonnegative=True)
    _check_correction(correction)
    _check_choice("variance_reduction", variance_reduction, VARIANCE_REDUCTIONS)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)


# ---------------------------------------------------------------------------------- shared computations


def _center(z: torch.Tensor) -> torch.Tensor:
    """``z - mean_n z``: the one place a view's batch mean is taken (already upcast ``z``)."""
    return z - z.mean(dim=0)


def _variance_hinge(x: torch.Tensor, divisor: int, gamma: float, eps: float) -> torch.Tensor:
    """``mean_i relu(γ - sqrt(Σ_n x_ni² / divisor + ε))`` of centred ``x``."""
    variance = torch.linalg.vecdot(x, x, dim=0) / divisor
    return torch.relu(gamma - torch.sqrt(variance + eps)).mean()


def _covariance_penalty(x: torch.Tensor, divisor: int, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} Cov_ij² / D`` with ``Cov = xᵀx / divisor`` of centred ``x``."""
    n, d = x.shape
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)
    return off_diagonal_energy(x, algorithm=algorithm) / (float(divisor) ** 2 * d)


# ------------------------------------------------------------------------------------------------ public


def vicreg_terms(
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
    algorithm: str = "auto",
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> VICRegTerms:
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
    check_vicreg_options(
        invariance_weight=invariance_weight,
        variance_weight=variance_weight,
        covariance_weight=covariance_weight,
        gamma=gamma,
        eps=eps,
        correction=correction,
        variance_reduction=variance_reduction,
        algorithm=algorithm,
        distributed=distributed,
        gradient_convention=gradient_convention,
        group=group,
    )
    global_batch = _is_global(distributed, group)
    _check_views(z1, z2, min_rows=0 if global_batch else 2)  # the global N >= 2 is checked by the exchange
    dtype = _compute_dtype(z1, z2)
    with no_autocast(z1.device):
        z1, z2 = z1.to(dtype), z2.to(dtype)
        if global_batch:
            options = distributed_ops.describe_options(
                "vicreg_terms",
                invariance_weight=invariance_weight,
                variance_weight=variance_weight,
                covariance_weight=covariance_weight,
                gamma=gamma,
                eps=eps,
                correction=correction,
                variance_reduction=variance_reduction,
                algorithm=algorithm,
                gradient_convention=gradient_convention,
            )
            (z1, z2), batch = distributed_ops.gather_global_batch(z1, z2, options=options, group=group)
        divisor = z1.shape[0] - correction  # N >= 2 and correction <= 1: never 0
        invariance = (z1 - z2).square().mean()
        x1, x2 = _center(z1), _center(z2)
        variance = _variance_hinge(x1, divisor, gamma, eps) + _variance_hinge(x2, divisor, gamma, eps)
        if variance_reduction == "mean":
            variance = variance / 2
        covariance = _covariance_penalty(x1, divisor, algorithm) + _covariance_penalty(x2, divisor, algorithm)
        if global_batch:
            invariance, variance, covariance = distributed_ops.apply_gradient_convention(
                gradient_convention, batch, invariance, variance, covariance
            )
        loss = invariance * invariance_weight + variance * variance_weight + covariance * covariance_weight
    return VICRegTerms(loss, invariance, variance, covariance)


def vicreg_loss(
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
    algorithm: str = "auto",
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
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

    Shape:
        ``z1``, ``z2``: ``(N, D)`` with ``N >= 2``; under ``distributed="global"`` with several ranks, each rank
        passes its own rows ``(N_r, D)`` (``N_r`` may be 0 or 1) and the global ``N = Σ N_r >= 2``.
        Output: ``()``.

    Returns:
        The loss, a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z1, z2 = torch.randn(64, 32), torch.randn(64, 32)
        >>> loss = vicreg_loss(z1, z2)
        >>> loss.shape, loss.dtype
        (torch.Size([]), torch.float32)
    """
    return vicreg_terms(
        z1,
        z2,
        invariance_weight=invariance_weight,
        variance_weight=variance_weight,
        covariance_weight=covariance_weight,
        gamma=gamma,
        eps=eps,
        correction=correction,
        variance_reduction=variance_reduction,
        algorithm=algorithm,
        distributed=distributed,
        gradient_convention=gradient_convention,
        group=group,
    ).loss


def vicreg_variance_loss(
    z: torch.Tensor,
    *,
    gamma: float = 1.0,
    eps: float = 1e-4,
    correction: int = 1,
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
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
        distributed: ``"global"`` (the variance of the batch of all ranks under ``torch.distributed``) or
            ``"local"``, as in :func:`vicreg_loss`.
        gradient_convention: ``"global"`` or ``"official"``, as in :func:`vicreg_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> vicreg_variance_loss(torch.zeros(8, 4))  # collapsed: every std is sqrt(eps)
        tensor(0.9900)
    """
    _check_real("gamma", gamma, nonnegative=True)
    _check_real("eps", eps, nonnegative=True)
    _check_correction(correction)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)
    global_batch = _is_global(distributed, group)
    _check_embedding("z", z, min_rows=0 if global_batch else 2)
    with no_autocast(z.device):
        z = z.to(_compute_dtype(z))
        if global_batch:
            z, batch = distributed_ops._gather_one_view(
                "vicreg_variance_loss", z, "z", group, gamma=gamma, eps=eps, correction=correction,
                gradient=gradient_convention,
            )
        loss = _variance_hinge(_center(z), z.shape[0] - correction, gamma, eps)
        if global_batch:
            (loss,) = distributed_ops.apply_gradient_convention(gradient_convention, batch, loss)
        return loss


def vicreg_covariance_loss(
    z: torch.Tensor,
    *,
    correction: int = 1,
    algorithm: str = "auto",
    distributed: str = "global",
    gradient_convention: str = "global",
    group: "torch.distributed.ProcessGroup | None" = None,
) -> torch.Tensor:
    r"""VICReg's covariance regularizer of one view: the off-diagonal energy of its covariance, over D.

    .. math::

        c(z) = \frac{1}{D} \sum_{i \ne j} \mathrm{Cov}(z)_{ij}^2, \qquad
        \mathrm{Cov}(z) = \frac{(z - \bar z)^\top (z - \bar z)}{N - \mathrm{correction}}.

    :func:`vicreg_loss` uses the sum of this over its two views. No D×D matrix is formed when N < D.

    Args:
        z: embeddings, shape ``(N, D)`` with ``N >= 2``.
        correction: ``1`` (divide by ``N - 1``, official) or ``0`` (by ``N``).
        algorithm: ``"cross"``, ``"gram"`` or ``"auto"``, as in :func:`vicreg_loss`.
        distributed: ``"global"`` (the covariance of the batch of all ranks under ``torch.distributed``) or
            ``"local"``, as in :func:`vicreg_loss`.
        gradient_convention: ``"global"`` or ``"official"``, as in :func:`vicreg_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        A 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> z = torch.randn(16, 1).repeat(1, 3)  # three copies of one feature
        >>> v = z.var(dim=0)[0]
        >>> torch.allclose(vicreg_covariance_loss(z), 6 * v**2 / 3)
        True
    """
    _check_correction(correction)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_distributed_options(distributed=distributed, gradient_convention=gradient_convention, group=group)
    global_batch = _is_global(distributed, group)
    _check_embedding("z", z, min_rows=0 if global_batch else 2)
    with no_autocast(z.device):
        z = z.to(_compute_dtype(z))
        if global_batch:
            z, batch = distributed_ops._gather_one_view(
                "vicreg_covariance_loss", z, "z", group, correction=correction, algorithm=algorithm,
                gradient=gradient_convention,
            )
        loss = _covariance_penalty(_center(z), z.shape[0] - correction, algorithm)
        if global_batch:
            (loss,) = distributed_ops.apply_gradient_convention(gradient_convention, batch, loss)
        return loss
