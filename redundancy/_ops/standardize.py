"""Per-feature standardization over the batch, with a closed-form backward.

``a = (z - mean) / sqrt(var + eps)`` where ``var`` is the biased (``unbiased=False``, BatchNorm) or the
unbiased (``unbiased=True``, ``ddof=1``) variance of each column of ``z``.

Backward, with ``r = 1 / sqrt(var + eps)`` and ``m`` the variance divisor (``N`` or ``N - 1``)::

    dz = r * (da - mean_n(da) - a * sum_n(da * a) / m)

which is exact for any ``eps`` (the variance's own dependence on ``z`` is what the last term carries).

When ``z`` is one rank's shard of a batch split over processes, ``batch`` supplies the statistics of the whole
batch (``N`` rows over all ranks, see :class:`redundancy._batch.GlobalBatch`): the forward uses the global
mean and variance, and the backward sums the two D-vectors ``Σ_n da`` and ``Σ_n da ⊙ a`` over all ranks (one
reduction of 2·D elements); the formula is otherwise the same.

:func:`standardize_views` and :func:`standardize_backward_` are the two halves without autograd, for the ops
that standardize their inputs inside their own autograd Function (:mod:`redundancy._ops.gram`,
:mod:`redundancy._ops.cross`): they own the gradient buffer and apply the backward in place, with no N×D tensor
besides the views and their gradients. Their gradient is that of a function of the cross-correlation, whose
columns sum to zero, so :func:`standardize_backward_` leaves out the ``mean_n(da)`` term (and its share of the
reduction over ranks).

**Centring.** A column is centred twice: ``c = z - m`` with ``m`` its mean rounded to the compute dtype, then ``c``
minus its own mean (:func:`recenter_`). A column whose offset is large beside its spread (1e4 ± 1e-3 in float32) has
a rounded mean off by as much as the spread itself, so that ``z - m`` is not centred; but ``z - m`` is small and
exact there, and its own mean is accurate: the second subtraction centres the column to the last bit (the corrected
two-pass algorithm; BatchNorm implementations that subtract a shift such as the first row before their two passes do
the same, but a first row far from the mean, an outlier, costs them precision, which the rounded mean never does).
The variance is then that of the centred column, and the standardized columns sum to zero, as the backward assumes.

**Magnitudes.** A column whose largest magnitude reaches ``2**SAFE_EXPONENT`` is centred and multiplied by a power
of two (exact) that brings it below, before any square is formed, so that its squares cannot overflow: float32
embeddings of magnitude 1e18 or 1e30 standardize as well as those of magnitude 1, as long as a column's sum is
finite (``|z| < 3.4e38 / N``). Other columns are left as they are (a scale of 1). On the CPU, in eager mode, the
unscaled variance is tried first (finding the scale costs two more passes over ``z``).

**Second derivatives.** :func:`standardize_differentiable` and :func:`standardize_vjp` are the same formulas in
differentiable torch operations, for a backward that must itself be differentiable.
"""

import math
from collections.abc import Iterable
from typing import Any
from typing import NamedTuple

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import refuse_graph_with_collectives
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops._tracing import values_are_readable
from redundancy._ops.reductions import column_dot


class Standardization(NamedTuple):
    """How an op standardizes its inputs: ``unbiased`` variance (``ddof=1``) or not, and ``eps``."""

    unbiased: bool
    eps: float


def standardization_of(*, standardize: bool, correction: int, eps: float) -> Standardization | None:
    """The :class:`Standardization` of the public options (``None`` for ``standardize=False``).

    ``correction`` is the variance divisor ``N - correction``, as :func:`torch.var` takes it.
    """
    if not standardize:
        return None
    return Standardization(unbiased=correction == 1, eps=eps)


def standardization_of_options(options: Any) -> Standardization | None:
    """:func:`standardization_of` a loss's options dataclass (its fields ``standardize``, ``correction``, ``eps``)."""
    return standardization_of(standardize=options.standardize, correction=options.correction, eps=options.eps)


def center(z: torch.Tensor) -> torch.Tensor:
    """``z - mean_n z``: each column of an already upcast view centred over the batch (differentiable).

    Centred twice, as the module docstring says: ``z`` minus its rounded mean (a shift, without gradient), then
    minus the mean of that.
    """
    shifted = z - z.mean(dim=0).detach()
    return shifted - shifted.mean(dim=0)


#: Columns whose largest magnitude reaches ``2**SAFE_EXPONENT`` are scaled below it before squaring: their squares
#: then stay below ``2**64`` and sums of them below float32's largest value for any batch size.
SAFE_EXPONENT = 32


def column_scale(z: torch.Tensor) -> torch.Tensor:
    """A power of two per column of ``z`` (N×D), at most 1, that brings the column below ``2**SAFE_EXPONENT``.

    1 for every column of ordinary magnitude (so the arithmetic is unchanged there), NaN for a column holding a
    NaN, 0 for one holding an infinity (non-finite inputs give non-finite outputs).

    Example:
        >>> column_scale(torch.tensor([[1.0, 3.0e38], [-2.0, 5.0e17]]))
        tensor([1.0000e+00, 1.2622e-29])
    """
    largest = torch.maximum(z.amax(dim=0), z.amin(dim=0).neg())  # two reductions: faster than aminmax over dim 0
    return torch.exp2(torch.clamp(SAFE_EXPONENT - torch.log2(largest).ceil(), max=0.0))


def recenter_(centered: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Subtract from ``centered`` (``z`` minus its rounded mean over ``dim``) its own mean, in place: the rounding
    error of the first mean (see the module docstring). Returns ``centered``.

    Example:
        >>> z = torch.tensor([[10000.0], [10000.001953125], [10000.0]])  # a spread of two float32 ulps
        >>> exact = z.double() - z.double().mean(dim=0)
        >>> centered = z - z.mean(dim=0)  # the rounded mean is off by a third of the spread
        >>> error = lambda x: f"{(x.double() - exact).abs().max().item():.0e}"
        >>> error(centered), error(recenter_(centered))
        ('3e-04', '4e-11')
    """
    return centered.sub_(centered.mean(dim=dim, keepdim=True))


def standardize_forward(z: torch.Tensor, standardization: Standardization, batch=None):
    """``(a, rstd)``: the standardized ``z`` (a new tensor) and ``1 / sqrt(var + eps)`` per column.

    Three passes (the mean, the recentring of :func:`recenter_`, then the centred sum of squares): robust to large
    offsets, and cheaper on the CPU than ``torch.var_mean`` over dim 0. Huge columns are scaled first
    (:func:`column_scale`). Finding the scale costs two more passes over ``z``, negligible on a GPU but not on the
    CPU, where reading a value is free: there the unscaled variance is computed first and the scaled one only when
    it is not finite.
    """
    correction = 1 if standardization.unbiased else 0
    if batch is not None:
        var, mean = batch.var_mean(z, correction=correction)
        rstd = torch.rsqrt(var.add_(standardization.eps))
        return (z - mean).mul_(rstd), rstd
    if z.device.type == "cpu" and values_are_readable(z):  # reading a value costs no device synchronization
        centered = recenter_(z - z.mean(dim=0))
        var = column_dot(centered, centered)
        # The columns' sums of squares are not negative: their total is finite exactly when each is, unless the
        # total itself overflows (then the scaled path below, which is right for any magnitude). One reduction and
        # one read, where torch.isfinite(...).all() costs five small ops.
        if math.isfinite(var.sum().item()):
            rstd = torch.rsqrt(var.div_(z.shape[0] - correction).add_(standardization.eps))
            return centered.mul_(rstd), rstd
    scale = column_scale(z)  # 1 for columns of ordinary magnitude
    centered = recenter_(torch.addcmul(z.mean(dim=0).mul_(scale).neg_(), z, scale))  # (z - mean) * scale
    var = column_dot(centered, centered).div_(z.shape[0] - correction)
    # 1/sqrt(var/scale² + eps) = scale/sqrt(var_scaled + eps·scale²), applied to the scaled column.
    rstd_scaled = torch.rsqrt(var.add_(scale.square().mul_(standardization.eps)))
    return centered.mul_(rstd_scaled), rstd_scaled.mul_(scale)


def _standardize_jointly(z1: torch.Tensor, z2: torch.Tensor, standardization: Standardization):
    """:func:`standardize_views` of two views of one shape, stacked: the unscaled variance of
    :func:`standardize_forward`, or ``None`` when a column needs the scale (then each view goes its own way)."""
    rows, dim = z1.shape
    stacked = torch.stack((z1, z2))
    centered = recenter_(stacked.sub_(stacked.mean(dim=1, keepdim=True)), dim=1)
    var = torch.mul(centered, centered).sum(dim=1, keepdim=True)
    if not math.isfinite(var.sum().item()):  # as in standardize_forward
        return None
    correction = 1 if standardization.unbiased else 0
    rstd = torch.rsqrt(var.div_(rows - correction).add_(standardization.eps))
    a, b = centered.mul_(rstd).unbind()
    rstd_a, rstd_b = rstd.view(2, dim).unbind()
    return a, b, rstd_a, rstd_b


def standardize_differentiable(z: torch.Tensor, standardization: Standardization):
    """``(a, rstd)`` of :func:`standardize_forward` (one process) in differentiable torch operations."""
    correction = 1 if standardization.unbiased else 0
    scale = column_scale(z.detach())  # piecewise constant in z: no gradient of its own
    # The rounded mean is a shift, of which the centred value does not depend: no gradient through it.
    shifted = z * scale - (z.mean(dim=0) * scale).detach()
    centered = shifted - shifted.mean(dim=0)
    var = centered.square().sum(dim=0) / (z.shape[0] - correction)
    rstd_scaled = torch.rsqrt(var + scale.square() * standardization.eps)
    return centered * rstd_scaled, rstd_scaled * scale


#: Two views of at most this many elements each are standardized as one stacked batch on the CPU (see
#: :func:`standardize_views`).
JOINT_ELEMENTS = 1 << 14


def standardize_views(z1: torch.Tensor, z2: torch.Tensor, standardization: Standardization | None, batch=None):
    """``(a, b, rstd_a, rstd_b)``: both views standardized, or as they are (and no ``rstd``) for ``None``.

    ``a`` and ``b`` are new tensors (maybe two halves of one), ``rstd_a`` and ``rstd_b`` D-vectors.

    Small views of one process on the CPU, eagerly, are stacked and standardized together: one launch of each op for
    both views, where the launches cost more than the arithmetic (half the time of the standardization at N=D=8),
    for one more pass over the views, which costs more than it saves above :data:`JOINT_ELEMENTS` elements.
    """
    if standardization is None:
        return z1, z2, None, None
    if (
        batch is None
        and z1.device.type == "cpu"
        and z1.dtype == z2.dtype
        and values_are_readable(z1)
        and values_are_readable(z2)
        and z1.numel() <= JOINT_ELEMENTS  # after the tracing checks: no guard on a symbolic size
    ):
        joint = _standardize_jointly(z1, z2, standardization)
        if joint is not None:
            return joint
    a, rstd_a = standardize_forward(z1, standardization, batch)
    b, rstd_b = standardize_forward(z2, standardization, batch)
    return a, b, rstd_a, rstd_b


def standardize_views_differentiable(z1: torch.Tensor, z2: torch.Tensor, standardization: Standardization | None):
    """:func:`standardize_views` (one process) in differentiable torch operations."""
    if standardization is None:
        return z1, z2, None, None
    a, rstd_a = standardize_differentiable(z1, standardization)
    b, rstd_b = standardize_differentiable(z2, standardization)
    return a, b, rstd_a, rstd_b


def _required_rstd(rstd: torch.Tensor | None) -> torch.Tensor:
    """``rstd``, which a standardized view always has (it is ``None`` only without standardization)."""
    if rstd is None:
        raise ValueError("a standardized view's gradient needs its rstd; got None")
    return rstd


def _count_and_divisor(grad: torch.Tensor, unbiased: bool, batch) -> tuple[int, int]:
    """``(N, m)``: the rows of the batch (of all ranks when ``batch`` is given) and the variance divisor."""
    count = grad.shape[0] if batch is None else batch.count
    return count, count - 1 if unbiased else count


def _gradient_sums(grad: torch.Tensor, a: torch.Tensor, unbiased: bool, batch):
    """``(mean_n(grad), Σ_n grad ⊙ a / m)``, over all ranks when ``batch`` is given."""
    count, divisor = _count_and_divisor(grad, unbiased, batch)
    if batch is None:
        return grad.sum(dim=0).div_(count), column_dot(grad, a).div_(divisor)
    sums = batch.sum_over_ranks(torch.stack((grad.sum(dim=0), column_dot(grad, a))))
    return sums[0].div_(count), sums[1].div_(divisor)


def standardize_backward_(
    grad: torch.Tensor,
    a: torch.Tensor,
    rstd: torch.Tensor | None,
    standardization: Standardization | None,
    batch=None,
) -> torch.Tensor:
    """Turn ``grad = dL/da`` into ``dL/dz`` in place (the module docstring's formula); returns ``grad``.

    The identity when ``standardization`` is ``None`` (the op's inputs were already standardized).

    For the gradient of a function of the cross-correlation ``C = AᵀB / N`` only: ``dL/dA = B (dL/dC)ᵀ / N``
    has columns that sum to zero over the batch, because ``B``'s do, so the ``mean_n(da)`` term is left out
    (it is rounding noise), and the backward makes two passes over N×D after one reduction.
    """
    if standardization is None:
        return grad
    rstd = _required_rstd(rstd)
    _, divisor = _count_and_divisor(grad, standardization.unbiased, batch)
    mean_grad_a = column_dot(grad, a)
    if batch is not None:
        mean_grad_a = batch.sum_over_ranks(mean_grad_a)
    mean_grad_a.div_(divisor)
    return grad.addcmul_(a, mean_grad_a.neg_()).mul_(rstd)


def standardize_vjp(
    grad: torch.Tensor, a: torch.Tensor, rstd: torch.Tensor | None, standardization: Standardization | None
) -> torch.Tensor:
    """``dL/dz`` from ``grad = dL/da`` (one process, any ``grad``) in differentiable torch operations."""
    if standardization is None:
        return grad
    rstd = _required_rstd(rstd)
    _, divisor = _count_and_divisor(grad, standardization.unbiased, None)
    return rstd * (grad - grad.mean(dim=0) - a * ((grad * a).sum(dim=0) / divisor))


@with_direct_apply
class _Standardize(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z: torch.Tensor, standardization: Standardization, batch):
        with no_autocast(z.device):
            return standardize_forward(z, standardization, batch)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, standardization, batch = inputs
        a, rstd = output
        ctx.mark_non_differentiable(rstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z, a, rstd)
        ctx.standardization = standardization
        ctx.batch = batch

    @staticmethod
    def backward(ctx, da: torch.Tensor | None, _):
        z, a, rstd = ctx.saved_tensors
        if da is None:
            return None, None, None
        standardization = ctx.standardization
        with no_autocast(da.device):
            if builds_graph():
                refuse_graph_with_collectives(ctx.batch, "standardize")
                a, rstd = standardize_differentiable(z, standardization)
                return standardize_vjp(da, a, rstd, standardization), None, None
            mean_da, mean_da_a = _gradient_sums(da, a, standardization.unbiased, ctx.batch)
            # r * (da - mean_da - a * mean_da_a), written as two passes over N×D (da is not ours to overwrite).
            dz = torch.addcmul(-mean_da * rstd, a, -mean_da_a * rstd).addcmul_(da, rstd)
        return dz, None, None


def standardize(z: torch.Tensor, standardization: Standardization, *, batch=None) -> torch.Tensor:
    """Standardize each column of ``z`` (N×D) over the batch; differentiable with a closed-form backward.

    ``batch`` (a :class:`redundancy._batch.GlobalBatch`, or ``None`` for the local batch) makes the
    statistics those of the batch of all ranks, of which ``z`` holds this rank's rows. The backward is itself
    differentiable (second derivatives) for the local batch.
    """
    return _Standardize.apply(z, standardization, batch)[0]


def standardize_each(
    views: Iterable[torch.Tensor], standardization: Standardization | None, *, batch=None
) -> list[torch.Tensor]:
    """Each view through :func:`standardize`, or the views as they are for ``None`` (``standardize=False``)."""
    if standardization is None:
        return list(views)
    return [standardize(z, standardization, batch=batch) for z in views]
