"""The Gram algorithm: the same terms from two N×N Gram matrices, never a D×D tensor.

``‖C‖² = ‖AᵀB‖² / N² = ⟨A Aᵀ, B Bᵀ⟩_F / N²``, the diagonal ``c_i = Σ_n A_ni B_ni / N`` and
``ΣC = (A 1)ᵀ (B 1) / N`` cost O(N·D) besides the Grams. Forward 4·N²·D FLOPs, or ``2·(1 + 1/k)·N²·D`` with the
symmetric products of :mod:`redundancy._ops.products`; the backward is closed-form (4·N²·D FLOPs, no autograd
through the Grams)::

    dA = (2w/N²) (B Bᵀ) A + B diag(g) / N - (2wt/N) (B 1) 1ᵀ
    dB = (2w/N²) (A Aᵀ) B + A diag(g) / N - (2wt/N) (A 1) 1ᵀ

which is the cross algorithm's backward with ``B Cᵀ = (B Bᵀ) A / N``.

Given a :class:`~redundancy._ops.standardize.Standardization`, the op standardizes its raw inputs itself and
applies the standardization's backward to ``dA, dB`` in place. The only N×D tensors it allocates are the two
standardized views (held for the backward) and one gradient: unless the graph is retained for another backward,
``dA`` is formed in the memory of ``B`` once ``dB`` no longer needs it (with ``retain_graph`` both gradients are
new tensors).
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import saved_tensors_die_after_backward
from redundancy._ops.products import symmetric_gram
from redundancy._ops.reductions import column_dot
from redundancy._ops.standardize import Standardization, standardize_backward_, standardize_views
from redundancy._ops.terms import barlow_twins_terms_from_summaries, diagonal_gradient, view_gradient


class _GramTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z1: torch.Tensor, z2: torch.Tensor, target: float, standardization: Standardization | None):
        n = z1.shape[0]
        with no_autocast(z1.device):
            a, b, rstd_a, rstd_b = standardize_views(z1, z2, standardization)
            gram_a = symmetric_gram(a)
            gram_b = symmetric_gram(b)
            diagonal = column_dot(a, b).div_(n)
            frobenius_sq = gram_a.view(-1).dot(gram_b.view(-1)).div_(n * n)
            total = a.sum(dim=1).dot(b.sum(dim=1)).div_(n) if target != 0.0 else None
            invariance, redundancy = barlow_twins_terms_from_summaries(diagonal, frobenius_sq, total, target)
        ctx.save_for_backward(a, b, gram_a, gram_b, diagonal, rstd_a, rstd_b)
        ctx.target = target
        ctx.standardization = standardization
        return invariance, redundancy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_invariance: torch.Tensor, grad_redundancy: torch.Tensor):
        a, b, gram_a, gram_b, diagonal, rstd_a, rstd_b = ctx.saved_tensors
        n, t = a.shape[0], ctx.target
        with no_autocast(a.device):
            g = diagonal_gradient(diagonal, grad_invariance, grad_redundancy, t).div_(n)
            w = grad_redundancy * (2.0 / n)
            t_scale = w * t if t != 0.0 else None
            # The standardized views are the op's own tensors: unless the graph is kept for another backward,
            # dA is formed in b's memory once dB no longer needs b (one new N×D tensor instead of two), or each
            # gradient in the memory of the view it no longer needs when only one is wanted.
            donate = ctx.standardization is not None and saved_tensors_die_after_backward()
            need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            da = db = None
            # The scale goes on the N×N Gram, not on the N×D product.
            if need_b:
                db = view_gradient(gram_a * (w / n), b, a, g, t_scale=t_scale, overwrite_other=donate and not need_a)
                db = standardize_backward_(db, b, rstd_b, ctx.standardization)
            if need_a:
                da = view_gradient(gram_b * (w / n), a, b, g, t_scale=t_scale, overwrite_other=donate)
                da = standardize_backward_(da, a, rstd_a, ctx.standardization)
        return da, db, None, None


def gram_terms(z1: torch.Tensor, z2: torch.Tensor, *, target: float, standardization: Standardization | None = None):
    """``(invariance, redundancy)`` of two views (N×D) through two N×N Gram matrices.

    The views are standardized first when ``standardization`` is given, and are taken as already standardized
    when it is ``None``.
    """
    return _GramTerms.apply(z1, z2, target, standardization)
