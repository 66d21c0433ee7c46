"""Half the log-determinant ``½ logdet(I + α ZᵀZ)`` through a Cholesky factorization of the smaller form.

Sylvester's identity ``det(I_D + α ZᵀZ) = det(I_N + α Z Zᵀ)`` lets the N×N matrix stand in for the D×D one
when N < D. With ``M = L Lᵀ`` the Cholesky factorization, ``½ logdet M = Σ_i log L_ii``. Backward, in closed form
with two triangular solves (no autograd through the factorization)::

    d/dZ ½ logdet(I_D + α ZᵀZ) = α Z (I_D + α ZᵀZ)⁻¹ = α (I_N + α Z Zᵀ)⁻¹ Z

``M``'s eigenvalues are at least 1, so the factorization of finite inputs never fails; non-finite inputs give NaN.
"""

import torch
from torch.autograd.function import once_differentiable

from redundancy._ops._autocast import no_autocast


class _HalfLogdetIdentityPlusGram(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, alpha: float, algorithm: str):
        with no_autocast(z.device):
            gram = torch.mm(z.t(), z) if algorithm == "cross" else torch.mm(z, z.t())
            gram.mul_(alpha).diagonal().add_(1.0)
            factor, _ = torch.linalg.cholesky_ex(gram)
            half_logdet = factor.diagonal().log().sum()
        ctx.save_for_backward(z, factor)
        ctx.alpha, ctx.algorithm = alpha, algorithm
        return half_logdet

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        z, factor = ctx.saved_tensors
        with no_autocast(z.device):
            if ctx.algorithm == "cross":
                grad = torch.cholesky_solve(z.t(), factor).t()
            else:
                grad = torch.cholesky_solve(z, factor)
            return grad.mul(grad_output * ctx.alpha), None, None


def half_logdet_identity_plus_gram(z: torch.Tensor, *, alpha: float, algorithm: str) -> torch.Tensor:
    """``½ logdet(I + α zᵀz)`` of ``z`` (N×D) through the D×D (``"cross"``) or the N×N (``"gram"``) form."""
    return _HalfLogdetIdentityPlusGram.apply(z, alpha, algorithm)
