"""Kernel launches of the Triton backend: tile sizes, grids, precisions, and the forward and backward passes.

Importing this module imports Triton; :mod:`redundancy._triton.ops` imports it the first time an op runs (this
module imports nothing of ``ops``). Accumulations are in :func:`redundancy._validation.compute_dtype` of the inputs.

Tiles are fixed per kernel and dtype class (:data:`GPU_CONFIGS`, :data:`INTERPRETER_CONFIGS`), chosen so that
every variant fits the shared memory of an sm_80/sm_90 GPU and half-precision variants spill no registers
(``tests/test_kernel_resources.py`` compiles each one for sm_90 and checks). The grids follow from the shape:
every kernel that multiplies matrices launches at least :data:`MIN_PROGRAMS` programs where the shape allows
it, by narrowing the tiles of C (cross) or splitting the feature dimension of the Grams (split-K, gram).
"""

import contextlib
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from redundancy._ops.terms import barlow_twins_terms_from_summaries
from redundancy._ops.terms import diagonal_gradient
from redundancy._triton import interpreter_enabled
from redundancy._triton import kernels
from redundancy._validation import compute_dtype

#: Two programs per SM of an H100 SXM (132 SMs): the grid size the matrix-multiplying kernels aim for.
MIN_PROGRAMS = 264

_TRITON_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch options of one kernel: an output tile ``block_m × block_n``, ``block_k`` a step of
    the reduction (rows for C, features for the Grams and the gradient of the cross algorithm)."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 2


#: Kernel names, in the order a forward and a backward launch them.
KERNELS = ("statistics", "cross_tile", "gram_tile", "cross_gradient", "gram_gradient", "standardize_backward")


def dtype_class(dtype: torch.dtype) -> str:
    """``"half"`` (float16, bfloat16), ``"float32"`` or ``"float64"``: the inputs that share tile sizes."""
    return {torch.float64: "float64", torch.float32: "float32"}.get(dtype, "half")


_STREAM = TileConfig(block_m=64, block_n=64, block_k=0, num_warps=8, num_stages=1)
#: Tiles on a GPU, by kernel and dtype class. ``statistics`` uses block_m rows × block_n columns per step.
GPU_CONFIGS: dict[tuple[str, str], TileConfig] = {
    ("statistics", "half"): TileConfig(64, 64, 0, num_warps=4, num_stages=1),
    ("statistics", "float32"): TileConfig(64, 64, 0, num_warps=4, num_stages=1),
    ("statistics", "float64"): TileConfig(32, 64, 0, num_warps=4, num_stages=1),
    ("cross_tile", "half"): TileConfig(64, 64, 64, num_warps=4, num_stages=3),
    ("cross_tile", "float32"): TileConfig(64, 64, 32, num_warps=4, num_stages=3),
    ("cross_tile", "float64"): TileConfig(64, 64, 16, num_warps=4, num_stages=2),
    ("gram_tile", "half"): TileConfig(64, 64, 32, num_warps=8, num_stages=3),
    ("gram_tile", "float32"): TileConfig(64, 64, 16, num_warps=8, num_stages=3),
    ("gram_tile", "float64"): TileConfig(64, 64, 16, num_warps=8, num_stages=2),
    ("cross_gradient", "half"): TileConfig(64, 64, 32, num_warps=8, num_stages=3),
    ("cross_gradient", "float32"): TileConfig(64, 64, 32, num_warps=8, num_stages=3),
    ("cross_gradient", "float64"): TileConfig(64, 64, 16, num_warps=8, num_stages=2),
    ("gram_gradient", "half"): TileConfig(64, 64, 32, num_warps=8, num_stages=3),
    ("gram_gradient", "float32"): TileConfig(64, 64, 32, num_warps=8, num_stages=3),
    ("gram_gradient", "float64"): TileConfig(64, 64, 16, num_warps=8, num_stages=2),
    ("standardize_backward", "half"): _STREAM,
    ("standardize_backward", "float32"): _STREAM,
    ("standardize_backward", "float64"): _STREAM,
}
#: Tiles under ``TRITON_INTERPRET=1``: large tiles, so that few programs run one after the other. The tiles of C
#: of float32 inputs sum the rows in the GPU's chunks (``block_k``): each chunk is a float32 product, and the chunks
#: are summed in float64 (:mod:`.kernels`), so the interpreter rounds C where a GPU does.
INTERPRETER_CONFIGS: dict[tuple[str, str], TileConfig] = {
    (kernel, dtype): TileConfig(32, 64, 64, num_warps=4, num_stages=1)
    for kernel in KERNELS
    for dtype in ("half", "float32", "float64")
}
INTERPRETER_CONFIGS[("cross_tile", "float32")] = TileConfig(
    32, 64, GPU_CONFIGS[("cross_tile", "float32")].block_k, num_warps=4, num_stages=1
)


def _gpu_configuration() -> bool:
    """Whether launches use :data:`GPU_CONFIGS` (not interpreting) or :data:`INTERPRETER_CONFIGS`."""
    return not interpreter_enabled()


def tile_config(kernel: str, dtype: torch.dtype) -> TileConfig:
    """The tiles of ``kernel`` for inputs of ``dtype`` in this process (the interpreter's when interpreting)."""
    table = GPU_CONFIGS if _gpu_configuration() else INTERPRETER_CONFIGS
    return table[(kernel, dtype_class(dtype))]


def cross_tile_config(dtype: torch.dtype, d: int) -> TileConfig:
    """The tiles of C for D features: narrowed (64×64 → 64×32 → 32×32) until the grid has MIN_PROGRAMS."""
    config = tile_config("cross_tile", dtype)
    if not _gpu_configuration():
        return config
    narrow = dataclasses.replace(config, block_n=min(config.block_n, 32))
    candidates = (config, narrow, dataclasses.replace(narrow, block_m=min(config.block_m, 32)))
    for candidate in candidates:
        if triton.cdiv(d, candidate.block_m) * triton.cdiv(d, candidate.block_n) >= MIN_PROGRAMS:
            return candidate
    return candidates[-1]


def gram_split(n: int, d: int, config: TileConfig) -> tuple[int, int, int]:
    """``(pairs, splits, cols_per_split)`` of the Gram forward: tile pairs p ≤ q, and the feature slices.

    Enough slices that ``pairs × splits ≥ MIN_PROGRAMS`` where D has that many steps of ``block_k``.
    """
    tiles = triton.cdiv(n, config.block_m)
    pairs = tiles * (tiles + 1) // 2
    steps = triton.cdiv(d, config.block_k)
    wanted = min(steps, triton.cdiv(MIN_PROGRAMS, pairs))
    steps_per_split = max(1, steps // wanted)
    cols_per_split = steps_per_split * config.block_k
    return pairs, triton.cdiv(d, cols_per_split), cols_per_split


def statistics_split(n: int, d: int, config: TileConfig) -> tuple[int, int]:
    """``(ranges, rows_per_program)`` of the statistics: row ranges so that the grid has about MIN_PROGRAMS."""
    column_blocks = triton.cdiv(d, config.block_n)
    wanted = max(1, min(triton.cdiv(n, config.block_m), MIN_PROGRAMS // column_blocks))
    rows_per_program = triton.cdiv(triton.cdiv(n, wanted), config.block_m) * config.block_m
    return triton.cdiv(n, rows_per_program), rows_per_program


@dataclasses.dataclass(frozen=True)
class _Precision:
    acc: tl.dtype
    dot: tl.dtype
    emulate: bool
    dot_precision: str
    product_precision: str
    correlation_acc: tl.dtype  # the sum of C's tiles over the chunks of rows (C_ACC of the cross kernel)


def _precision(z: torch.Tensor) -> _Precision:
    """Accumulation and product dtypes for inputs like ``z`` (module docstring of :mod:`.kernels`)."""
    acc = _TRITON_DTYPES[compute_dtype(z)]
    if z.dtype == torch.float64:
        return _Precision(acc, acc, False, "ieee", "ieee", acc)
    if z.dtype == torch.float32:
        return _Precision(acc, acc, False, "tf32x3", "tf32x3", tl.float64)
    # A bfloat16 or float16 product uses the tensor cores whatever input_precision says ("ieee", as Triton 3.6
    # accepts for such operands); the backward products of a float32 matrix with a tile run in TF32.
    return _Precision(acc, _TRITON_DTYPES[z.dtype], interpreter_enabled(), "ieee", "tf32", acc)


_Parameters = typing.ParamSpec("_Parameters")
_Result = typing.TypeVar("_Result")


def _on_device_of_z1(launch: Callable[_Parameters, _Result]) -> Callable[_Parameters, _Result]:
    """``launch`` run with the GPU of its argument ``z1`` as the current one: Triton launches on the current
    device, not on the tensors'."""
    position = list(inspect.signature(launch).parameters).index("z1")

    @functools.wraps(launch)
    def on_device(*arguments: _Parameters.args, **keywords: _Parameters.kwargs) -> _Result:
        z1 = typing.cast(torch.Tensor, keywords["z1"] if "z1" in keywords else arguments[position])
        with torch.cuda.device(z1.device) if z1.device.type == "cuda" else contextlib.nullcontext():
            return launch(*arguments, **keywords)

    return on_device


def _divisor(n: int, correction: int) -> int:
    """The variance divisor ``N - correction`` (as :func:`torch.var` takes ``correction``)."""
    return n - correction


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a one-element tensor of ``like``'s dtype and device: float64 scalars reach float64 kernels
    exactly (a kernel argument would be rounded to float32)."""
    return torch.full((1,), value, dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------------------------------------- forward


def _product_options(standardize: bool, precision: _Precision) -> dict:
    """The compile-time options of the kernels that multiply standardized tiles (the C tiles and the Gram tiles)."""
    return dict(
        STANDARDIZE=standardize,
        ACC=precision.acc,
        DOT=precision.dot,
        EMULATE=precision.emulate,
        DOT_PRECISION=precision.dot_precision,
    )


def _cross_tiles(
    z1: torch.Tensor,
    z2: torch.Tensor,
    stats: torch.Tensor,
    target: torch.Tensor,
    coefficient: torch.Tensor,
    diagonal_grad: torch.Tensor,
    standardize: bool,
    precision: _Precision,
    *,
    gradient: bool = False,
) -> torch.Tensor:
    """One launch of :func:`kernels._cross_tile_kernel` over the tiles of C (:func:`cross_tile_config`); returns
    what it wrote: each tile's off-diagonal energy (forward), or ``dC`` (D×D) with ``gradient``."""
    n, d = z1.shape
    config = cross_tile_config(z1.dtype, d)
    grid = (triton.cdiv(d, config.block_m), triton.cdiv(d, config.block_n))
    out = torch.empty((d, d) if gradient else (grid[0] * grid[1],), dtype=stats.dtype, device=z1.device)
    kernels._cross_tile_kernel[grid](
        z1, z2, stats, target, coefficient, diagonal_grad, out, n, d, *z1.stride(), *z2.stride(),
        GRADIENT=gradient, BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        C_ACC=precision.correlation_acc, num_warps=config.num_warps, num_stages=config.num_stages,
        **_product_options(standardize, precision),
    )  # fmt: skip
    return out


def _statistics(
    z1: torch.Tensor, z2: torch.Tensor, standardize: bool, correction: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (5, D) statistics ``mean1, rstd1, mean2, rstd2, diag(C)`` and the invariance term ``Σ (1 - c_i)²``.

    With standardization ``1 - c_i`` is formed without cancellation (:func:`kernels._difference_kernel`): with
    ``r_k = Σ A_k² / N = (M2_k / N) rstd_k²``, ``1 - r_k = (M2_k (1 / divisor - 1 / N) + eps) rstd_k² ≥ 0`` and
    ``1 - c_i = Σ(A - B)² / (2N) + (1 - r_1) / 2 + (1 - r_2) / 2``.
    """
    n, d = z1.shape
    config = tile_config("statistics", z1.dtype)
    acc = _precision(z1).acc
    acc_dtype = compute_dtype(z1)
    ranges, rows_per_program = statistics_split(n, d, config)
    partial = torch.empty((ranges, 5, d), dtype=acc_dtype, device=z1.device)
    kernels._statistics_kernel[(triton.cdiv(d, config.block_n), ranges)](
        z1, z2, partial, n, d, rows_per_program, *z1.stride(), *z2.stride(),
        STANDARDIZE=standardize, BLOCK_N=config.block_m, BLOCK_D=config.block_n, ACC=acc,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )  # fmt: skip
    stats = torch.empty((5, d), dtype=acc_dtype, device=z1.device)
    complement = torch.empty(d, dtype=acc_dtype, device=z1.device)
    kernels._merge_statistics_kernel[(triton.cdiv(d, config.block_n),)](
        partial, stats, complement, _scalar(eps, stats), n, d, ranges, rows_per_program,
        _divisor(n, correction), STANDARDIZE=standardize, BLOCK_D=config.block_n, ACC=acc,
        num_warps=config.num_warps,
    )  # fmt: skip
    if not standardize:
        return stats, (stats[4] - 1).square().sum()
    difference = torch.empty((ranges, d), dtype=acc_dtype, device=z1.device)
    kernels._difference_kernel[(triton.cdiv(d, config.block_n), ranges)](
        z1, z2, stats, difference, n, d, rows_per_program, *z1.stride(), *z2.stride(),
        BLOCK_N=config.block_m, BLOCK_D=config.block_n, ACC=acc,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )  # fmt: skip
    one_minus_c = difference.sum(0).div_(2 * n).add_(complement)
    return stats, one_minus_c.square().sum()


#: The outputs of the forward custom op: invariance, redundancy, stats, gram_a, gram_b, row_sums.
ForwardOutputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@_on_device_of_z1
def forward(
    z1: torch.Tensor,
    z2: torch.Tensor,
    standardize: bool,
    correction: int,
    eps: float,
    target: float,
    algorithm: str,
) -> ForwardOutputs:
    """``(invariance, redundancy, stats, gram_a, gram_b, row_sums)``, the outputs of the forward custom op."""
    n, d = z1.shape
    precision = _precision(z1)
    acc_dtype = compute_dtype(z1)
    stats, invariance = _statistics(z1, z2, standardize, correction, eps)
    diagonal = stats[4]
    # Three distinct empty tensors where unused: custom-op outputs may not alias one another.
    gram_a, gram_b, row_sums = (z1.new_empty(0, dtype=acc_dtype) for _ in range(3))
    if algorithm == "cross":
        target_tensor = _scalar(target, stats)
        partials = _cross_tiles(z1, z2, stats, target_tensor, target_tensor, diagonal, standardize, precision)
        redundancy = partials.sum(dtype=torch.float64).to(acc_dtype)
        return invariance, redundancy, stats, gram_a, gram_b, row_sums
    config = tile_config("gram_tile", z1.dtype)
    pairs, splits, cols_per_split = gram_split(n, d, config)
    tiles = triton.cdiv(n, config.block_m)
    pair_index = torch.triu_indices(tiles, tiles, device=z1.device).to(torch.int32).contiguous()
    partial_a = torch.empty((splits, n, n), dtype=acc_dtype, device=z1.device)
    partial_b = torch.empty((splits, n, n), dtype=acc_dtype, device=z1.device)
    with_row_sums = target != 0.0
    partial_rows = torch.empty((splits, 2, n) if with_row_sums else (0,), dtype=acc_dtype, device=z1.device)
    kernels._gram_tile_kernel[(pairs, splits)](
        z1, z2, stats, pair_index, partial_a, partial_b, partial_rows, n, d, pairs, cols_per_split,
        *z1.stride(), *z2.stride(), ROW_SUMS=with_row_sums, BLOCK_M=config.block_m, BLOCK_K=config.block_k,
        num_warps=config.num_warps, num_stages=config.num_stages, **_product_options(standardize, precision),
    )  # fmt: skip
    gram_a = partial_a.sum(0) if splits > 1 else partial_a[0]
    gram_b = partial_b.sum(0) if splits > 1 else partial_b[0]
    # ‖C‖² = ⟨A Aᵀ, B Bᵀ⟩ / N² and ΣC = (A 1)·(B 1) / N in float64, so that ‖C‖² - Σ c_i² does not cancel in float32.
    frobenius_sq = torch.sum(gram_a * gram_b, dtype=torch.float64) / (n * n)
    total = None
    if with_row_sums:
        row_sums = partial_rows.sum(0)
        total = row_sums[0].to(torch.float64).dot(row_sums[1].to(torch.float64)) / n
    _, redundancy = barlow_twins_terms_from_summaries(diagonal.to(torch.float64), frobenius_sq, total, target)
    # A sum of squares: never negative, whatever rounding is left in the Grams.
    redundancy = redundancy.clamp(min=0.0).to(acc_dtype)
    return invariance, redundancy, stats, gram_a, gram_b, row_sums


# --------------------------------------------------------------------------------------------- backward


@_on_device_of_z1
def backward(
    grad_invariance: torch.Tensor,
    grad_redundancy: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    stats: torch.Tensor,
    gram_a: torch.Tensor,
    gram_b: torch.Tensor,
    row_sums: torch.Tensor,
    standardize: bool,
    correction: int,
    target: float,
    algorithm: str,
    needs_grad_z1: bool,
    needs_grad_z2: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dz1, dz2)``, the outputs of the backward custom op; ``stats`` and the rest are the forward's outputs."""
    n, d = z1.shape
    precision = _precision(z1)
    acc_dtype = stats.dtype
    grad_invariance = grad_invariance.to(acc_dtype)
    grad_redundancy = grad_redundancy.to(acc_dtype)
    diagonal_grad = diagonal_gradient(stats[4], grad_invariance, grad_redundancy, target).div_(n).contiguous()
    coefficient = (grad_redundancy * (2.0 / n)).reshape(1)
    target_tensor = _scalar(target, stats)
    dz1 = torch.empty(z1.shape, dtype=z1.dtype, device=z1.device) if needs_grad_z1 else z1.new_empty(0)
    dz2 = torch.empty(z2.shape, dtype=z2.dtype, device=z2.device) if needs_grad_z2 else z2.new_empty(0)
    views = int(needs_grad_z1) + int(needs_grad_z2)
    if views == 0:
        return dz1, dz2
    in_place = z1.dtype == acc_dtype
    # dA in acc_dtype before the standardization backward: the gradient itself when the dtypes agree.
    separate = standardize and not in_place
    work1, work2 = (torch.empty_like(dz, dtype=acc_dtype) if separate and dz.numel() else dz for dz in (dz1, dz2))
    first_view = 0 if needs_grad_z1 else 1
    kernel = "cross_gradient" if algorithm == "cross" else "gram_gradient"
    config = tile_config(kernel, z1.dtype)
    row_blocks = triton.cdiv(n, config.block_m)
    grid = (row_blocks, triton.cdiv(d, config.block_n), views)
    sums = torch.empty((views, row_blocks, 2, d) if standardize else (0,), dtype=acc_dtype, device=z1.device)
    common = dict(
        STANDARDIZE=standardize, BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        ACC=precision.acc, EMULATE=precision.emulate, PRODUCT_PRECISION=precision.product_precision,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )  # fmt: skip
    strides = (*z1.stride(), *z2.stride())
    if algorithm == "cross":
        matrix = _cross_tiles(
            z1, z2, stats, target_tensor, coefficient, diagonal_grad, standardize, precision, gradient=True
        )
        kernels._cross_gradient_kernel[grid](
            z1, z2, stats, matrix, work1, work2, dz1, dz2, sums, n, d, *strides, first_view, **common
        )
        del matrix
    else:
        kernels._gram_gradient_kernel[grid](
            z1, z2, stats, gram_a, gram_b, row_sums, diagonal_grad, coefficient, target_tensor,
            work1, work2, dz1, dz2, sums, n, d, *strides, first_view, ROW_SUMS=target != 0.0, **common,
        )  # fmt: skip
    if standardize:
        column_sums = sums.sum(1)
        stream = tile_config("standardize_backward", z1.dtype)
        kernels._standardize_backward_kernel[(triton.cdiv(n, stream.block_m), triton.cdiv(d, stream.block_n), views)](
            z1, z2, stats, work1, work2, dz1, dz2, column_sums, n, d, *strides, _divisor(n, correction),
            first_view, IN_PLACE=in_place, BLOCK_M=stream.block_m, BLOCK_N=stream.block_n, ACC=precision.acc,
            EMULATE=precision.emulate, num_warps=stream.num_warps, num_stages=stream.num_stages,
        )  # fmt: skip
    return dz1, dz2
