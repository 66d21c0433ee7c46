r"""Global-batch losses under ``torch.distributed``: process groups, collectives, statistics merge.

When ``torch.distributed`` is initialized and the process group has W > 1 ranks, :func:`redundancy.barlow_twins_loss`
computes the loss of the **global batch**: the N rows of all ranks together (ranks may hold different numbers of
rows, even 0 or 1, as long as N ≥ 2). Means, variances and C are those of the concatenated batch, and every rank
returns the same value. ``distributed="local"`` computes each rank's own loss instead.

**Statistics.** Each rank computes the count, mean and centred sum of squares ``M2 = Σ (z - mean)²`` of its rows;
one all-gather brings every rank's ``(mean, M2)`` and :func:`merge_moments` combines them with the parallel formula
(Chan et al.) ``mean = Σ n_r mean_r / N``, ``M2 = Σ M2_r + Σ n_r (mean_r - mean)²``, which never subtracts two large
sums of squares (an offset of 10³ on fp32 inputs leaves the loss unchanged to 1e-4).

**Strategies.** ``all_reduce`` sums each rank's ``AᵀB / N`` (an all-reduce of D² elements) so that every rank holds
the global C; ``all_gather`` gathers the standardized views of all ranks (2·N·D elements) and every rank runs the
Gram (or cross) algorithm on the whole batch. Neither needs a collective in backward beyond the sums of each
view's standardization backward: ``Σ dA ⊙ A`` (D elements) under ``all_reduce``, where the op knows that
``Σ dA = 0``, and both D-vectors under ``all_gather``. ``auto`` chooses by bytes moved and FLOPs
(:func:`redundancy.cost.choose_strategy`; :func:`redundancy.cost.communication_bytes` counts the bytes).

**Gradient convention.** Every rank computes the same loss ``L`` of the global batch, and the collectives above are
differentiated so that rank r's backward yields the exact partial derivative ``∂L/∂z_r`` of its own rows. DDP then
*averages* parameter gradients over the W ranks, which would give ``(1/W) ∂L/∂θ``. With
``gradient_convention="global"`` (the default) the loss's backward multiplies the gradients by W, so that after
DDP's averaging the parameter gradients equal those of one process training on the concatenated batch, and a
learning rate carries over between 1 and W GPUs. ``gradient_convention="official"`` leaves them at ``∂L/∂z_r``,
which reproduces ``facebookresearch/barlowtwins``: its ``main.py`` all-reduces C in place, outside autograd, so each
rank backpropagates through its own ``AᵀB`` only (with SyncBatchNorm statistics), and DDP's averaging leaves
parameter gradients at 1/W of the single-process ones.

**The rest of the family.** :func:`redundancy.vicreg_loss` (with :func:`redundancy.vicreg_terms` and the
one-view :func:`redundancy.vicreg_variance_loss` and :func:`redundancy.vicreg_covariance_loss`),
:func:`redundancy.decov_loss` and :func:`redundancy.total_coding_rate` take the same ``distributed``,
``gradient_convention`` and ``group`` options with the same meaning. Their global batch is gathered: after the
same exchange of shapes and options, one all-gather brings every rank's rows of each view (``gather_global_batch``;
``V·max_r N_r·D`` elements per rank for V views) and every rank evaluates the single-process formula on the
concatenated batch, so the mean squared difference, the means, variances and covariances (and VICReg's divisor
``N - correction``) are those of the whole batch. Centring happens on the gathered rows, in one pass, as in a
single process. The gather's backward hands each rank its own rows of ``∂L/∂(gathered rows)`` without a collective
(exact, since every rank computes the same ``L``), and ``apply_gradient_convention``, the one implementation of the
convention above, scales the gradients by W for ``"global"``. The covariance is computed on every rank (W times
the FLOPs of one process); no all-reduce variant is offered.

Every rank of the group must call the loss, with the same options. Ranks must agree on D, on the compute dtype
(float32 or float64) and on the options; these are exchanged first (a small all-gather, whose row counts the host
reads to size the padding), so a mismatch raises the same :class:`ValueError` on every rank instead of hanging in
a collective. Unequal row counts
never reach a raw all-gather: rows are padded to the largest count and trimmed after.
"""

import zlib
from collections.abc import Sequence

import torch
import torch.distributed as dist

from redundancy import cost
from redundancy._ops import cross_correlation_terms, gram_terms, standardization_of, standardize
from redundancy._ops._autocast import no_autocast
from redundancy._ops.reductions import column_dot

__all__ = [
    "DISTRIBUTED_MODES",
    "GRADIENT_CONVENTIONS",
    "STRATEGIES",
    "GlobalBatch",
    "apply_gradient_convention",
    "barlow_twins_terms_global",
    "describe_options",
    "gather_global_batch",
    "gather_rows",
    "group_world_size",
    "local_moments",
    "merge_moments",
]

#: ``distributed=``: the loss of the batch of all ranks, or each rank's own.
DISTRIBUTED_MODES = ("global", "local")
#: ``strategy=``: how the ranks combine their rows (see :mod:`redundancy.cost`).
STRATEGIES = ("auto", *cost.STRATEGIES)
#: ``gradient_convention=``: gradients of one process on the global batch, or the official script's (1/W).
GRADIENT_CONVENTIONS = ("global", "official")

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}


def group_world_size(group: "dist.ProcessGroup | None" = None) -> int:
    """The number of ranks in ``group`` (the default group for ``None``); 1 when torch.distributed is not in use.

    Example:
        >>> group_world_size()  # a process without torch.distributed.init_process_group
        1
    """
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def check_group(group: object) -> None:
    """Raise a :class:`TypeError` unless ``group`` is ``None`` or a :class:`torch.distributed.ProcessGroup`."""
    if group is None:
        return
    if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"group must be None or a torch.distributed.ProcessGroup, got {type(group).__name__}")


# ------------------------------------------------------------------------------------------------ statistics


def local_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column ``(mean, M2)`` of ``z`` (n×D), with ``M2 = Σ_n (z - mean)²``; zeros for a shard of 0 rows.

    Example:
        >>> mean, m2 = local_moments(torch.tensor([[1.0], [3.0]]))
        >>> mean.item(), m2.item()
        (2.0, 2.0)
    """
    if z.shape[0] == 0:
        zeros = z.new_zeros(z.shape[1])
        return zeros, zeros.clone()
    # Two passes (the mean, then the centred sum of squares): several times faster on the CPU than
    # torch.var_mean over dim 0, and as robust to a large offset.
    mean = z.mean(dim=0)
    centered = z - mean
    return mean, column_dot(centered, centered)


def merge_moments(counts: Sequence[int], means: torch.Tensor, m2s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Merge per-shard ``(mean, M2)`` into those of the concatenated batch (parallel formula of Chan et al.).

    .. math::

        \mu = \mu_s + \frac{1}{N} \sum_r n_r (\mu_r - \mu_s), \qquad
        M_2 = \sum_r M_{2,r} + \sum_r n_r (\mu_r - \mu)^2,

    with :math:`N = \sum_r n_r` and :math:`\mu_s` the mean of the largest shard (a shift that keeps the sum of
    small numbers). No large sums of squares are subtracted, so a large common offset of the inputs costs no
    precision. Shards of 0 rows contribute nothing.

    Args:
        counts: rows of each shard, ``(n_1, ..., n_W)``, with a positive sum.
        means: per-shard column means, shape ``(W, D)`` (any value for empty shards).
        m2s: per-shard centred sums of squares, shape ``(W, D)``.

    Returns:
        ``(mean, M2)`` of the whole batch, each of shape ``(D,)``; the variance is ``M2 / (N - correction)``.

    Example:
        >>> z = torch.randn(10, 3, dtype=torch.float64) + 1e3
        >>> parts = [local_moments(part) for part in (z[:4], z[4:4], z[4:])]
        >>> mean, m2 = merge_moments([4, 0, 6], torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]))
        >>> torch.allclose(mean, z.mean(0)), torch.allclose(m2 / 10, z.var(0, correction=0))
        (True, True)
    """
    weights = torch.tensor(list(counts), dtype=means.dtype, device=means.device)
    total = weights.sum()
    shift = means[int(torch.argmax(weights))]
    mean = shift + torch.mv((means - shift).t(), weights).div_(total)
    deviation = (means - mean).square_()
    m2 = m2s.sum(dim=0).add_(torch.mv(deviation.t(), weights))
    return mean, m2


# ------------------------------------------------------------------------------------------------ the batch


class GlobalBatch:
    """This rank's view of a batch split over the ranks of a process group: row counts and the collectives.

    Built by :meth:`exchange`, which all-gathers the shapes of every rank once per loss evaluation (and checks
    them). The ops of ``redundancy._ops`` call :meth:`var_mean` and :meth:`sum_over_ranks`.

    Attributes:
        group: the process group (``None``: the default group).
        rank: this process's rank in ``group``.
        world_size: number of ranks W.
        counts: rows on each rank, a tuple of W ints.
        count: rows of the global batch N.
        dim: feature dimension D (the same on every rank).

    Example:
        >>> batch = GlobalBatch(None, rank=1, counts=[3, 0, 5], dim=16)  # three ranks, one of them empty
        >>> batch.world_size, batch.count, batch.counts
        (3, 8, (3, 0, 5))
    """

    def __init__(self, group, rank: int, counts: Sequence[int], dim: int) -> None:
        self.group = group
        self.rank = rank
        self.world_size = len(counts)
        self.counts = tuple(int(n) for n in counts)
        self.count = sum(self.counts)
        self.dim = dim

    @classmethod
    def exchange(
        cls, z: torch.Tensor, *, dtype: torch.dtype, options: str = "", group=None, names: str = "z1 and z2"
    ) -> "GlobalBatch":
        """All-gather every rank's ``(N, D, dtype, options)`` and check them; raises the same error on every rank.

        ``z`` is this rank's rows of one view (the views of a loss have the same shape, checked before).
        ``options`` describes the settings that every rank must share (a checksum of it is exchanged);
        ``names`` names the inputs in the error messages.

        Raises:
            ValueError: ranks disagree on D, on the compute dtype or on ``options``, or the global batch has fewer
                than 2 rows.

        Example:
            >>> import torch.distributed as dist
            >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # a one-rank group
            >>> z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
            >>> batch = GlobalBatch.exchange(z1, dtype=torch.float32)
            >>> batch.counts, batch.dim
            ((6,), 4)
            >>> dist.destroy_process_group()
        """
        rank = dist.get_rank(group)
        if rank < 0:
            raise ValueError("this process is not a member of the process group passed as group")
        world_size = dist.get_world_size(group)
        checksum = zlib.crc32(options.encode())
        shape = torch.tensor(
            [z.shape[0], z.shape[1], _DTYPE_CODES[dtype], checksum], dtype=torch.int64, device=z.device
        )
        gathered = [torch.empty_like(shape) for _ in range(world_size)]
        dist.all_gather(gathered, shape, group=group)
        counts, dims, dtypes, checksums = zip(*(row.tolist() for row in gathered), strict=True)
        if len(set(dims)) > 1:
            raise ValueError(
                f"{names} must have the same number of features D on every rank of the process group, "
                f"got D = {list(dims)} on ranks 0..{world_size - 1}"
            )
        if len(set(dtypes)) > 1:
            dtype_names = [str(dtype).replace("torch.", "") for dtype in (torch.float32, torch.float64)]
            raise ValueError(
                f"{names} must have the same compute dtype on every rank of the process group (float64 inputs "
                f"compute in float64, the others in float32), got {[dtype_names[code] for code in dtypes]} on ranks "
                f"0..{world_size - 1}"
            )
        if len(set(checksums)) > 1:
            raise ValueError(
                f"the loss options must be the same on every rank of the process group, got {options} on rank "
                f"{rank} and different ones on ranks {[r for r, c in enumerate(checksums) if c != checksum]}"
            )
        if sum(counts) < 2:
            raise ValueError(
                "the global batch (all ranks of the process group) needs at least 2 rows, got "
                f"N = {sum(counts)} (rows per rank: {list(counts)})"
            )
        return cls(group, rank, counts, dims[0])

    def var_mean(self, z: torch.Tensor, *, correction: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(var, mean)`` per column of the global batch, of which ``z`` holds this rank's rows."""
        mean, m2 = local_moments(z)
        local = torch.stack((mean, m2))
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local, group=self.group)
        stacked = torch.stack(gathered)
        mean, m2 = merge_moments(self.counts, stacked[:, 0], stacked[:, 1])
        return m2.div_(self.count - correction), mean

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (an all-reduce outside autograd); returns it."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor


# ------------------------------------------------------------------------------------------------ collectives


class _GatherRowsOfReplicatedLoss(torch.autograd.Function):
    """All-gather the rows of one or more views from every rank, for a loss that every rank computes identically.

    Forward: pad this rank's rows to the largest count, one all-gather, trim, concatenate in rank order.
    Backward: this rank's rows of the upstream gradient, without a collective. That is the exact gradient
    because every rank evaluates the same function of the gathered rows, so each already holds the complete
    ``∂L/∂(gathered rows)``. (A general-purpose differentiable all-gather reduce-scatters instead, which sums W
    identical copies here.)
    """

    @staticmethod
    def forward(ctx, batch: GlobalBatch, *views: torch.Tensor):
        rows, dim = views[0].shape
        padded = views[0].new_zeros(len(views), max(batch.counts), dim)
        for index, view in enumerate(views):
            padded[index, :rows] = view
        gathered = [torch.empty_like(padded) for _ in range(batch.world_size)]
        dist.all_gather(gathered, padded, group=batch.group)
        ctx.start = sum(batch.counts[: batch.rank])
        ctx.rows = rows
        return tuple(
            torch.cat([part[index, :n] for part, n in zip(gathered, batch.counts, strict=True)])
            for index in range(len(views))
        )

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        own = slice(ctx.start, ctx.start + ctx.rows)
        return (None, *(grad[own] for grad in grads))


def gather_rows(batch: GlobalBatch, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every rank's rows of each view, concatenated in rank order: the global batch, on every rank.

    For a loss that every rank then computes identically from the gathered views: the backward hands each rank
    the exact ``∂L/∂z`` of its own rows and communicates nothing. One all-gather of ``len(views)·max_r N_r·D``
    elements per rank (shards are padded to the largest).

    Args:
        batch: the :class:`GlobalBatch` of ``views`` (from :meth:`GlobalBatch.exchange`).
        views: this rank's rows of each view, each of shape ``(N_r, D)``, of one dtype.

    Returns:
        One ``(N, D)`` tensor per view.

    Example:
        >>> import torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # a one-rank group
        >>> z = torch.randn(6, 4)
        >>> (gathered,) = gather_rows(GlobalBatch.exchange(z, dtype=z.dtype), z)
        >>> torch.equal(gathered, z)
        True
        >>> dist.destroy_process_group()
    """
    return _GatherRowsOfReplicatedLoss.apply(batch, *views)


def describe_options(function: str, **options: object) -> str:
    """The settings that every rank must share, as :meth:`GlobalBatch.exchange` compares them.

    Example:
        >>> describe_options("vicreg_terms", gamma=1.0, correction=1)
        'vicreg_terms(gamma=1.0, correction=1)'
    """
    return f"{function}(" + ", ".join(f"{name}={value!r}" for name, value in options.items()) + ")"


def gather_global_batch(
    *views: torch.Tensor, options: str, group=None, names: str = "z1 and z2"
) -> tuple[tuple[torch.Tensor, ...], GlobalBatch]:
    """:meth:`GlobalBatch.exchange` then :func:`gather_rows`: the global batch of ``views`` on every rank.

    The entry point of a loss that computes the single-process formula on the gathered views (VICReg and the
    one-view regularizers). ``views`` are this rank's rows, already in the compute dtype (float32 or float64);
    ``options`` describes the settings every rank must share; ``names`` names the inputs in error messages.
    Every rank of ``group`` must call it.

    Returns:
        ``(gathered views, batch)``.

    Example:
        >>> import torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # a one-rank group
        >>> z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
        >>> (g1, g2), batch = gather_global_batch(z1, z2, options=describe_options("my_loss", weight=1.0))
        >>> g1.shape, batch.count
        (torch.Size([6, 4]), 6)
        >>> dist.destroy_process_group()
    """
    batch = GlobalBatch.exchange(views[0], dtype=views[0].dtype, options=options, group=group, names=names)
    return gather_rows(batch, *views), batch


def _gather_one_view(function: str, z: torch.Tensor, name: str, group, **options) -> tuple[torch.Tensor, GlobalBatch]:
    """``(rows of all ranks, batch)`` of the one view ``z`` of a one-view loss (already in its compute dtype).

    ``function`` and ``options`` describe the settings every rank must share; ``name`` names ``z`` in errors.
    """
    described = describe_options(function, **options)
    (z,), batch = gather_global_batch(z, options=described, group=group, names=name)
    return z, batch


class _ScaleGradient(torch.autograd.Function):
    """The identity on tensors whose backward multiplies the gradients by ``factor``."""

    @staticmethod
    def forward(ctx, factor: float, *tensors: torch.Tensor):
        ctx.factor = factor
        return tuple(tensor.view_as(tensor) for tensor in tensors)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return (None, *(grad * ctx.factor for grad in grads))


def apply_gradient_convention(
    gradient_convention: str, batch: GlobalBatch, *terms: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The terms of a global-batch loss, unchanged in value, with the backward of ``gradient_convention``.

    Every rank computes the same loss ``L`` of the global batch and its backward gives ``∂L/∂z_r`` of its own rows.
    ``"global"`` multiplies the gradients by W (so that, after DDP averages parameter gradients over the W ranks,
    they equal those of one process on the concatenated batch); ``"official"`` leaves them at ``∂L/∂z_r``.
    Apply it once, to the terms from which the loss is a linear combination.

    Example:
        >>> batch = GlobalBatch(None, rank=0, counts=[3, 5], dim=4)  # two ranks
        >>> z = torch.ones(3, 4, requires_grad=True)
        >>> (term,) = apply_gradient_convention("global", batch, z.sum())
        >>> term.backward()
        >>> z.grad[0, 0].item()  # W = 2 times ∂L/∂z
        2.0
    """
    if gradient_convention == "global" and any(term.requires_grad for term in terms):
        return _ScaleGradient.apply(float(batch.world_size), *terms)
    return terms


# ------------------------------------------------------------------------------------------------ the loss


def barlow_twins_terms_global(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    dtype: torch.dtype,
    eps: float,
    normalization: str,
    off_diagonal_target: float,
    algorithm: str,
    strategy: str,
    gradient_convention: str,
    group=None,
) -> tuple[torch.Tensor, torch.Tensor, GlobalBatch]:
    """``(invariance, redundancy, batch)`` of the global batch, of which ``z1, z2`` hold this rank's rows.

    The entry point of :func:`redundancy.barlow_twins_terms` when the process group has more than one rank;
    options are already validated and ``dtype`` is the compute dtype. Every rank must call it (it runs
    collectives). ``batch`` tells the caller the global N and D.

    Example:
        >>> import redundancy
        >>> import torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # a one-rank group
        >>> z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
        >>> invariance, redundancy_term, batch = barlow_twins_terms_global(
        ...     z1, z2, dtype=torch.float64, eps=1e-5, normalization="batchnorm", off_diagonal_target=0.0,
        ...     algorithm="auto", strategy="all_gather", gradient_convention="global")
        >>> dist.destroy_process_group()
        >>> terms = redundancy.barlow_twins_terms(z1, z2)  # one process: the same batch, the same terms
        >>> torch.allclose(invariance, terms.invariance), torch.allclose(redundancy_term, terms.redundancy), batch.count
        (True, True, 8)
    """
    shared_options = (
        f"normalization={normalization!r}, eps={eps!r}, off_diagonal_target={off_diagonal_target!r}, "
        f"algorithm={algorithm!r}, strategy={strategy!r}, gradient_convention={gradient_convention!r}"
    )
    batch = GlobalBatch.exchange(z1, dtype=dtype, options=shared_options, group=group)
    n, d = batch.count, batch.dim
    if strategy == "auto":
        strategy = cost.choose_strategy(n, d, batch.world_size, dtype, algorithm=algorithm)
    if algorithm == "auto":
        algorithm = "cross" if strategy == "all_reduce" else cost.choose_algorithm(n, d)
    target = float(off_diagonal_target)
    with no_autocast(z1.device):
        a, b = z1.to(dtype), z2.to(dtype)
        standardization = standardization_of(normalization, eps)
        if strategy == "all_reduce":
            invariance, redundancy = cross_correlation_terms(
                a, b, target=target, batch=batch, standardization=standardization
            )
        else:
            if standardization is not None:  # with the global statistics, before the gather
                a = standardize(a, standardization, batch=batch)
                b = standardize(b, standardization, batch=batch)
            a, b = gather_rows(batch, a, b)
            compute_terms = gram_terms if algorithm == "gram" else cross_correlation_terms
            invariance, redundancy = compute_terms(a, b, target=target)
        invariance, redundancy = apply_gradient_convention(gradient_convention, batch, invariance, redundancy)
    return invariance, redundancy, batch
