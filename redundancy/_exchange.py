"""The exchange at the start of every loss call in a process group: the ranks check their inputs together.

In a process group of several ranks a call first checks its options and inputs, then joins one small all-gather
(:func:`exchange`), local calls too, that carries an error flag, a per-group call counter, the loss's name, the
shapes, the compute dtype and the value of every option (and shared input) that changes the result. A bad input or
option on any rank therefore raises the same error on every rank at that call (the message names the rank); ranks
that call different losses, or whose D, dtype or options differ, raise an error naming the difference. After a
raised error the ranks are still in step. A call with ``feature_group`` exchanges over the row group and the
feature group (:func:`open_grid`). The result is the :class:`~redundancy._batch.GlobalBatch` of the call.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from redundancy._batch import DISTRIBUTED_AVAILABLE, FeatureShards, GlobalBatch, ProcessGroup, group_world_size
from redundancy._validation import compute_dtype

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}

#: How many float64 values each rank sends at the start of a call in a process group (the header). They are an
#: error flag, the call counter, the loss, rows, D and dtype, then the shared options and inputs (at most
#: ``HEADER_SIZE - 6`` of those).
HEADER_SIZE = 32
#: Calls of a loss per process group on this rank (key: the group; the default group under its own object).
_CALLS: dict = {}
#: The names of the losses, by the code the ranks exchange (filled as the losses are declared).
LOSS_NAMES: dict[int, str] = {}


def is_global(distributed: object, group: object, feature_group: object = None) -> bool:
    """Whether a call with these options computes the rows of several ranks (and so exchanges with them).

    ``group`` that is not a process group counts as the default group, so that a rank whose ``group`` is wrong
    still joins the default group's exchange and reports its error there. With a ``feature_group``, ``group=None``
    means that the rows are not split (every rank of the feature group holds the same rows).

    Example:
        >>> is_global("global", None)  # a process without torch.distributed.init_process_group
        False
    """
    if group is None and isinstance(feature_group, ProcessGroup):
        return False
    group = group if isinstance(group, ProcessGroup) else None
    return distributed != "local" and group_world_size(group) > 1



def feature_group_size(feature_group: object) -> float:
    """What the ranks compare of ``feature_group``: its number of ranks F, or 0 without one.

    Every rank of a grid has a feature group of the same size; a rank that passes none (or a group of another size)
    while the others pass one would run other collectives than theirs.
    """
    return float(dist.get_world_size(feature_group)) if isinstance(feature_group, ProcessGroup) else 0.0


def describe_feature_group(number: float) -> str:
    """``feature_group`` in an error message, from :func:`feature_group_size`."""
    return "None" if number == 0 else f"a group of {int(number)} ranks"



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



class Shared(NamedTuple):
    """A value every rank must pass alike (an option, or an input such as Mixed Barlow Twins' ``alpha``), as the
    ranks compare it: its name, a number equal on two ranks exactly when the values are (exact in float64), and
    how to show that number in an error message."""

    name: str
    number: float
    decode: Callable[[float], Any]


class Header(NamedTuple):
    """What a call tells the other ranks (its header): the loss, the views, the groups, and the values to compare.

    Attributes:
        code: a number that names the loss (exact in float64), :data:`LOSS_NAMES` maps it back.
        views: this rank's views, ``(N_r, D)`` tensors (only their shapes and dtypes are read).
        names: the views' names in error messages.
        distributed: ``"global"`` or ``"local"``.
        group: the process group of the rows (``None``: the default group).
        feature_group: the process group of the features, or ``None``.
        shared: the values every rank must pass alike.
        min_rows: the fewest rows the global batch may have.
    """

    code: int
    views: Sequence[torch.Tensor]
    names: Sequence[str]
    distributed: str
    group: Any
    feature_group: Any
    shared: Sequence[Shared]
    min_rows: int


def open_batch(call: Header, error: Exception | None) -> GlobalBatch:
    """The batch of ``call``, whose own checks raised ``error`` (``None`` if they passed).

    In a process group of several ranks every call, global or local, joins one exchange of headers
    (:func:`exchange`), even when its own checks failed, so that the same error is raised on every rank. A
    global call (:func:`is_global`) then has the batch of all ranks; a local one its own rows. A call with a
    ``feature_group`` opens a grid of row and feature shards (:func:`open_grid`).
    """
    views = call.views
    if isinstance(call.feature_group, ProcessGroup):
        return open_grid(call, error)
    if not DISTRIBUTED_AVAILABLE or not dist.is_initialized():  # one process: nothing to exchange
        if error is not None:
            raise error
        rows, dim = views[0].shape
        return GlobalBatch(None, 0, (rows,), dim, compute_dtype(*views))
    _check_membership("group", call.group)
    group = call.group if isinstance(call.group, ProcessGroup) else None
    if group_world_size(group) == 1:  # a group of one rank: nothing to exchange
        if error is not None:
            raise error
        rows, dim = views[0].shape
        return GlobalBatch(None, 0, (rows,), dim, compute_dtype(*views))
    batch = exchange(call, error, ordinal=_count_call(group), group=group)
    assert isinstance(batch, GlobalBatch)
    if is_global(call.distributed, group):
        return batch
    rows, dim = views[0].shape  # a local call: this rank's rows are its batch
    return GlobalBatch(None, 0, (rows,), dim, batch.dtype)


def open_grid(call: Header, error: Exception | None) -> GlobalBatch:
    """The batch of a call on a grid: rows split over ``call.group``, features over ``call.feature_group``.

    Called by :func:`open_batch` (whose arguments these are) when the call has a ``feature_group``.

    The ranks of the row group (the other rows of this rank's columns; none when ``group`` is ``None``; a
    local call joins the exchange and then keeps its own rows) exchange headers as in :func:`exchange`, then
    the ranks of the feature group (the other columns of these rows), carrying any error of the first exchange,
    then, on a grid of both, the row group once more with any error of the second. The grid is connected
    through these exchanges, so a bad input or option on any rank raises on every rank of the grid. Columns
    may be split unevenly; every rank of a feature group must hold the same rows.
    """
    views = call.views
    _check_membership("group", call.group)
    _check_membership("feature_group", call.feature_group)
    feature_group = call.feature_group
    row_group = call.group if isinstance(call.group, ProcessGroup) else None
    if row_group is not None and dist.get_world_size(row_group) == 1:
        row_group = None
    if error is None and row_group is not None:
        error = _check_crossing(row_group, feature_group)

    def exchange_over(group, error, split):
        """``(result, error)`` of :func:`exchange` over ``group``: what it returns, or what it raised."""
        try:
            return exchange(call, error, ordinal=_count_call(group), group=group, split=split), None
        except (TypeError, ValueError, RuntimeError) as caught:
            return None, caught

    batch = None
    if row_group is not None:
        batch, error = exchange_over(row_group, error, "rows")
    elif error is None:
        rows, dim = views[0].shape
        batch = GlobalBatch(None, 0, (rows,), dim, compute_dtype(*views))
    features = None
    if dist.get_world_size(feature_group) > 1:
        features, error = exchange_over(feature_group, error, "features")
        if row_group is not None:  # the errors only the feature group saw, to the other rows of these columns
            _raise_if_any_failed(error, row_group, _header_device(views, row_group))
    if error is not None:
        raise error
    assert isinstance(batch, GlobalBatch)
    if row_group is not None and call.distributed == "local":  # a local call: this rank's rows are its batch
        batch = GlobalBatch(None, 0, (views[0].shape[0],), batch.dim, batch.dtype)
    if features is None:
        return batch
    assert isinstance(features, FeatureShards)
    return GlobalBatch(batch.group, batch.rank, batch.counts, features.dim, batch.dtype, features)


def exchange(
    call: Header, error: Exception | None, *, ordinal: int, group: Any, split: str = "rows"
) -> GlobalBatch | FeatureShards:
    """All-gather every rank's header (error, call, loss, shapes, dtype, options) and check them together.

    Raises the same error on every rank: the first failing rank's own error (its type and message, naming
    the rank) when any rank's checks failed; :class:`RuntimeError` when the ranks are not at the same call
    (``ordinal``, this rank's count of calls on ``group``) of the same loss; :class:`ValueError` when D, the
    compute dtype or a shared value differ, or the global batch has fewer than ``call.min_rows`` rows. With
    ``split="features"`` the ranks hold different columns of the same rows instead: the row counts must be equal,
    and the :class:`FeatureShards` of the columns is returned.
    """
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    if torch.compiler.is_compiling() and error is not None:
        raise error  # while tracing: the others wait for this rank (see _check_in_graph)
    views = call.views
    values: list[float] = [1.0, ordinal, call.code]
    dtype = torch.float32
    if error is None:
        dtype = compute_dtype(*views)
        rows, dim = views[0].shape
        values = [0.0, ordinal, call.code, rows, dim, _DTYPE_CODES[dtype], *(shared.number for shared in call.shared)]
    if len(values) > HEADER_SIZE:
        raise ValueError(f"a loss may share at most {HEADER_SIZE - 6} options and inputs, got {len(values) - 6}")
    header = torch.zeros(HEADER_SIZE, dtype=torch.float64, device=_header_device(views, group))
    header[: len(values)] = torch.tensor(values, dtype=torch.float64)
    gathered = [torch.empty_like(header) for _ in range(world_size)]
    dist.all_gather(gathered, header, group=group)
    if torch.compiler.is_compiling():
        return _check_in_graph(torch.stack(gathered), rank, views, dtype, group)
    headers = torch.stack(gathered).cpu().tolist()
    if any(row[0] for row in headers):
        _raise_collective_error(error, headers, rank, group)
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
            f"(rank {rank}: its {_ordinal(ordinal)}, of {losses[rank]}). Every rank must call the same losses in the "
            "same order; to call a loss on some ranks only, pass group= a group of those ranks"
        )
    names = " and ".join(call.names)
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
    for index, (name, _, decode) in enumerate(call.shared, start=6):
        _check_same(
            [decode(row[index]) for row in headers],
            f"{name} must be the same on every rank of the process group, got {name} = {{values}} on {ranks}",
        )
    if split == "features":
        return FeatureShards(group, rank, [int(row[4]) for row in headers])
    counts = [int(row[3]) for row in headers]
    if sum(counts) < call.min_rows:
        raise ValueError(
            f"the global batch (all ranks of the process group) needs at least {call.min_rows} rows, got "
            f"N = {sum(counts)} (rows per rank: {counts})"
        )
    return GlobalBatch(group, rank, counts, dim, dtype)


def _check_in_graph(
    headers: torch.Tensor, rank: int, views: Sequence[torch.Tensor], dtype: torch.dtype, group: Any
) -> GlobalBatch:
    """The checks of :func:`exchange` inside a ``torch.compile`` graph, where the host cannot read the headers.

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
    return GlobalBatch(group, rank, (rows,) * headers.shape[0], dim, dtype)


def _raise_collective_error(error, headers, rank: int, group) -> None:
    """Raise the first failing rank's error, naming its global rank (the rank of the default group).

    An error that already came from another group's exchange (a grid passes errors on from one group to the
    next) names its rank already and is raised as it is.
    """
    failed = [r for r, row in enumerate(headers) if row[0]]
    reports: list[Any] = [None] * len(headers)
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
    setattr(raised, "collective", True)  # raised on every rank of the group, naming the failing one  # noqa: B010
    if error is not None and rank == first:
        raise raised from error
    raise raised



def as_number(value: float) -> float | int:
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
        _raise_collective_error(error, flags, dist.get_rank(group), group)


# ------------------------------------------------------------------------------------------------ collectives

