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

**The rest of the family.** Every loss of the family takes the same ``distributed``, ``gradient_convention`` and
``group`` options with the same meaning. Apart from Barlow Twins, the global batch is gathered: one all-gather
brings every rank's rows of each view (:meth:`GlobalBatch.gather`; ``V·max_r N_r·D`` elements per rank for V views)
and every rank evaluates the single-process formula on the concatenated batch, so means, variances, covariances
and every divisor are those of the whole batch. The gather's backward hands each rank its own rows of
``∂L/∂(gathered rows)`` without a collective (exact, since every rank computes the same ``L``), and
:meth:`GlobalBatch.apply_gradient_convention`, the one implementation of the convention above, scales the
gradients by W for ``"global"``. Mixed Barlow Twins takes each rank's ``permutation`` as a permutation of that
rank's own rows (each rank mixes its own images, as mix-bt does): over the global batch it is the block-diagonal
permutation that leaves every row on its rank.

**Feature parallelism.** Barlow Twins and VICReg also take ``feature_group=``: the ranks that hold the other
features (columns) of the same rows, as a column-parallel projector leaves them. With ``group`` for the rows this is
a 2-D grid (:meth:`GlobalBatch.open_grid`). Every rank gathers the rows of its columns over ``group``; everything
per feature (standardization, the diagonal of C, the variances) then stays local, and what crosses the columns is
summed over ``feature_group`` (:class:`FeatureShards`): the N×N Gram matrices of each rank's columns, since
``‖AᵀB‖² = ⟨AAᵀ, BBᵀ⟩``, or each rank's block row of C after a gather of the other view's columns
(``redundancy._ops.feature_shards``). The loss is that of the full N×D views on every rank, and the gradient
convention applies over ``group`` only. :func:`redundancy.cost.feature_parallel_bytes` counts the bytes.
The ranks compare the size of their ``feature_group`` (``feature_group`` on some ranks of a group only raises on
all of them), and ``group`` and ``feature_group`` must share no rank but this one. A grid reaches its ranks only
through the groups each rank names: a rank whose ``group`` or ``feature_group`` is not the grid's (not a process
group, or a group of other ranks) cannot reach the ranks that wait for it, which then fail at the process group's
timeout. ``torch.compile`` runs a grid call eagerly (a graph break; ``fullgraph=True`` raises, naming the reason).

**Every rank calls, and errors are collective.** Every rank of the group must call the loss, in the same order,
with the same options (``distributed="local"`` included; to evaluate a loss on some ranks only, pass ``group=`` a
group of those ranks). In a group of several ranks a call first checks its options and inputs, then joins one
small all-gather (:meth:`GlobalBatch.exchange`), local calls too, that carries an error flag, a per-group call
counter, the loss's name, the shapes, the compute dtype and the value of every option (and shared input) that
changes the result. A bad input or option on any rank therefore raises the same error on every rank at that call
(the message names the rank); ranks that call different losses, or whose D, dtype or options differ, raise an
error naming the difference. After a raised error the ranks are still in step. A rank that skips a call is not
seen: its next call pairs with the others' current one. Every rank must also run the backward of a loss it called
(the standardization's backward sums two D-vectors over the ranks). Unequal row counts never reach a raw all-gather:
rows are padded to the largest count and trimmed after.
"""

import functools
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from redundancy._ops._autograd import with_cached_signature
from redundancy._ops.reductions import column_dot
from redundancy._validation import compute_dtype

__all__ = [
    "DISTRIBUTED_MODES",
    "GRADIENT_CONVENTIONS",
    "HEADER_SIZE",
    "LOSS_NAMES",
    "STRATEGIES",
    "FeatureShards",
    "GlobalBatch",
    "group_world_size",
    "is_global",
    "local_moments",
    "merge_moments",
]

#: ``distributed=``: the loss of the batch of all ranks, or each rank's own.
DISTRIBUTED_MODES = ("global", "local")
#: ``strategy=`` of :func:`redundancy.barlow_twins_loss`: how the ranks combine their rows (:mod:`redundancy.cost`).
STRATEGIES = ("auto", "all_reduce", "all_gather")
#: ``gradient_convention=``: gradients of one process on the global batch, or the official script's (1/W).
GRADIENT_CONVENTIONS = ("global", "official")

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}
#: Whether this build of torch has torch.distributed at all.
_DISTRIBUTED_AVAILABLE = dist.is_available()
#: The type of a process group (a type that no value has where torch.distributed is not built).
ProcessGroup = dist.ProcessGroup if _DISTRIBUTED_AVAILABLE else type("NoProcessGroup", (), {})


def group_world_size(group: "dist.ProcessGroup | None" = None) -> int:
    """The number of ranks in ``group`` (the default group for ``None``); 1 when torch.distributed is not in use.

    Example:
        >>> group_world_size()  # a process without torch.distributed.init_process_group
        1
    """
    if not _DISTRIBUTED_AVAILABLE or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


#: Why a call with ``feature_group`` is left out of ``torch.compile`` graphs (the error of ``fullgraph=True``).
GRID_OUTSIDE_GRAPHS = (
    "feature_group= runs eagerly under torch.compile: the exchanges and collectives of a grid of row and feature "
    "shards are left out of the graph (a graph break), so fullgraph=True cannot compile the loss; compile without "
    "fullgraph, or call the loss outside the compiled region"
)


def outside_graphs(function: Callable) -> Callable:
    """``function``, run eagerly under ``torch.compile`` (a graph break; an error naming the reason with
    ``fullgraph=True``).

    A call on a grid reads headers on the host and runs :class:`FeatureShards`' collectives inside autograd
    Functions, which a graph cannot hold. The ``torch.compiler.disable`` form is made at the first call, not at
    import: making it imports ``torch._dynamo`` (and with it Triton), which ``import redundancy`` must not. A first
    call inside a traced graph makes it behind a graph break of its own (with ``fullgraph=True`` the error then
    names ``torch.compiler.disable`` rather than this reason).
    """
    disabled = None

    @functools.wraps(function)
    def run_eagerly(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(function, reason=GRID_OUTSIDE_GRAPHS)
        return disabled(*args, **kwargs)

    return run_eagerly


def is_global(distributed: object, group: object, feature_group: object = None) -> bool:
    """Whether a call with these options computes the rows of several ranks (and so exchanges with them).

    ``group`` that is not a process group counts as the default group, so that a rank whose ``group`` is wrong
    still joins the default group's exchange and reports its error there. With a ``feature_group``, ``group=None``
    means that the rows are not split (every rank of the feature group holds the same rows).

    Example:
        >>> is_global("global", None)  # a process without torch.distributed.init_process_group
        False
    """
    if group is None and isinstance(feature_group, dist.ProcessGroup):
        return False
    group = group if isinstance(group, dist.ProcessGroup) else None
    return distributed != "local" and group_world_size(group) > 1


def check_group(name: str, group: object) -> None:
    """Raise a :class:`TypeError` unless ``group`` is ``None`` or a :class:`torch.distributed.ProcessGroup`."""
    if group is None:
        return
    if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"{name} must be None or a torch.distributed.ProcessGroup, got {type(group).__name__}")


# ------------------------------------------------------------------------------------------------ statistics


def feature_group_size(feature_group: object) -> float:
    """What the ranks compare of ``feature_group``: its number of ranks F, or 0 without one.

    Every rank of a grid has a feature group of the same size; a rank that passes none (or a group of another size)
    while the others pass one would run other collectives than theirs.
    """
    return float(dist.get_world_size(feature_group)) if isinstance(feature_group, dist.ProcessGroup) else 0.0


def describe_feature_group(number: float) -> str:
    """``feature_group`` in an error message, from :func:`feature_group_size`."""
    return "None" if number == 0 else f"a group of {int(number)} ranks"


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

#: How many float64 values each rank sends at the start of a call in a process group (the header). They are an
#: error flag, the call counter, the loss, rows, D and dtype, then the shared options and inputs (at most
#: ``HEADER_SIZE - 6`` of those).
HEADER_SIZE = 32
#: Calls of a loss per process group on this rank (key: the group; the default group under its own object).
_CALLS: dict = {}
#: The names of the losses, by the code the ranks exchange (filled as the losses are declared).
LOSS_NAMES: dict[int, str] = {}


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _header_device(views: Sequence[object], group) -> torch.device:
    """Where the header goes: the CPU for gloo, otherwise the device of the inputs (or the current CUDA device)."""
    if "gloo" in dist.get_backend(group):
        return torch.device("cpu")
    for view in views:
        if isinstance(view, torch.Tensor) and not view.is_meta:
            return view.device
    return torch.device("cuda", torch.cuda.current_device())


class GlobalBatch:
    """The batch of a loss call: its rows on each rank of a process group, and the collectives over them.

    One process is a group of one rank, for which every collective below is the identity; the losses run one path
    whatever the number of ranks. :meth:`open` builds it at the start of every call.

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
        group,
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

    # -------------------------------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        code: int,
        options,
        views: Sequence[object],
        view_names: Sequence[str],
        *,
        error: Exception | None = None,
        shared: Sequence[tuple[str, float]] = (),
        min_rows: int = 2,
    ) -> "GlobalBatch":
        """The batch of a call whose checks raised ``error`` (``None`` if they passed).

        In a process group of several ranks every call, global or local, joins one exchange of headers
        (:meth:`exchange`), even when its own checks failed, so that the same error is raised on every rank. A
        global call (:func:`is_global`) then has the batch of all ranks; a local one its own rows. ``shared`` are
        further ``(name, number)`` pairs every rank must agree on (inputs that are not views, such as Mixed Barlow
        Twins' ``alpha``); ``min_rows`` is the fewest rows the global batch may have; ``view_names`` name the
        views in error messages. A loss with a ``feature_group`` option opens a grid of row and feature shards
        (:meth:`open_grid`).
        """
        if isinstance(getattr(options, "feature_group", None), dist.ProcessGroup):
            return cls.open_grid(code, options, views, view_names, error, shared, min_rows)
        if not _DISTRIBUTED_AVAILABLE or not dist.is_initialized():  # one process: nothing to exchange
            if error is not None:
                raise error
            rows, dim = views[0].shape
            return cls(None, 0, (rows,), dim, compute_dtype(*views))
        _check_membership("group", options.group)
        group = options.group if isinstance(options.group, dist.ProcessGroup) else None
        if group_world_size(group) == 1:  # a group of one rank: nothing to exchange
            if error is not None:
                raise error
            rows, dim = views[0].shape
            return cls(None, 0, (rows,), dim, compute_dtype(*views))
        batch = cls.exchange(
            code,
            options,
            views,
            view_names,
            error=error,
            call=_count_call(group),
            group=group,
            shared=shared,
            min_rows=min_rows,
        )
        if is_global(options.distributed, group):
            return batch
        rows, dim = views[0].shape  # a local call: this rank's rows are its batch
        return cls(None, 0, (rows,), dim, batch.dtype)

    @classmethod
    def open_grid(cls, code, options, views, view_names, error, shared, min_rows) -> "GlobalBatch":
        """The batch of a call on a grid: rows split over ``options.group``, features over ``options.feature_group``.

        Called by :meth:`open` (whose arguments these are) when the loss has a ``feature_group``.

        The ranks of the row group (the other rows of this rank's columns; none when ``group`` is ``None``; a
        local call joins the exchange and then keeps its own rows) exchange headers as in :meth:`exchange`, then
        the ranks of the feature group (the other columns of these rows), carrying any error of the first exchange,
        then, on a grid of both, the row group once more with any error of the second. The grid is connected
        through these exchanges, so a bad input or option on any rank raises on every rank of the grid. Columns
        may be split unevenly; every rank of a feature group must hold the same rows.
        """
        _check_membership("group", options.group)
        _check_membership("feature_group", options.feature_group)
        feature_group = options.feature_group
        row_group = options.group if isinstance(options.group, dist.ProcessGroup) else None
        if row_group is not None and dist.get_world_size(row_group) == 1:
            row_group = None
        if error is None and row_group is not None:
            error = _check_crossing(row_group, feature_group)

        def exchange(group, error, split):
            """``(result, error)`` of :meth:`exchange` over ``group``: what it returns, or what it raised."""
            try:
                call = _count_call(group)
                checked = cls.exchange(
                    code, options, views, view_names, error=error, call=call, group=group, shared=shared,
                    min_rows=min_rows, split=split,
                )  # fmt: skip
                return checked, None
            except (TypeError, ValueError, RuntimeError) as caught:
                return None, caught

        batch = None
        if row_group is not None:
            batch, error = exchange(row_group, error, "rows")
        elif error is None:
            rows, dim = views[0].shape
            batch = cls(None, 0, (rows,), dim, compute_dtype(*views))
        features = None
        if dist.get_world_size(feature_group) > 1:
            features, error = exchange(feature_group, error, "features")
            if row_group is not None:  # the errors only the feature group saw, to the other rows of these columns
                _raise_if_any_failed(error, row_group, _header_device(views, row_group))
        if error is not None:
            raise error
        if row_group is not None and options.distributed == "local":  # a local call: this rank's rows are its batch
            batch = cls(None, 0, (views[0].shape[0],), batch.dim, batch.dtype)
        if features is None:
            return batch
        return cls(batch.group, batch.rank, batch.counts, features.dim, batch.dtype, features)

    @classmethod
    def exchange(
        cls,
        code: int,
        options,
        views: Sequence[object],
        view_names: Sequence[str],
        *,
        error: Exception | None,
        call: int,
        group,
        shared: Sequence[tuple[str, float]] = (),
        min_rows: int = 2,
        split: str = "rows",
    ) -> "GlobalBatch | FeatureShards":
        """All-gather every rank's header (error, call, loss, shapes, dtype, options) and check them together.

        Raises the same error on every rank: the first failing rank's own error (its type and message, naming
        the rank) when any rank's checks failed; :class:`RuntimeError` when the ranks are not at the same call of
        the same loss; :class:`ValueError` when D, the compute dtype, an option or a ``shared`` value differ, or
        the global batch has fewer than ``min_rows`` rows. With ``split="features"`` the ranks hold different
        columns of the same rows instead: the row counts must be equal, and the :class:`FeatureShards` of the
        columns is returned.
        """
        rank, world_size = dist.get_rank(group), dist.get_world_size(group)
        if torch.compiler.is_compiling() and error is not None:
            raise error  # while tracing: the others wait for this rank (see _check_in_graph)
        values = [1.0, call, code]
        dtype = torch.float32
        if error is None:
            dtype = compute_dtype(*views)
            rows, dim = views[0].shape
            values = [0.0, call, code, rows, dim, _DTYPE_CODES[dtype], *options.shared_values()]
            values += [number for _, number in shared]
        if len(values) > HEADER_SIZE:
            raise ValueError(f"a loss may share at most {HEADER_SIZE - 6} options and inputs, got {len(values) - 6}")
        header = torch.zeros(HEADER_SIZE, dtype=torch.float64, device=_header_device(views, group))
        header[: len(values)] = torch.tensor(values, dtype=torch.float64)
        gathered = [torch.empty_like(header) for _ in range(world_size)]
        dist.all_gather(gathered, header, group=group)
        if torch.compiler.is_compiling():
            return cls._check_in_graph(torch.stack(gathered), rank, views, dtype, group)
        headers = torch.stack(gathered).cpu().tolist()
        if any(row[0] for row in headers):
            cls._raise_collective_error(error, headers, rank, group)
        calls = [int(row[1]) for row in headers]
        losses = [LOSS_NAMES.get(int(row[2]), "an unknown loss") for row in headers]
        if len(set(losses)) > 1:
            raise RuntimeError(
                f"the ranks of the process group called different losses at the same call: {losses} on ranks "
                f"0..{world_size - 1}. Every rank must call the same losses in the same order; to call a loss on some "
                "ranks only, pass group= a group of those ranks"
            )
        if len(set(calls)) > 1:
            _CALLS[group if group is not None else dist.group.WORLD] = max(calls)  # in step again from the next call
            raise RuntimeError(
                f"the ranks of the process group are out of step: they are at loss calls {calls} on this group "
                f"(rank {rank}: its {_ordinal(call)}, of {losses[rank]}). Every rank must call the same losses in the "
                "same order; to call a loss on some ranks only, pass group= a group of those ranks"
            )
        names = " and ".join(view_names)
        ranks = f"ranks 0..{world_size - 1}"
        if split == "rows":
            _check_same(
                [int(row[4]) for row in headers],
                f"{names} must have the same number of features D on every rank of the process group, got "
                f"D = {{values}} on {ranks}",
            )
        else:
            _check_same(
                [int(row[3]) for row in headers],
                f"{names} must have the same rows on every rank of feature_group (the ranks that hold the other "
                f"features of the same rows), got {{values}} rows on {ranks} of feature_group",
            )
        dtype_names = ("float32", "float64")
        _check_same(
            [dtype_names[int(row[5])] for row in headers],
            f"{names} must have the same compute dtype on every rank of the process group (float64 inputs compute in "
            f"float64, the others in float32), got {{values}} on {ranks}",
        )
        compared = [(spec.name, spec.decode) for spec in options.specs if spec.shared]  # options.shared_values()
        compared += [(name, _as_number) for name, _ in shared]
        for index, (name, decode) in enumerate(compared, start=6):
            _check_same(
                [decode(row[index]) for row in headers],
                f"{name} must be the same on every rank of the process group, got {name} = {{values}} on {ranks}",
            )
        if split == "features":
            return FeatureShards(group, rank, [int(row[4]) for row in headers])
        counts = [int(row[3]) for row in headers]
        if sum(counts) < min_rows:
            raise ValueError(
                f"the global batch (all ranks of the process group) needs at least {min_rows} rows, got "
                f"N = {sum(counts)} (rows per rank: {counts})"
            )
        return cls(group, rank, counts, dim, dtype)

    @classmethod
    def _check_in_graph(cls, headers: torch.Tensor, rank: int, views, dtype: torch.dtype, group) -> "GlobalBatch":
        """The checks of :meth:`exchange` inside a ``torch.compile`` graph, where the host cannot read the headers.

        Every rank asserts (``torch._assert_async``, no host synchronization) that all headers are equal: the
        same loss, D, dtype and options, and equal rows per rank, which a compiled graph needs (it cannot size the
        padding of uneven shards without reading the counts). A rank whose own inputs are bad raises while it is
        traced, before the exchange, so the others wait for it: check the first call without ``torch.compile``.
        """
        torch._assert_async(
            (headers == headers[:1]).all(),
            "the ranks of the process group differ in the loss, its options, D, the compute dtype or the rows per "
            "rank (a loss compiled with torch.compile needs equal rows on every rank; call it once without "
            "torch.compile for a message that names the difference)",
        )
        rows, dim = views[0].shape
        return cls(group, rank, (rows,) * headers.shape[0], dim, dtype)

    @staticmethod
    def _raise_collective_error(error, headers, rank: int, group) -> None:
        """Raise the first failing rank's error, naming its global rank (the rank of the default group).

        An error that already came from another group's exchange (a grid passes errors on from one group to the
        next) names its rank already and is raised as it is.
        """
        failed = [r for r, row in enumerate(headers) if row[0]]
        reports = [None] * len(headers)
        mine = None if error is None else (type(error).__name__, str(error), getattr(error, "collective", False))
        dist.all_gather_object(reports, mine, group=group)
        first = failed[0]
        kind, message, named = reports[first]
        exception_type = {"TypeError": TypeError, "ValueError": ValueError}.get(kind, RuntimeError)
        if not named:
            ranks = [r if group is None else dist.get_global_rank(group, r) for r in failed]
            others = f" (ranks {ranks} failed)" if len(ranks) > 1 else ""
            message = f"{message} (on rank {ranks[0]}{others})"
        raised = exception_type(message)
        raised.collective = True  # raised on every rank of the group, naming the failing one
        if error is not None and rank == first:
            raise raised from error
        raise raised

    # -------------------------------------------------------------------------------------------- collectives

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


def _as_number(value: float) -> float | int:
    """A header value as it reads best in a message: an int when it is one (a count of views), else the float."""
    return int(value) if value == int(value) else value


def _check_same(values: list, message: str) -> None:
    if len(set(values)) > 1:
        raise ValueError(message.format(values=values))


def _check_membership(name: str, group: object) -> None:
    if isinstance(group, int) and group == dist.GroupMember.NON_GROUP_MEMBER:
        raise ValueError(
            f"this process is not a member of the process group passed as {name} (torch.distributed.new_group "
            f"gives its non-members GroupMember.NON_GROUP_MEMBER): only the members of a group call its loss"
        )


def _check_crossing(row_group, feature_group) -> ValueError | None:
    """The error of a row group and a feature group that share more ranks than this one (they are not a grid)."""
    common = set(dist.get_process_group_ranks(row_group)) & set(dist.get_process_group_ranks(feature_group))
    if len(common) <= 1:
        return None
    return ValueError(
        "group and feature_group must share this rank only: group holds the other rows of this rank's columns and "
        f"feature_group the other columns of its rows, got groups that share ranks {sorted(common)} (with "
        "feature_group, group=None means that the rows are not split)"
    )


def _count_call(group) -> int:
    """This rank's number of loss calls on ``group``, this one included (0 inside a torch.compile graph)."""
    if torch.compiler.is_compiling():  # calls are not counted inside a graph (see GlobalBatch.exchange)
        return 0
    key = group if group is not None else dist.group.WORLD
    _CALLS[key] = call = _CALLS.get(key, 0) + 1
    return call


def _raise_if_any_failed(error: Exception | None, group, device: torch.device) -> None:
    """One all-gather of an error flag (on ``device``) over ``group``: the first failing rank's error is raised on
    every rank."""
    flag = torch.tensor([0.0 if error is None else 1.0], dtype=torch.float64, device=device)
    gathered = [torch.empty_like(flag) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, flag, group=group)
    flags = [[float(value)] for value in torch.cat(gathered).tolist()]
    if any(row[0] for row in flags):
        GlobalBatch._raise_collective_error(error, flags, dist.get_rank(group), group)


# ------------------------------------------------------------------------------------------------ collectives


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
        ctx.own = slice(sum(batch.counts[: batch.rank]), sum(batch.counts[: batch.rank + 1]))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return (None, *(grad[ctx.own] for grad in grads))


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
