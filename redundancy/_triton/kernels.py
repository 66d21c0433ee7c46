"""Triton kernels of the Barlow Twins loss: statistics, the cross and the Gram algorithms, forward and backward.

Every kernel reads the raw embeddings ``z`` (any strides, in their own dtype) and standardizes each tile as it
loads it, ``A = (z - mean) * rstd`` with the per-feature statistics of :func:`_statistics_kernel`; padding
entries of a tile are exactly 0 after standardization, so they add nothing to any product or sum.

Precision: statistics, tiles of C and Gram tiles accumulate in ``ACC`` (float32, or float64 for float64
inputs). Products of standardized tiles run in ``DOT`` (the input dtype for float16/bfloat16 inputs, so tensor
cores are used, otherwise ``ACC``); the backward products of an accumulated tile (C or a Gram) with a
standardized tile run in ``ACC`` with ``PRODUCT_PRECISION`` (``"tf32"`` for half-precision inputs,
``"ieee"`` otherwise). Row and element offsets are 64-bit.

Backward: one launch computes both views' gradients; program (i, v) owns ``BLOCK_OWNED`` gradient columns of
view v over all rows, so it also reduces them for the standardization backward. The cross backward recomputes
the tiles of C it needs (no D×D buffer); the Gram backward reads the Grams the forward stored (N×N each).

Determinism: no atomics. Each program writes its own partial sums, which the host reduces with one
``torch.sum``; every program owns the output columns it writes.
"""

import triton
import triton.language as tl


@triton.jit
def _load_standardized(
    z_ptr, rows, cols, stride_n, stride_d, N, D, mean_ptr, rstd_ptr, STANDARDIZE: tl.constexpr, ACC: tl.constexpr
):
    """The tile ``z[rows, cols]`` standardized in ``ACC`` (0 outside the N×D matrix)."""
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
def _dot_operand(tile, DOT: tl.constexpr, DOT_UPCAST: tl.constexpr, ACC: tl.constexpr):
    """``tile`` rounded to ``DOT``, the dtype of the tensor-core product; back in ``ACC`` when ``DOT_UPCAST``.

    ``DOT_UPCAST`` serves the interpreter, whose ``tl.dot`` mishandles bfloat16 operands: the product of two
    bfloat16-rounded tiles in ``ACC`` is the number a tensor core computes (every product is exact in float32).
    """
    rounded = tile.to(DOT)
    if DOT_UPCAST:
        rounded = rounded.to(ACC)
    return rounded


@triton.jit
def _statistics_kernel(
    z1_ptr,
    z2_ptr,
    stats_ptr,
    N,
    D,
    stride1_n,
    stride1_d,
    stride2_n,
    stride2_d,
    eps,
    divisor,
    STANDARDIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
):
    """Per-feature mean and ``1/sqrt(var + eps)`` of both views and the diagonal of C, in one pass over the rows.

    ``stats`` is a (5, D) tensor: ``mean1, rstd1, mean2, rstd2, diagonal``. Row blocks are merged with Chan's
    parallel formulas (each block is centred on its own mean), so a large common offset costs no accuracy.
    Without standardization the means are 0, the rstd 1 and the diagonal is ``Σ_n z1 z2 / N``.
    """
    pid = tl.program_id(0)
    cols = (pid * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    col_mask = cols < D
    mean1 = tl.zeros([BLOCK_D], dtype=ACC)
    mean2 = tl.zeros([BLOCK_D], dtype=ACC)
    moment1 = tl.zeros([BLOCK_D], dtype=ACC)
    moment2 = tl.zeros([BLOCK_D], dtype=ACC)
    comoment = tl.zeros([BLOCK_D], dtype=ACC)
    for start in range(0, N, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows < N)[:, None] & col_mask[None, :]
        x = tl.load(z1_ptr + rows[:, None] * stride1_n + cols[None, :] * stride1_d, mask=mask, other=0.0).to(ACC)
        y = tl.load(z2_ptr + rows[:, None] * stride2_n + cols[None, :] * stride2_d, mask=mask, other=0.0).to(ACC)
        if STANDARDIZE:
            count_block = tl.cast(tl.minimum(N - start, BLOCK_N), ACC)
            count_before = tl.cast(start, ACC)
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
    if STANDARDIZE:
        # Columns past D get variance 1, not eps (which may be 0): no division by zero in unused lanes.
        rstd1 = 1.0 / tl.sqrt(tl.where(col_mask, moment1 / divisor + eps, 1.0))
        rstd2 = 1.0 / tl.sqrt(tl.where(col_mask, moment2 / divisor + eps, 1.0))
        diagonal = comoment * rstd1 * rstd2 / N
    else:
        rstd1 = tl.full([BLOCK_D], 1.0, dtype=ACC)
        rstd2 = tl.full([BLOCK_D], 1.0, dtype=ACC)
        diagonal = comoment / N
    tl.store(stats_ptr + cols, mean1, mask=col_mask)
    tl.store(stats_ptr + D + cols, rstd1, mask=col_mask)
    tl.store(stats_ptr + 2 * D + cols, mean2, mask=col_mask)
    tl.store(stats_ptr + 3 * D + cols, rstd2, mask=col_mask)
    tl.store(stats_ptr + 4 * D + cols, diagonal, mask=col_mask)


@triton.jit
def _cross_forward_kernel(
    z1_ptr,
    z2_ptr,
    stats_ptr,
    partial_ptr,
    N,
    D,
    stride1_n,
    stride1_d,
    stride2_n,
    stride2_d,
    STANDARDIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One tile of ``C = AᵀB / N`` (never stored): writes its ``Σ C_ij²`` and ``Σ C_ij`` to ``partial[pid]``."""
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    cols_i = (pid_i * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    cols_j = (pid_j * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    tile = tl.zeros([BLOCK_D, BLOCK_D], dtype=ACC)
    for start in range(0, N, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        a = _load_standardized(
            z1_ptr, rows, cols_i, stride1_n, stride1_d, N, D, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
        )
        b = _load_standardized(
            z2_ptr, rows, cols_j, stride2_n, stride2_d, N, D, stats_ptr + 2 * D, stats_ptr + 3 * D, STANDARDIZE, ACC
        )
        tile += tl.dot(
            tl.trans(_dot_operand(a, DOT, DOT_UPCAST, ACC)),
            _dot_operand(b, DOT, DOT_UPCAST, ACC),
            input_precision=DOT_PRECISION,
        )
    tile = tile / N
    program = pid_i * tl.num_programs(1) + pid_j
    tl.store(partial_ptr + 2 * program, tl.sum(tl.sum(tile * tile, axis=1), axis=0))
    tl.store(partial_ptr + 2 * program + 1, tl.sum(tl.sum(tile, axis=1), axis=0))


@triton.jit
def _standardize_backward_columns(
    work_ptr,
    dz_ptr,
    x_ptr,
    cols,
    first_sum,
    second_sum,
    N,
    D,
    stride_n,
    stride_d,
    mean_ptr,
    rstd_ptr,
    divisor,
    BLOCK_N: tl.constexpr,
    ACC: tl.constexpr,
):
    """``dz = rstd (dA - Σ_n dA / N - A Σ_n(dA A) / divisor)`` for the column block ``cols`` of one view.

    ``work`` holds ``dA`` (N×D, contiguous, ``ACC``); ``first_sum`` and ``second_sum`` are its column sums
    ``Σ_n dA`` and ``Σ_n dA·A``. ``dz`` is N×D contiguous in the gradient dtype and may be ``work`` itself.
    """
    col_mask = cols < D
    rstd = tl.load(rstd_ptr + cols, mask=col_mask, other=0.0)
    first_mean = first_sum / N
    second_mean = second_sum / divisor
    for start in range(0, N, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows < N)[:, None] & col_mask[None, :]
        offsets = rows[:, None] * D + cols[None, :]
        grad = tl.load(work_ptr + offsets, mask=mask, other=0.0)
        x = _load_standardized(x_ptr, rows, cols, stride_n, stride_d, N, D, mean_ptr, rstd_ptr, True, ACC)
        dz = (grad - first_mean[None, :] - x * second_mean[None, :]) * rstd[None, :]
        tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cross_view_gradient(
    x_ptr,
    y_ptr,
    stats_x_ptr,
    stats_y_ptr,
    diagonal_grad_ptr,
    coefficient_ptr,
    work_ptr,
    dz_ptr,
    N,
    D,
    stride_x_n,
    stride_x_d,
    stride_y_n,
    stride_y_d,
    target,
    divisor,
    STANDARDIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    PRODUCT_PRECISION: tl.constexpr,
    BLOCK_OWNED: tl.constexpr,
):
    """The gradient of view X for its column block ``pid``, recomputing tiles of ``C_xy = XᵀY / N``.

    ``dX = w · Y (C_xy - t)ᵀ + Y diag(g)`` with ``w = coefficient[0]`` and ``g = diagonal_grad`` (the
    cross algorithm's backward of :mod:`redundancy._ops.cross`, the t-term folded into the tile), then the
    standardization backward. ``work`` (N×D, zero-initialized, ``ACC``) accumulates ``Y (C_xy - t)ᵀ`` over
    the column blocks of Y; only this program touches its columns, so the order is fixed.
    """
    pid = tl.program_id(0)
    cols_i = (pid * BLOCK_OWNED + tl.arange(0, BLOCK_OWNED)).to(tl.int64)
    mask_i = cols_i < D
    for start_j in range(0, D, BLOCK_D):
        cols_j = (start_j + tl.arange(0, BLOCK_D)).to(tl.int64)
        tile = tl.zeros([BLOCK_OWNED, BLOCK_D], dtype=ACC)
        for start in range(0, N, BLOCK_N):
            rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
            x = _load_standardized(
                x_ptr, rows, cols_i, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
            )
            y = _load_standardized(
                y_ptr, rows, cols_j, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
            )
            tile += tl.dot(
                tl.trans(_dot_operand(x, DOT, DOT_UPCAST, ACC)),
                _dot_operand(y, DOT, DOT_UPCAST, ACC),
                input_precision=DOT_PRECISION,
            )
        valid = mask_i[:, None] & (cols_j < D)[None, :]
        tile = tl.where(valid, tile / N - target, 0.0)
        for start in range(0, N, BLOCK_N):
            rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
            y = _load_standardized(
                y_ptr, rows, cols_j, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
            )
            mask = (rows < N)[:, None] & mask_i[None, :]
            offsets = rows[:, None] * D + cols_i[None, :]
            partial = tl.load(work_ptr + offsets, mask=mask, other=0.0)
            partial += tl.dot(y, tl.trans(tile), input_precision=PRODUCT_PRECISION)
            tl.store(work_ptr + offsets, partial, mask=mask)

    scale = tl.load(coefficient_ptr)
    diagonal_grad = tl.load(diagonal_grad_ptr + cols_i, mask=mask_i, other=0.0)
    first_sum = tl.zeros([BLOCK_OWNED], dtype=ACC)
    second_sum = tl.zeros([BLOCK_OWNED], dtype=ACC)
    for start in range(0, N, BLOCK_N):
        rows = (start + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows < N)[:, None] & mask_i[None, :]
        offsets = rows[:, None] * D + cols_i[None, :]
        y = _load_standardized(
            y_ptr, rows, cols_i, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
        )
        grad = tl.load(work_ptr + offsets, mask=mask, other=0.0) * scale + y * diagonal_grad[None, :]
        if STANDARDIZE:
            x = _load_standardized(
                x_ptr, rows, cols_i, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
            )
            first_sum += tl.sum(grad, axis=0)
            second_sum += tl.sum(grad * x, axis=0)
            tl.store(work_ptr + offsets, grad, mask=mask)
        else:
            tl.store(dz_ptr + offsets, grad.to(dz_ptr.dtype.element_ty), mask=mask)
    if STANDARDIZE:
        _standardize_backward_columns(
            work_ptr,
            dz_ptr,
            x_ptr,
            cols_i,
            first_sum,
            second_sum,
            N,
            D,
            stride_x_n,
            stride_x_d,
            stats_x_ptr,
            stats_x_ptr + D,
            divisor,
            BLOCK_N,
            ACC,
        )


@triton.jit
def _gram_forward_kernel(
    z1_ptr,
    z2_ptr,
    stats_ptr,
    gram_a_ptr,
    gram_b_ptr,
    partial_ptr,
    row_sums_ptr,
    N,
    D,
    stride1_n,
    stride1_d,
    stride2_n,
    stride2_d,
    STANDARDIZE: tl.constexpr,
    ROW_SUMS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Tile (p, q), q ≥ p, of both Grams ``A Aᵀ`` and ``B Bᵀ``: stores them (and their mirror) and ``⟨·,·⟩``.

    ``partial[pid]`` gets the tile's share of ``⟨A Aᵀ, B Bᵀ⟩_F`` (twice the tile for q > p by symmetry; 0 for
    q < p). With ``ROW_SUMS`` the diagonal programs also store the row sums ``A 1`` and ``B 1`` (2, N).
    """
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1)
    program = pid_p * tl.num_programs(1) + pid_q
    if pid_q >= pid_p:
        rows_p = (pid_p * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        rows_q = (pid_q * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        gram_a = tl.zeros([BLOCK_N, BLOCK_N], dtype=ACC)
        gram_b = tl.zeros([BLOCK_N, BLOCK_N], dtype=ACC)
        row_sum_a = tl.zeros([BLOCK_N], dtype=ACC)
        row_sum_b = tl.zeros([BLOCK_N], dtype=ACC)
        for start in range(0, D, BLOCK_D):
            cols = (start + tl.arange(0, BLOCK_D)).to(tl.int64)
            a_p = _load_standardized(
                z1_ptr, rows_p, cols, stride1_n, stride1_d, N, D, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
            )
            a_q = _load_standardized(
                z1_ptr, rows_q, cols, stride1_n, stride1_d, N, D, stats_ptr, stats_ptr + D, STANDARDIZE, ACC
            )
            b_p = _load_standardized(
                z2_ptr, rows_p, cols, stride2_n, stride2_d, N, D, stats_ptr + 2 * D, stats_ptr + 3 * D, STANDARDIZE, ACC
            )
            b_q = _load_standardized(
                z2_ptr, rows_q, cols, stride2_n, stride2_d, N, D, stats_ptr + 2 * D, stats_ptr + 3 * D, STANDARDIZE, ACC
            )
            gram_a += tl.dot(
                _dot_operand(a_p, DOT, DOT_UPCAST, ACC),
                tl.trans(_dot_operand(a_q, DOT, DOT_UPCAST, ACC)),
                input_precision=DOT_PRECISION,
            )
            gram_b += tl.dot(
                _dot_operand(b_p, DOT, DOT_UPCAST, ACC),
                tl.trans(_dot_operand(b_q, DOT, DOT_UPCAST, ACC)),
                input_precision=DOT_PRECISION,
            )
            if ROW_SUMS:
                row_sum_a += tl.sum(a_p, axis=1)
                row_sum_b += tl.sum(b_p, axis=1)
        weight = tl.where(pid_q == pid_p, 1.0, 2.0)
        tl.store(partial_ptr + program, tl.sum(tl.sum(gram_a * gram_b, axis=1), axis=0) * weight)
        mask = (rows_p < N)[:, None] & (rows_q < N)[None, :]
        offsets = rows_p[:, None] * N + rows_q[None, :]
        mirrored = rows_q[None, :] * N + rows_p[:, None]
        tl.store(gram_a_ptr + offsets, gram_a, mask=mask)
        tl.store(gram_a_ptr + mirrored, gram_a, mask=mask)
        tl.store(gram_b_ptr + offsets, gram_b, mask=mask)
        tl.store(gram_b_ptr + mirrored, gram_b, mask=mask)
        if ROW_SUMS:
            if pid_q == pid_p:
                tl.store(row_sums_ptr + rows_p, row_sum_a, mask=rows_p < N)
                tl.store(row_sums_ptr + N + rows_p, row_sum_b, mask=rows_p < N)
    else:
        tl.store(partial_ptr + program, 0.0)


@triton.jit
def _gram_view_gradient(
    x_ptr,
    y_ptr,
    stats_x_ptr,
    stats_y_ptr,
    gram_y_ptr,
    row_sum_y_ptr,
    diagonal_grad_ptr,
    coefficient_ptr,
    work_ptr,
    dz_ptr,
    N,
    D,
    stride_x_n,
    stride_x_d,
    stride_y_n,
    stride_y_d,
    target,
    divisor,
    STANDARDIZE: tl.constexpr,
    ROW_SUMS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    PRODUCT_PRECISION: tl.constexpr,
    BLOCK_OWNED: tl.constexpr,
):
    """The gradient of view X for its column block ``pid`` from the other view's Gram ``G_y = Y Yᵀ``.

    ``dX = (w/N) G_y X + Y diag(g) - w t (Y 1) 1ᵀ`` (:mod:`redundancy._ops.gram`), then the standardization
    backward, all rows of the block in this program.
    """
    pid = tl.program_id(0)
    cols = (pid * BLOCK_OWNED + tl.arange(0, BLOCK_OWNED)).to(tl.int64)
    col_mask = cols < D
    scale = tl.load(coefficient_ptr)
    diagonal_grad = tl.load(diagonal_grad_ptr + cols, mask=col_mask, other=0.0)
    first_sum = tl.zeros([BLOCK_OWNED], dtype=ACC)
    second_sum = tl.zeros([BLOCK_OWNED], dtype=ACC)
    for start_p in range(0, N, BLOCK_N):
        rows_p = (start_p + tl.arange(0, BLOCK_N)).to(tl.int64)
        product = tl.zeros([BLOCK_N, BLOCK_OWNED], dtype=ACC)
        for start_q in range(0, N, BLOCK_N):
            rows_q = (start_q + tl.arange(0, BLOCK_N)).to(tl.int64)
            gram_mask = (rows_p < N)[:, None] & (rows_q < N)[None, :]
            gram = tl.load(gram_y_ptr + rows_p[:, None] * N + rows_q[None, :], mask=gram_mask, other=0.0)
            x_q = _load_standardized(
                x_ptr, rows_q, cols, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
            )
            product += tl.dot(gram, x_q, input_precision=PRODUCT_PRECISION)
        y_p = _load_standardized(
            y_ptr, rows_p, cols, stride_y_n, stride_y_d, N, D, stats_y_ptr, stats_y_ptr + D, STANDARDIZE, ACC
        )
        grad = product * (scale / N) + y_p * diagonal_grad[None, :]
        if ROW_SUMS:
            row_sum = tl.load(row_sum_y_ptr + rows_p, mask=rows_p < N, other=0.0)
            grad -= (scale * target) * row_sum[:, None]
        mask = (rows_p < N)[:, None] & col_mask[None, :]
        offsets = rows_p[:, None] * D + cols[None, :]
        if STANDARDIZE:
            grad = tl.where(mask, grad, 0.0)
            x_p = _load_standardized(
                x_ptr, rows_p, cols, stride_x_n, stride_x_d, N, D, stats_x_ptr, stats_x_ptr + D, STANDARDIZE, ACC
            )
            first_sum += tl.sum(grad, axis=0)
            second_sum += tl.sum(grad * x_p, axis=0)
            tl.store(work_ptr + offsets, grad, mask=mask)
        else:
            tl.store(dz_ptr + offsets, grad.to(dz_ptr.dtype.element_ty), mask=mask)
    if STANDARDIZE:
        _standardize_backward_columns(
            work_ptr,
            dz_ptr,
            x_ptr,
            cols,
            first_sum,
            second_sum,
            N,
            D,
            stride_x_n,
            stride_x_d,
            stats_x_ptr,
            stats_x_ptr + D,
            divisor,
            BLOCK_N,
            ACC,
        )


@triton.jit
def _cross_backward_kernel(
    z1_ptr,
    z2_ptr,
    stats_ptr,
    diagonal_grad_ptr,
    coefficient_ptr,
    work1_ptr,
    work2_ptr,
    dz1_ptr,
    dz2_ptr,
    N,
    D,
    stride1_n,
    stride1_d,
    stride2_n,
    stride2_d,
    target,
    divisor,
    first_view,
    STANDARDIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    PRODUCT_PRECISION: tl.constexpr,
    BLOCK_OWNED: tl.constexpr,
):
    """Both views' gradients in one launch: program (pid, v) computes view ``first_view + v`` (0: z1, 1: z2).

    See :func:`_cross_view_gradient`; ``stats`` is the (5, D) tensor of :func:`_statistics_kernel`.
    """
    if tl.program_id(1) + first_view == 0:
        _cross_view_gradient(
            z1_ptr, z2_ptr, stats_ptr, stats_ptr + 2 * D, diagonal_grad_ptr, coefficient_ptr, work1_ptr, dz1_ptr,
            N, D, stride1_n, stride1_d, stride2_n, stride2_d, target, divisor,
            STANDARDIZE, BLOCK_N, BLOCK_D, ACC, DOT, DOT_UPCAST, DOT_PRECISION, PRODUCT_PRECISION, BLOCK_OWNED,
        )  # fmt: skip
    else:
        _cross_view_gradient(
            z2_ptr, z1_ptr, stats_ptr + 2 * D, stats_ptr, diagonal_grad_ptr, coefficient_ptr, work2_ptr, dz2_ptr,
            N, D, stride2_n, stride2_d, stride1_n, stride1_d, target, divisor,
            STANDARDIZE, BLOCK_N, BLOCK_D, ACC, DOT, DOT_UPCAST, DOT_PRECISION, PRODUCT_PRECISION, BLOCK_OWNED,
        )  # fmt: skip


@triton.jit
def _gram_backward_kernel(
    z1_ptr,
    z2_ptr,
    stats_ptr,
    gram_a_ptr,
    gram_b_ptr,
    row_sums_ptr,
    diagonal_grad_ptr,
    coefficient_ptr,
    work1_ptr,
    work2_ptr,
    dz1_ptr,
    dz2_ptr,
    N,
    D,
    stride1_n,
    stride1_d,
    stride2_n,
    stride2_d,
    target,
    divisor,
    first_view,
    STANDARDIZE: tl.constexpr,
    ROW_SUMS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    PRODUCT_PRECISION: tl.constexpr,
    BLOCK_OWNED: tl.constexpr,
):
    """Both views' gradients in one launch (:func:`_gram_view_gradient`): z1's uses ``B Bᵀ``, z2's ``A Aᵀ``."""
    if tl.program_id(1) + first_view == 0:
        _gram_view_gradient(
            z1_ptr, z2_ptr, stats_ptr, stats_ptr + 2 * D, gram_b_ptr, row_sums_ptr + N, diagonal_grad_ptr,
            coefficient_ptr, work1_ptr, dz1_ptr, N, D, stride1_n, stride1_d, stride2_n, stride2_d, target, divisor,
            STANDARDIZE, ROW_SUMS, BLOCK_N, BLOCK_D, ACC, PRODUCT_PRECISION, BLOCK_OWNED,
        )  # fmt: skip
    else:
        _gram_view_gradient(
            z2_ptr, z1_ptr, stats_ptr + 2 * D, stats_ptr, gram_a_ptr, row_sums_ptr, diagonal_grad_ptr,
            coefficient_ptr, work2_ptr, dz2_ptr, N, D, stride2_n, stride2_d, stride1_n, stride1_d, target, divisor,
            STANDARDIZE, ROW_SUMS, BLOCK_N, BLOCK_D, ACC, PRODUCT_PRECISION, BLOCK_OWNED,
        )  # fmt: skip
