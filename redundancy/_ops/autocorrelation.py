"""The off-diagonal energy of one view's auto-correlation, ``E = Σ_{i≠j} (XᵀX)_ij²``, with its N×N Gram dual.

VICReg's covariance term and DeCov are this energy of the centred embeddings, rescaled. With
``K = XᵀX`` (D×D) and ``G = X Xᵀ`` (N×N), ``‖K‖_F² = ‖G‖_F²`` and the diagonal ``K_ii = Σ_n X_ni²`` costs O(N·D)::

    cross:  E = ‖K - diag(K)‖_F²                     (K's diagonal is zeroed in place: no cancellation)
    gram:   E = ‖G‖_F² - Σ_i K_ii²

Backward, in closed form (no autograd through the products)::

    dE/dX = 4 X (K - diag(K)) = 4 (G X - X diag(K))

Only one min(N, D)² matrix is held, forward or backward.
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast
from redundancy._ops.reductions import column_dot


class _OffDiagonalEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, algorithm: str):
        with no_autocast(x.device):
            if algorithm == "cross":
                product = torch.mm(x.t(), x)
                product.diagonal().zero_()
                flat = product.view(-1)
                energy = flat.dot(flat)
                column_norms_sq = None
            else:
                product = torch.mm(x, x.t())
                flat = product.view(-1)
                column_norms_sq = column_dot(x, x)
                energy = flat.dot(flat) - column_norms_sq.dot(column_norms_sq)
        ctx.save_for_backward(x, product, column_norms_sq)
        ctx.algorithm = algorithm
        return energy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_energy: torch.Tensor):
        x, product, column_norms_sq = ctx.saved_tensors
        with no_autocast(x.device):
            if ctx.algorithm == "cross":
                grad = torch.mm(x, product)
            else:
                grad = torch.mm(product, x).sub_(x * column_norms_sq)
            return grad.mul_(grad_energy * 4.0), None


def off_diagonal_energy(x: torch.Tensor, *, algorithm: str) -> torch.Tensor:
    """``Σ_{i≠j} (XᵀX)_ij²`` of ``x`` (N×D) through the D×D (``"cross"``) or the N×N (``"gram"``) product."""
    return _OffDiagonalEnergy.apply(x, algorithm)
