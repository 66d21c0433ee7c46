r"""SIGReg's empirical characteristic function, summed over rows without the N×M×K tensor.

SIGReg (Balestriero & LeCun, 2025) tests each of M random 1-D projections ``p_nm = z_n · a_m`` of the embeddings
against a standard normal with the Epps–Pulley statistic, on K knots ``t_k = k·Δ``, ``Δ = t_max / (K - 1)``. Its only
O(N) work is the pair of sums over the rows::

    C_mk = Σ_n cos(t_k p_nm),        S_mk = Σ_n sin(t_k p_nm)                      (M×K each)

from which the statistic is cheap (:func:`epps_pulley_from_sums`, M×K work)::

    T_m = N Σ_k w_k [(C_mk / N - e^{-t_k²/2})² + (S_mk / N)²]

The official code forms ``x_t = p.unsqueeze(-1) * t`` (N×M×K) and its cosine and sine, and autograd keeps them for
the backward. :func:`characteristic_sums` holds N×M×L numbers at most, L ≈ 2√K, in row blocks. The knots are equally
spaced, ``t_k = kΔ``: writing ``k = jq + r`` (``q = ⌈√(K-1)⌉``, ``r = 1, ..., q``, ``j = 0, ..., J - 1``),
``e^{i t_k p} = e^{i jqΔ p} · e^{i rΔ p}``, a "giant step" times a "baby step". Per element it evaluates the
``L = q + J`` exponentials ``Z = e^{i τ p}`` (τ the q baby and J giant steps: 8 cosines and sines for 17 knots, not
16), and the sums over the rows of all their products are one batched matrix product per slice::

    Σ_n e^{i t_k p_nm} = (Z_giantᵀ Z_baby)_m[j, r]        (complex, J×q for each of the M slices)

The backward, with ``α_mk = t_k (∂T/∂S_mk + i ∂T/∂C_mk)`` arranged as a J×q matrix ``B_m``::

    ∂/∂p_nm = Σ_k t_k (∂T/∂S_mk · cos(t_k p_nm) - ∂T/∂C_mk · sin(t_k p_nm)) = Re Σ_k α_mk e^{i t_k p_nm}
            = Re Σ_r (Z_baby)_nr (Z_giant B_m)_nr,

recomputes Z (nothing of size N×M×K is saved) and is one more batched product. Both directions are a handful of
tensor operations per row block whatever K (on a GPU each is a kernel launch, on a busy CPU a parallel region whose
threads must all be scheduled), with half the transcendental functions of the official formula and its row sums done
by matrix products. In float32 the sums and the gradient stay as close to float64 as the official float32 formula
(whose arguments ``t_k p`` are rounded too). When the caller builds a graph of the backward (``create_graph=True``,
:mod:`torch.func`), the backward is computed knot by knot with differentiable cosines and sines, so second
derivatives are exact.

**Distributed.** The sums are additive over rows: under data parallelism the global statistic is that of the sums
all-reduced over the ranks (``cos_sums[..., 0]`` is the row count, so the global N comes with them), and the
gradient of each rank's sums is the gradient of the global sums: their backward needs no collective. A rank with
no rows returns zero sums.
"""

import math

import torch

from redundancy._ops._autocast import no_autocast
from redundancy._ops._autograd import builds_graph
from redundancy._ops._autograd import with_direct_apply
from redundancy._ops._tracing import values_are_readable

#: The row blocks of the eager forward and backward hold about this many complex numbers of N×M×L (8 MiB in
#: complex64): large batches need a few block-sized buffers, not N×M×K ones. Traced code (``torch.compile``,
#: :mod:`torch.func`) runs one block.
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


def _steps(knots: int) -> tuple[int, int]:
    """``(q, J)``: the baby steps ``rΔ``, ``r = 1..q``, and giant steps ``jqΔ``, ``j = 0..J-1``, with ``qJ ≥ K - 1``."""
    baby = math.isqrt(knots - 2) + 1 if knots > 2 else 1  # ⌈√(K - 1)⌉
    return baby, -(-(knots - 1) // baby)


def _row_blocks(p: torch.Tensor, width: int) -> list[slice]:
    n, m = p.shape[-2], p.shape[-1]
    if isinstance(n, torch.SymInt) or not values_are_readable(p):
        return [slice(None)]
    batch = p.numel() // max(n * m, 1)
    rows = max(1, BLOCK_ELEMENTS // max(m * batch * width, 1))
    if rows >= n:
        return [slice(None)]
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _exponentials(p_t: torch.Tensor, knots: int, t_max: float) -> torch.Tensor:
    """``e^{i τ p}`` for the q baby steps then the J giant steps: ``(..., M, rows, q + J)`` complex, from ``p_t``
    ``(..., M, rows)`` (the projections, slices first)."""
    baby, giant = _steps(knots)
    step = t_max / (knots - 1)
    taus = [r * step for r in range(1, baby + 1)] + [j * baby * step for j in range(giant)]
    angles = p_t.unsqueeze(-1) * torch.tensor(taus, dtype=p_t.dtype, device=p_t.device)
    return torch.polar(torch.ones((), dtype=p_t.dtype, device=p_t.device), angles)


def _sums_forward(p: torch.Tensor, knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    baby, giant = _steps(knots)
    p_t = p.transpose(-1, -2)

    def block_sums(rows: slice) -> torch.Tensor:  # (..., M, J, q): Σ_n e^{i (jq + r) Δ p_n}
        z = _exponentials(p_t[..., rows], knots, t_max)
        return torch.matmul(z[..., baby:].mT, z[..., :baby])

    first, *others = _row_blocks(p, baby + giant)
    sums = block_sums(first)
    for rows in others:
        sums.add_(block_sums(rows))
    sums = sums.flatten(-2)[..., : knots - 1]
    count = p.new_full(p.shape[:-2] + p.shape[-1:], p.shape[-2]).unsqueeze(-1)  # cos(0) summed over the rows
    return torch.cat([count, sums.real], dim=-1), torch.cat([torch.zeros_like(count), sums.imag], dim=-1)


def _sums_backward(p, grad_cos, grad_sin, knots: int, t_max: float) -> torch.Tensor:
    t = knot_values(knots, t_max)
    if builds_graph():  # knot by knot in differentiable operations
        grad = torch.zeros_like(p)
        for k in range(1, knots):
            angle = p * t[k]
            grad = grad + torch.cos(angle) * (t[k] * grad_sin[..., k]).unsqueeze(-2)
            grad = grad - torch.sin(angle) * (t[k] * grad_cos[..., k]).unsqueeze(-2)
        return grad
    baby, giant = _steps(knots)
    weights = torch.tensor(t[1:], dtype=p.dtype, device=p.device)
    coefficients = torch.complex(grad_sin[..., 1:] * weights, grad_cos[..., 1:] * weights)  # α, (..., M, K - 1)
    coefficients = torch.nn.functional.pad(coefficients, (0, baby * giant - (knots - 1)))
    coefficients = coefficients.unflatten(-1, (giant, baby))  # B, (..., M, J, q)
    p_t = p.transpose(-1, -2)

    def block_gradient(rows: slice) -> torch.Tensor:  # (..., M, rows)
        z = _exponentials(p_t[..., rows], knots, t_max)
        combined = torch.matmul(z[..., baby:], coefficients)  # (..., M, rows, q)
        return (z[..., :baby] * combined).real.sum(dim=-1)

    blocks = _row_blocks(p, baby + giant)
    if len(blocks) == 1:
        return block_gradient(blocks[0]).transpose(-1, -2)
    grad_t = torch.empty_like(p_t, memory_format=torch.contiguous_format)
    for rows in blocks:
        grad_t[..., rows] = block_gradient(rows)
    return grad_t.transpose(-1, -2)


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
