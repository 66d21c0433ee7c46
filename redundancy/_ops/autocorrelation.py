"""The off-diagonal energy of one view's auto-correlation, ``E = Σ_{i≠j} (XᵀX)_ij²``, with its N×N Gram dual.

VICReg's covariance term and DeCov are this energy of the centred embeddings, rescaled. With
``K = XᵀX`` (D×D) and ``G = X Xᵀ`` (N×N), ``‖K‖_F² = ‖G‖_F²`` and the diagonal ``K_ii = Σ_n X_ni²`` costs O(N·D)::

    cross:  E = ‖K - diag(K)‖_F²                     (K's diagonal is zeroed in place: no cancellation)
    gram:   E = ‖G‖_F² - Σ_i K_ii²                   (when D > N; the cross form's value when D ≤ N)

Backward, in closed form (no autograd through the products)::

    dE/dX = 4 X (K - diag(K)) = 4 (G X - X diag(K))

Only one min(N, D)² matrix is held, forward or backward, except that the Gram form with D ≤ N (where the difference
``‖G‖² - Σ K_ii²`` would cancel for decorrelated features, and even float32 Grams are not precise enough for it) takes
its value from K with its diagonal zeroed, no larger than G (not while ``torch.compile`` or ``torch.export`` traces it
with a symbolic batch size: a branch on N would specialize the trace). The squares are summed pairwise
(:mod:`redundancy._ops.reductions`). When the caller builds a graph of the backward
(``create_graph=True``), the backward recomputes the same closed form in differentiable operations.
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops.reductions import column_dot
from redundancy._ops.reductions import sum_of_squares
from redundancy._ops.terms import off_diagonal_summaries_


@with_direct_apply
class _OffDiagonalEnergy(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, algorithm: str):
        n, d = x.shape
        with no_autocast(x.device):
            if algorithm == "cross":
                product = torch.mm(x.t(), x)
                _, energy, _ = off_diagonal_summaries_(product, total=False)
                return energy, product
            product = torch.mm(x, x.t())
            column_norms_sq = column_dot(x, x)
            if not isinstance(n, torch.SymInt) and d <= n:
                _, energy, _ = off_diagonal_summaries_(torch.mm(x.t(), x), total=False)
            else:
                energy = sum_of_squares(product) - sum_of_squares(column_norms_sq)
            return energy, product, column_norms_sq

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, algorithm = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, *output[1:])
        ctx.algorithm = algorithm

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor, *_):
        x, *saved = ctx.saved_tensors
        if grad_energy is None:
            return None, None
        with no_autocast(x.device):
            if builds_graph():
                if ctx.algorithm == "cross":
                    product = torch.mm(x.t(), x)
                    grad = torch.mm(x, product - torch.diag_embed(product.diagonal()))
                else:
                    grad = torch.mm(torch.mm(x, x.t()), x) - x * (x * x).sum(dim=0)
                return grad * (grad_energy * 4.0), None
            if ctx.algorithm == "cross":
                grad = torch.mm(x, saved[0])
            else:
                product, column_norms_sq = saved
                grad = torch.mm(product, x).sub_(x * column_norms_sq)
            return grad.mul_(grad_energy * 4.0), None


def off_diagonal_energy(x: torch.Tensor, *, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} (XᵀX)_ij²`` of ``x`` (N×D) through the D×D (``"cross"``) or the N×N (``"gram"``) product."""
    return _OffDiagonalEnergy.apply(x, algorithm)[0]


def off_diagonal_energy_flops(algorithm: str, n: int, d: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of :func:`off_diagonal_energy` of one N×D view: ``K = XᵀX`` forward and ``X K`` backward
    (2·N·D² each) for ``"cross"``; ``G = X Xᵀ`` forward and ``G X`` backward (2·N²·D each) for ``"gram"``.

    Example:
        >>> off_diagonal_energy_flops("cross", 256, 8192) // off_diagonal_energy_flops("gram", 256, 8192)
        32
    """
    if algorithm == "cross":
        forward = 2 * n * d * d
    elif algorithm == "gram":
        forward = 2 * n * n * d
    else:
        raise ValueError(f"algorithm must be 'cross' or 'gram', got {algorithm!r}")
    return 2 * forward if backward else forward
