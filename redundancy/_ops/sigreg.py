r"""SIGReg's empirical characteristic function, summed over rows without the N×M×K tensor.

SIGReg (Balestriero & LeCun, 2025) tests each of M random 1-D projections ``p_nm = z_n · a_m`` of the embeddings
against a standard normal with the Epps–Pulley statistic, on K knots ``t_k = k·Δ``, ``Δ = t_max / (K - 1)``. Its only
O(N) work is the pair of sums over the rows::

    C_mk = Σ_n cos(t_k p_nm),        S_mk = Σ_n sin(t_k p_nm)                      (M×K each)

from which the statistic is cheap (:func:`epps_pulley_from_sums`, M×K work)::

    T_m = N Σ_k w_k [(C_mk / N - e^{-t_k²/2})² + (S_mk / N)²]

The official code forms ``x_t = p.unsqueeze(-1) * t`` (N×M×K) and its cosine and sine, and autograd keeps them for
the backward. :func:`characteristic_sums` keeps N×M buffers only. Because the knots are equally spaced,
``e^{i t_k p} = (e^{iΔp})^k``: the forward evaluates one cosine and one sine per element and reaches the other knots
by rotation (``(c, s) ← (c·c₁ - s·s₁, s·c₁ + c·s₁)``, four products per element and knot), and the backward::

    ∂/∂p_nm = Σ_k t_k (∂T/∂S_mk · cos(t_k p_nm) - ∂T/∂C_mk · sin(t_k p_nm)) = Re Σ_k α_mk (e^{iΔp_nm})^k,
    α_mk = t_k (∂T/∂S_mk + i ∂T/∂C_mk),

is that polynomial in ``e^{iΔp}`` evaluated by Horner's rule (the same rotation count, one cosine and sine per
element). The rotation's rounding grows with k (about ``k·u`` for unit roundoff u): for 17 knots in float32 the sums
stay within 1e-6 relative of float64, as close as the official float32 formula (whose arguments ``t_k p`` are
rounded too). When the caller builds a graph of the backward (``create_graph=True``, :mod:`torch.func`), the
backward is computed knot by knot with differentiable cosines and sines, so second derivatives are exact.

**Distributed.** The sums are additive over rows: under data parallelism the global statistic is that of the sums
all-reduced over the ranks (``cos_sums[..., 0]`` is the row count, so the global N comes with them), and the
gradient of each rank's sums is the gradient of the global sums: their backward needs no collective. A rank with
no rows returns zero sums.
"""

import math

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph, with_direct_apply
from redundancy._ops._tracing import values_are_readable

#: The row blocks of the eager forward and backward hold about this many elements of N×M (4 MiB in float32): large
#: batches then need a few block-sized buffers, not N×M ones. Traced code (``torch.compile``, :mod:`torch.func`) runs
#: one block.
BLOCK_ELEMENTS = 1 << 20


def knot_values(knots: int, t_max: float) -> list[float]:
    """The knots ``t_k``, as :func:`torch.linspace` ``(0, t_max, knots)`` computes them (in float64).

    Example:
        >>> knot_values(5, 3.0)
        [0.0, 0.75, 1.5, 2.25, 3.0]
    """
    step = t_max / (knots - 1)
    half = knots // 2
    return [step * k if k < half else t_max - step * (knots - 1 - k) for k in range(knots)]


def trapezoid_weights(knots: int, t_max: float) -> list[float]:
    """``w_k = c_k·Δ·e^{-t_k²/2}``, ``c_k`` 2 inside and 1 at both ends: the trapezoid rule on ``[0, t_max]``, doubled
    for the even integrand, times the Gaussian window (``weights * window`` of the official code).

    Example:
        >>> [round(w, 4) for w in trapezoid_weights(3, 2.0)]
        [1.0, 1.2131, 0.1353]
    """
    step = t_max / (knots - 1)
    ends = (0, knots - 1)
    return [(step if k in ends else 2 * step) * math.exp(-t * t / 2.0) for k, t in enumerate(knot_values(knots, t_max))]


def _row_blocks(p: torch.Tensor) -> list[slice]:
    n, m = p.shape[-2], p.shape[-1]
    if isinstance(n, torch.SymInt) or not values_are_readable(p):
        return [slice(None)]
    batch = p.numel() // max(n * m, 1)
    rows = max(1, BLOCK_ELEMENTS // max(m * batch, 1))
    if rows >= n:
        return [slice(None)]
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _sums_of_block(p: torch.Tensor, knots: int, step: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The sums over the rows of ``p`` of ``cos(kΔp)`` and ``sin(kΔp)`` for ``k = 1, ..., K - 1`` (by rotation)."""
    angle = p * step
    c1, s1 = torch.cos(angle), torch.sin(angle)
    del angle
    c, s = c1.clone(), s1.clone()
    cos_sums, sin_sums = [c.sum(dim=-2)], [s.sum(dim=-2)]
    fused = values_are_readable(p)  # addcmul_ has no batching rule in torch.func
    for _ in range(2, knots):
        c_s1 = c * s1
        if fused:
            c.mul_(c1).addcmul_(s, s1, value=-1.0)
        else:
            c.mul_(c1).sub_(s * s1)
        s.mul_(c1).add_(c_s1)
        cos_sums.append(c.sum(dim=-2))
        sin_sums.append(s.sum(dim=-2))
    return cos_sums, sin_sums


def _sums_forward(p: torch.Tensor, knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    step = t_max / (knots - 1)
    cos_sums = sin_sums = None
    for rows in _row_blocks(p):
        block_cos, block_sin = _sums_of_block(p[..., rows, :], knots, step)
        if cos_sums is None:
            cos_sums, sin_sums = block_cos, block_sin
        else:
            cos_sums = [total.add_(part) for total, part in zip(cos_sums, block_cos, strict=True)]
            sin_sums = [total.add_(part) for total, part in zip(sin_sums, block_sin, strict=True)]
    count = p.new_full(p.shape[:-2] + p.shape[-1:], p.shape[-2])  # cos(0) summed over the rows
    return torch.stack([count, *cos_sums], dim=-1), torch.stack([torch.zeros_like(count), *sin_sums], dim=-1)


def _horner_block(p: torch.Tensor, real: torch.Tensor, imag: torch.Tensor, step: float) -> torch.Tensor:
    """``Re Σ_{k≥1} (real_k + i·imag_k) e^{ikΔp}`` for one row block ``p`` (coefficients ``(..., M, K)``)."""
    angle = p * step
    zr, zi = torch.cos(angle), torch.sin(angle)
    del angle
    knots = real.shape[-1]
    br = real[..., knots - 1].unsqueeze(-2).expand_as(p).clone()
    bi = imag[..., knots - 1].unsqueeze(-2).expand_as(p).clone()
    fused = values_are_readable(p)  # addcmul_ has no batching rule in torch.func
    for k in range(knots - 2, 0, -1):  # b ← α_k + z·b
        zi_bi = zi * bi
        if fused:
            bi.mul_(zr).addcmul_(zi, br)
        else:
            bi.mul_(zr).add_(zi * br)
        bi.add_(imag[..., k].unsqueeze(-2))
        br.mul_(zr).sub_(zi_bi).add_(real[..., k].unsqueeze(-2))
    return br.mul_(zr).sub_(zi * bi)  # Re(z·b)


def _sums_backward(p, grad_cos, grad_sin, knots: int, t_max: float) -> torch.Tensor:
    t = knot_values(knots, t_max)
    if builds_graph():  # knot by knot in differentiable operations
        grad = torch.zeros_like(p)
        for k in range(1, knots):
            angle = p * t[k]
            grad = grad + torch.cos(angle) * (t[k] * grad_sin[..., k]).unsqueeze(-2)
            grad = grad - torch.sin(angle) * (t[k] * grad_cos[..., k]).unsqueeze(-2)
        return grad
    t = torch.tensor(t, dtype=p.dtype, device=p.device)
    real, imag = grad_sin * t, grad_cos * t
    step = t_max / (knots - 1)
    blocks = _row_blocks(p)
    if len(blocks) == 1:
        return _horner_block(p, real, imag, step)
    grad = torch.empty_like(p)
    for rows in blocks:
        grad[..., rows, :] = _horner_block(p[..., rows, :], real, imag, step)
    return grad


@with_direct_apply
class _CharacteristicSums(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(p: torch.Tensor, knots: int, t_max: float):
        with no_autocast(p.device):
            return _sums_forward(p, knots, t_max)

    @staticmethod
    def setup_context(ctx, inputs, output):
        p, knots, t_max = inputs
        ctx.save_for_backward(p)
        ctx.save_for_forward(p)
        ctx.knots, ctx.t_max = knots, t_max

    @staticmethod
    def backward(ctx, grad_cos: torch.Tensor, grad_sin: torch.Tensor):
        (p,) = ctx.saved_tensors
        with no_autocast(p.device):
            return _sums_backward(p, grad_cos, grad_sin, ctx.knots, ctx.t_max), None, None


@with_direct_apply
class _CharacteristicSumsWithJvp(_CharacteristicSums):
    """The same, with a forward-mode derivative (:func:`torch.func.jacfwd`, :func:`torch.func.hessian`); dynamo does
    not trace Functions that define ``jvp``, so traced code takes :class:`_CharacteristicSums`."""

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, _knots, _t_max):
        (p,) = ctx.saved_tensors
        t = knot_values(ctx.knots, ctx.t_max)
        with no_autocast(p.device):
            cos_tangents, sin_tangents = [], []
            for k in range(1, ctx.knots):
                angle = p * t[k]
                cos_tangents.append(-t[k] * (torch.sin(angle) * tangent).sum(dim=-2))
                sin_tangents.append(t[k] * (torch.cos(angle) * tangent).sum(dim=-2))
            zero = torch.zeros_like(cos_tangents[0])  # the knot t = 0: constant sums
            return torch.stack([zero, *cos_tangents], dim=-1), torch.stack([zero, *sin_tangents], dim=-1)


def characteristic_sums(p: torch.Tensor, *, knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, S)``: ``C[..., m, k] = Σ_n cos(t_k p[..., n, m])`` and ``S`` the same with sines, for ``p`` of shape
    ``(..., N, M)`` in its compute dtype (float32 or float64) and the knots ``t_k = k·t_max/(knots - 1)``.

    ``C[..., 0]`` is N and ``S[..., 0]`` zero (the knot ``t = 0``). Differentiable with respect to ``p``.

    Example:
        >>> p = torch.randn(100, 3, dtype=torch.float64)
        >>> cos_sums, sin_sums = characteristic_sums(p, knots=5, t_max=2.0)
        >>> expected = torch.cos(p.unsqueeze(-1) * torch.linspace(0, 2, 5, dtype=torch.float64)).sum(dim=0)
        >>> cos_sums.shape, torch.allclose(cos_sums, expected, rtol=1e-12)
        (torch.Size([3, 5]), True)
    """
    function = _CharacteristicSums if torch.compiler.is_compiling() else _CharacteristicSumsWithJvp
    return function.apply(p, knots, t_max)


def epps_pulley_from_sums(
    cos_sums: torch.Tensor, sin_sums: torch.Tensor, count, *, knots: int, t_max: float
) -> torch.Tensor:
    """The Epps–Pulley statistic of each slice, ``(..., M)``, from the sums over ``count`` rows.

    ``count`` is the number of rows the sums ran over (the global N when they were all-reduced): a number, a 0-d
    tensor, or ``cos_sums[..., 0]`` itself (shape ``(..., M)``), which is that count.
    """
    t = torch.tensor(knot_values(knots, t_max), dtype=cos_sums.dtype, device=cos_sums.device)
    window = torch.exp(-t.square() / 2.0)
    weights = torch.tensor(trapezoid_weights(knots, t_max), dtype=cos_sums.dtype, device=cos_sums.device)
    per_knot = count.unsqueeze(-1) if isinstance(count, torch.Tensor) and count.ndim > 0 else count
    error = (cos_sums / per_knot - window).square() + (sin_sums / per_knot).square()
    return (error @ weights) * count


def draw_directions(
    dimension: int,
    num_slices: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit directions ``(dimension, num_slices)`` drawn as ``lejepa``'s ``SlicingUnivariateTest`` draws them.

    Standard normal float32 numbers from ``generator`` (on the generator's device; the default generator of
    ``device`` when ``None``), then each column divided by its norm in ``dtype``. The official code seeds its
    generator with its step counter: its first call draws ``draw_directions(D, M, generator=g)`` with ``g`` seeded 0.

    Example:
        >>> a = draw_directions(16, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> a.shape, torch.allclose(a.norm(dim=0), torch.ones(4, dtype=torch.float64))
        (torch.Size([16, 4]), True)
    """
    source = generator.device if generator is not None else device
    raw = torch.randn((dimension, num_slices), generator=generator, device=source, dtype=torch.float32)
    directions = raw.to(device=device if device is not None else raw.device, dtype=dtype)
    return directions / torch.linalg.vector_norm(directions, dim=0)


def sliced_epps_pulley(z: torch.Tensor, directions: torch.Tensor, *, knots: int, t_max: float) -> torch.Tensor:
    """SIGReg of one process: the mean over the slices (and views) of the Epps–Pulley statistic of ``z @ a``.

    ``z`` is ``(N, D)`` or ``(V, N, D)``; ``directions`` ``(D, M)`` (normalized here). Half-precision inputs are
    projected and summed in float32, float64 stays float64; the result has the compute dtype.

    Example:
        >>> from redundancy.reference import sigreg_loss_reference
        >>> z, a = torch.randn(64, 8, dtype=torch.float64), torch.randn(8, 32, dtype=torch.float64)
        >>> value = sliced_epps_pulley(z, a, knots=17, t_max=3.0)
        >>> torch.allclose(value, sigreg_loss_reference(z, a), rtol=1e-12)
        True
    """
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    with no_autocast(z.device):
        a = directions.to(device=z.device, dtype=dtype)
        a = a / torch.linalg.vector_norm(a, dim=0)
        p = torch.matmul(z.to(dtype), a)
        cos_sums, sin_sums = characteristic_sums(p, knots=knots, t_max=t_max)
        return epps_pulley_from_sums(cos_sums, sin_sums, z.shape[-2], knots=knots, t_max=t_max).mean()
