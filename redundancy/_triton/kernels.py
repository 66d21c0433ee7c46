"""Triton kernels of the Barlow Twins loss: statistics, the cross and the Gram algorithms, forward and backward.

Every kernel reads the raw embeddings ``z`` (any strides, in their own dtype) and standardizes each tile as it
loads it, ``A = (z - mean) * rstd`` with the per-feature statistics that the host merges from
:func:`_statistics_kernel`; padding entries of a tile are exactly 0 after standardization, so they add nothing to
any product or sum.

Precision: statistics and Gram tiles accumulate in ``ACC`` (float32, or float64 for float64 inputs). Tiles of C
accumulate in two levels: each chunk of ``BLOCK_K`` rows is one product accumulated in ``ACC``, and the chunks are
summed in ``C_ACC`` (float64 for float32 inputs, ``ACC`` otherwise): an off-diagonal C_ij of a converged model is
a small difference of O(1) products, which one float32 running sum over all N rows would bury in its own rounding
(a half-precision tile's own rounding to ``DOT`` is far larger than that). Products of standardized tiles are
rounded to ``DOT`` first (the input dtype for float16/bfloat16
inputs, so tensor cores multiply them; ``ACC`` otherwise) and run with ``DOT_PRECISION`` (``"tf32x3"`` for
float32: three TF32 tensor-core products, float32-level accuracy). The backward products of an accumulated
matrix (``dC`` or a Gram) with a standardized tile run in ``ACC`` with ``PRODUCT_PRECISION`` (``"tf32"`` for
half-precision inputs, ``"tf32x3"`` for float32, ``"ieee"`` for float64). Row and element offsets are 64-bit.

Rounding: with ``EMULATE`` (the interpreter) a cast to bfloat16 is done by hand, to nearest even as the hardware
does (the interpreter of Triton 3.9 truncates), and the rounded value is kept in float32, so the CPU tests see
the numbers a GPU computes (:func:`_round_to`).

Work split (each kernel fills the GPU on its own, see :mod:`redundancy._triton.launch`):

- statistics: programs (column block, row range), merged by :func:`_merge_statistics_kernel` with Chan's
  formulas; a second pass (:func:`_difference_kernel`) gives ``Σ (A - B)²`` per feature, from which
  ``1 - c_i`` is a sum of non-negative terms (the invariance term does not cancel as ``c_i → 1``);
- cross: programs own tiles of C. Forward reduces each tile to its off-diagonal energy ``Σ_{i≠j}(C_ij - t)²``
  in the epilogue (C is never stored); backward computes each tile of C once more and stores
  ``dC = w (C - t) + diag(g)`` (D×D, ``ACC``), which two products turn into both views' gradients;
- gram: programs own (tile pair p ≤ q, slice of the features) of both Grams ``A Aᵀ`` and ``B Bᵀ`` (split-K:
  few row tiles still give many programs); the host sums the slices. Backward: programs own tiles of a view's
  gradient ``(w/N) G_y X + Y diag(g) - w t (Y 1) 1ᵀ`` over all N rows of the product;
- standardization backward: the gradient kernels write their tile of ``dA`` and its column sums ``Σ dA`` and
  ``Σ dA·A`` for their row block; the host adds the row blocks, and :func:`_standardize_backward_kernel`
  applies ``dz = rstd (dA - Σ dA / N - A Σ(dA A) / divisor)``.

Determinism: no atomics. Each program writes its own partial results, which the host reduces with ``torch.sum``;
every program owns the output elements it writes. No program reads what another program of the same launch
writes; the one kernel that reads and then overwrites the same elements (the in-place standardization backward)
separates the two with a barrier.
"""

import triton
import triton.language as tl


@triton.jit
def _round_to(x, DTYPE: tl.constexpr, EMULATE: tl.constexpr):
    """``x`` rounded to ``DTYPE`` to nearest even; with ``EMULATE`` the rounded value stays in float32.

    ``EMULATE`` serves the interpreter, whose float32 → bfloat16 cast truncates and whose ``tl.dot`` mishandles
    bfloat16 operands: the rounding is done on the bits, and the product of two rounded float32 tiles is the
    number a tensor core computes (every product of two bfloat16 or float16 numbers is exact in float32).
    """
    if EMULATE:
        if DTYPE == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
            result = tl.where(x == x, bits.to(tl.float32, bitcast=True), x)  # NaN stays NaN
        else:
            result = x.to(DTYPE).to(x.dtype)
    else:
        result = x.to(DTYPE)
    return result


@triton.jit
def _load_standardized(
    z_ptr, rows, cols, stride_n, stride_d, N, D, mean_ptr, rstd_ptr, STANDARDIZE: tl.constexpr, ACC: tl.constexpr
):
    """The tile ``z[rows, cols]`` standardized in ``ACC`` (0 outside rows < N, cols < D)."""
    row_mask = rows < N
    col_mask = cols < D
    mask = row_mask[:, None] & col_mask[None, :]
    z = tl.load(z_ptr + rows[:, None] * stride_n + cols[None, :] * stride_d, mask=mask, other=0.0).to(ACC)
    if STANDARDIZE:
        mean = tl.load(mean_ptr + cols, mask=col_mask, other=0.0)
        rstd = tl.load(rstd_ptr + cols, mask=col_mask, other=0.0)
        z = tl.where(mask, (z - mean[None, :]) * rstd[None, :], 0.0)
    return z


@triton.jit
def _statistics_kernel(
    z1_ptr, z2_ptr, partial_ptr,
    N, D, rows_per_program,
    stride1_n, stride1_d, stride2_n, stride2_d,
    STANDARDIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """Moments of a column block over one range of rows: ``partial[r]`` (5, D) of program (column block, r).

    Rows ``[r * rows_per_program, (r + 1) * rows_per_program)``: the means of z1 and z2, their centred sums of
    squares and their centred co-moment ``Σ (z1 - mean1)(z2 - mean2)`` (without standardization only the raw
    ``Σ z1 z2``, the rest 0). Row blocks are merged with Chan's parallel formulas (each block is centred on its
    own mean), so a large common offset costs no accuracy; the host merges the ranges the same way.
    """
    pid_d = tl.program_id(0)
    pid_r = tl.program_id(1)
    cols = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    col_mask = cols < D
    row_start = pid_r * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, N)
    mean1 = tl.zeros([BLOCK_D], dtype=ACC)
    mean2 = tl.zeros([BLOCK_D], dtype=ACC)
    moment1 = tl.zeros([BLOCK_D], dtype=ACC)
    moment2 = tl.zeros([BLOCK_D], dtype=ACC)
    comoment = tl.zeros([BLOCK_D], dtype=ACC)
    for start in range(row_start, row_end, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows < row_end)[:, None] & col_mask[None, :]
        x = tl.load(z1_ptr + rows[:, None] * stride1_n + cols[None, :] * stride1_d, mask=mask, other=0.0).to(ACC)
        y = tl.load(z2_ptr + rows[:, None] * stride2_n + cols[None, :] * stride2_d, mask=mask, other=0.0).to(ACC)
        if STANDARDIZE:
            count_block = tl.cast(tl.minimum(row_end - start, BLOCK_N), ACC)
            count_before = tl.cast(start - row_start, ACC)
            count_after = count_before + count_block
            mean1_block = tl.sum(x, axis=0) / count_block
            mean2_block = tl.sum(y, axis=0) / count_block
            x = tl.where(mask, x - mean1_block[None, :], 0.0)
            y = tl.where(mask, y - mean2_block[None, :], 0.0)
            delta1 = mean1_block - mean1
            delta2 = mean2_block - mean2
            weight = count_before * count_block / count_after
            moment1 += tl.sum(x * x, axis=0) + delta1 * delta1 * weight
            moment2 += tl.sum(y * y, axis=0) + delta2 * delta2 * weight
            comoment += tl.sum(x * y, axis=0) + delta1 * delta2 * weight
            mean1 += delta1 * (count_block / count_after)
            mean2 += delta2 * (count_block / count_after)
        else:
            comoment += tl.sum(x * y, axis=0)
    out = partial_ptr + pid_r.to(tl.int64) * 5 * D + cols
    tl.store(out, mean1, mask=col_mask)
    tl.store(out + D, moment1, mask=col_mask)
    tl.store(out + 2 * D, mean2, mask=col_mask)
    tl.store(out + 3 * D, moment2, mask=col_mask)
    tl.store(out + 4 * D, comoment, mask=col_mask)


@triton.jit
def _merge_statistics_kernel(
    partial_ptr, stats_ptr, complement_ptr, eps_ptr,
    N, D, ranges, rows_per_program, divisor,
    STANDARDIZE: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """Merge the ``ranges`` row ranges of :func:`_statistics_kernel` (Chan's formulas) into ``stats`` (5, D):
    ``mean1, rstd1, mean2, rstd2, diag(C)``, and ``complement`` (D): ``((1 - r_1) + (1 - r_2)) / 2`` with
    ``1 - r_k = (M2_k (1 / divisor - 1 / N) + eps) rstd_k²`` (see :func:`_difference_kernel`).

    ``eps`` is a one-element tensor of ``ACC``: a float64 eps reaches a float64 computation unrounded.
    """
    cols = (tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    col_mask = cols < D
    mean1 = tl.zeros([BLOCK_D], dtype=ACC)
    mean2 = tl.zeros([BLOCK_D], dtype=ACC)
    moment1 = tl.zeros([BLOCK_D], dtype=ACC)
    moment2 = tl.zeros([BLOCK_D], dtype=ACC)
    comoment = tl.zeros([BLOCK_D], dtype=ACC)
    count = tl.zeros([BLOCK_D], dtype=ACC)
    for r in range(0, ranges):
        block = partial_ptr + r * 5 * D + cols
        block_mean1 = tl.load(block, mask=col_mask, other=0.0)
        block_moment1 = tl.load(block + D, mask=col_mask, other=0.0)
        block_mean2 = tl.load(block + 2 * D, mask=col_mask, other=0.0)
        block_moment2 = tl.load(block + 3 * D, mask=col_mask, other=0.0)
        block_comoment = tl.load(block + 4 * D, mask=col_mask, other=0.0)
        block_count = tl.cast(tl.minimum(rows_per_program, N - r * rows_per_program), ACC)
        total = count + block_count
        delta1 = block_mean1 - mean1
        delta2 = block_mean2 - mean2
        weight = count * block_count / total
        moment1 += block_moment1 + delta1 * delta1 * weight
        moment2 += block_moment2 + delta2 * delta2 * weight
        comoment += block_comoment + delta1 * delta2 * weight
        mean1 += delta1 * (block_count / total)
        mean2 += delta2 * (block_count / total)
        count = total
    if STANDARDIZE:
        eps = tl.load(eps_ptr)
        divisor_acc = tl.cast(divisor, ACC)
        # Columns past D get variance 1, not eps (which may be 0): no division by zero in unused lanes.
        rstd1 = 1.0 / tl.sqrt(tl.where(col_mask, moment1 / divisor_acc + eps, 1.0))
        rstd2 = 1.0 / tl.sqrt(tl.where(col_mask, moment2 / divisor_acc + eps, 1.0))
        diagonal = comoment * rstd1 * rstd2 / N
        # 1 / divisor - 1 / N without cancellation: 0 for correction=0, 1 / (N (N - 1)) for correction=1.
        excess = tl.cast(N - divisor, ACC) / (divisor_acc * tl.cast(N, ACC))
        complement = 0.5 * ((moment1 * excess + eps) * rstd1 * rstd1 + (moment2 * excess + eps) * rstd2 * rstd2)
    else:
        rstd1 = tl.full([BLOCK_D], 1.0, dtype=ACC)
        rstd2 = tl.full([BLOCK_D], 1.0, dtype=ACC)
        diagonal = comoment / N
        complement = tl.zeros([BLOCK_D], dtype=ACC)
    tl.store(stats_ptr + cols, mean1, mask=col_mask)
    tl.store(stats_ptr + D + cols, rstd1, mask=col_mask)
    tl.store(stats_ptr + 2 * D + cols, mean2, mask=col_mask)
    tl.store(stats_ptr + 3 * D + cols, rstd2, mask=col_mask)
    tl.store(stats_ptr + 4 * D + cols, diagonal, mask=col_mask)
    tl.store(complement_ptr + cols, complement, mask=col_mask)


@triton.jit
def _difference_kernel(
    z1_ptr, z2_ptr, stats_ptr, partial_ptr,
    N, D, rows_per_program,
    stride1_n, stride1_d, stride2_n, stride2_d,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """``partial[r] = Σ (A - B)²`` over one range of rows, per feature, of the standardized views (R×D).

    With ``r_k = Σ A_k² / N`` this gives ``1 - c_i = Σ(A - B)² / (2N) + (1 - r_1) / 2 + (1 - r_2) / 2``, a sum of
    non-negative terms: the invariance term without the cancellation of ``1 - c_i`` as ``c_i → 1``.
    """
    pid_d = tl.program_id(0)
    pid_r = tl.program_id(1)
    cols = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    row_start = pid_r * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, N)
    total = tl.zeros([BLOCK_D], dtype=ACC)
    for start in range(row_start, row_end, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        a = _load_standardized(
            z1_ptr, rows, cols, stride1_n, stride1_d, row_end, D, stats_ptr, stats_ptr + D, True, ACC
        )
        b = _load_standardized(
            z2_ptr, rows, cols, stride2_n, stride2_d, row_end, D, stats_ptr + 2 * D, stats_ptr + 3 * D, True, ACC
        )
        total += tl.sum((a - b) * (a - b), axis=0)
    tl.store(partial_ptr + pid_r.to(tl.int64) * D + cols, total, mask=cols < D)


@triton.jit
def _cross_tile_kernel(
    z1_ptr, z2_ptr, stats_ptr, target_ptr, coefficient_ptr, diagonal_grad_ptr, out_ptr,
    N, D,
    stride1_n, stride1_d, stride2_n, stride2_d,
    STANDARDIZE: tl.constexpr, GRADIENT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, DOT: tl.constexpr, EMULATE: tl.constexpr, DOT_PRECISION: tl.constexpr, C_ACC: tl.constexpr,
):  # fmt: skip
    """The tile (i, j) of ``C = AᵀB / N``: its off-diagonal energy (forward) or its tile of ``dC`` (backward).

    The chunks of ``BLOCK_K`` rows are summed in ``C_ACC`` (module docstring); C is then rounded to ``ACC``.

    Forward (``GRADIENT`` false): ``out[program] = Σ_{i≠j} (C_ij - t)²`` over the tile, with ``t = target[0]``;
    summing off the diagonal directly, not ``‖C‖² - Σ c_i²``, leaves nothing to cancel near convergence.
    Backward: ``out[i, j] = w (C_ij - t) + [i = j] g_i`` (D×D) with ``w = coefficient[0]``, ``g = diagonal_grad``.
    """
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    cols_i = (pid_i * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols_j = (pid_j * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    tile = tl.zeros([BLOCK_M, BLOCK_N], dtype=C_ACC)
    for start in range(0, N, BLOCK_K):
        rows = (start + tl.arange(0, BLOCK_K)).to(tl.int64)
        a = _load_standardized(
            z1_ptr, rows, cols_i, stride1_n, stride1_d, N, D, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
        )
        b = _load_standardized(
            z2_ptr, rows, cols_j, stride2_n, stride2_d, N, D, stats_ptr + 2 * D, stats_ptr + 3 * D, STANDARDIZE, ACC
        )
        product = tl.dot(
            tl.trans(_round_to(a, DOT, EMULATE)), _round_to(b, DOT, EMULATE), input_precision=DOT_PRECISION
        )
        tile += product.to(C_ACC)  # with C_ACC = ACC the compiler folds this sum into the product's accumulator
    target = tl.load(target_ptr)
    valid = (cols_i < D)[:, None] & (cols_j < D)[None, :]
    diagonal = cols_i[:, None] == cols_j[None, :]
    shifted = (tile / N).to(ACC) - target
    if GRADIENT:
        scale = tl.load(coefficient_ptr)
        diagonal_grad = tl.load(diagonal_grad_ptr + cols_i, mask=cols_i < D, other=0.0)
        grad = scale * shifted + tl.where(diagonal, diagonal_grad[:, None], 0.0)
        tl.store(out_ptr + cols_i[:, None] * D + cols_j[None, :], grad, mask=valid)
    else:
        off_diagonal = tl.where(valid & (cols_i[:, None] != cols_j[None, :]), shifted, 0.0)
        program = pid_i * tl.num_programs(1) + pid_j
        tl.store(out_ptr + program, tl.sum(tl.sum(off_diagonal * off_diagonal, axis=1), axis=0))


@triton.jit
def _gram_tile_kernel(
    z1_ptr, z2_ptr, stats_ptr, pairs_ptr, gram_a_ptr, gram_b_ptr, row_sums_ptr,
    N, D, pair_count, cols_per_split,
    stride1_n, stride1_d, stride2_n, stride2_d,
    STANDARDIZE: tl.constexpr, ROW_SUMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, DOT: tl.constexpr, EMULATE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Program (k, s): tile (p, q) = ``pairs[:, k]`` (p ≤ q) of both Grams over the features of slice s.

    Writes the slice's share of ``A Aᵀ`` and ``B Bᵀ`` to ``gram[s]`` (S×N×N each) at tile (p, q) and at its
    mirror (q, p); with ``ROW_SUMS`` the diagonal tiles also write the slice's share of ``A 1`` and ``B 1`` to
    ``row_sums[s]`` (S×2×N). The host adds the S slices.
    """
    pid = tl.program_id(0)
    split = tl.program_id(1)
    tile_p = tl.load(pairs_ptr + pid)
    tile_q = tl.load(pairs_ptr + pair_count + pid)
    rows_p = (tile_p * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    rows_q = (tile_q * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    col_start = split * cols_per_split
    col_end = tl.minimum(col_start + cols_per_split, D)
    gram_a = tl.zeros([BLOCK_M, BLOCK_M], dtype=ACC)
    gram_b = tl.zeros([BLOCK_M, BLOCK_M], dtype=ACC)
    row_sum_a = tl.zeros([BLOCK_M], dtype=ACC)
    row_sum_b = tl.zeros([BLOCK_M], dtype=ACC)
    for start in range(col_start, col_end, BLOCK_K):
        cols = (start + tl.arange(0, BLOCK_K)).to(tl.int64)
        a_p = _load_standardized(
            z1_ptr, rows_p, cols, stride1_n, stride1_d, N, col_end, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
        )
        a_q = _load_standardized(
            z1_ptr, rows_q, cols, stride1_n, stride1_d, N, col_end, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
        )
        b_p = _load_standardized(
            z2_ptr, rows_p, cols, stride2_n, stride2_d, N, col_end, stats_ptr + 2 * D, stats_ptr + 3 * D,
            STANDARDIZE, ACC,
        )  # fmt: skip
        b_q = _load_standardized(
            z2_ptr, rows_q, cols, stride2_n, stride2_d, N, col_end, stats_ptr + 2 * D, stats_ptr + 3 * D,
            STANDARDIZE, ACC,
        )  # fmt: skip
        gram_a += tl.dot(
            _round_to(a_p, DOT, EMULATE), tl.trans(_round_to(a_q, DOT, EMULATE)), input_precision=DOT_PRECISION
        )
        gram_b += tl.dot(
            _round_to(b_p, DOT, EMULATE), tl.trans(_round_to(b_q, DOT, EMULATE)), input_precision=DOT_PRECISION
        )
        if ROW_SUMS:
            row_sum_a += tl.sum(a_p, axis=1)
            row_sum_b += tl.sum(b_p, axis=1)
    mask = (rows_p < N)[:, None] & (rows_q < N)[None, :]
    offsets = split.to(tl.int64) * N * N + rows_p[:, None] * N + rows_q[None, :]
    tl.store(gram_a_ptr + offsets, gram_a, mask=mask)
    tl.store(gram_b_ptr + offsets, gram_b, mask=mask)
    if tile_p != tile_q:
        mirrored = split.to(tl.int64) * N * N + rows_q[None, :] * N + rows_p[:, None]
        tl.store(gram_a_ptr + mirrored, gram_a, mask=mask)
        tl.store(gram_b_ptr + mirrored, gram_b, mask=mask)
    if ROW_SUMS:
        if tile_p == tile_q:
            out = row_sums_ptr + split.to(tl.int64) * 2 * N + rows_p
            tl.store(out, row_sum_a, mask=rows_p < N)
            tl.store(out + N, row_sum_b, mask=rows_p < N)


@triton.jit
def _gradient_epilogue(
    grad,
    x_ptr, stats_x_ptr, work_ptr, dz_ptr, sums_ptr,
    rows, cols, N, D,
    stride_x_n, stride_x_d,
    STANDARDIZE: tl.constexpr, ACC: tl.constexpr, EMULATE: tl.constexpr,
):  # fmt: skip
    """Store a tile of ``dA``: to ``dz`` directly, or to ``work`` with its column sums ``Σ dA``, ``Σ dA·A``.

    ``sums`` is this view's (row blocks, 2, D) buffer; this program writes row ``program_id(0)`` of it.
    """
    mask = (rows < N)[:, None] & (cols < D)[None, :]
    offsets = rows[:, None] * D + cols[None, :]
    if STANDARDIZE:
        grad = tl.where(mask, grad, 0.0)
        x = _load_standardized(
            x_ptr, rows, cols, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
        )
        tl.store(work_ptr + offsets, grad, mask=mask)
        out = sums_ptr + tl.program_id(0).to(tl.int64) * 2 * D + cols
        tl.store(out, tl.sum(grad, axis=0), mask=cols < D)
        tl.store(out + D, tl.sum(grad * x, axis=0), mask=cols < D)
    else:
        tl.store(dz_ptr + offsets, _round_to(grad, dz_ptr.dtype.element_ty, EMULATE), mask=mask)


@triton.jit
def _cross_view_gradient(
    y_ptr, stats_y_ptr, matrix_ptr, matrix_stride_k, matrix_stride_n,
    x_ptr, stats_x_ptr, work_ptr, dz_ptr, sums_ptr,
    N, D,
    stride_y_n, stride_y_d, stride_x_n, stride_x_d,
    STANDARDIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, EMULATE: tl.constexpr, PRODUCT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Tile (rows, cols) of ``dX = Y Mᵀ`` (or ``Y M``: the strides of ``matrix`` say which), then its epilogue."""
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = (tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    grad = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for start in range(0, D, BLOCK_K):
        ks = (start + tl.arange(0, BLOCK_K)).to(tl.int64)
        y = _load_standardized(
            y_ptr, rows, ks, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
        )
        matrix_mask = (ks < D)[:, None] & (cols < D)[None, :]
        matrix = tl.load(
            matrix_ptr + ks[:, None] * matrix_stride_k + cols[None, :] * matrix_stride_n, mask=matrix_mask, other=0.0
        )
        grad += tl.dot(y, matrix, input_precision=PRODUCT_PRECISION)
    _gradient_epilogue(
        grad, x_ptr, stats_x_ptr, work_ptr, dz_ptr, sums_ptr, rows, cols, N, D, stride_x_n, stride_x_d,
        STANDARDIZE, ACC, EMULATE,
    )  # fmt: skip


@triton.jit
def _cross_gradient_kernel(
    z1_ptr, z2_ptr, stats_ptr, matrix_ptr, work1_ptr, work2_ptr, dz1_ptr, dz2_ptr, sums_ptr,
    N, D,
    stride1_n, stride1_d, stride2_n, stride2_d,
    first_view,
    STANDARDIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, EMULATE: tl.constexpr, PRODUCT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Both views' gradients from ``dC`` (``matrix``, D×D): ``dA = B dCᵀ`` and ``dB = A dC``.

    Program (row block, column block, v) computes view ``first_view + v`` (0: z1, 1: z2).
    """
    row_blocks = tl.cdiv(N, BLOCK_M)
    if tl.program_id(2) + first_view == 0:
        _cross_view_gradient(
            z2_ptr, stats_ptr + 2 * D, matrix_ptr, 1, D, z1_ptr, stats_ptr, work1_ptr, dz1_ptr, sums_ptr,
            N, D, stride2_n, stride2_d, stride1_n, stride1_d,
            STANDARDIZE, BLOCK_M, BLOCK_N, BLOCK_K, ACC, EMULATE, PRODUCT_PRECISION,
        )  # fmt: skip
    else:
        _cross_view_gradient(
            z1_ptr, stats_ptr, matrix_ptr, D, 1, z2_ptr, stats_ptr + 2 * D, work2_ptr, dz2_ptr,
            sums_ptr + tl.program_id(2).to(tl.int64) * row_blocks * 2 * D,
            N, D, stride1_n, stride1_d, stride2_n, stride2_d,
            STANDARDIZE, BLOCK_M, BLOCK_N, BLOCK_K, ACC, EMULATE, PRODUCT_PRECISION,
        )  # fmt: skip


@triton.jit
def _gram_view_gradient(
    x_ptr, y_ptr, stats_x_ptr, stats_y_ptr, gram_y_ptr, row_sum_y_ptr,
    diagonal_grad_ptr, coefficient_ptr, target_ptr, work_ptr, dz_ptr, sums_ptr,
    N, D,
    stride_x_n, stride_x_d, stride_y_n, stride_y_d,
    STANDARDIZE: tl.constexpr, ROW_SUMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, EMULATE: tl.constexpr, PRODUCT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Tile (rows, cols) of ``dX = (w/N) G_y X + Y diag(g) - w t (Y 1) 1ᵀ`` (:mod:`redundancy._ops.gram`)."""
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = (tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    product = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for start in range(0, N, BLOCK_K):
        ks = (start + tl.arange(0, BLOCK_K)).to(tl.int64)
        gram_mask = (rows < N)[:, None] & (ks < N)[None, :]
        gram = tl.load(gram_y_ptr + rows[:, None] * N + ks[None, :], mask=gram_mask, other=0.0)
        x = _load_standardized(
            x_ptr, ks, cols, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
        )
        product += tl.dot(gram, x, input_precision=PRODUCT_PRECISION)
    scale = tl.load(coefficient_ptr)
    diagonal_grad = tl.load(diagonal_grad_ptr + cols, mask=cols < D, other=0.0)
    y = _load_standardized(
        y_ptr, rows, cols, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
    )
    grad = product * (scale / N) + y * diagonal_grad[None, :]
    if ROW_SUMS:
        target = tl.load(target_ptr)
        row_sum = tl.load(row_sum_y_ptr + rows, mask=rows < N, other=0.0)
        grad -= (scale * target) * row_sum[:, None]
    _gradient_epilogue(
        grad, x_ptr, stats_x_ptr, work_ptr, dz_ptr, sums_ptr, rows, cols, N, D, stride_x_n, stride_x_d,
        STANDARDIZE, ACC, EMULATE,
    )  # fmt: skip


@triton.jit
def _gram_gradient_kernel(
    z1_ptr, z2_ptr, stats_ptr, gram_a_ptr, gram_b_ptr, row_sums_ptr,
    diagonal_grad_ptr, coefficient_ptr, target_ptr, work1_ptr, work2_ptr, dz1_ptr, dz2_ptr, sums_ptr,
    N, D,
    stride1_n, stride1_d, stride2_n, stride2_d,
    first_view,
    STANDARDIZE: tl.constexpr, ROW_SUMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, EMULATE: tl.constexpr, PRODUCT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Both views' gradients (:func:`_gram_view_gradient`): z1's uses ``B Bᵀ``, z2's ``A Aᵀ``.

    Program (row block, column block, v) computes view ``first_view + v`` (0: z1, 1: z2).
    """
    row_blocks = tl.cdiv(N, BLOCK_M)
    if tl.program_id(2) + first_view == 0:
        _gram_view_gradient(
            z1_ptr, z2_ptr, stats_ptr, stats_ptr + 2 * D, gram_b_ptr, row_sums_ptr + N, diagonal_grad_ptr,
            coefficient_ptr, target_ptr, work1_ptr, dz1_ptr, sums_ptr,
            N, D, stride1_n, stride1_d, stride2_n, stride2_d,
            STANDARDIZE, ROW_SUMS, BLOCK_M, BLOCK_N, BLOCK_K, ACC, EMULATE, PRODUCT_PRECISION,
        )  # fmt: skip
    else:
        _gram_view_gradient(
            z2_ptr, z1_ptr, stats_ptr + 2 * D, stats_ptr, gram_a_ptr, row_sums_ptr, diagonal_grad_ptr,
            coefficient_ptr, target_ptr, work2_ptr, dz2_ptr,
            sums_ptr + tl.program_id(2).to(tl.int64) * row_blocks * 2 * D,
            N, D, stride2_n, stride2_d, stride1_n, stride1_d,
            STANDARDIZE, ROW_SUMS, BLOCK_M, BLOCK_N, BLOCK_K, ACC, EMULATE, PRODUCT_PRECISION,
        )  # fmt: skip


@triton.jit
def _standardize_view_backward(
    x_ptr, stats_x_ptr, work_ptr, dz_ptr, sums_ptr,
    N, D,
    stride_x_n, stride_x_d,
    divisor,
    IN_PLACE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr, EMULATE: tl.constexpr,
):  # fmt: skip
    """``dz = rstd (dA - Σ dA / N - A Σ(dA A) / divisor)`` on one tile; ``sums`` is (2, D): ``Σ dA, Σ dA·A``."""
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = (tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    col_mask = cols < D
    mask = (rows < N)[:, None] & col_mask[None, :]
    offsets = rows[:, None] * D + cols[None, :]
    rstd = tl.load(stats_x_ptr + D + cols, mask=col_mask, other=0.0)
    first_mean = tl.load(sums_ptr + cols, mask=col_mask, other=0.0) / N
    second_mean = tl.load(sums_ptr + D + cols, mask=col_mask, other=0.0) / divisor
    grad = tl.load(work_ptr + offsets, mask=mask, other=0.0)
    x = _load_standardized(x_ptr, rows, cols, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, True, ACC)
    dz = (grad - first_mean[None, :] - x * second_mean[None, :]) * rstd[None, :]
    if IN_PLACE:
        tl.debug_barrier()  # every thread has read its dA before any thread overwrites dA with dz
    tl.store(dz_ptr + offsets, _round_to(dz, dz_ptr.dtype.element_ty, EMULATE), mask=mask)


@triton.jit
def _standardize_backward_kernel(
    z1_ptr, z2_ptr, stats_ptr, work1_ptr, work2_ptr, dz1_ptr, dz2_ptr, sums_ptr,
    N, D,
    stride1_n, stride1_d, stride2_n, stride2_d,
    divisor, first_view,
    IN_PLACE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr, EMULATE: tl.constexpr,
):  # fmt: skip
    """The standardization backward of both views; ``sums`` is (views, 2, D). Program (rows, cols, v)."""
    if tl.program_id(2) + first_view == 0:
        _standardize_view_backward(
            z1_ptr, stats_ptr, work1_ptr, dz1_ptr, sums_ptr, N, D, stride1_n, stride1_d, divisor,
            IN_PLACE, BLOCK_M, BLOCK_N, ACC, EMULATE,
        )  # fmt: skip
    else:
        _standardize_view_backward(
            z2_ptr, stats_ptr + 2 * D, work2_ptr, dz2_ptr, sums_ptr + tl.program_id(2).to(tl.int64) * 2 * D,
            N, D, stride2_n, stride2_d, divisor, IN_PLACE, BLOCK_M, BLOCK_N, ACC, EMULATE,
        )  # fmt: skip
