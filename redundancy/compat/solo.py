r"""solo-learn's ``barlow_loss_func`` and ``vicreg_loss_func`` computed by ``redundancy``.

Swap ``from solo.losses import barlow_loss_func`` for ``from redundancy.compat.solo import barlow_loss_func``:
the arguments and defaults are solo-learn's, and in one process the value and the gradients are the ones
solo-learn computes.

The library computes the unweighted terms (:func:`redundancy.barlow_twins_terms`, :func:`redundancy.vicreg_terms`)
and the adapters weigh them with solo-learn's own arithmetic, ``scale_loss * (invariance + lamb * redundancy)`` and
``sim_loss_weight * invariance + var_loss_weight * variance + cov_loss_weight * covariance``, so any real weight
gives solo-learn's value: negative (``scale_loss=-1`` negates the loss), NaN or infinite, a ``bool`` (``True`` is
1), a Python or numpy number, or a one-element tensor, which gets its gradient when it requires grad. A tensor
weight takes part with its dtype and shape as in solo-learn: ``lamb`` multiplies C's entries in place, so the loss
keeps their dtype and shape whatever ``lamb``'s; the others broadcast (a float64 ``scale_loss`` gives a float64
loss, one of shape ``(1,)`` a loss of shape ``(1,)``). One value differs: for an infinite ``lamb``, solo-learn
multiplies each squared off-diagonal entry of C, and gives NaN (0 · ∞) if any is exactly 0; the adapter multiplies
their sum, and gives ±∞ unless all are 0.

What the adapters refuse, where solo-learn computes (each names the argument):

- a complex weight (:class:`TypeError`): solo-learn returns a complex loss, which ``backward()`` refuses (and
  raises for a complex ``lamb``);
- a tensor weight of several elements (:class:`TypeError`): solo-learn returns a tensor of losses, one per
  element (and raises for a ``lamb`` that does not have one element per off-diagonal entry of C);
- a numpy boolean or array as a weight (:class:`TypeError`).

Conventions of solo-learn that these keep: Barlow Twins standardizes each view with a fresh ``BatchNorm1d``
(biased variance, ε = 1e-5) and scales the loss by ``scale_loss``; VICReg *sums* the two views' variance hinges
where the official code averages them (``variance_reduction="sum"`` of :func:`redundancy.vicreg_loss`), so its
value exceeds the official one whenever a feature's standard deviation is below 1.

Under ``torch.distributed`` the gradients follow solo-learn's conventions:

- ``barlow_loss_func`` all-reduces C outside autograd in solo-learn, so each rank's gradient is
  :math:`\partial L / \partial z_r` of the global loss, and after DDP's averaging the parameter gradients are
  1/W of those of one process on the whole batch. The adapter keeps that scale
  (``gradient_convention="official"`` of :func:`redundancy.barlow_twins_loss`), so switching libraries does not
  change the effective learning rate. For gradients that do not depend on the number of processes, call
  ``redundancy.barlow_twins_loss(z1, z2, lambd=lamb, scale=scale_loss)`` instead (``"global"``, its default).
- ``vicreg_loss_func`` gathers the embeddings with a gather whose backward sums the ranks' gradients, which is
  ``gradient_convention="global"``, the default of :func:`redundancy.vicreg_loss`, kept here.

The one intended difference is the statistics, those of the global batch of all ranks here
(``distributed="global"``):

- Barlow Twins. Before (solo-learn, 2 ranks of 128 rows): ``C = ½ (C₀ + C₁)``, with ``C_r`` from rank r's rows
  standardized by rank r's own mean and variance. After (this adapter): ``C`` of the 256 rows standardized by the
  mean and variance of all 256, the value one process computes on the whole batch, whatever the split.
- VICReg. solo-learn gathers the embeddings for the variance and covariance terms (as here) but keeps each
  rank's own invariance term, so its ranks' values differ; here every rank gets the invariance term of the whole
  batch, their mean (with equal per-rank batches). The gradients are the same.

Other differences:

- Inputs that the library refuses raise :class:`ValueError` or :class:`TypeError` naming ``z1`` or ``z2``, where
  solo-learn's ``barlow_loss_func`` raises :class:`ValueError` for a batch of one row (from its ``BatchNorm1d``) and
  :class:`RuntimeError` for views of different widths, and its ``vicreg_loss_func`` returns NaN for a batch of one
  row (its unbiased variance divides by N - 1 = 0) and raises :class:`RuntimeError` for views of different shapes.
- solo-learn's ``barlow_loss_func`` refuses float64 inputs on the CPU (:class:`RuntimeError`: its fresh
  ``BatchNorm1d`` holds float32 statistics); the adapter computes in float64.
- For half-precision inputs (float16, bfloat16) the loss comes back in float32, as from solo-learn's
  ``barlow_loss_func`` on the CPU (its float32 ``BatchNorm1d`` returns float32), where its ``vicreg_loss_func``
  returns the input dtype. Every statistic is accumulated in float32, which makes the value closer to the float64
  one; gradients come back in the input dtype.
"""

import torch

from redundancy import barlow_twins_terms
from redundancy import vicreg_terms
from redundancy.compat._options import weight

__all__ = ["barlow_loss_func", "vicreg_loss_func"]


def barlow_loss_func(z1: torch.Tensor, z2: torch.Tensor, lamb: float = 5e-3, scale_loss: float = 0.025) -> torch.Tensor:
    r"""solo-learn's Barlow Twins loss: ``scale_loss · (Σ_i (1 - C_ii)² + lamb · Σ_{i≠j} C_ij²)``.

    Args:
        z1: embeddings of the first view, shape ``(N, D)``.
        z2: embeddings of the second view, same shape.
        lamb: λ, weight of the redundancy term: any real number or one-element real tensor (see the module
            docstring).
        scale_loss: factor on the whole loss, the same kinds of value.

    Returns:
        The loss, a 0-dim tensor (the shape of a tensor ``scale_loss`` broadcast with it; float32 for
        half-precision inputs). Under ``torch.distributed``, that of the global batch of all ranks, with
        solo-learn's gradient scale (see the module docstring).

    Raises:
        ValueError: mismatched shapes or a batch of one row.
        TypeError: inputs that are not floating-point tensors; a ``lamb`` or ``scale_loss`` that is not a real
            number or a one-element real tensor.

    Example:
        Before/after under 2 ranks, here with the two halves of one batch standing for the ranks, the second
        shifted in both views: solo-learn standardizes each half on its own, which removes the shift, while the
        adapter standardizes the whole batch, whose correlation between the views the shift raises.

        >>> import torch
        >>> from redundancy.compat.solo import barlow_loss_func
        >>> from redundancy import cross_correlation
        >>> z1 = torch.randn(256, 16)
        >>> z2 = z1 + torch.randn(256, 16)
        >>> z1[128:] += 2.0; z2[128:] += 2.0
        >>> c = (cross_correlation(z1[:128], z2[:128]) + cross_correlation(z1[128:], z2[128:])) / 2
        >>> off_diagonal = c.square().sum() - c.diagonal().square().sum()
        >>> before = 0.025 * ((1 - c.diagonal()).square().sum() + 5e-3 * off_diagonal)  # solo-learn
        >>> after = barlow_loss_func(z1, z2)  # the adapter, on 1 process or split over 2 ranks
        >>> bool(after < before)
        True
    """
    _, invariance, redundancy = barlow_twins_terms(z1, z2, gradient_convention="official")
    # The weights are checked after the terms, as solo-learn's arithmetic fails after its all-reduce: a rank with a
    # bad weight does not leave the others waiting in the exchange.
    off_diagonal_weight = weight("lamb", lamb)
    if isinstance(off_diagonal_weight, torch.Tensor):  # solo-learn multiplies C's entries in place: they keep
        off_diagonal_weight = off_diagonal_weight.to(redundancy.dtype).reshape(())  # their dtype and shape
    return weight("scale_loss", scale_loss) * (invariance + off_diagonal_weight * redundancy)


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

    The weights may be any real number or one-element real tensor (see the module docstring).

    Returns:
        The loss, a 0-dim tensor (the shape of tensor weights broadcast with it; float32 for half-precision
        inputs). Under ``torch.distributed``, that of the global batch of all ranks, with solo-learn's gradients
        (see the module docstring).

    Raises:
        ValueError: mismatched shapes or a batch of one row.
        TypeError: inputs that are not floating-point tensors; a weight that is not a real number or a one-element
            real tensor.

    Example:
        >>> import torch
        >>> from redundancy.compat.solo import vicreg_loss_func
        >>> import redundancy
        >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
        >>> summed = redundancy.vicreg_loss(z1, z2, variance_reduction="sum")
        >>> torch.allclose(vicreg_loss_func(z1, z2), summed)
        True
    """
    _, invariance, variance, covariance = vicreg_terms(z1, z2, variance_reduction="sum")
    # Checked after the terms, as in barlow_loss_func.
    return (
        weight("sim_loss_weight", sim_loss_weight) * invariance
        + weight("var_loss_weight", var_loss_weight) * variance
        + weight("cov_loss_weight", cov_loss_weight) * covariance
    )
