"""Per-feature standardization over the batch, with a closed-form backward.

``a = (z - mean) / sqrt(var + eps)`` where ``var`` is the biased (``unbiased=False``, BatchNorm) or the
unbiased (``unbiased=True``, ``ddof=1``) variance of each column of ``z``.

Backward, with ``r = 1 / sqrt(var + eps)`` and ``m`` the variance divisor (``N`` or ``N - 1``)::

    dz = r * (da - mean_n(da) - a * sum_n(da * a) / m)

which is exact for any ``eps`` (the variance's own dependence on ``z`` is what the last term carries).

When ``z`` is one rank's shard of a batch split over processes, ``batch`` supplies the statistics of the whole
batch (``N`` rows over all ranks, see :class:`redundancy.distributed.GlobalBatch`): the forward uses the global
mean and variance, and the backward sums the two D-vectors ``Σ_n da`` and ``Σ_n da ⊙ a`` over all ranks (one
reduction of 2·D elements); the formula is otherwise the same.

:func:`standardize_views` and :func:`standardize_backward_` are the two halves without autograd, for the ops
that standardize their inputs inside their own autograd Function (:mod:`redundancy._ops.gram`,
:mod:`redundancy._ops.cross`): they own the gradient buffer and apply the backward in place, with no N×D tensor
besides the views and their gradients. Their gradient is that of a function of the cross-correlation, whose
columns sum to zero, so :func:`standardize_backward_` leaves out the ``mean_n(da)`` term (and its share of the
reduction over ranks).
"""

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast
from redundancy._ops.reductions import column_dot


class Standardization(NamedTuple):
    """How an op standardizes its inputs: ``unbiased`` variance (``ddof=1``) or not, and ``eps``."""

    unbiased: bool
    eps: float


def standardization_of(normalization: str, eps: float) -> Standardization | None:
    """The :class:`Standardization` of a public ``normalization`` option (``None`` for ``"none"``)."""
    if normalization == "none":
        return None
    return Standardization(unbiased=normalization == "std", eps=eps)


def standardize_forward(z: torch.Tensor, standardization: Standardization, batch=None):
    """``(a, rstd)``: the standardized ``z`` (a new tensor) and ``1 / sqrt(var + eps)`` per column."""
    correction = 1 if standardization.unbiased else 0
    if batch is None:
        # Two passes (mean, then the centred sum of squares): robust to large offsets, and cheaper on the CPU
        # than torch.var_mean over dim 0.
        centered = z - z.mean(dim=0)
        var = column_dot(centered, centered).div_(z.shape[0] - correction)
    else:
        var, mean = batch.var_mean(z, correction=correction)
        centered = z - mean
    rstd = torch.rsqrt(var.add_(standardization.eps))
    return centered.mul_(rstd), rstd


def standardize_views(z1: torch.Tensor, z2: torch.Tensor, standardization: Standardization | None, batch=None):
    """``(a, b, rstd_a, rstd_b)``: both views standardized, or as they are (and no ``rstd``) for ``None``."""
    if standardization is None:
        return z1, z2, None, None
    a, rstd_a = standardize_forward(z1, standardization, batch)
    b, rstd_b = standardize_forward(z2, standardization, batch)
    return a, b, rstd_a, rstd_b


def _count_and_divisor(grad: torch.Tensor, unbiased: bool, batch) -> tuple[int, int]:
    """``(N, m)``: the rows of the batch (of all ranks when ``batch`` is given) and the variance divisor."""
    count = grad.shape[0] if batch is None else batch.count
    return count, count - 1 if unbiased else count


def _gradient_sums(grad: torch.Tensor, a: torch.Tensor, unbiased: bool, batch):
    """``(mean_n(grad), Σ_n grad ⊙ a / m)``, over all ranks when ``batch`` is given."""
    count, divisor = _count_and_divisor(grad, unbiased, batch)
    if batch is None:
        return grad.sum(dim=0).div_(count), column_dot(grad, a).div_(divisor)
    sums = torch.stack((grad.sum(dim=0), column_dot(grad, a)))
    batch.sum_over_ranks(sums)
    return sums[0].div_(count), sums[1].div_(divisor)


def standardize_backward_(
    grad: torch.Tensor,
    a: torch.Tensor,
    rstd: torch.Tensor | None,
    standardization: Standardization | None,
    batch=None,
) -> torch.Tensor:
    """Turn ``grad = dL/da`` into ``dL/dz`` in place (the module docstring's formula); returns ``grad``.

    The identity when ``standardization`` is ``None`` (the op's inputs were already standardized).

    For the gradient of a function of the cross-correlation ``C = AᵀB / N`` only: ``dL/dA = B (dL/dC)ᵀ / N``
    has columns that sum to zero over the batch, because ``B``'s do, so the ``mean_n(da)`` term is left out
    (it is rounding noise), and the backward makes two passes over N×D after one reduction.
    """
    if standardization is None:
        return grad
    _, divisor = _count_and_divisor(grad, standardization.unbiased, batch)
    mean_grad_a = column_dot(grad, a)
    if batch is not None:
        batch.sum_over_ranks(mean_grad_a)
    mean_grad_a.div_(divisor)
    return grad.addcmul_(a, mean_grad_a.neg_()).mul_(rstd)


class _Standardize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, standardization: Standardization, batch) -> torch.Tensor:
        with no_autocast(z.device):
            a, rstd = standardize_forward(z, standardization, batch)
        ctx.save_for_backward(a, rstd)
        ctx.standardization = standardization
        ctx.batch = batch
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx, da: torch.Tensor):
        a, rstd = ctx.saved_tensors
        with no_autocast(da.device):
            mean_da, mean_da_a = _gradient_sums(da, a, ctx.standardization.unbiased, ctx.batch)
            # r * (da - mean_da - a * mean_da_a), written as two passes over N×D (da is not ours to overwrite).
            dz = torch.addcmul(-mean_da * rstd, a, -mean_da_a * rstd).addcmul_(da, rstd)
        return dz, None, None


def standardize(z: torch.Tensor, standardization: Standardization, *, batch=None) -> torch.Tensor:
    """Standardize each column of ``z`` (N×D) over the batch; differentiable with a closed-form backward.

    ``batch`` (a :class:`redundancy.distributed.GlobalBatch`, or ``None`` for the local batch) makes the
    statistics those of the batch of all ranks, of which ``z`` holds this rank's rows.
    """
    return _Standardize.apply(z, standardization, batch)
