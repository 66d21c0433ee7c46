"""The cross algorithm: form the D×D cross-correlation C once and reduce it.

Forward ``C = AᵀB / N`` (2·N·D² FLOPs), backward ``dA = B dCᵀ / N`` and ``dB = A dC / N`` written without
forming ``dC`` (4·N·D² FLOPs)::

    dA = (2w/N) B Cᵀ + B diag(g) / N - (2wt/N) (B 1) 1ᵀ

C is the only D×D tensor held, forward or backward.
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast
from redundancy._ops.terms import barlow_twins_terms_from_summaries, diagonal_gradient, view_gradient


class _CrossCorrelationTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, target: float):
        n = a.shape[0]
        with no_autocast(a.device):
            c = torch.mm(a.t(), b).div_(n)
            flat = c.view(-1)
            invariance, redundancy = barlow_twins_terms_from_summaries(
                c.diagonal(), flat.dot(flat), c.sum() if target != 0.0 else None, target
            )
        ctx.save_for_backward(a, b, c)
        ctx.target = target
        return invariance, redundancy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_invariance: torch.Tensor, grad_redundancy: torch.Tensor):
        a, b, c = ctx.saved_tensors
        n, t = a.shape[0], ctx.target
        with no_autocast(a.device):
            g = diagonal_gradient(c.diagonal(), grad_invariance, grad_redundancy, t).div_(n)
            w = grad_redundancy * (2.0 / n)
            t_scale = w * t if t != 0.0 else None
            da = view_gradient(torch.mm(b, c.t()), w, b, g, t_scale) if ctx.needs_input_grad[0] else None
            db = view_gradient(torch.mm(a, c), w, a, g, t_scale) if ctx.needs_input_grad[1] else None
        return da, db, None


def cross_correlation_terms(a: torch.Tensor, b: torch.Tensor, *, target: float):
    """``(invariance, redundancy)`` of standardized views ``a, b`` (N×D) through the D×D matrix C."""
    return _CrossCorrelationTerms.apply(a, b, target)
