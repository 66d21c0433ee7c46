r"""Nuclear norms ``‖X‖_* = Σ_i σ_i(X)`` of a batch of matrices, with a gradient defined everywhere.

MMCR needs the nuclear norm of the N×D centroids and of every sample's V×D matrix of views (a batch of N small
matrices). ``X`` is ``(..., R, C)``, ``m = min(R, C)``.

**Forward.** float32 inputs: the smaller Gram matrix (``X Xᵀ`` when R ≤ C, else ``XᵀX``, m×m) is formed in float64
and diagonalized in float64 (``torch.linalg.eigh``), ``σ_i = sqrt(λ_i)``. The Gram squares the condition number:
diagonalized in float32 it loses every singular value below about ``sqrt(u₃₂)·σ_max`` (3e-4·σ_max), and nearly
rank-deficient centroids (collapsed embeddings, identical views) come out 1e-3 to 1e-2 relative off; in float64 the
loss stays within 1e-6 relative of the float64 SVD on such inputs (``tests/test_mmcr.py``: rank 1 and 4 matrices,
per-sample matrices of two nearly equal views and of six views of rank 3). With its backward it takes between 0.43×
and 1.05× the time of float32 ``torch.linalg.svdvals`` with its backward on MMCR's shapes (one CPU thread,
``python -m benchmarks.nuclear_norm``, ``benchmarks/results/cpu-mmcr``): the per-sample matrices of V views need
only V×V Grams. float64 inputs take the float64 SVD (``torch.linalg.svd``), the only way to reach float64 accuracy
on nearly rank-deficient inputs.

**Gradient.** ``∂‖X‖_*/∂X = U_r V_rᵀ``, the singular vectors of the r nonzero singular values: the polar factor of
X. Where X has full rank m this is the gradient; where it is rank deficient the nuclear norm is not differentiable,
and ``U_r V_rᵀ`` is its subgradient of least norm (the directions of zero singular values contribute nothing;
``torch.linalg.svdvals`` returns ``U Vᵀ`` over all m instead, which depends on the arbitrary basis LAPACK returns
for the null space). A singular value counts as zero below ``m·u₆₄·λ_max`` on the Gram's eigenvalues (float32
inputs: the resolution of the float64 Gram) or ``max(R, C)·u·σ_max`` (float64 inputs: that of the SVD). Repeated
singular values need no special care: ``U_r V_rᵀ`` does not depend on the basis of their subspace. The gradient is
finite for every finite X, and zero for X = 0. From the Gram, ``U_r V_rᵀ = (X Xᵀ)^{+1/2} X`` (or
``X (XᵀX)^{+1/2}``), the m×m factor formed from the eigenvectors (no division by a zero singular value) and applied to
X in float64 (its entries grow as ``1/σ_min``).

**Distributed.** The per-sample norms are local to each rank (their sum is all-reduced). The centroids' norm needs
the global N×D matrix; when N ≥ D its D×D Gram ``Σ_ranks C_rᵀ C_r`` is an all-reduce of D² numbers instead of a
gather of N·D, and each rank's gradient ``C_r (CᵀC)^{+1/2}`` is then local.

**Second derivatives.** The derivative of the polar factor along the rank-r matrices, with ``M = U_rᵀ dX V_r``::

    d(U_r V_rᵀ) = U_r Ω V_rᵀ + (I - U_r U_rᵀ) dX V_r Σ_r⁻¹ V_rᵀ + U_r Σ_r⁻¹ U_rᵀ dX (I - V_r V_rᵀ),
    Ω_ij = (M_ij - M_ji) / (σ_i + σ_j),

is self-adjoint (it is the Hessian of the nuclear norm), so it serves as both the backward and the forward-mode
derivative of the polar factor (:class:`_PolarFactor`); only sums ``σ_i + σ_j`` of nonzero singular values are
divided by. When a graph of that is asked for (third derivatives), it is recomputed from a differentiable
``torch.linalg.svd``, whose own derivative is infinite where singular values repeat.
"""

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import with_direct_apply


def _spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s, a, b)``: the singular values of ``x`` (m, those counted as zero set to 0) and what its polar factor is
    made of: for float64 ``x`` the singular vectors ``(u, v)`` (R×m, C×m, zero columns for zero singular values); for
    float32 ``x`` the eigenvectors ``w`` (m×m) of the smaller Gram and ``1/s`` (0 for zero singular values), both
    float64."""
    rows, columns = x.shape[-2], x.shape[-1]
    if x.dtype == torch.float64:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        nonzero = s > max(rows, columns) * torch.finfo(x.dtype).eps * s[..., :1]
        keep = nonzero.to(s.dtype).unsqueeze(-2)
        return torch.where(nonzero, s, 0.0), u * keep, vh.mT * keep
    x = x.to(torch.float64)
    gram = torch.matmul(x, x.mT) if rows <= columns else torch.matmul(x.mT, x)
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending
    nonzero = eigenvalues > min(rows, columns) * torch.finfo(torch.float64).eps * eigenvalues[..., -1:]
    s = torch.where(nonzero, eigenvalues, 0.0).sqrt()
    return s, eigenvectors, torch.where(nonzero, 1.0 / torch.where(nonzero, s, 1.0), 0.0)


def _polar_of(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``U_r V_rᵀ`` from the factors of :func:`_spectrum`, in their dtype: ``u vᵀ``, or ``(X Xᵀ)^{+1/2} X`` (R ≤ C)
    or ``X (XᵀX)^{+1/2}`` with ``(·)^{+1/2} = w diag(1/s) wᵀ`` (m×m) and X in float64."""
    if x.dtype == torch.float64:
        return torch.matmul(a, b.mT)
    inverse_root = torch.matmul(a * b.unsqueeze(-2), a.mT)
    x = x.to(torch.float64)
    return torch.matmul(inverse_root, x) if x.shape[-2] <= x.shape[-1] else torch.matmul(x, inverse_root)


def _decompose(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(u, s, v, inverse)``: thin factors of ``x`` (``u`` R×m, ``s`` m, ``v`` C×m) in the compute dtype, with the
    columns of zero singular values set to zero in ``u`` and ``v``, and ``inverse = 1/s`` (0 there)."""
    s, a, b = _spectrum(x)
    if x.dtype == torch.float64:
        return a, s, b, torch.where(s > 0, 1.0 / torch.where(s > 0, s, 1.0), 0.0)
    keep = (b > 0).to(s.dtype).unsqueeze(-2)
    other = torch.matmul(x.to(torch.float64).mT if x.shape[-2] <= x.shape[-1] else x.to(torch.float64), a)
    other = other * b.unsqueeze(-2)  # Xᵀ U Σ⁻¹ (R ≤ C) or X V Σ⁻¹
    u, v = (a, other) if x.shape[-2] <= x.shape[-1] else (other, a)
    return u * keep, s, v * keep, b


def _polar(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``U_r V_rᵀ`` (the columns of zero singular values are zero in ``u`` and ``v``)."""
    return torch.matmul(u, v.mT)


def _polar_derivative(direction, u, s, v, inverse) -> torch.Tensor:
    """The derivative of ``U_r V_rᵀ`` along ``direction`` (the formula of the module docstring)."""
    direction = direction.to(u.dtype)
    m = torch.matmul(torch.matmul(u.mT, direction), v)
    total = s.unsqueeze(-1) + s.unsqueeze(-2)
    omega = torch.where(total > 0, (m - m.mT) / torch.where(total > 0, total, 1.0), 0.0)
    d_v = torch.matmul(direction, v) * inverse.unsqueeze(-2)  # dX V Σ⁻¹
    d_u = torch.matmul(direction.mT, u) * inverse.unsqueeze(-2)  # dXᵀ U Σ⁻¹
    left = d_v - torch.matmul(u, torch.matmul(u.mT, d_v))  # (I - U Uᵀ) dX V Σ⁻¹
    right = d_u - torch.matmul(v, torch.matmul(v.mT, d_u))  # (I - V Vᵀ) dXᵀ U Σ⁻¹
    return torch.matmul(torch.matmul(u, omega), v.mT) + torch.matmul(left, v.mT) + torch.matmul(u, right.mT)


@with_direct_apply
class _PolarFactor(torch.autograd.Function):
    """``U_r V_rᵀ`` of ``x`` (compute dtype), differentiable once more in closed form: the nuclear norm's gradient
    when a graph of it is built."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor):
        with no_autocast(x.device):
            u, s, v, inverse = _decompose(x)
            return _polar(u, v).to(x.dtype), u, s, v, inverse

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        _, u, s, v, inverse = output
        ctx.mark_non_differentiable(u, s, v, inverse)
        ctx.save_for_backward(x, u, s, v, inverse)
        ctx.save_for_forward(x, u, s, v, inverse)  # the same tensors: functorch's vmap rule keeps one record of them

    @staticmethod
    def backward(ctx, grad_polar, *_):
        x, u, s, v, inverse = ctx.saved_tensors
        with no_autocast(x.device):
            if builds_graph():  # factors that autograd can differentiate, of the forward's rank
                rank = (s > 0).sum(dim=-1, keepdim=True)
                u, s, vh = torch.linalg.svd(x.to(u.dtype), full_matrices=False)  # s in descending order
                keep = (torch.arange(s.shape[-1], device=s.device) < rank).to(s.dtype)
                inverse = keep / torch.where(keep > 0, s, 1.0)
                u, v, s = u * keep.unsqueeze(-2), vh.mT * keep.unsqueeze(-2), s * keep
            return _polar_derivative(grad_polar, u, s, v, inverse).to(x.dtype)


@with_direct_apply
class _NuclearNorm(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor):
        with no_autocast(x.device):
            s, a, b = _spectrum(x)
            return s.sum(dim=-1).to(x.dtype), a, b

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        _, a, b = output
        ctx.mark_non_differentiable(a, b)
        ctx.save_for_backward(x, a, b)
        ctx.save_for_forward(x, a, b)

    @staticmethod
    def backward(ctx, grad_output, *_):
        x, a, b = ctx.saved_tensors
        scale = grad_output.unsqueeze(-1).unsqueeze(-1)
        if builds_graph():
            return scale * _polar_factor(x)
        with no_autocast(x.device):
            return (_polar_of(x, a, b) * scale.to(a.dtype)).to(x.dtype)


# Dynamo does not trace Functions that define ``jvp``: traced code takes the classes above, everything else these
# subclasses, which add the forward-mode derivatives (:func:`torch.func.jacfwd`, :func:`torch.func.hessian`).


@with_direct_apply
class _PolarFactorWithJvp(_PolarFactor):
    @staticmethod
    def jvp(ctx, tangent):
        _, u, s, v, inverse = ctx.saved_tensors
        return _polar_derivative(tangent, u, s, v, inverse).to(tangent.dtype), None, None, None, None


@with_direct_apply
class _NuclearNormWithJvp(_NuclearNorm):
    @staticmethod
    def jvp(ctx, tangent):
        x, a, b = ctx.saved_tensors
        return (_polar_of(x, a, b) * tangent.to(a.dtype)).sum(dim=(-2, -1)).to(tangent.dtype), None, None


def _polar_factor(x: torch.Tensor) -> torch.Tensor:
    return (_PolarFactor if torch.compiler.is_compiling() else _PolarFactorWithJvp).apply(x)[0]


def nuclear_norm(x: torch.Tensor) -> torch.Tensor:
    """``‖X‖_*`` of each matrix of ``x`` (``(..., R, C)`` in its compute dtype, float32 or float64): shape ``(...)``.

    Example:
        >>> x = torch.randn(5, 3, 7, dtype=torch.float64)
        >>> torch.allclose(nuclear_norm(x), torch.linalg.svdvals(x).sum(dim=-1), rtol=1e-12)
        True
        >>> x32 = torch.randn(40, 6)
        >>> torch.allclose(nuclear_norm(x32).double(), torch.linalg.svdvals(x32.double()).sum(), rtol=1e-6)
        True
    """
    return (_NuclearNorm if torch.compiler.is_compiling() else _NuclearNormWithJvp).apply(x)[0]
