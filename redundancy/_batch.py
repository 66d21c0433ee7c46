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

**Collectives.** Every collective of the losses goes through :func:`all_gather`, :func:`all_reduce`,
:func:`broadcast` or :func:`gather_objects`, which run the ``torch.distributed`` collective as it is, unless a
timeout was set (:class:`set_collective_timeout`): then each rank records where it is in the default group's store,
waits for the collective at most that long, and on expiry raises an error naming the ranks that did not arrive.
"""

import datetime
import json
import math
import numbers
import os
import pickle
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import torch
import torch.distributed as dist

from redundancy._ops._autograd import refuse_graph_with_collectives
from redundancy._ops._autograd import with_cached_signature
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
        call: ``(loss, k)``: the loss's name and the call's number on the group of its exchange, which names the
            collectives of the call in a timeout's message (``None``: no exchange).

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
        call: tuple[str, int] | None = None,
    ) -> None:
        self.group = group
        self.rank = rank
        self.world_size = len(counts)
        self.counts = tuple(counts)
        self.count = sum(self.counts)
        self.dim = dim
        self.dtype = dtype
        self.features = features
        self.call = call

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
            all_gather(gathered, local, self.group, what="the all-gather of the statistics", call=self.call)
            stacked = torch.stack(gathered)
            mean, m2 = merge_moments(self.counts, stacked[:, 0], stacked[:, 1])
        return m2.div_(self.count - correction), mean

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (outside autograd); use the tensor returned."""
        if self.world_size > 1:
            all_reduce(tensor, self.group, what="a sum over the ranks", call=self.call)
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
        broadcast(tensor, self.group, what="the broadcast of the first rank's draw", call=self.call)
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
        all_gather(gathered, value, self.group, what="the comparison of a value on the device", call=self.call)
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

    def gather_in_dtype(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`gather` of the views converted to the compute dtype (``self.dtype``): a loss's first step."""
        return self.gather(*(view.to(self.dtype) for view in views))

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
    columns ``offset .. offset + widths[p]`` of the full D. Built by :func:`redundancy._exchange.open_grid`.

    Attributes:
        group: the feature group (a process group of F > 1 ranks).
        rank: this process's rank in it.
        world_size: number of ranks F.
        widths: columns on each rank, a tuple of F ints.
        width: this rank's columns D_p.
        dim: features D of the full views.
        offset: the first of this rank's columns.
        call: ``(loss, k)`` as :attr:`GlobalBatch.call`.

    Example:
        >>> features = FeatureShards(None, rank=1, widths=[3, 5, 4])
        >>> features.dim, features.offset, features.width
        (12, 3, 5)
    """

    def __init__(self, group, rank: int, widths: Sequence[int], call: tuple[str, int] | None = None) -> None:
        self.group = group
        self.call = call
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
        all_reduce(flat, features.group, what="a sum over feature_group", call=features.call)
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
        all_gather(gathered, padded, features.group, what="the all-gather of the columns", call=features.call)
        return torch.cat([part[:, :w] for part, w in zip(gathered, features.widths, strict=True)], dim=1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.features = inputs[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _refuse_graph("the columns gathered over feature_group")
        features = ctx.features
        total = grad.clone(memory_format=torch.contiguous_format)
        all_reduce(total, features.group, what="the sum of the gathered columns' gradient", call=features.call)
        return None, total[:, features.offset : features.offset + features.width]


def _gather_padded(batch: GlobalBatch, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every rank's rows of each view in rank order: pad to the largest count, one all-gather, trim."""
    rows, dim = views[0].shape
    padded = views[0].new_zeros(len(views), max(batch.counts), dim)
    for index, view in enumerate(views):
        padded[index, :rows] = view
    gathered = [torch.empty_like(padded) for _ in range(batch.world_size)]
    all_gather(gathered, padded, batch.group, what="the all-gather of the rows", call=batch.call)
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
    all_reduce(flat, batch.group, what="a sum over the ranks", call=batch.call)
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


# ------------------------------------------------------------------------------------------------ collectives

#: The environment variable that sets the collective timeout at import (seconds; see set_collective_timeout).
TIMEOUT_VARIABLE = "REDUNDANCY_COLLECTIVE_TIMEOUT"


def _checked_timeout(seconds: object, name: str = "seconds") -> float | None:
    """``seconds`` as a float, after checking that it is ``None`` or a positive finite real number."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(f"{name} must be None or a positive number of seconds, got {type(seconds).__name__}")
    if not (0 < float(seconds) < math.inf):
        raise ValueError(f"{name} must be None or a positive, finite number of seconds, got {seconds!r}")
    return float(seconds)


def _timeout_from_environment() -> float | None:
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        return _checked_timeout(float(text), TIMEOUT_VARIABLE)
    except ValueError as error:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got {text!r}") from error


class _Timeout:
    """The collective timeout of this process: its seconds (``None``: none), and how many times one was set, which
    keeps the records of one setting apart from those of another in the store."""

    seconds: float | None = _timeout_from_environment()
    setting: int = 1


#: The collectives this rank ran on each process group (by name) under the current setting of the timeout.
_COUNTS: dict[str, int] = {}


class CollectiveNotStarted(RuntimeError):
    """The error of a collective that the ranks did not start under the collective timeout: a rank did not arrive
    in time, or the ranks arrived at different collectives (see :func:`_agree`)."""


class set_collective_timeout:  # a function that is also a context manager, as torch.set_grad_enabled
    """Make every collective of the losses wait at most ``seconds`` for the other ranks, then fail naming them.

    By default a loss waits in a collective as long as the process group's own timeout (30 minutes for NCCL and
    gloo unless ``init_process_group(timeout=...)`` says otherwise). The ranks check their inputs, options, groups
    and gradients together at the start of every call, so most mistakes raise at once on every rank; what they
    cannot see is a rank that is not there: one that never calls the loss (a branch that skips it, an exception
    raised before the call, such as Python's own :class:`TypeError` for a misspelt keyword), that skips the
    backward, or whose ``group``/``feature_group`` name other ranks than its peers' in a way that no common group
    shows (see :doc:`/distributed`). With a timeout, the ranks meet in the default group's store before each
    collective of a loss: when one has not arrived after ``seconds``, the ranks that did raise a
    :class:`RuntimeError` naming it and where it is; when they arrived at different collectives (a rank that skipped
    the backward is at its next call), every rank raises one naming each rank's collective. No collective has
    started then, so the process group stays usable: the late rank gets the error when it arrives.

    Called as a function it sets the timeout of this process (``None`` removes it); used as a context manager it
    restores the previous timeout on exit, as :func:`torch.set_grad_enabled` does. Set it alike on every rank, at
    the same point of the program. The environment variable ``REDUNDANCY_COLLECTIVE_TIMEOUT`` (seconds) sets it at
    import.

    Cost: nothing without a timeout. With one, each collective of a loss costs a few round trips to the store (and
    a host synchronization on a GPU): a setting for finding a missing rank, not for speed.

    Args:
        seconds: how long a rank waits for the others at a collective before it raises, or ``None`` for the process
            group's own timeout.

    Example:
        >>> import redundancy
        >>> with redundancy.set_collective_timeout(60):
        ...     redundancy.get_collective_timeout()
        60.0
        >>> redundancy.get_collective_timeout() is None
        True
    """

    __module__ = "redundancy"  # public there; this module is private

    def __init__(self, seconds: float | None) -> None:
        self.previous = _Timeout.seconds
        _set_timeout(_checked_timeout(seconds))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exception: object) -> None:
        _set_timeout(self.previous)


def _set_timeout(seconds: float | None) -> None:
    if seconds is not None and _Timeout.seconds is None:  # a new setting: the ranks count their collectives afresh
        _Timeout.setting += 1
        _COUNTS.clear()
    _Timeout.seconds = seconds


def get_collective_timeout() -> float | None:
    """The seconds set by :class:`set_collective_timeout` (or ``REDUNDANCY_COLLECTIVE_TIMEOUT``), or ``None``.

    Example:
        >>> import redundancy
        >>> redundancy.get_collective_timeout() is None  # unless REDUNDANCY_COLLECTIVE_TIMEOUT is set
        True
    """
    return _Timeout.seconds


def all_gather(
    outputs: list[torch.Tensor], tensor: torch.Tensor, group, *, what: str, call=None, of_the_loss: bool = True
) -> None:
    """``torch.distributed.all_gather(outputs, tensor, group=group)``, under the collective timeout if one is set.

    ``what`` (the collective, e.g. ``"the all-gather of the rows"``) and ``call`` (``(loss, k)``: the loss and its
    call on the group of its exchange) say which collective this is; the ranks must be at the same ``what`` (and,
    when ``of_the_loss``, of the same loss, in its forward or its backward alike). Nothing is formatted without a
    timeout.
    """
    if _Timeout.seconds is None or torch.compiler.is_compiling():
        dist.all_gather(outputs, tensor, group=group)
        return
    _agree(group, what, call, of_the_loss)
    dist.all_gather(outputs, tensor, group=group)


def all_reduce(tensor: torch.Tensor, group, *, what: str, call=None) -> None:
    """``torch.distributed.all_reduce(tensor, group=group)`` (a sum, in place), as :func:`all_gather` runs it."""
    if _Timeout.seconds is None or torch.compiler.is_compiling():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
        return
    _agree(group, what, call, True)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)


def broadcast(tensor: torch.Tensor, group, *, what: str, call=None) -> None:
    """``torch.distributed.broadcast`` of the group's first rank's ``tensor`` (in place), as :func:`all_gather` runs
    it."""
    if _Timeout.seconds is not None and not torch.compiler.is_compiling():
        _agree(group, what, call, True)
    dist.broadcast(tensor, group=group, group_src=0)


def gather_objects(value: Any, group, device: torch.device, *, what: str, call=None) -> list:
    """Every rank's ``value`` (picklable), in rank order: two all-gathers (the sizes, then the padded bytes) on
    ``device``, run as :func:`all_gather` runs them."""
    data = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8).to(device)
    world_size = dist.get_world_size(group)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(world_size)]
    all_gather(sizes, size, group, what=what, call=call, of_the_loss=False)
    lengths = [int(length) for length in torch.cat(sizes).tolist()]
    padded = data.new_zeros(max(lengths))
    padded[: data.numel()] = data
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    all_gather(gathered, padded, group, what=what, call=call, of_the_loss=False)
    return [pickle.loads(part[:length].cpu().numpy().tobytes()) for part, length in zip(gathered, lengths, strict=True)]


_GROUP_RANKS: dict = {}


def group_ranks(group) -> list[int]:
    """The global ranks of ``group`` (the default group for ``None``), in the order of its own ranks."""
    ranks = _GROUP_RANKS.get(group)
    if ranks is None:
        if len(_GROUP_RANKS) >= 1024:
            _GROUP_RANKS.clear()
        ranks = _GROUP_RANKS[group] = dist.get_process_group_ranks(group if group is not None else dist.group.WORLD)
    return ranks


def _agree(group, what: str, call, of_the_loss: bool) -> None:
    """Meet the other ranks of ``group`` in the default group's store before a collective (under a timeout).

    The collective is the ``k``-th of the group under this setting of the timeout. Each rank writes its arrival
    (which collective it is at) under its own key and counts itself in; the last to arrive compares the arrivals and
    sets the verdict, ``"ok"`` or ``"differ"``. A rank that waited the timeout's seconds for the verdict sets it to
    ``"abandoned"`` instead (one atomic compare-and-set decides between it and the last arrival). Every rank reads
    the one verdict, and the collective runs on ``"ok"`` only, so no rank is ever left in it. After ``"ok"`` each
    rank deletes its arrival, and the last arrival deletes the count and verdict of the previous collective of the
    group, which every rank has passed; the keys of a collective that did not start stay, for the ranks still to
    come to it.
    """
    seconds = _Timeout.seconds
    assert seconds is not None
    name = (group if group is not None else _default_group()).group_name
    count = _COUNTS[name] = _COUNTS.get(name, 0) + 1
    phase = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
    loss, ordinal = call if call is not None else ("a loss", 0)
    identity = f"{what} in the {phase} of {loss}" if of_the_loss else what
    shown = f"{what} in the {phase} of {loss} (call {ordinal})" if call is not None else what
    ranks = group_ranks(group)
    me = dist.get_rank()
    store = dist.distributed_c10d._get_default_store()
    root = f"redundancy/collectives/{_Timeout.setting}"
    prefix = f"{root}/{name}/{count}"
    store.set(f"{root}/at/{me}", json.dumps([shown, ranks]))
    store.set(f"{prefix}/{me}", json.dumps([identity, shown]))
    if store.add(f"{prefix}/count", 1) == len(ranks):
        identities = {arrival[0] for arrival in _arrivals(store, prefix, ranks).values()}
        store.compare_set(f"{prefix}/verdict", "", "ok" if len(identities) == 1 else "differ")
        if count > 1:
            for key in ("count", "verdict"):
                store.delete_key(f"{root}/{name}/{count - 1}/{key}")
    try:
        store.wait([f"{prefix}/verdict"], datetime.timedelta(seconds=seconds))
    except RuntimeError:  # the store's timeout: give up, unless the last rank arrived meanwhile
        store.compare_set(f"{prefix}/verdict", "", "abandoned")
    verdict = store.get(f"{prefix}/verdict").decode()
    if verdict == "ok":
        store.delete_key(f"{prefix}/{me}")
        return
    arrivals = _arrivals(store, prefix, ranks)
    if verdict == "differ":
        where = "; ".join(f"rank {rank} is at {arrival[1]}" for rank, arrival in sorted(arrivals.items()))
        raise CollectiveNotStarted(
            f"the ranks {ranks} are at different collectives (redundancy.set_collective_timeout compares them): "
            f"{where}. Every rank must make the same calls of the losses, and run their backward, in the same "
            "order (a rank that skips the backward is at its next call)"
        )
    reports = []
    for rank in (rank for rank in ranks if rank not in arrivals):
        key = f"{root}/at/{rank}"
        at = json.loads(store.get(key)) if store.check([key]) else None
        last = "none since the timeout was set" if at is None else f"{at[0]}, over ranks {at[1]}"
        reports.append(f"rank {rank} did not arrive (its last collective of a loss: {last})")
    found = "; ".join(reports) or f"this rank arrived after the others had waited {seconds:g} s for it"
    raise CollectiveNotStarted(
        f"{shown} did not start within {seconds:g} s (redundancy.set_collective_timeout) on rank {me}, over "
        f"ranks {ranks}: {found}. A rank that does not call the loss (a branch that skips it, or an error raised "
        "before the call, such as Python's TypeError for a misspelt keyword), that skips the backward, or whose "
        "group or feature_group differ from its peers' leaves the others waiting"
    )


def _default_group() -> "ProcessGroup":
    group = dist.group.WORLD
    assert group is not None, "torch.distributed is initialized"
    return group


def _arrivals(store, prefix: str, ranks: list[int]) -> dict[int, tuple[str, str]]:
    """``rank -> (identity, shown)`` of the ranks that arrived at the collective ``prefix``."""
    arrived = {}
    for rank in ranks:
        if store.check([f"{prefix}/{rank}"]):
            identity, shown = json.loads(store.get(f"{prefix}/{rank}"))
            arrived[rank] = (identity, shown)
    return arrived
