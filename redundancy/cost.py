"""The cost model that ``algorithm="auto"`` uses, and the FLOP counts the benchmarks report.

Counted for the forward and backward of the loss given the standardized views (the O(N·D) standardization
work is left out, as it is the same for every algorithm). Each op of ``redundancy._ops`` states the FLOPs of its
own products next to it (``cross_correlation_terms_flops``, ``gram_terms_flops``, ...), and this module asks them:

- ``cross``: ``C = AᵀB`` forward (2·N·D²), ``B Cᵀ`` and ``A C`` backward (4·N·D²): 6·N·D².
- ``gram``: ``A Aᵀ`` and ``B Bᵀ`` forward (4·N²·D, or ``2·(1 + 1/k)·N²·D`` as the symmetric products of
  ``redundancy._ops.products.symmetric_gram`` compute them with k row blocks), ``(B Bᵀ) A`` and ``(A Aᵀ) B``
  backward (4·N²·D): 8·N²·D, down to 6.5·N²·D for large products.

By FLOPs the Gram algorithm is the cheaper one when ``8·N²·D < 6·N·D²``, that is ``N < 0.75·D`` (``N < 0.92·D``
with four-block symmetric products). ``algorithm="auto"`` uses the crossover measured on a 2-core x86 CPU with
``python -m benchmarks.crossover`` (``benchmarks/results/cpu/crossover.json``): cross became at least as fast as
gram at N/D = 0.625, 0.75, 1.0 and 1.0 for D = 128, 512, 2048 and 4096, with the two within 5% of each other from
0.75 to 0.875 at D ≥ 2048, where the choice matters most: :data:`GRAM_CROSSOVER` = 0.875.

Under ``torch.distributed`` (``redundancy._batch``) the global-batch loss also moves data between the W
ranks of the process group. :func:`communication_bytes` counts the bytes each rank sends per training step
(forward and backward) with bandwidth-optimal ring collectives, in which a rank sends as much as it receives:

- a ring all-reduce of M elements sends ``2·(W-1)/W·M`` elements per rank;
- a ring all-gather of a chunk of m elements per rank sends ``(W-1)·m`` elements per rank.

Common to both strategies: the header of every call (error flag, call counter, shapes, dtype, the process groups,
which views require grad, and the options that every rank must share), an all-gather of ``HEADER_SIZE`` (32)
float64 values per rank.
Unless ``standardize=False``, also the per-rank mean and centred sum of squares of each view, an all-gather
of 2·D elements per view, and in backward the sums over the batch that the standardization's backward needs.
Then:

- ``all_reduce``: the local ``AᵀB / N`` summed over ranks, an all-reduce of D² elements; in backward
  ``Σ dA ⊙ A`` of each view, an all-reduce of D elements per view (the op knows ``Σ dA = 0``).
  ``2·(W-1)/W·(D² + 2·D)`` elements besides the statistics.
- ``all_gather``: the standardized views of every rank, padded to ``ceil(N/W)`` rows and gathered in one
  all-gather; in backward ``Σ dA`` and ``Σ dA ⊙ A`` of each view, an all-reduce of 2·D elements per view.
  ``(W-1)·2·ceil(N/W)·D ≈ 2·(W-1)/W·N·D`` elements besides those.

So ``all_gather`` moves about ``N/D`` times the bytes of ``all_reduce``, but every rank runs the loss on all N
rows (the Gram or cross algorithm on the gathered views), whereas ``all_reduce`` runs the cross algorithm on
its own ``N/W`` rows only. :func:`choose_strategy` weighs both.
"""

import math
from typing import NamedTuple

import torch

from redundancy import _exchange
from redundancy._ops.autocorrelation import off_diagonal_energy_flops
from redundancy._ops.cross import cross_correlation_terms_flops
from redundancy._ops.feature_shards import terms_algorithm
from redundancy._ops.gram import gram_terms_flops
from redundancy._ops.multiview import multiview_cross_terms_flops
from redundancy._ops.multiview import multiview_gram_terms_flops

ALGORITHMS = ("cross", "gram")

#: The collectives of the global-batch loss (``strategy=`` of :func:`redundancy.barlow_twins_loss`).
STRATEGIES = ("all_reduce", "all_gather")

#: Nominal machine balance that ``strategy="auto"`` uses: matrix-multiply FLOPs a GPU performs in the time its
#: collectives move one byte per rank. An assumption about current GPU nodes (tens of TFLOP/s of fp32 matrix
#: throughput over a few hundred GB/s of collective bandwidth per GPU), not a measurement; slower interconnects
#: (several nodes) favour ``all_gather`` more than this figure does.
FLOPS_PER_COMMUNICATED_BYTE = 200

#: ``auto`` picks ``gram`` when ``N < GRAM_CROSSOVER * D`` (measured, see the module docstring).
GRAM_CROSSOVER = 0.875


def barlow_twins_flops(algorithm: str, n: int, d: int, *, backward: bool = True) -> int:
    """Floating-point operations of the matrix products of one loss evaluation.

    Args:
        algorithm: ``"cross"`` or ``"gram"``.
        n: batch size N.
        d: feature dimension D.
        backward: count the backward pass too (forward only when ``False``).

    Returns:
        The FLOP count (a multiply-add counts as 2).

    Example:
        >>> from redundancy.cost import barlow_twins_flops
        >>> barlow_twins_flops("cross", 256, 8192) // barlow_twins_flops("gram", 256, 8192)
        29
    """
    if algorithm == "cross":
        return cross_correlation_terms_flops(n, d, backward=backward)
    if algorithm == "gram":
        return gram_terms_flops(n, d, backward=backward)
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def choose_algorithm(n: int, d: int) -> str:
    """The algorithm ``algorithm="auto"`` uses for a global batch of ``n`` rows and ``d`` features.

    Example:
        >>> from redundancy.cost import choose_algorithm
        >>> choose_algorithm(256, 8192), choose_algorithm(2048, 128)
        ('gram', 'cross')
    """
    return "gram" if n < GRAM_CROSSOVER * d else "cross"


def autocorrelation_flops(algorithm: str, n: int, d: int, *, backward: bool = True) -> int:
    """Floating-point operations of the off-diagonal energy ``Σ_{i≠j} (XᵀX)_ij²`` of one view (VICReg, DeCov).

    ``cross`` forms ``K = XᵀX`` (2·N·D²) and backpropagates ``X K`` (2·N·D²); ``gram`` forms ``G = X Xᵀ``
    (2·N²·D) and backpropagates ``G X`` (2·N²·D). The Gram form is the cheaper one when ``N < D``.

    Example:
        >>> from redundancy.cost import autocorrelation_flops
        >>> autocorrelation_flops("cross", 256, 8192) // autocorrelation_flops("gram", 256, 8192)
        32
    """
    _check_algorithm(algorithm)
    return off_diagonal_energy_flops(algorithm, n, d, backward=backward)


def choose_autocorrelation_algorithm(n: int, d: int) -> str:
    """The algorithm ``algorithm="auto"`` uses for the one-view auto-correlation of ``n`` rows and ``d`` features.

    Example:
        >>> from redundancy.cost import choose_autocorrelation_algorithm
        >>> choose_autocorrelation_algorithm(256, 8192), choose_autocorrelation_algorithm(2048, 128)
        ('gram', 'cross')
    """
    return "gram" if n < d else "cross"


def _compute_itemsize(dtype: torch.dtype) -> int:
    """Bytes per communicated element: the loss communicates in its compute dtype (float32 for half inputs)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return 8 if dtype == torch.float64 else 4


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def _check_shape_counts(global_n: int, d: int, world_size: int) -> None:
    for name, value, minimum in (("global_n", global_n, 2), ("d", d, 1), ("world_size", world_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def communication_bytes(
    strategy: str,
    global_n: int,
    d: int,
    world_size: int,
    dtype: torch.dtype = torch.float32,
    *,
    standardize: bool = True,
) -> int:
    """Bytes each rank sends (and receives) per training step for the global-batch Barlow Twins loss.

    Forward and backward together, with ring collectives and the batch split evenly (``ceil(N/W)`` rows per
    rank); the formulas are in the module docstring. One process (``world_size=1``) moves nothing.

    Args:
        strategy: ``"all_reduce"`` or ``"all_gather"``.
        global_n: rows of the global batch N (all ranks together).
        d: feature dimension D.
        world_size: number of ranks W in the process group.
        dtype: dtype of the embeddings; communication happens in the compute dtype (float32 for float32, float16
            and bfloat16 inputs, float64 for float64 inputs).
        standardize: ``False`` (views used as they are) skips the statistics of the standardization.

    Returns:
        The number of bytes.

    Example:
        >>> from redundancy.cost import communication_bytes
        >>> all_gather = communication_bytes("all_gather", 2048, 8192, 8)
        >>> all_reduce = communication_bytes("all_reduce", 2048, 8192, 8)
        >>> round(all_gather / all_reduce, 2)
        0.25
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    _check_shape_counts(global_n, d, world_size)
    itemsize = _compute_itemsize(dtype)
    w = world_size
    if w == 1:
        return 0
    total = (w - 1) * _exchange.HEADER_SIZE * 8  # the header of every rank (float64)
    if standardize:
        statistics = 2 * (w - 1) * 2 * d  # mean and centred sum of squares, both views
        sums = 1 if strategy == "all_reduce" else 2  # Σ dA ⊙ A, and Σ dA where the op does not know it is 0
        backward = 2 * math.ceil(2 * (w - 1) * sums * d / w)  # both views
        total += (statistics + backward) * itemsize
    if strategy == "all_reduce":
        elements = math.ceil(2 * (w - 1) * d * d / w)
    else:
        elements = (w - 1) * 2 * math.ceil(global_n / w) * d
    return total + elements * itemsize


def strategy_flops(strategy: str, global_n: int, d: int, world_size: int, *, algorithm: str = "auto") -> int:
    """Matrix-product FLOPs each rank spends on the loss (forward and backward) under a strategy.

    ``all_reduce`` runs the cross algorithm on the rank's ``ceil(N/W)`` rows; ``all_gather`` runs ``algorithm``
    (``"auto"``: the cheaper) on all N gathered rows, on every rank.

    Example:
        >>> from redundancy.cost import strategy_flops, barlow_twins_flops
        >>> strategy_flops("all_reduce", 1024, 256, 4) * 4 == barlow_twins_flops("cross", 1024, 256)
        True
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    _check_shape_counts(global_n, d, world_size)
    if strategy == "all_reduce":
        if algorithm not in ("auto", "cross"):
            raise ValueError(f"the all_reduce strategy runs the cross algorithm, got algorithm={algorithm!r}")
        return barlow_twins_flops("cross", math.ceil(global_n / world_size), d)
    if algorithm == "auto":
        algorithm = choose_algorithm(global_n, d)
    return barlow_twins_flops(algorithm, global_n, d)


def choose_strategy(
    global_n: int, d: int, world_size: int, dtype: torch.dtype = torch.float32, *, algorithm: str = "auto"
) -> str:
    """The strategy ``strategy="auto"`` uses: the smaller ``FLOPs + FLOPS_PER_COMMUNICATED_BYTE · bytes``.

    An explicit ``algorithm="gram"`` needs the gathered views, hence ``"all_gather"``.

    Example:
        >>> from redundancy.cost import choose_strategy
        >>> choose_strategy(256, 8192, 8), choose_strategy(8192, 256, 8)
        ('all_gather', 'all_reduce')
    """
    if algorithm == "gram":
        return "all_gather"

    def estimated_cost(strategy: str) -> int:
        flops = strategy_flops(strategy, global_n, d, world_size, algorithm=algorithm)
        return flops + FLOPS_PER_COMMUNICATED_BYTE * communication_bytes(strategy, global_n, d, world_size, dtype)

    # One comparison (not min(key=...), which torch.compile cannot trace); ties go to all_reduce.
    return "all_gather" if estimated_cost("all_gather") < estimated_cost("all_reduce") else "all_reduce"


# ------------------------------------------------------------------------------------------------ several views


def multiview_barlow_twins_flops(algorithm: str, n: int, d: int, views: int, *, backward: bool = True) -> int:
    """Matrix-product FLOPs of one evaluation of :func:`redundancy.multiview_barlow_twins_loss` on ``views`` views.

    ``gram`` shares the views' Gram matrices: V symmetric Grams forward (``(1 + 1/k)·N²·D`` each, see
    ``redundancy._ops.products.symmetric_gram_flops``) and V products ``(S - G_v) A_v`` backward (2·N²·D
    each), where the loop over the P = V(V-1)/2 pairs costs P times :func:`barlow_twins_flops` (two Grams forward
    and two products backward per pair): V - 1 times more (3× for V = 4). ``cross`` forms each pair's C: P·6·N·D²,
    the loop's own cost. The O(N·D) standardization and the O(N²) inner products of the Grams are left out.

    Example:
        >>> from redundancy.cost import barlow_twins_flops, multiview_barlow_twins_flops
        >>> loop = 6 * barlow_twins_flops("gram", 256, 8192)
        >>> loop / multiview_barlow_twins_flops("gram", 256, 8192, 4)
        3.0
    """
    if not isinstance(views, int) or isinstance(views, bool) or views < 2:
        raise ValueError(f"views must be an int >= 2, got {views!r}")
    if algorithm == "cross":
        return multiview_cross_terms_flops(n, d, views, backward=backward)
    if algorithm != "gram":
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return multiview_gram_terms_flops(n, d, views, backward=backward)


def choose_multiview_algorithm(n: int, d: int, views: int) -> str:
    """The algorithm ``algorithm="auto"`` of the multi-view loss uses: ``gram`` when ``N < 0.875·(V-1)·D``.

    Sharing the Grams divides the Gram path's cost by ``V - 1`` relative to the cross path's (both counted per
    pair), so the measured two-view crossover :data:`GRAM_CROSSOVER` moves by that factor.

    Example:
        >>> from redundancy.cost import choose_multiview_algorithm
        >>> choose_multiview_algorithm(2048, 2048, 2), choose_multiview_algorithm(2048, 2048, 4)
        ('cross', 'gram')
    """
    return "gram" if n < GRAM_CROSSOVER * (views - 1) * d else "cross"


def choose_multiview_strategy(
    global_n: int, d: int, world_size: int, views: int, dtype: torch.dtype = torch.float32, *, algorithm: str = "auto"
) -> str:
    """The strategy ``strategy="auto"`` of the multi-view loss uses, weighed as :func:`choose_strategy` does.

    ``all_reduce`` sums each pair's C (``2·(W-1)/W·P·D²`` elements per rank) and runs the cross path on the
    rank's ``ceil(N/W)`` rows; ``all_gather`` gathers the V standardized views (``(W-1)·V·ceil(N/W)·D``) and runs
    ``algorithm`` on all N rows. The collectives both strategies share (header, statistics) are left out.

    Example:
        >>> from redundancy.cost import choose_multiview_strategy
        >>> choose_multiview_strategy(256, 8192, 8, 4), choose_multiview_strategy(65536, 128, 8, 4)
        ('all_gather', 'all_reduce')
    """
    if views == 2:  # the two-view loss
        return choose_strategy(global_n, d, world_size, dtype, algorithm=algorithm)
    if algorithm == "gram":
        return "all_gather"
    _check_shape_counts(global_n, d, world_size)
    itemsize = _compute_itemsize(dtype)
    pairs = views * (views - 1) // 2
    rows = math.ceil(global_n / world_size)
    gathered = "cross" if algorithm == "cross" else choose_multiview_algorithm(global_n, d, views)
    reduce_bytes = itemsize * math.ceil(2 * (world_size - 1) * pairs * d * d / world_size)
    gather_bytes = itemsize * (world_size - 1) * views * rows * d
    reduce_cost = multiview_barlow_twins_flops("cross", rows, d, views) + FLOPS_PER_COMMUNICATED_BYTE * reduce_bytes
    gather_flops = multiview_barlow_twins_flops(gathered, global_n, d, views)
    gather_cost = gather_flops + FLOPS_PER_COMMUNICATED_BYTE * gather_bytes
    return "all_reduce" if reduce_cost < gather_cost else "all_gather"


# ------------------------------------------------------------------------------------------------ feature parallelism


class FeatureParallelCost(NamedTuple):
    """What a loss sends and computes on a grid of row and feature shards, as the loss states it.

    The losses that take ``feature_group=`` each declare one: ``redundancy.barlow_twins.FEATURE_PARALLEL_COST`` and
    ``redundancy.vicreg.FEATURE_PARALLEL_COST``; the functions below count with it.

    Attributes:
        name: the loss, for messages.
        data_parallel_with_one_feature_rank: with one feature rank the loss is its data-parallel form, whose bytes
            are :func:`communication_bytes` of the strategy :func:`choose_strategy` picks (Barlow Twins).
        gathered_views: views whose columns the cross form gathers over the feature group.
        scalars: scalars summed over the feature group (both forms).
        target_scalars: more of them with a nonzero ``off_diagonal_target`` (cross form; the Gram form also sums
            the 2·N row sums).
        gram_flops: matrix-product FLOPs per ``N²·D_f`` of the Gram form (forward and backward, every view).
        cross_flops: matrix-product FLOPs per ``N·D_f·D`` of the cross form.
        autocorrelation: ``algorithm="auto"`` with one feature rank chooses as
            :func:`choose_autocorrelation_algorithm` (one view's auto-correlation) rather than :func:`choose_algorithm`.

    Example:
        >>> from redundancy.vicreg import FEATURE_PARALLEL_COST
        >>> FEATURE_PARALLEL_COST.gathered_views, FEATURE_PARALLEL_COST.cross_flops
        (2, 8)
    """

    name: str
    data_parallel_with_one_feature_rank: bool
    gathered_views: int
    scalars: int
    target_scalars: int
    gram_flops: int
    cross_flops: int
    autocorrelation: bool


def _check_grid(n: int, d: int, row_ranks: int, feature_ranks: int) -> None:
    _check_shape_counts(n, d, row_ranks)
    if isinstance(feature_ranks, bool) or not isinstance(feature_ranks, int) or not 1 <= feature_ranks <= d:
        raise ValueError(f"feature_ranks must be an integer from 1 to d = {d}, got {feature_ranks!r}")


def _ring_all_reduce(elements: int, ranks: int) -> int:
    return math.ceil(2 * (ranks - 1) * elements / ranks)


def feature_parallel_bytes(
    algorithm: str,
    n: int,
    d: int,
    row_ranks: int,
    feature_ranks: int,
    dtype: torch.dtype = torch.float32,
    *,
    loss: FeatureParallelCost,
    off_diagonal_target: float = 0.0,
    spans_default_group: bool = True,
) -> int:
    """Bytes each rank sends (and receives) per step for a loss over a grid of row and feature shards.

    The grid has ``row_ranks`` R ranks along the rows (``group=``, data parallel) and ``feature_ranks`` F along
    the features (``feature_group=``, a column-parallel projector); each rank holds ``ceil(N/R)`` rows of
    ``ceil(D/F)`` columns. Forward and backward together, with ring collectives:

    - the header of each call, an all-gather of ``HEADER_SIZE`` (32) float64 values: over the default group when
      the grid's R·F ranks are all its ranks (``spans_default_group``); otherwise over the row group and over the
      feature group, and on a grid of both one float64 error flag more over the row group (what the feature group
      found, passed on to the other rows);
    - the rows: one all-gather of both views' blocks over the row group, ``(R-1)·2·ceil(N/R)·ceil(D/F)``
      elements; every rank then holds all N rows of its columns, and the backward needs no collective for them;
    - ``"gram"``: one all-reduce over the feature group of the two N×N Grams of each rank's columns and the loss's
      scalars (``2·N² + loss.scalars`` elements, ``2·N + 1`` more with a nonzero ``off_diagonal_target``); nothing
      in backward. When D ≤ N the Gram difference cancels and the loss takes the cross form instead, and is counted
      as such;
    - ``"cross"``: the columns of ``loss.gathered_views`` views gathered over the feature group
      (``(F-1)·N·ceil(D/F)`` elements each), one all-reduce of the loss's scalars, and in backward the N×D gradient
      of each gathered view all-reduced over the feature group (each rank keeps its columns).

    With one feature rank, a loss whose ``data_parallel_with_one_feature_rank`` is set (Barlow Twins) is its
    data-parallel form, and its bytes are :func:`communication_bytes` of the strategy :func:`choose_strategy` picks.

    Args:
        algorithm: ``"cross"`` or ``"gram"``.
        n: rows of the global batch N.
        d: features D of the full views.
        row_ranks: ranks R of the row group (1: the rows are not split).
        feature_ranks: ranks F of the feature group (1: the features are not split).
        dtype: dtype of the embeddings (communication happens in the compute dtype).
        loss: what the loss sends, as it states it (``redundancy.barlow_twins.FEATURE_PARALLEL_COST``,
            ``redundancy.vicreg.FEATURE_PARALLEL_COST``).
        off_diagonal_target: Barlow Twins' target t (a nonzero one adds the row sums to the Gram all-reduce).
        spans_default_group: whether the grid's ranks are all the ranks of the default group.

    Example:
        >>> from redundancy.cost import communication_bytes, feature_parallel_bytes
        >>> from redundancy.barlow_twins import FEATURE_PARALLEL_COST
        >>> gram = feature_parallel_bytes("gram", 2048, 65536, 1, 8, loss=FEATURE_PARALLEL_COST)
        >>> data_parallel = communication_bytes("all_gather", 2048, 65536, 8)
        >>> round(data_parallel / gram, 1)
        16.2
    """
    _check_algorithm(algorithm)
    _check_grid(n, d, row_ranks, feature_ranks)
    itemsize = _compute_itemsize(dtype)
    r, f = row_ranks, feature_ranks
    if f == 1 and loss.data_parallel_with_one_feature_rank:
        return communication_bytes(choose_strategy(n, d, r, dtype, algorithm=algorithm), n, d, r, dtype)
    columns = math.ceil(d / f)
    if spans_default_group:  # one exchange of every rank's header
        header = (r * f - 1) * _exchange.HEADER_SIZE * 8
    else:
        header = ((r - 1) + (f - 1)) * _exchange.HEADER_SIZE * 8
        if r > 1 and f > 1:
            header += (r - 1) * 8  # the error flag of the feature group's exchange, over the row group
    elements = (r - 1) * 2 * math.ceil(n / r) * columns
    with_target = off_diagonal_target != 0 and loss.target_scalars > 0
    if f > 1:
        if terms_algorithm(algorithm, n, d) == "gram":
            scalars = loss.scalars + (2 * n + 1 if with_target else 0)
            elements += _ring_all_reduce(2 * n * n + scalars, f)
        else:
            scalars = loss.scalars + (loss.target_scalars if with_target else 0)
            gathered = (f - 1) * n * columns + _ring_all_reduce(n * d, f)
            elements += loss.gathered_views * gathered + _ring_all_reduce(scalars, f)
    return header + elements * itemsize


def feature_parallel_flops(
    algorithm: str, n: int, d: int, row_ranks: int, feature_ranks: int, *, loss: FeatureParallelCost
) -> int:
    """Matrix-product FLOPs each rank of a grid spends on the loss (forward and backward).

    Every rank works on all N rows of its ``D_f = ceil(D/F)`` columns (the row group gathers its rows, so its R ranks
    repeat the same work): the Gram form forms the N×N Grams of those columns, ``loss.gram_flops·N²·D_f`` (8 for
    Barlow Twins and for VICReg's two views), the cross form the rank's block row of C or of each covariance,
    ``loss.cross_flops·N·D_f·D`` (6 for Barlow Twins, 8 for VICReg). With F > 1 and D ≤ N, ``"gram"`` counts as
    ``"cross"`` (the form the grid computes there, see :func:`feature_parallel_bytes`).

    Example:
        >>> from redundancy.cost import feature_parallel_flops
        >>> from redundancy.barlow_twins import FEATURE_PARALLEL_COST
        >>> flops = feature_parallel_flops("gram", 2048, 65536, 1, 8, loss=FEATURE_PARALLEL_COST)
        >>> flops * 8 == 8 * 2048**2 * 65536
        True
    """
    _check_algorithm(algorithm)
    _check_grid(n, d, row_ranks, feature_ranks)
    columns = math.ceil(d / feature_ranks)
    if feature_ranks > 1:
        algorithm = terms_algorithm(algorithm, n, d)
    if algorithm == "gram":
        return loss.gram_flops * n * n * columns
    return loss.cross_flops * n * columns * d


def choose_feature_parallel_algorithm(
    n: int, d: int, row_ranks: int, feature_ranks: int, dtype: torch.dtype = torch.float32, *, loss: FeatureParallelCost
) -> str:
    """The algorithm ``algorithm="auto"`` uses on a grid: the smaller ``FLOPs + FLOPS_PER_COMMUNICATED_BYTE · bytes``.

    With one feature rank nothing crosses the feature group and the choice is :func:`choose_algorithm`'s (or
    :func:`choose_autocorrelation_algorithm`'s for a loss of auto-correlations, VICReg).

    Example:
        >>> from redundancy.cost import choose_feature_parallel_algorithm
        >>> from redundancy.barlow_twins import FEATURE_PARALLEL_COST as barlow_twins
        >>> choose_feature_parallel_algorithm(2048, 65536, 2, 4, loss=barlow_twins)
        'gram'
        >>> choose_feature_parallel_algorithm(8192, 512, 1, 4, loss=barlow_twins)
        'cross'
    """
    _check_grid(n, d, row_ranks, feature_ranks)
    if feature_ranks == 1:
        return choose_autocorrelation_algorithm(n, d) if loss.autocorrelation else choose_algorithm(n, d)

    def estimated_cost(algorithm: str) -> int:
        flops = feature_parallel_flops(algorithm, n, d, row_ranks, feature_ranks, loss=loss)
        bytes_sent = feature_parallel_bytes(algorithm, n, d, row_ranks, feature_ranks, dtype, loss=loss)
        return flops + FLOPS_PER_COMMUNICATED_BYTE * bytes_sent

    return "gram" if estimated_cost("gram") < estimated_cost("cross") else "cross"
