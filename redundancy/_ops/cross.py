"""The cross algorithm: form the D×D cross-correlation C once and reduce it.

Forward ``C = AᵀB / N`` (2·N·D² FLOPs), backward ``dA = B dCᵀ / N`` and ``dB = A dC / N`` written without
forming ``dC`` (4·N·D² FLOPs)::

    dA = (2w/N) B Cᵀ + B diag(g) / N - (2wt/N) (B 1) 1ᵀ

C is the only D×D tensor held, forward or backward.

When ``a, b`` are one rank's rows of a batch split over processes, ``batch`` (a
:class:`redundancy.distributed.GlobalBatch`) makes ``N`` the global row count and sums the local
``AᵀB / N`` over all ranks in place (one all-reduce of D² elements). Every rank then holds the C of the whole
batch, and the backward above, applied to the local rows, is their exact gradient: it needs no collective.
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast
from redundancy._ops.standardize import Standardization, standardize_backward_, standardize_views
from redundancy._ops.terms import barlow_twins_terms_from_summaries, diagonal_gradient, view_gradient


class _CrossCorrelationTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z1: torch.Tensor, z2: torch.Tensor, target: float, batch, standardization: Standardization | None):
        n = z1.shape[0] if batch is None else batch.count
        with no_autocast(z1.device):
            a, b, rstd_a, rstd_b = standardize_views(z1, z2, standardization, batch)
            c = torch.mm(a.t(), b).div_(n)
            if batch is not None:
                batch.sum_over_ranks(c)
            flat = c.view(-1)
            invariance, redundancy = barlow_twins_terms_from_summaries(
                c.diagonal(), flat.dot(flat), c.sum() if target != 0.0 else None, target
            )
        ctx.save_for_backward(a, b, c, rstd_a, rstd_b)
        ctx.target = target
        ctx.count = n
        ctx.batch = batch
        ctx.standardization = standardization
        return invariance, redundancy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_invariance: torch.Tensor, grad_redundancy: torch.Tensor):
        a, b, c, rstd_a, rstd_b = ctx.saved_tensors
        n, t = ctx.count, ctx.target
        with no_autocast(a.device):
            g = diagonal_gradient(c.diagonal(), grad_invariance, grad_redundancy, t).div_(n)
            w = grad_redundancy * (2.0 / n)
            t_scale = w * t if t != 0.0 else None
            da = db = None
            if ctx.needs_input_grad[0]:
                da = view_gradient(b, c.t(), b, g, scale=w, t_scale=t_scale)
                da = standardize_backward_(da, a, rstd_a, ctx.standardization, ctx.batch)
            if ctx.needs_input_grad[1]:
                db = view_gradient(a, c, a, g, scale=w, t_scale=t_scale)
                db = standardize_backward_(db, b, rstd_b, ctx.standardization, ctx.batch)
        return da, db, None, None, None


def cross_correlation_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    target: float,
    batch=None,
    standardization: Standardization | None = None,
):
    """``(invariance, redundancy)`` of two views (N×D) through the D×D matrix C.

    The views are standardized first when ``standardization`` is given, and are taken as already standardized
    when it is ``None``. ``batch`` (a :class:`redundancy.distributed.GlobalBatch`, or ``None``) makes C that of
    the batch of all ranks, of which ``z1, z2`` hold this rank's rows; the standardization then uses its
    statistics too.
    """
    return _CrossCorrelationTerms.apply(z1, z2, target, batch, standardization)
