r"""Barlow Twins terms of several views, averaged over the V(V-1)/2 pairs, with the views sharing their work.

With ``A_1, ..., A_V`` the standardized views (N×D), ``G_v = A_v A_vᵀ`` their N×N Gram matrices and
``C_uv = A_uᵀ A_v / N``, the terms are the means over the P = V(V-1)/2 pairs ``u < v`` of the two-view terms::

    invariance = (1/P) Σ_{u<v} Σ_i (1 - c_uv,i)²
    redundancy = (1/P) Σ_{u<v} Σ_{i≠j} (C_uv,ij - t)²,      ‖C_uv‖² = ⟨G_u, G_v⟩_F / N²

**Gram path** (:func:`multiview_gram_terms`). Each view is standardized once and its Gram formed once: V Grams
instead of 2 per pair. The backward of view v gathers the contributions of its V-1 pairs, and their N×N factors
add up before the one product (``S = Σ_u G_u``)::

    dA_v = (2w/N²) (S - G_v) A_v + Σ_{u≠v} A_u diag(g_uv) / N - (2wt/N) (Σ_{u≠v} A_u 1) 1ᵀ

with ``w`` and ``g_uv`` those of :mod:`redundancy._ops.terms` for the upstream gradients divided by P. That is V
products of N×N by N×D, not 2 per pair. Matrix-product FLOPs, forward and backward: ``V·(F_sym + 2·N²·D)`` where
``F_sym ≤ 2·N²·D`` is one symmetric Gram (``redundancy._ops.products.symmetric_gram_flops``), against
``P·(2·F_sym + 4·N²·D)`` for the loop over pairs: ``2P/V = V - 1`` times more (3 for V = 4).

When D ≤ N the value of each pair's off-diagonal energy is summed from ``C_uv`` itself (D×D, no larger than a
Gram), never as the difference ``⟨G_u, G_v⟩/N² - Σ_i c_uv,i²``, which cancels near convergence (C ≈ I); the
backward is the Gram backward either way. When D > N the difference does not cancel (the off-diagonal energy is at
least about ``D (D - N) / N``).

When the caller builds a graph of the backward (``create_graph=True``), the backward recomputes the same closed
form from the op's inputs in differentiable torch operations, so second derivatives are exact.

**Cross path** (:func:`multiview_cross_terms`): each view standardized once, then the two-view cross algorithm of
:mod:`redundancy._ops.cross` on every pair (its cost is ``P·6·N·D²`` whatever is shared).
"""

import itertools

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import saved_tensors_die_after_backward
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops.cross import cross_correlation_terms
from redundancy._ops.cross import cross_correlation_terms_flops
from redundancy._ops.gram import gram_terms
from redundancy._ops.gram import pair_off_diagonal_summaries
from redundancy._ops.products import symmetric_gram
from redundancy._ops.products import symmetric_gram_flops
from redundancy._ops.reductions import column_dot
from redundancy._ops.standardize import Standardization
from redundancy._ops.standardize import standardize
from redundancy._ops.standardize import standardize_backward_
from redundancy._ops.standardize import standardize_differentiable
from redundancy._ops.standardize import standardize_forward
from redundancy._ops.standardize import standardize_vjp


def view_pairs(views: int) -> list[tuple[int, int]]:
    """The pairs ``(u, v)``, ``u < v``, of ``views`` views, in the order the terms are summed.

    Example:
        >>> view_pairs(3)
        [(0, 1), (0, 2), (1, 2)]
    """
    return list(itertools.combinations(range(views), 2))


def _terms(diagonals: torch.Tensor, off_diagonal_sq: torch.Tensor, off_diagonal_total, target: float):
    """The pair-averaged ``(invariance, redundancy)`` from each pair's ``diag(C)`` (P×D), ``‖C°‖²`` and ``ΣC°``."""
    pairs, dim = diagonals.shape
    invariance = (diagonals - 1).square().sum() / pairs
    redundancy = off_diagonal_sq.sum()
    if target != 0.0:
        redundancy = redundancy - 2.0 * target * off_diagonal_total.sum() + pairs * target * target * dim * (dim - 1)
    return invariance, redundancy / pairs


def _diagonal_gradients(diagonals, grad_invariance, grad_redundancy, target: float, pairs: int, n: int):
    """``g_uv / N`` of every pair (P×D), for upstream gradients of the pair-averaged terms."""
    u, w = grad_invariance / pairs, grad_redundancy / pairs
    return ((diagonals - 1) * (2.0 * u) - (diagonals - target) * (2.0 * w)) / n


@with_direct_apply
class _MultiviewGramTerms(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(target: float, standardization: Standardization | None, *views: torch.Tensor):
        n = views[0].shape[0]
        pairs = view_pairs(len(views))
        with no_autocast(views[0].device):
            if standardization is None:
                standardized, rstds = views, ()
            else:
                standardized, rstds = zip(*(standardize_forward(z, standardization) for z in views), strict=True)
            grams = [symmetric_gram(a) for a in standardized]
            diagonals = torch.stack([column_dot(standardized[u], standardized[v]) for u, v in pairs]).div_(n)
            summaries = [
                pair_off_diagonal_summaries(standardized[u], standardized[v], grams[u], grams[v], diagonals[p], target)
                for p, (u, v) in enumerate(pairs)
            ]
            off_diagonal_sq = torch.stack([sq for sq, _ in summaries])
            off_diagonal_total = torch.stack([total for _, total in summaries]) if target != 0.0 else None
            invariance, redundancy = _terms(diagonals, off_diagonal_sq, off_diagonal_total, target)
        if standardization is None:  # the views are the inputs: setup_context saves those
            return invariance, redundancy, diagonals, *grams
        return invariance, redundancy, diagonals, *grams, *standardized, *rstds

    @staticmethod
    def setup_context(ctx, inputs, output):
        target, standardization, *views = inputs
        count = len(views)
        diagonals, *rest = output[2:]
        grams = rest[:count]
        standardized, rstds = (views, ()) if standardization is None else (rest[count : 2 * count], rest[2 * count :])
        ctx.mark_non_differentiable(*output[2:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(diagonals, *views, *grams, *standardized, *rstds)
        ctx.count = count
        ctx.target = target
        ctx.standardization = standardization

    @staticmethod
    def backward(ctx, grad_invariance: torch.Tensor | None, grad_redundancy: torch.Tensor | None, *_):
        count, target, standardization = ctx.count, ctx.target, ctx.standardization
        diagonals, *saved = ctx.saved_tensors
        views, grams, standardized = saved[:count], saved[count : 2 * count], saved[2 * count : 3 * count]
        rstds = saved[3 * count :] if standardization is not None else (None,) * count
        nothing = (None, None) + (None,) * count
        if grad_invariance is None and grad_redundancy is None:
            return nothing
        zero = diagonals.new_zeros(())
        grad_invariance = zero if grad_invariance is None else grad_invariance
        grad_redundancy = zero if grad_redundancy is None else grad_redundancy
        needs = ctx.needs_input_grad[2:]
        with no_autocast(diagonals.device):
            if torch.is_grad_enabled():  # a graph of the backward is asked for (create_graph=True)
                grads = _view_gradients_differentiable(
                    views, grad_invariance, grad_redundancy, target, standardization, needs
                )
                return (None, None, *grads)
            n = standardized[0].shape[0]
            pairs = view_pairs(count)
            g = _diagonal_gradients(diagonals, grad_invariance, grad_redundancy, target, len(pairs), n)
            w = grad_redundancy * (2.0 / (n * len(pairs)))
            gram_sum = grams[0] + grams[1]
            for gram in grams[2:]:
                gram_sum.add_(gram)
            if target != 0.0:
                row_sums = torch.stack([a.sum(dim=1) for a in standardized])
                row_sum_total = row_sums.sum(dim=0)
            # The standardized views are the op's own tensors: unless the graph is kept for another backward, the
            # last gradient is formed in the memory of a partner view, which no gradient reads after it.
            donate = standardization is not None and saved_tensors_die_after_backward()
            wanted = [v for v in range(count) if needs[v]]
            grads = [None] * count
            for v in wanted:
                partners = [
                    (second if v == first else first, p)
                    for p, (first, second) in enumerate(pairs)
                    if v in (first, second)
                ]
                u, p = partners[0]
                if donate and v == wanted[-1]:
                    grad = standardized[u].mul_(g[p])
                else:
                    grad = torch.mul(standardized[u], g[p])
                for u, p in partners[1:]:
                    grad.addcmul_(standardized[u], g[p])
                # The product accumulated onto the diagonal terms by the matrix product itself (one pass over N×D
                # fewer), with the scale on the N×N factor.
                grad.addmm_((gram_sum - grams[v]).mul_(w / n), standardized[v])
                if target != 0.0:
                    grad.sub_((row_sum_total - row_sums[v]).mul_(w * target).unsqueeze(1))
                grads[v] = standardize_backward_(grad, standardized[v], rstds[v], standardization)
        return (None, None, *grads)


def _view_gradients_differentiable(views, grad_invariance, grad_redundancy, target, standardization, needs):
    """The backward's closed form in differentiable torch operations (no in-place), from the raw inputs.

    The standardization's backward is its closed form in differentiable operations (:func:`standardize_vjp`), so the
    result is differentiable in the inputs and in the upstream gradients.
    """
    with torch.enable_grad():
        if standardization is None:
            standardized, rstds = list(views), [None] * len(views)
        else:
            standardized, rstds = zip(*(standardize_differentiable(z, standardization) for z in views), strict=True)
        n = standardized[0].shape[0]
        pairs = view_pairs(len(views))
        diagonals = torch.stack([(standardized[u] * standardized[v]).sum(dim=0) for u, v in pairs]) / n
        g = _diagonal_gradients(diagonals, grad_invariance, grad_redundancy, target, len(pairs), n)
        w = grad_redundancy * (2.0 / (n * len(pairs)))
        grams = [torch.mm(a, a.t()) for a in standardized]
        gram_sum = sum(grams)
        row_sums = [a.sum(dim=1, keepdim=True) for a in standardized]
        grads = []
        for v, a in enumerate(standardized):
            if not needs[v]:
                grads.append(None)
                continue
            grad = torch.mm(gram_sum - grams[v], a) * (w / n)
            for p, (first, second) in enumerate(pairs):
                if v in (first, second):
                    grad = grad + standardized[second if v == first else first] * g[p]
            if target != 0.0:
                grad = grad - (w * target) * (sum(row_sums) - row_sums[v])
            grads.append(standardize_vjp(grad, a, rstds[v], standardization))
    return grads


def multiview_gram_terms(views, *, target: float, standardization: Standardization | None = None):
    """The pair-averaged ``(invariance, redundancy)`` of V views (each N×D) through their V N×N Gram matrices.

    The views are standardized first when ``standardization`` is given, and are taken as already standardized
    when it is ``None``. Two views are the two-view op of :mod:`redundancy._ops.gram`.
    """
    if len(views) == 2:
        return gram_terms(views[0], views[1], target=target, standardization=standardization)
    if not (torch.is_grad_enabled() and any(z.requires_grad for z in views)):
        # Nothing to differentiate: the forward alone (torch.compile would hand a Function whose forward takes its
        # views variadically an extra argument here).
        return _MultiviewGramTerms.forward(target, standardization, *views)[:2]
    invariance, redundancy = _MultiviewGramTerms.apply(target, standardization, *views)[:2]
    return invariance, redundancy


def multiview_cross_terms(views, *, target: float, standardization: Standardization | None = None, batch=None):
    """The pair-averaged ``(invariance, redundancy)`` of V views through each pair's D×D matrix C.

    Each view is standardized once (over the batch of all ranks when ``batch`` is given); ``batch`` also makes
    every pair's C that of the batch of all ranks (one all-reduce of D² elements per pair). Two views are the
    two-view op of :mod:`redundancy._ops.cross`, which standardizes them inside its own Function.
    """
    if len(views) == 2:
        return cross_correlation_terms(views[0], views[1], target=target, standardization=standardization, batch=batch)
    if standardization is not None:
        views = [standardize(z, standardization, batch=batch) for z in views]
    pairs = view_pairs(len(views))
    invariance = redundancy = 0
    for u, v in pairs:
        pair_invariance, pair_redundancy = cross_correlation_terms(views[u], views[v], target=target, batch=batch)
        invariance, redundancy = invariance + pair_invariance, redundancy + pair_redundancy
    return invariance / len(pairs), redundancy / len(pairs)


def multiview_gram_terms_flops(n: int, d: int, views: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of :func:`multiview_gram_terms` on V N×D views: V symmetric Grams forward
    (:func:`~redundancy._ops.products.symmetric_gram_flops` each) and V products ``(S - G_v) A_v`` backward
    (2·N²·D each). The O(N·D) standardization and the O(N²) inner products of the Grams are left out.

    Example:
        >>> multiview_gram_terms_flops(256, 8, 4) == 4 * 4 * 256 * 256 * 8
        True
    """
    forward = views * symmetric_gram_flops(n, d)
    return forward + views * 2 * n * n * d if backward else forward


def multiview_cross_terms_flops(n: int, d: int, views: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of :func:`multiview_cross_terms`: each of the V(V-1)/2 pairs forms its own C
    (:func:`~redundancy._ops.cross.cross_correlation_terms_flops`).

    Example:
        >>> multiview_cross_terms_flops(256, 1024, 4) == 6 * 6 * 256 * 1024 * 1024
        True
    """
    return views * (views - 1) // 2 * cross_correlation_terms_flops(n, d, backward=backward)
