"""solo-learn's ``barlow_loss_func`` and ``vicreg_loss_func`` computed by ``redundancy``.

Swap ``from solo.losses import barlow_loss_func`` for ``from redundancy.compat.solo import barlow_loss_func``:
the arguments and defaults are solo-learn's, and the single-process value is the one solo-learn computes.

Conventions of solo-learn that these keep: Barlow Twins standardizes each view with a fresh ``BatchNorm1d``
(biased variance, ε = 1e-5) and scales the loss by ``scale_loss``; VICReg *sums* the two views' variance hinges
where the official code averages them (``variance_reduction="sum"`` of :func:`redundancy.vicreg_loss`), so its
value exceeds the official one whenever a feature's standard deviation is below 1.

Differences, all intended: under ``torch.distributed`` both give the loss of the global batch (the default
``distributed="global"`` of :func:`redundancy.barlow_twins_loss` and :func:`redundancy.vicreg_loss`: statistics,
C, variances and covariances of the concatenated batch of all ranks, with the ``"global"`` gradient convention),
where solo-learn computes per-rank statistics: it averages the per-rank cross-correlations (Barlow Twins) and
uses each rank's own batch (VICReg). This is the one difference in value; in a single process the values are
solo-learn's. Bad inputs raise :class:`ValueError` / :class:`TypeError` naming the argument.
"""

import torch

from redundancy.functional import barlow_twins_loss
from redundancy.vicreg import vicreg_loss

__all__ = ["barlow_loss_func", "vicreg_loss_func"]


def barlow_loss_func(z1: torch.Tensor, z2: torch.Tensor, lamb: float = 5e-3, scale_loss: float = 0.025) -> torch.Tensor:
    r"""solo-learn's Barlow Twins loss: ``scale_loss · (Σ_i (1 - C_ii)² + lamb · Σ_{i≠j} C_ij²)``.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        lamb: λ, weight of the redundancy term.
        scale_loss: factor on the whole loss.

    Returns:
        The loss, a 0-dim tensor; under ``torch.distributed``, that of the global batch of all ranks (the one
        intended difference from solo-learn, see the module docstring).

    Example:
        >>> import redundancy
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(barlow_loss_func(z1, z2), 0.025 * redundancy.barlow_twins_loss(z1, z2, lambd=5e-3))
        True
    """
    return barlow_twins_loss(z1, z2, lambd=lamb, scale=scale_loss)


def vicreg_loss_func(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_loss_weight: float = 25.0,
    var_loss_weight: float = 25.0,
    cov_loss_weight: float = 1.0,
) -> torch.Tensor:
    r"""solo-learn's VICReg loss: the official formula with the two views' variance hinges summed, not averaged.

    .. math::

        L = w_s\, \mathrm{mse}(z_1, z_2) + w_v \big(v(z_1) + v(z_2)\big) + w_c \big(c(z_1) + c(z_2)\big),

    with :math:`v` and :math:`c` as in :func:`redundancy.vicreg_variance_loss` and
    :func:`redundancy.vicreg_covariance_loss` (unbiased, γ = 1, ε = 1e-4).

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        sim_loss_weight: weight of the invariance (mean squared error) term.
        var_loss_weight: weight of the variance term.
        cov_loss_weight: weight of the covariance term.

    Returns:
        The loss, a 0-dim tensor; under ``torch.distributed``, that of the global batch of all ranks (the one
        intended difference from solo-learn, see the module docstring).

    Example:
        >>> import redundancy
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(vicreg_loss_func(z1, z2), redundancy.vicreg_loss(z1, z2, variance_reduction="sum"))
        True
    """
    return vicreg_loss(
        z1,
        z2,
        invariance_weight=sim_loss_weight,
        variance_weight=var_loss_weight,
        covariance_weight=cov_loss_weight,
        variance_reduction="sum",
    )
