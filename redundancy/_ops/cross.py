"""The cross algorithm: form the D×D cross-correlation C once and reduce it.

Forward ``C = AᵀB / N`` (2·N·D² FLOPs), backward ``dA = B dCᵀ / N`` and ``dB = A dC / N`` written without
forming ``dC`` (4·N·D² FLOPs)::

    dA = (2w/N) B C°ᵀ + B diag(g°) / N - (2wt/N) (B 1) 1ᵀ

with ``C°`` the matrix C with its diagonal zeroed, in place, once its diagonal is copied out
(:mod:`redundancy._ops.terms`): the redundancy is summed over the off-diagonal entries only (never as a
difference that cancels near convergence). C° is the only D×D tensor held, forward or backward.

When ``a, b`` are one rank's rows of a batch split over processes, ``batch`` (a
:class:`redundancy._batch.GlobalBatch`) makes ``N`` the global row count and sums the local
``AᵀB / N`` over all ranks (one all-reduce of D² elements). Every rank then holds the C of the whole
batch, and the backward above, applied to the local rows, is their exact gradient: it needs no collective.

When the caller builds a graph of the backward (``create_graph=True``), the backward recomputes the same closed
form from the op's inputs in differentiable operations (:mod:`redundancy._ops._autograd`); second derivatives of
the global batch of several processes raise instead.
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import refuse_graph_with_collectives
from redundancy._ops._autograd import with_direct_apply
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


@with_direct_apply
class _CrossCorrelationTerms(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z1: torch.Tensor, z2: torch.Tensor, target: float, batch, standardization: Standardization | None):
        n = z1.shape[0] if batch is None else batch.count
        with no_autocast(z1.device):
            a, b, rstd_a, rstd_b = standardize_views(z1, z2, standardization, batch)
            c = torch.mm(a.t(), b).div_(n)
            if batch is not None:
                c = batch.sum_over_ranks(c)
            diagonal, off_diagonal_sq, off_diagonal_total = off_diagonal_summaries_(c, total=target != 0.0)
            invariance, redundancy = barlow_twins_terms_from_off_diagonal(
                diagonal, off_diagonal_sq, off_diagonal_total, target
            )
        if standardization is None:  # the views are the inputs: setup_context saves those
            return invariance, redundancy, c, diagonal
        return invariance, redundancy, c, diagonal, a, b, rstd_a, rstd_b

    @staticmethod
    def setup_context(ctx, inputs, output):
        z1, z2, target, batch, standardization = inputs
        c, diagonal, *standardized = output[2:]
        a, b, rstd_a, rstd_b = standardized if standardization is not None else (z1, z2, None, None)
        ctx.mark_non_differentiable(*output[2:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z1, z2, a, b, c, diagonal, rstd_a, rstd_b)
        ctx.target = target
        ctx.batch = batch
        ctx.standardization = standardization

    @staticmethod
    def backward(ctx, grad_invariance: torch.Tensor | None, grad_redundancy: torch.Tensor | None, *_):
        z1, z2, a, b, c_off, diagonal, rstd_a, rstd_b = ctx.saved_tensors
        t, standardization, batch = ctx.target, ctx.standardization, ctx.batch
        if grad_invariance is None and grad_redundancy is None:
            return None, None, None, None, None
        grad_invariance = zero_if_none(grad_invariance, diagonal)
        grad_redundancy = zero_if_none(grad_redundancy, diagonal)
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with no_autocast(diagonal.device):
            if builds_graph():
                refuse_graph_with_collectives(batch, "cross_correlation_terms")
                a, b, rstd_a, rstd_b = standardize_views_differentiable(z1, z2, standardization)
                da, db = view_gradients_differentiable(
                    a, b, grad_invariance, grad_redundancy, t, algorithm="cross", needs=(need_a, need_b)
                )
                da = None if da is None else standardize_vjp(da, a, rstd_a, standardization)
                db = None if db is None else standardize_vjp(db, b, rstd_b, standardization)
                return da, db, None, None, None
            n = a.shape[0] if batch is None else batch.count
            g = diagonal_gradient(diagonal, grad_invariance, grad_redundancy, t, off_diagonal_product=True).div_(n)
            w = grad_redundancy * (2.0 / n)
            t_scale = w * t if t != 0.0 else None
            da = db = None
            if need_a:
                da = view_gradient(b, c_off.t(), b, g, scale=w, t_scale=t_scale)
                da = standardize_backward_(da, a, rstd_a, standardization, batch)
            if need_b:
                db = view_gradient(a, c_off, a, g, scale=w, t_scale=t_scale)
                db = standardize_backward_(db, b, rstd_b, standardization, batch)
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
    when it is ``None``. ``batch`` (a :class:`redundancy._batch.GlobalBatch`, or ``None``) makes C that of
    the batch of all ranks, of which ``z1, z2`` hold this rank's rows; the standardization then uses its
    statistics too.
    """
    invariance, redundancy = _CrossCorrelationTerms.apply(z1, z2, target, batch, standardization)[:2]
    return invariance, redundancy


def cross_correlation_terms_flops(n: int, d: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of :func:`cross_correlation_terms` on N×D views: ``C = AᵀB`` forward (2·N·D²), ``B Cᵀ``
    and ``A C`` backward (4·N·D²). The O(N·D) and O(D²) work besides is left out.

    Example:
        >>> cross_correlation_terms_flops(256, 1024) == 6 * 256 * 1024 * 1024
        True
    """
    forward = 2 * n * d * d
    return forward + 4 * n * d * d if backward else forward
