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
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast


class _Standardize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, unbiased: bool, eps: float, batch) -> torch.Tensor:
        correction = 1 if unbiased else 0
        with no_autocast(z.device):
            if batch is None:
                # Two passes (mean, then the centred sum of squares): robust to large offsets, and cheaper on the
                # CPU than torch.var_mean over dim 0.
                count = z.shape[0]
                centered = z - z.mean(dim=0)
                var = torch.linalg.vecdot(centered, centered, dim=0).div_(count - correction)
            else:
                var, mean = batch.var_mean(z, correction=correction)
                count = batch.count
                centered = z - mean
            rstd = torch.rsqrt(var.add_(eps))
            a = centered.mul_(rstd)
        ctx.save_for_backward(a, rstd)
        ctx.count = count
        ctx.divisor = count - correction
        ctx.batch = batch
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx, da: torch.Tensor):
        a, rstd = ctx.saved_tensors
        with no_autocast(da.device):
            if ctx.batch is None:
                mean_da = da.mean(dim=0)
                mean_da_a = torch.linalg.vecdot(da, a, dim=0).div_(ctx.divisor)
            else:
                sums = torch.stack((da.sum(dim=0), torch.linalg.vecdot(da, a, dim=0)))
                ctx.batch.sum_over_ranks(sums)
                mean_da, mean_da_a = sums[0].div_(ctx.count), sums[1].div_(ctx.divisor)
            # r * (da - mean_da - a * mean_da_a), written as two passes over N×D.
            dz = torch.addcmul(-mean_da * rstd, a, -mean_da_a * rstd).addcmul_(da, rstd)
        return dz, None, None, None


def standardize(z: torch.Tensor, *, unbiased: bool, eps: float, batch=None) -> torch.Tensor:
    """Standardize each column of ``z`` (N×D) over the batch; differentiable with a closed-form backward.

    ``batch`` (a :class:`redundancy.distributed.GlobalBatch`, or ``None`` for the local batch) makes the
    statistics those of the batch of all ranks, of which ``z`` holds this rank's rows.
    """
    return _Standardize.apply(z, unbiased, eps, batch)
