"""Half the log-determinant ``½ logdet(I + α ZᵀZ)`` through a Cholesky factorization of the smaller form.

Sylvester's identity ``det(I_D + α ZᵀZ) = det(I_N + α Z Zᵀ)`` lets the N×N matrix stand in for the D×D one
when N < D. With ``M = L Lᵀ`` the Cholesky factorization, ``½ logdet M = Σ_i log L_ii``. Backward, in closed form
with two triangular solves (no autograd through the factorization)::

    d/dZ ½ logdet(I_D + α ZᵀZ) = α Z (I_D + α ZᵀZ)⁻¹ = α (I_N + α Z Zᵀ)⁻¹ Z

**Precision.** M's eigenvalues are at least 1, but in float32 an M of large entries (z of large magnitude, or rank
deficient: a duplicated row) loses its smallest eigenvalues to rounding: the factorization fails (``info > 0``, a
NaN or -inf value) or succeeds with a log-determinant off by far more than float32's precision. Since
``λ_min ≥ 1``, ``κ(M) ≤ λ_max ≤ trace(M) - (m - 1)`` (m×m). The float32 factorization is kept when it succeeds and
``m`` times this bound is at most :data:`MAX_FLOAT32_SIZE_TIMES_CONDITION` (``2**24``, one over float32's unit
roundoff), where its log-determinant is within about 1e-6 relative of float64's (L2-normalized rows, as EMP-SSL
and MCR² use, give a bound of ``1 + D/ε``); otherwise M is formed and factorized again in float64, and the value
and the gradients are returned in float32. That choice reads one boolean on the host; while ``torch.compile``
traces the op or a :mod:`torch.func` transform runs it, where it cannot, float32 inputs are factorized in float64
directly. A matrix that float64 cannot factorize either (finite entries beyond about 1e16) raises a
:class:`ValueError`; non-finite inputs give NaN.

When the caller builds a graph of the backward (``create_graph=True``), the backward recomputes the same closed
form (factorization and solves) from the op's input in differentiable operations, in the dtype the forward used.
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops._tracing import values_are_readable

#: The largest ``m·(trace(M) - (m - 1))`` (size times a bound on the condition number) for which a float32
#: factorization is kept.
MAX_FLOAT32_SIZE_TIMES_CONDITION = 2.0**24


def _identity_plus_gram(z: torch.Tensor, alpha: float, algorithm: str) -> torch.Tensor:
    """``I + α zᵀz`` (``"cross"``) or ``I + α z zᵀ`` (``"gram"``), a new matrix."""
    gram = torch.mm(z.t(), z) if algorithm == "cross" else torch.mm(z, z.t())
    gram.mul_(alpha).diagonal().add_(1.0)
    return gram


def _factorize(z: torch.Tensor, alpha: float, algorithm: str) -> torch.Tensor:
    """The Cholesky factor of ``I + α zᵀz`` (or ``I + α z zᵀ``): float32, or float64 when float32 is not enough."""
    if z.dtype != torch.float64:
        if not values_are_readable(z):
            return _factorize(z.to(torch.float64), alpha, algorithm)
        matrix = _identity_plus_gram(z, alpha, algorithm)
        size = matrix.shape[0]
        condition_bound = matrix.diagonal().sum() - (size - 1)
        factor, info = torch.linalg.cholesky_ex(matrix)
        if bool((info == 0) & (condition_bound * size <= MAX_FLOAT32_SIZE_TIMES_CONDITION)):
            return factor
        return _factorize(z.to(torch.float64), alpha, algorithm)
    matrix = _identity_plus_gram(z, alpha, algorithm)
    factor, info = torch.linalg.cholesky_ex(matrix)
    if values_are_readable(z) and bool((info != 0) & torch.isfinite(matrix).all()):
        raise ValueError(
            "total coding rate: I + α zᵀz cannot be factorized even in float64 (the largest entry of z is "
            f"{z.abs().max().item():.3g}, α = {alpha:.3g}); scale z down or use a larger eps"
        )
    return factor


@with_direct_apply
class _HalfLogdetIdentityPlusGram(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z: torch.Tensor, alpha: float, algorithm: str):
        with no_autocast(z.device):
            factor = _factorize(z, alpha, algorithm)
            return factor.diagonal().log().sum().to(z.dtype), factor

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, alpha, algorithm = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z, output[1])
        ctx.alpha, ctx.algorithm = alpha, algorithm

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor, _):
        z, factor = ctx.saved_tensors
        if grad_output is None:
            return None, None, None
        with no_autocast(z.device):
            z_factor = z.to(factor.dtype)
            if builds_graph():
                gram = (
                    torch.mm(z_factor.t(), z_factor) if ctx.algorithm == "cross" else torch.mm(z_factor, z_factor.t())
                )
                factor = torch.linalg.cholesky(
                    gram * ctx.alpha + torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
                )
            if ctx.algorithm == "cross":
                grad = torch.cholesky_solve(z_factor.t(), factor).t()
            else:
                grad = torch.cholesky_solve(z_factor, factor)
            return grad.to(z.dtype) * (grad_output * ctx.alpha), None, None


def half_logdet_identity_plus_gram(z: torch.Tensor, *, alpha: float, algorithm: str) -> torch.Tensor:
    """``½ logdet(I + α zᵀz)`` of ``z`` (N×D) through the D×D (``"cross"``) or the N×N (``"gram"``) form."""
    return _HalfLogdetIdentityPlusGram.apply(z, alpha, algorithm)[0]
