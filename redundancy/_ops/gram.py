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

**The reported redundancy.** ``⟨A Aᵀ, B Bᵀ⟩_F / N² - Σ c_i²`` cancels near convergence (C ≈ I) when N ≥ D: both numbers
are close to D while their difference, the off-diagonal energy, is tiny, and even float32 Grams are not precise enough
for it. When D ≤ N the forward therefore forms C (D×D, no larger than a Gram matrix, and 2·N·D² FLOPs, no more than one
Gram) and sums its off-diagonal entries directly, as the cross algorithm does; the backward is the Gram backward above
either way. When D > N the off-diagonal energy is at least about ``D (D - N) / N`` and the difference does not cancel.
While ``torch.compile`` or ``torch.export`` traces the op with a symbolic batch size the difference is used for every N
(a branch on N would specialize the trace); the automatic algorithm choice only takes the Gram form for N < D.

When the caller builds a graph of the backward (``create_graph=True``), the backward recomputes the same closed
form from the op's inputs in differentiable operations (:mod:`redundancy._ops._autograd`).
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import saved_tensors_die_after_backward
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops.products import symmetric_gram
from redundancy._ops.products import symmetric_gram_flops
from redundancy._ops.reductions import column_dot
from redundancy._ops.reductions import sum_of_products
from redundancy._ops.standardize import Standardization
from redundancy._ops.standardize import standardize_backward_
from redundancy._ops.standardize import standardize_views
from redundancy._ops.standardize import standardize_views_differentiable
from redundancy._ops.standardize import standardize_vjp
from redundancy._ops.terms import barlow_twins_terms_from_off_diagonal
from redundancy._ops.terms import diagonal_gradient
from redundancy._ops.terms import off_diagonal_summaries_
from redundancy._ops.terms import view_gradient
from redundancy._ops.terms import view_gradients_differentiable
from redundancy._ops.terms import zero_if_none


def pair_off_diagonal_summaries(a, b, gram_a, gram_b, diagonal, target: float):
    """``(‖C°‖², ΣC°)`` (``ΣC°`` only for ``target != 0``) of ``C = AᵀB / N`` (N×D views, their N×N Grams and
    ``diag(C)``), without cancellation when D ≤ N; every long sum pairwise (:mod:`redundancy._ops.reductions`)."""
    n, d = a.shape
    if not isinstance(n, torch.SymInt) and d <= n:
        _, off_diagonal_sq, off_diagonal_total = off_diagonal_summaries_(
            torch.mm(a.t(), b).div_(n), total=target != 0.0
        )
        return off_diagonal_sq, off_diagonal_total
    off_diagonal_sq = sum_of_products(gram_a, gram_b).div_(n * n).sub_(sum_of_products(diagonal, diagonal))
    if target == 0.0:
        return off_diagonal_sq, None
    return off_diagonal_sq, sum_of_products(a.sum(dim=1), b.sum(dim=1)).div_(n).sub_(diagonal.sum())


@with_direct_apply
class _GramTerms(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z1: torch.Tensor, z2: torch.Tensor, target: float, standardization: Standardization | None):
        n = z1.shape[0]
        with no_autocast(z1.device):
            a, b, rstd_a, rstd_b = standardize_views(z1, z2, standardization)
            gram_a = symmetric_gram(a)
            gram_b = symmetric_gram(b)
            diagonal = column_dot(a, b).div_(n)
            off_diagonal_sq, off_diagonal_total = pair_off_diagonal_summaries(a, b, gram_a, gram_b, diagonal, target)
            invariance, redundancy = barlow_twins_terms_from_off_diagonal(
                diagonal, off_diagonal_sq, off_diagonal_total, target
            )
        if standardization is None:  # the views are the inputs: setup_context saves those
            return invariance, redundancy, gram_a, gram_b, diagonal
        return invariance, redundancy, gram_a, gram_b, diagonal, a, b, rstd_a, rstd_b

    @staticmethod
    def setup_context(ctx, inputs, output):
        z1, z2, target, standardization = inputs
        gram_a, gram_b, diagonal, *standardized = output[2:]
        a, b, rstd_a, rstd_b = standardized if standardization is not None else (z1, z2, None, None)
        ctx.mark_non_differentiable(*output[2:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z1, z2, a, b, gram_a, gram_b, diagonal, rstd_a, rstd_b)
        ctx.target = target
        ctx.standardization = standardization

    @staticmethod
    def backward(ctx, grad_invariance: torch.Tensor | None, grad_redundancy: torch.Tensor | None, *_):
        z1, z2, a, b, gram_a, gram_b, diagonal, rstd_a, rstd_b = ctx.saved_tensors
        t, standardization = ctx.target, ctx.standardization
        if grad_invariance is None and grad_redundancy is None:
            return None, None, None, None
        grad_invariance = zero_if_none(grad_invariance, diagonal)
        grad_redundancy = zero_if_none(grad_redundancy, diagonal)
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with no_autocast(diagonal.device):
            if builds_graph():
                a, b, rstd_a, rstd_b = standardize_views_differentiable(z1, z2, standardization)
                da, db = view_gradients_differentiable(
                    a, b, grad_invariance, grad_redundancy, t, algorithm="gram", needs=(need_a, need_b)
                )
                da = None if da is None else standardize_vjp(da, a, rstd_a, standardization)
                db = None if db is None else standardize_vjp(db, b, rstd_b, standardization)
                return da, db, None, None
            n = a.shape[0]
            g = diagonal_gradient(diagonal, grad_invariance, grad_redundancy, t, off_diagonal_product=False).div_(n)
            w = grad_redundancy * (2.0 / n)
            t_scale = w * t if t != 0.0 else None
            # The standardized views are the op's own tensors: unless the graph is kept for another backward,
            # dA is formed in b's memory once dB no longer needs b (one new N×D tensor instead of two), or each
            # gradient in the memory of the view it no longer needs when only one is wanted.
            donate = standardization is not None and saved_tensors_die_after_backward()
            da = db = None
            # The scale goes on the N×N Gram, not on the N×D product.
            if need_b:
                db = view_gradient(gram_a * (w / n), b, a, g, t_scale=t_scale, overwrite_other=donate and not need_a)
                db = standardize_backward_(db, b, rstd_b, standardization)
            if need_a:
                da = view_gradient(gram_b * (w / n), a, b, g, t_scale=t_scale, overwrite_other=donate)
                da = standardize_backward_(da, a, rstd_a, standardization)
        return da, db, None, None


def gram_terms(z1: torch.Tensor, z2: torch.Tensor, *, target: float, standardization: Standardization | None = None):
    """``(invariance, redundancy)`` of two views (N×D) through two N×N Gram matrices.

    The views are standardized first when ``standardization`` is given, and are taken as already standardized
    when it is ``None``.
    """
    invariance, redundancy = _GramTerms.apply(z1, z2, target, standardization)[:2]
    return invariance, redundancy


def gram_terms_flops(n: int, d: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of :func:`gram_terms` on N×D views: the two symmetric Grams forward
    (:func:`~redundancy._ops.products.symmetric_gram_flops` each), ``(B Bᵀ) A`` and ``(A Aᵀ) B`` backward (4·N²·D).
    The O(N·D) and O(N²) work besides is left out, and so is the forward's C when D ≤ N (no more than one Gram).

    Example:
        >>> gram_terms_flops(256, 8) == 8 * 256 * 256 * 8  # a product too small to split
        True
    """
    forward = 2 * symmetric_gram_flops(n, d)
    return forward + 4 * n * n * d if backward else forward
