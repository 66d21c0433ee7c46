"""Per-feature standardization over the batch, with a closed-form backward.

``a = (z - mean) / sqrt(var + eps)`` where ``var`` is the biased (``unbiased=False``, BatchNorm) or the
unbiased (``unbiased=True``, ``ddof=1``) variance of each column of ``z``.

Backward, with ``r = 1 / sqrt(var + eps)`` and ``m`` the variance divisor (``N`` or ``N - 1``)::

    dz = r * (da - mean_n(da) - a * sum_n(da * a) / m)

which is exact for any ``eps`` (the variance's own dependence on ``z`` is what the last term carries).
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast


class _Standardize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, unbiased: bool, eps: float) -> torch.Tensor:
        with no_autocast(z.device):
            var, mean = torch.var_mean(z, dim=0, correction=1 if unbiased else 0)
            rstd = torch.rsqrt(var.add_(eps))
            a = torch.addcmul(-mean * rstd, z, rstd)  # (z - mean) * rstd in one pass over z
        ctx.save_for_backward(a, rstd)
        ctx.divisor = z.shape[0] - 1 if unbiased else z.shape[0]
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx, da: torch.Tensor):
        a, rstd = ctx.saved_tensors
        with no_autocast(da.device):
            mean_da = da.mean(dim=0)
            mean_da_a = torch.linalg.vecdot(da, a, dim=0).div_(ctx.divisor)
            # r * (da - mean_da - a * mean_da_a), written as two passes over N×D.
            dz = torch.addcmul(-mean_da * rstd, a, -mean_da_a * rstd).addcmul_(da, rstd)
        return dz, None, None


def standardize(z: torch.Tensor, *, unbiased: bool, eps: float) -> torch.Tensor:
    """Standardize each column of ``z`` (N×D) over the batch; differentiable with a closed-form backward."""
    return _Standardize.apply(z, unbiased, eps)
