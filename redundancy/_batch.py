"""The batch of a loss call over the ranks of a process group, and the collectives the losses and ops use.

One process is a group of one rank, for which every collective here is the identity: the losses and ops run one
path whatever the number of ranks. :mod:`redundancy._exchange` builds a :class:`GlobalBatch` at the start of every
call, after the ranks have checked their inputs and options together.

**Statistics.** Each rank computes the count, mean and centred sum of squares ``M2 = Σ (z - mean)²`` of its rows;
one all-gather brings every rank's ``(mean, M2)`` and :func:`merge_moments` combines them with the parallel formula
(Chan et al.), which never subtracts two large sums of squares.

**Gathering rows.** A loss that every rank evaluates identically on the whole batch gathers every rank's rows
(:meth:`GlobalBatch.gather`); the backward hands each rank its own rows of ``∂L/∂(gathered rows)`` without a
collective. Unequal row counts never reach a raw all-gather: rows are padded to the largest count and trimmed.

**Gradient convention.** :meth:`GlobalBatch.apply_gradient_convention` is its one implementation (docs:
``distributed.rst``).

**Feature shards.** :class:`FeatureShards` sums tensors over the ranks that hold the other columns of the same rows,
or gathers those columns.
"""

import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from redundancy._ops._autograd import refuse_graph_with_collectives, with_cached_signature
from redundancy._ops.reductions import column_dot

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup
else:
    #: The type of a process group (a type that no value has where torch.distributed is not built).
    ProcessGroup = dist.ProcessGroup if dist.is_available() else type("ProcessGroup", (), {})

#: Whether this build of torch has torch.distributed at all.
DISTRIBUTED_AVAILABLE = dist.is_available()

def group_world_size(group: "ProcessGroup | None" = None) -> int:
    """The number of ranks in ``group`` (the default group for ``None``); 1 when torch.distributed is not in use.

    Example:
        >>> group_world_size()  # a process without torch.distributed.init_process_group
        1
    """
    if not DISTRIBUTED_AVAILABLE or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)

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
    largest = 0  # the largest shard (a loop, not max(key=...), which torch.compile cannot trace)
    for r in range(1, len(counts)):
        if counts[r] > counts[largest]:
            largest = r
    shift = means[largest]
    mean = shift + torch.mv((means - shift).t(), weights).div_(total)
    deviation = (means - mean).square_()
    m2 = m2s.sum(dim=0).add_(torch.mv(deviation.t(), weights))
    return mean, m2


# ------------------------------------------------------------------------------------------------ the batch


class GlobalBatch:
    """The batch of a loss call: its rows on each rank of a process group, and the collectives over them.

    One process is a group of one rank, for which every collective below is the identity; the losses run one path
    whatever the number of ranks. :func:`redundancy._exchange.open_batch` builds it at the start of every call.

    Attributes:
        group: the process group (``None``: the default group, or no group for one process).
        rank: this process's rank in ``group``.
        world_size: number of ranks W (1 for one process).
        counts: rows on each rank, a tuple of W ints.
        count: rows of the global batch N.
        dim: feature dimension D of the full views (the same on every rank).
        dtype: the compute dtype (float32, or float64 for float64 inputs).
        features: how the features are split over ``feature_group`` (:class:`FeatureShards`), or ``None`` when
            every rank holds all D of them.

    Example:
        >>> batch = GlobalBatch(None, rank=1, counts=[3, 0, 5], dim=16)  # three ranks, one of them empty
        >>> batch.world_size, batch.count, batch.counts
        (3, 8, (3, 0, 5))
    """

    def __init__(
        self,
        group: "ProcessGroup | None",
        rank: int,
        counts: Sequence[int],
        dim: int,
        dtype: torch.dtype = torch.float32,
        features: "FeatureShards | None" = None,
    ) -> None:
        self.group = group
        self.rank = rank
        self.world_size = len(counts)
        self.counts = tuple(counts)
        self.count = sum(self.counts)
        self.dim = dim
        self.dtype = dtype
        self.features = features

    @property
    def for_ops(self) -> "GlobalBatch | None":
        """This batch for the ops of ``redundancy._ops``, or ``None`` for one rank (the ops' local fast path)."""
        return self if self.world_size > 1 else None


    def var_mean(self, z: torch.Tensor, *, correction: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(var, mean)`` per column of the global batch, of which ``z`` holds this rank's rows."""
        mean, m2 = local_moments(z)
        if self.world_size > 1:
            local = torch.stack((mean, m2))
            gathered = [torch.empty_like(local) for _ in range(self.world_size)]
            dist.all_gather(gathered, local, group=self.group)
            stacked = torch.stack(gathered)
            mean, m2 = merge_moments(self.counts, stacked[:, 0], stacked[:, 1])
        return m2.div_(self.count - correction), mean

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (outside autograd); use the tensor returned."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each tensor summed over the ranks, for a loss that every rank then computes identically from the sums.

        One all-reduce of all the tensors together (the tensors themselves for one rank). The backward hands each
        rank the upstream gradient unchanged, without a collective: every rank computes the same function of the
        sums, so each already holds the whole ``∂L/∂(sum)``, which is also ``∂L/∂(its own part)``. (A
        general-purpose differentiable all-reduce, ``torch.distributed.nn.all_reduce``, sums the W identical
        gradients in its backward instead, W times this.) A graph of the backward (second derivatives) is refused
        on several ranks: the other ranks' share of it would need a collective.

        Example:
            >>> batch = GlobalBatch(None, rank=0, counts=[5], dim=3)  # one process: the identity
            >>> sums = torch.ones(4)
            >>> batch.sum(sums)[0] is sums
            True
        """
        if self.world_size == 1:
            return tensors
        if not any(tensor.requires_grad for tensor in tensors):
            return _sum_over_ranks(self, *tensors)
        return _SumOverRanks.apply(self, *tensors)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` of the group's first rank, on every rank (outside autograd; ``tensor`` itself for one rank).

        Every rank passes a tensor of the same shape and dtype; the others' values are not read. Under
        ``torch.compile`` a functional collective, which the graph holds.
        """
        if self.world_size == 1:
            return tensor
        if torch.compiler.is_compiling():
            import torch.distributed._functional_collectives as funcol  # imported by the first traced call

            group = self.group if self.group is not None else dist.group.WORLD
            return funcol.broadcast(tensor, 0, typing.cast(ProcessGroup, group))
        dist.broadcast(tensor, group=self.group, group_src=0)
        return tensor

    def assert_same(self, value: torch.Tensor, message: str) -> None:
        """Assert on the device, without reading ``value`` on the host, that the small tensor ``value`` is the same
        on every rank (``torch._assert_async``: a :class:`RuntimeError` on the CPU, a device-side assertion on a
        GPU). For the checks inside a ``torch.compile`` graph, whose exchange of headers cannot carry a value that
        only the device holds."""
        if self.world_size == 1:
            return
        value = value.reshape(-1)
        gathered = [torch.empty_like(value) for _ in range(self.world_size)]
        dist.all_gather(gathered, value, group=self.group)
        values = torch.stack(gathered)
        torch._assert_async((values == values[0]).all(), message)

    def gather(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every rank's rows of each view, concatenated in rank order: the global batch, on every rank.

        For a loss that every rank then computes identically from the gathered views: the backward hands each rank
        the exact ``∂L/∂z`` of its own rows and communicates nothing. One all-gather of ``len(views)·max_r N_r·D``
        elements per rank (shards are padded to the largest); the views themselves for one rank.
        """
        if self.world_size == 1:
            return views
        if not any(view.requires_grad for view in views):
            return _gather_padded(self, *views)
        return _GatherRowsOfReplicatedLoss.apply(self, *views)

    def apply_gradient_convention(self, gradient_convention: str, outputs):
        """``outputs`` (a tensor or a NamedTuple of tensors), unchanged in value, with the convention's backward.

        Every rank computes the same loss ``L`` of the global batch and its backward gives ``∂L/∂z_r`` of its own
        rows. ``"global"`` multiplies the gradients by W (so that, after DDP averages parameter gradients over the
        W ranks, they equal those of one process on the concatenated batch); ``"official"`` leaves them at
        ``∂L/∂z_r``. Each output is scaled on its own, so the loss and its terms all follow the convention.

        Example:
            >>> batch = GlobalBatch(None, rank=0, counts=[3, 5], dim=4)  # two ranks
            >>> z = torch.ones(3, 4, requires_grad=True)
            >>> batch.apply_gradient_convention("global", z.sum()).backward()
            >>> z.grad[0, 0].item()  # W = 2 times ∂L/∂z
            2.0
        """
        if self.world_size == 1 or gradient_convention != "global":
            return outputs
        tensors = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
        if not any(tensor.requires_grad for tensor in tensors):
            return outputs
        scaled = _ScaleGradient.apply(float(self.world_size), *tensors)
        return scaled[0] if isinstance(outputs, torch.Tensor) else type(outputs)(*scaled)



class FeatureShards:
    """How the features (columns) of the views are split over the ranks of ``feature_group``.

    Every rank of the group holds the same rows and its own slice of the columns, in rank order: rank p holds
    columns ``offset .. offset + widths[p]`` of the full D. Built by :meth:`GlobalBatch.open_grid`.

    Attributes:
        group: the feature group (a process group of F > 1 ranks).
        rank: this process's rank in it.
        world_size: number of ranks F.
        widths: columns on each rank, a tuple of F ints.
        width: this rank's columns D_p.
        dim: features D of the full views.
        offset: the first of this rank's columns.

    Example:
        >>> features = FeatureShards(None, rank=1, widths=[3, 5, 4])
        >>> features.dim, features.offset, features.width
        (12, 3, 5)
    """

    def __init__(self, group, rank: int, widths: Sequence[int]) -> None:
        self.group = group
        self.rank = rank
        self.widths = tuple(widths)
        self.world_size = len(self.widths)
        self.dim = sum(self.widths)
        self.offset = sum(self.widths[:rank])
        self.width = self.widths[rank]

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each tensor summed over the feature group, for a loss that every rank then computes identically.

        One all-reduce of all the tensors together. The backward hands each rank the upstream gradient unchanged,
        without a collective: every rank computes the same function of the sums, so each already holds the whole
        ``∂L/∂(sum)``, which is also ``∂L/∂(its own part)``.
        """
        return _SumOfReplicatedLoss.apply(self, *tensors)

    def gather_columns(self, z: torch.Tensor) -> torch.Tensor:
        """The full N×D matrix of which ``z`` holds this rank's columns, on every rank of the feature group.

        Columns are padded to the widest rank's, all-gathered and trimmed. The backward sums the gradient of the
        full matrix over the feature group (each rank's share of the loss reads every column) and keeps this
        rank's columns: one all-reduce of N×D elements.
        """
        return _GatherColumns.apply(self, z)


def _refuse_graph(what: str) -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{what}: second derivatives (create_graph=True, torch.func transforms) are not supported across the "
            "ranks of feature_group; differentiate without create_graph"
        )


@with_cached_signature
class _SumOfReplicatedLoss(torch.autograd.Function):
    """All-reduce (sum) tensors over a feature group; the backward is the identity (see :meth:`FeatureShards.sum`)."""

    @staticmethod
    def forward(features: FeatureShards, *tensors: torch.Tensor):
        flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=features.group)
        return tuple(
            part.view_as(tensor) for part, tensor in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        _refuse_graph("the sum over feature_group")
        return (None, *grads)


@with_cached_signature
class _GatherColumns(torch.autograd.Function):
    """All-gather the columns of a feature group (see :meth:`FeatureShards.gather_columns`)."""

    @staticmethod
    def forward(features: FeatureShards, z: torch.Tensor):
        rows, width = z.shape
        padded = z.new_zeros(rows, max(features.widths))
        padded[:, :width] = z
        gathered = [torch.empty_like(padded) for _ in range(features.world_size)]
        dist.all_gather(gathered, padded, group=features.group)
        return torch.cat([part[:, :w] for part, w in zip(gathered, features.widths, strict=True)], dim=1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.features = inputs[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _refuse_graph("the columns gathered over feature_group")
        features = ctx.features
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=features.group)
        return None, total[:, features.offset : features.offset + features.width]



def _gather_padded(batch: GlobalBatch, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every rank's rows of each view in rank order: pad to the largest count, one all-gather, trim."""
    rows, dim = views[0].shape
    padded = views[0].new_zeros(len(views), max(batch.counts), dim)
    for index, view in enumerate(views):
        padded[index, :rows] = view
    gathered = [torch.empty_like(padded) for _ in range(batch.world_size)]
    dist.all_gather(gathered, padded, group=batch.group)
    return tuple(
        torch.cat([part[index, :n] for part, n in zip(gathered, batch.counts, strict=True)])
        for index in range(len(views))
    )


@with_cached_signature
class _GatherRowsOfReplicatedLoss(torch.autograd.Function):
    """All-gather the rows of one or more views from every rank, for a loss that every rank computes identically.

    Forward: pad this rank's rows to the largest count, one all-gather, trim, concatenate in rank order.
    Backward: this rank's rows of the upstream gradient, without a collective. That is the exact gradient
    because every rank evaluates the same function of the gathered rows, so each already holds the complete
    ``∂L/∂(gathered rows)``. (A general-purpose differentiable all-gather reduce-scatters instead, which sums W
    identical copies here.)
    """

    @staticmethod
    def forward(batch: GlobalBatch, *views: torch.Tensor):
        return _gather_padded(batch, *views)

    @staticmethod
    def setup_context(ctx, inputs, output):
        batch = inputs[0]
        ctx.batch = batch
        ctx.own = slice(sum(batch.counts[: batch.rank]), sum(batch.counts[: batch.rank + 1]))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        # A graph of this backward would hand each rank the second derivatives of its own rows only: the other
        # ranks' gradients depend on these rows too, through the gathered batch, and that share would need a
        # collective. Refused rather than silently incomplete.
        refuse_graph_with_collectives(ctx.batch, "the rows gathered from the ranks")
        return (None, *(grad[ctx.own] for grad in grads))


def _sum_over_ranks(batch: GlobalBatch, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor summed over the ranks of ``batch``: one all-reduce of all of them, flattened together."""
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=batch.group)
    parts = flat.split([tensor.numel() for tensor in tensors])
    return tuple(part.view_as(tensor) for part, tensor in zip(parts, tensors, strict=True))


@with_cached_signature
class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) tensors over the ranks of a batch; the backward is the identity (see
    :meth:`GlobalBatch.sum`)."""

    @staticmethod
    def forward(batch: GlobalBatch, *tensors: torch.Tensor):
        return _sum_over_ranks(batch, *tensors)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.batch = inputs[0]

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        refuse_graph_with_collectives(ctx.batch, "the sums over the ranks")
        return (None, *grads)


@with_cached_signature
class _ScaleGradient(torch.autograd.Function):
    """The identity on tensors whose backward multiplies the gradients by ``factor``."""

    @staticmethod
    def forward(factor: float, *tensors: torch.Tensor):
        return tuple(tensor.view_as(tensor) for tensor in tensors)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor = inputs[0]

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return (None, *(grad * ctx.factor for grad in grads))
