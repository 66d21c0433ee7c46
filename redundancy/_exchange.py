"""The exchange at the start of every loss call in a process group: the ranks check their inputs together.

In a process group of several ranks a call first checks its options and inputs, then joins one small all-gather
(:func:`exchange`), local calls too, of every rank's *header*: an error flag, a per-group call counter, the loss's
name, the shapes, the compute dtype, the process groups the call spans (:func:`fingerprint`), which views require
grad, and the value of every option (and shared input) that changes the result. A bad input or option on any rank
therefore raises the same error on every rank at that call (the message names the rank); ranks that call different
losses, pass other groups than their peers, ask for the gradients of other views, or whose D, dtype or options
differ raise an error naming the difference. After a raised error the ranks are still in step.

Where the headers travel: over the call's group; over the default group when the call's ranks are all of its ranks
(a group of all ranks, or a grid of row and feature shards that covers them: :func:`open_grid`), so that a rank
that passes other groups than its peers still meets them there; otherwise, on a grid, over the row group, the
feature group and the row group again. The result is the :class:`~redundancy._batch.GlobalBatch` of the call.
"""

import collections
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
import torch.distributed as dist

from redundancy._batch import DISTRIBUTED_AVAILABLE
from redundancy._batch import CollectiveNotStarted
from redundancy._batch import FeatureShards
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._batch import all_gather
from redundancy._batch import gather_objects
from redundancy._batch import group_ranks
from redundancy._batch import group_world_size
from redundancy._validation import compute_dtype

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}

#: The fields of a header, in order, before the shared options and inputs: an error flag, the call counter, the
#: loss, this rank's rows and columns, the compute dtype, the process groups the call spans (the rows' and the
#: features', :func:`fingerprint`) and which views require grad (:func:`requires_grad_code`).
FIELDS = ("error", "call", "loss", "rows", "dim", "dtype", "group", "feature_group", "requires_grad")
ERROR, CALL, LOSS, ROWS, DIM, DTYPE, GROUP, FEATURE_GROUP, REQUIRES_GRAD = range(len(FIELDS))
#: How many float64 values each rank sends at the start of a call in a process group (the header): the
#: :data:`FIELDS`, then the shared options and inputs (at most ``HEADER_SIZE - len(FIELDS)`` of those).
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


#: Bits of a :func:`fingerprint` that hold the group's size.
_SIZE_BITS = 20
_FINGERPRINTS: dict = {}


def fingerprint(group: Any) -> float:
    """A number (exact in float64, never 0) that names a process group in a header: equal on two ranks exactly when
    they pass the same group, two groups of the same ranks told apart; 0 for ``None``.

    It is the group's name (which ``torch.distributed`` gives every member alike) hashed, and its number of ranks
    in the low bits (:func:`fingerprint_size`), so that the ranks can count the members that pass each group.
    """
    if group is None:
        return 0.0
    number = _FINGERPRINTS.get(group)
    if number is None:
        if len(_FINGERPRINTS) >= 1024:
            _FINGERPRINTS.clear()
        size = min(dist.get_world_size(group), (1 << _SIZE_BITS) - 1)
        number = _FINGERPRINTS[group] = float((hash32(group.group_name) << _SIZE_BITS) | size)
    return number


def hash32(text: str) -> int:
    """A 32-bit hash of ``text`` (FNV-1a of its characters), the same in every process: the one hash of the codes the
    ranks compare. Plain Python, so that ``torch.compile`` folds it to a constant (the first call of a compiled step
    may be the first to name a group)."""
    code = 0x811C9DC5
    for character in text:
        code = ((code ^ ord(character)) * 0x01000193) & 0xFFFFFFFF
    return code


def fingerprint_size(number: float) -> int:
    """The number of ranks of the group whose :func:`fingerprint` is ``number``."""
    return int(number) & ((1 << _SIZE_BITS) - 1)


def requires_grad_code(views: Sequence[object]) -> float:
    """Which views require grad in this call (0 under :func:`torch.no_grad`), a number exact in float64: bit v for
    view v (beyond 52 views, a hash of the bits)."""
    if not torch.is_grad_enabled():
        return 0.0
    bits = [isinstance(view, torch.Tensor) and view.requires_grad for view in views]
    if len(bits) <= 52:
        return float(sum(1 << index for index, bit in enumerate(bits) if bit))
    return float((1 << 52) + hash32("".join("1" if bit else "0" for bit in bits)))


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _ranks(ranks: Sequence[int]) -> str:
    """``rank 3`` or ``ranks [0, 2]``."""
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {list(ranks)}"


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
        views: this rank's views, ``(N_r, D)`` tensors (only their shapes, dtypes and ``requires_grad`` are read).
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


class _Span(NamedTuple):
    """The process groups a call spans as its header says them: ``rows``, the group whose ranks hold the other rows
    (the default group's object for ``group=None`` without a feature group; ``None`` when the rows are not split),
    and ``features``, the feature group (``None`` without one)."""

    rows: Any
    features: Any


# ------------------------------------------------------------------------------------------------ opening a call


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
    world_size = group_world_size(group)
    if world_size == 1:  # a group of one rank: nothing to exchange
        if error is not None:
            raise error
        rows, dim = views[0].shape
        return GlobalBatch(None, 0, (rows,), dim, compute_dtype(*views))
    span = _Span(group if group is not None else dist.group.WORLD, None)
    # A group of all ranks exchanges over the default group, where a rank that passes another group of them, or a
    # grid of them, meets it.
    over = None if world_size == dist.get_world_size() else group
    batch = exchange(call, error, ordinal=_count_call(over), group=over, span=span)
    assert isinstance(batch, GlobalBatch)
    if is_global(call.distributed, group):
        return batch
    rows, dim = views[0].shape  # a local call: this rank's rows are its batch
    return GlobalBatch(None, 0, (rows,), dim, batch.dtype)


def open_grid(call: Header, error: Exception | None) -> GlobalBatch:
    """The batch of a call on a grid: rows split over ``call.group``, features over ``call.feature_group``.

    Called by :func:`open_batch` (whose arguments these are) when the call has a ``feature_group``. Columns may be
    split unevenly; every rank of a feature group must hold the same rows.

    A grid whose R·F ranks are all the ranks of the default group exchanges headers once, over the default group
    (:func:`_exchange_grid`): every rank sees every header, so a bad input or option, a rank that passes other groups
    than its peers (or none), or a difference in which views require grad raises on every rank of the grid. A grid
    of fewer ranks has no group of all its ranks: the ranks of the row group (the other rows of this rank's columns;
    none when ``group`` is ``None``; a local call joins the exchange and then keeps its own rows) exchange headers as
    in :func:`exchange`, then the ranks of the feature group (the other columns of these rows), carrying any error
    of the first exchange, then, on a grid of both, the row group once more with any error of the second.
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
    span = _Span(row_group, feature_group)
    row_ranks = 1 if row_group is None else dist.get_world_size(row_group)
    if row_ranks * dist.get_world_size(feature_group) == dist.get_world_size():
        return _exchange_grid(call, error, span)

    def exchange_over(group, error, split):
        """``(result, error)`` of :func:`exchange` over ``group``: what it returns, or what it raised."""
        try:
            return exchange(call, error, ordinal=_count_call(group), group=group, split=split, span=span), None
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
    return GlobalBatch(batch.group, batch.rank, batch.counts, features.dim, batch.dtype, features, batch.call)


# ------------------------------------------------------------------------------------------------ the exchanges


def exchange(
    call: Header,
    error: Exception | None,
    *,
    ordinal: int,
    group: Any,
    split: str = "rows",
    span: _Span | None = None,
) -> GlobalBatch | FeatureShards:
    """All-gather every rank's header over ``group`` and check them together.

    Raises the same error on every rank: the first failing rank's own error (its type and message, naming
    the rank) when any rank's checks failed; :class:`RuntimeError` when the ranks are not at the same call
    (``ordinal``, this rank's count of calls on ``group``) of the same loss; :class:`ValueError` when the ranks span
    other process groups (``span``: by default the rows over ``group``), when D, the compute dtype, which views
    require grad or a shared value differ, or the global batch has fewer than ``call.min_rows`` rows. The rows are
    split over ``span.rows``, which is ``group`` or a group of the same ranks (then ``group`` is the default group).
    With ``split="features"`` the ranks hold different columns of the same rows instead: the row counts must be
    equal, and the :class:`FeatureShards` of the columns is returned.
    """
    if span is None:
        span = _Span(group if group is not None else dist.group.WORLD, None)
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    if torch.compiler.is_compiling() and error is not None:
        raise error  # while tracing: the others wait for this rank (see _check_in_graph)
    views = call.views
    loss = LOSS_NAMES.get(call.code, "an unknown loss")
    gathered, mine, dtype = _gather_headers(call, error, ordinal, group, span, loss)
    if torch.compiler.is_compiling():
        return _check_in_graph(gathered, rank, views, dtype, group)
    headers = gathered.cpu().tolist()
    _check_call(call, error, headers, rank, group, loss)
    if split == "rows":  # the same group, and a feature group or none alike
        spans_differ = any(
            row[GROUP] != mine[GROUP] or (row[FEATURE_GROUP] == 0) != (mine[FEATURE_GROUP] == 0) for row in headers
        )
    else:  # the same feature group, and the rows split on every rank or none
        spans_differ = any(row[FEATURE_GROUP] != mine[FEATURE_GROUP] for row in headers)
        spans_differ = spans_differ or len({row[GROUP] == 0 for row in headers}) > 1
    if spans_differ:
        _raise_span_error(call, span, group, headers, (loss, ordinal))
    _check_step(headers, ordinal, rank, group, loss)
    names = " and ".join(call.names)
    ranks = f"ranks 0..{world_size - 1}"
    if split == "rows":
        _check_same(
            [int(row[DIM]) for row in headers],
            f"{names} must have the same number of features D on every rank of the process group, got "
            f"D = {{values}} on {ranks}",
        )
    else:
        _check_same(
            [int(row[ROWS]) for row in headers],
            f"{names} must have the same rows on every rank of feature_group (the ranks that hold the other "
            f"features of the same rows), got {{values}} rows on {ranks} of feature_group",
        )
    _check_values(call, headers, ranks, group_ranks(group))
    label = (loss, ordinal)
    if split == "features":
        return FeatureShards(group, rank, [int(row[DIM]) for row in headers], label)
    if span.rows is not group and span.rows is not dist.group.WORLD:  # the rows of a group of all ranks, in its order
        by_rank = dict(zip(group_ranks(group), headers, strict=True))
        headers = [by_rank[member] for member in group_ranks(span.rows)]
        group, rank = span.rows, dist.get_rank(span.rows)
    counts = [int(row[ROWS]) for row in headers]
    _check_rows(call, counts)
    return GlobalBatch(group, rank, counts, int(mine[DIM]), dtype, call=label)


def _exchange_grid(call: Header, error: Exception | None, span: _Span) -> GlobalBatch:
    """The exchange of a grid whose ranks are all the ranks of the default group: one all-gather of every rank's
    header over the default group, and the checks of :func:`exchange` for the whole grid, on every rank.

    The ranks that pass one row group (and one feature group) must be all its members, and every rank of the grid
    must have a feature group and its rows split, or not, alike; the ranks of a row group must hold the same number
    of columns, those of a feature group the same rows.
    """
    ordinal = _count_call(None)
    loss = LOSS_NAMES.get(call.code, "an unknown loss")
    gathered, mine, dtype = _gather_headers(call, error, ordinal, None, span, loss)
    headers = gathered.cpu().tolist()
    rank = dist.get_rank()
    _check_call(call, error, headers, rank, None, loss)
    members: dict[str, dict[float, list[int]]] = {name: collections.defaultdict(list) for name in ("rows", "features")}
    for member, row in enumerate(headers):
        for name, field in (("rows", GROUP), ("features", FEATURE_GROUP)):
            if row[field] != 0:
                members[name][row[field]].append(member)
    spans_differ = any(row[FEATURE_GROUP] == 0 for row in headers) or len({row[GROUP] == 0 for row in headers}) > 1
    for classes in members.values():
        spans_differ = spans_differ or any(len(ranks) != fingerprint_size(key) for key, ranks in classes.items())
    if spans_differ:
        _raise_span_error(call, span, None, headers, (loss, ordinal))
    _check_step(headers, ordinal, rank, None, loss)
    names = " and ".join(call.names)
    for ranks in members["rows"].values():
        _check_same(
            [int(headers[member][DIM]) for member in ranks],
            f"{names} must have the same number of features D on every rank of group (the ranks that hold the other "
            f"rows of their columns), got D = {{values}} on ranks {ranks}",
        )
    for ranks in members["features"].values():
        _check_same(
            [int(headers[member][ROWS]) for member in ranks],
            f"{names} must have the same rows on every rank of feature_group (the ranks that hold the other "
            f"features of the same rows), got {{values}} rows on ranks {ranks} of feature_group",
        )
    _check_values(call, headers, f"ranks 0..{len(headers) - 1}", list(range(len(headers))))
    label = (loss, ordinal)
    row_group, feature_group = span
    counts = [int(mine[ROWS])] if row_group is None else [int(headers[m][ROWS]) for m in group_ranks(row_group)]
    widths = [int(headers[member][DIM]) for member in group_ranks(feature_group)]
    if row_group is None or call.distributed == "local":  # the rows are not split, or this rank's rows are its batch
        batch = GlobalBatch(None, 0, [int(mine[ROWS])], sum(widths), dtype)
    else:
        _check_rows(call, counts)
        batch = GlobalBatch(row_group, dist.get_rank(row_group), counts, sum(widths), dtype, call=label)
    if len(widths) == 1:
        return batch
    features = FeatureShards(feature_group, dist.get_rank(feature_group), widths, label)
    return GlobalBatch(batch.group, batch.rank, batch.counts, batch.dim, dtype, features, batch.call)


def _gather_headers(call: Header, error, ordinal: int, group, span: _Span, loss: str):
    """``(headers, mine, dtype)``: every rank's header over ``group`` (a ``(W, HEADER_SIZE)`` tensor), this rank's
    header (a list of floats) and the compute dtype."""
    views = call.views
    values: list[float] = [1.0, ordinal, call.code]
    dtype = torch.float32
    if error is None:
        dtype = compute_dtype(*views)
        rows, dim = views[0].shape
        compared = isinstance(span.features, ProcessGroup) or is_global(call.distributed, call.group)
        values = [
            0.0,
            ordinal,
            call.code,
            rows,
            dim,
            _DTYPE_CODES[dtype],
            fingerprint(span.rows),
            fingerprint(span.features),
            requires_grad_code(views) if compared else 0.0,  # a local call runs no collective in its backward
            *(shared.number for shared in call.shared),
        ]
    if len(values) > HEADER_SIZE:
        extra = len(values) - len(FIELDS)
        raise ValueError(f"a loss may share at most {HEADER_SIZE - len(FIELDS)} options and inputs, got {extra}")
    header = torch.zeros(HEADER_SIZE, dtype=torch.float64, device=_header_device(views, group))
    header[: len(values)] = torch.tensor(values, dtype=torch.float64)
    gathered = [torch.empty_like(header) for _ in range(dist.get_world_size(group))]
    try:
        all_gather(gathered, header, group, what="the exchange of headers", call=(loss, ordinal), of_the_loss=False)
    except CollectiveNotStarted:  # (under the collective timeout) this call did not take place on any rank
        _CALLS[group if group is not None else dist.group.WORLD] -= 1
        raise
    return torch.stack(gathered), values, dtype


def _check_call(call: Header, error, headers: list, rank: int, group, loss: str) -> None:
    """Raise any rank's error, then an error if the ranks called different losses (on every rank alike)."""
    if any(row[ERROR] for row in headers):
        device = _header_device(call.views, group)
        _raise_collective_error(error, headers, rank, group, device, (loss, int(headers[rank][CALL])))
    losses = [LOSS_NAMES.get(int(row[LOSS]), "an unknown loss") for row in headers]
    if len(set(losses)) > 1:
        raise RuntimeError(
            f"the ranks of the process group called different losses at the same call: {losses} on ranks "
            f"0..{len(headers) - 1}. Every rank must call the same losses in the same order; to call a loss on some "
            "ranks only, pass group= a group of those ranks"
        )


def _check_step(headers: list, ordinal: int, rank: int, group, loss: str) -> None:
    """Raise if the ranks are at different calls on ``group`` (and set this rank's count to theirs)."""
    calls = [int(row[CALL]) for row in headers]
    if len(set(calls)) > 1:
        _CALLS[group if group is not None else dist.group.WORLD] = max(calls)  # in step again from the next call
        raise RuntimeError(
            f"the ranks of the process group are out of step: they are at loss calls {calls} on this group "
            f"(rank {rank}: its {_ordinal(ordinal)}, of {loss}). Every rank must call the same losses in the "
            "same order; to call a loss on some ranks only, pass group= a group of those ranks"
        )


def _check_values(call: Header, headers: list, ranks: str, global_ranks: list[int]) -> None:
    """Raise if the compute dtype, which views require grad or a shared value differ between the ranks (``ranks``
    says which ranks the headers are, in a message; ``global_ranks`` are their ranks in the default group)."""
    dtype_names = ("float32", "float64")
    _check_same(
        [dtype_names[int(row[DTYPE])] for row in headers],
        f"{' and '.join(call.names)} must have the same compute dtype on every rank of the process group (float64 "
        f"inputs compute in float64, the others in float32), got {{values}} on {ranks}",
    )
    codes = [row[REQUIRES_GRAD] for row in headers]
    if len(set(codes)) > 1:
        _raise_requires_grad_error(call, codes, global_ranks)
    for index, (name, _, decode) in enumerate(call.shared, start=len(FIELDS)):
        _check_same(
            [decode(row[index]) for row in headers],
            f"{name} must be the same on every rank of the process group, got {name} = {{values}} on {ranks}",
        )


def _check_rows(call: Header, counts: list[int]) -> None:
    if sum(counts) < call.min_rows:
        raise ValueError(
            f"the global batch (all ranks of the process group) needs at least {call.min_rows} rows, got "
            f"N = {sum(counts)} (rows per rank: {counts})"
        )


def _raise_requires_grad_error(call: Header, codes: list[float], ranks: list[int]) -> None:
    """The error of ranks (``ranks``, whose :func:`requires_grad_code` are ``codes``) that ask for the gradients of
    different views."""
    differences = []
    for index, name in enumerate(call.names):
        if len(call.names) > 52:
            break
        wanting = [rank for rank, code in zip(ranks, codes, strict=True) if int(code) >> index & 1]
        if 0 < len(wanting) < len(codes):
            others = [rank for rank in ranks if rank not in wanting]
            differences.append(f"{name} requires grad on {_ranks(wanting)} and not on {_ranks(others)}")
    found = "; ".join(differences) or "the views that require grad differ"
    message = (
        f"every rank must ask for the gradients of the same views (the backward's collectives pair up across the "
        f"ranks): {found}. A view that does not require grad (a detached one), or a call under torch.no_grad, must "
        "be so on every rank"
    )
    raise _named(ValueError(message))


def _check_in_graph(
    headers: torch.Tensor, rank: int, views: Sequence[torch.Tensor], dtype: torch.dtype, group: Any
) -> GlobalBatch:
    """The checks of :func:`exchange` inside a ``torch.compile`` graph, where the host cannot read the headers.

    Every rank asserts (``torch._assert_async``, no host synchronization) that all headers are equal: the
    same loss, groups, D, dtype, views requiring grad and options, and equal rows per rank, which a compiled graph
    needs (it cannot size the padding of uneven shards without reading the counts). A rank whose own inputs are bad
    raises while it is traced, before the exchange, so the others wait for it: check the first call without
    ``torch.compile``.
    """
    torch._assert_async(
        (headers == headers[:1]).all(),
        "the ranks of the process group differ in the loss, its options, D, the compute dtype or the rows per "
        "rank (a loss compiled with torch.compile needs equal rows on every rank; call it once without "
        "torch.compile for a message that names the difference)",
    )
    rows, dim = views[0].shape
    return GlobalBatch(group, rank, (rows,) * headers.shape[0], dim, dtype)


def _raise_collective_error(error, headers, rank: int, group, device: torch.device, label) -> None:
    """Raise the first failing rank's error, naming its global rank (the rank of the default group).

    An error that already came from another group's exchange (a grid passes errors on from one group to the
    next) names its rank already and is raised as it is. The ranks' errors travel on ``device``.
    """
    failed = [r for r, row in enumerate(headers) if row[ERROR]]
    mine = None if error is None else (type(error).__name__, str(error), getattr(error, "collective", False))
    reports = gather_objects(mine, group, device, what="the report of an error", call=label)
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


class _GroupsOfARank(NamedTuple):
    """The process groups one rank passed, as :func:`_raise_span_error` reports them: ``group`` and
    ``feature_group`` as given (``(fingerprint, global ranks, the default group or not)``, or ``None``), and the
    fingerprint and ranks of the groups its rows and features span."""

    rank: int
    group: tuple | None
    feature_group: tuple | None
    rows: tuple[float, list[int]]
    features: tuple[float, list[int]]


def _groups_of_this_rank(call: Header, span: _Span) -> _GroupsOfARank:
    rank = dist.get_rank()

    def given(group: object) -> tuple | None:
        if not isinstance(group, ProcessGroup):
            return None
        return (fingerprint(group), group_ranks(group), group == dist.group.WORLD)

    def spanned(group: object) -> tuple[float, list[int]]:
        return (fingerprint(group), group_ranks(group)) if isinstance(group, ProcessGroup) else (0.0, [rank])

    return _GroupsOfARank(
        rank, given(call.group), given(call.feature_group), spanned(span.rows), spanned(span.features)
    )


def _describe_groups(groups: _GroupsOfARank) -> str:
    """``group=[0, 2], feature_group=[0, 1]`` as a rank passed them."""
    world = dist.get_world_size()
    parts = []
    for name, given in (("group", groups.group), ("feature_group", groups.feature_group)):
        if given is None:
            default = name == "group" and groups.features[0] == 0  # group=None without feature_group
            parts.append(f"{name}=None" + (f" (the default group, ranks {list(range(world))})" if default else ""))
            continue
        _, ranks, is_default = given
        note = " (the default group)" if is_default else " (not the default group)" if len(ranks) == world else ""
        parts.append(f"{name}={ranks}{note}")
    return ", ".join(parts)


def _raise_span_error(call: Header, span: _Span, group, headers: list, label: tuple[str, int]) -> None:
    """The error of ranks that pass other process groups than their peers, raised on every rank of the exchange
    over ``group`` (each rank found the difference in the ``headers``; the groups' ranks come in one more exchange).

    A rank disagrees with a peer of one of its groups when that peer passes another group in that place; the ranks
    with the most disagreements are named first, with the groups of the peers they disagree with. The ranks' call
    counts on ``group`` are set equal (the next call is in step).
    """
    _CALLS[group if group is not None else dist.group.WORLD] = max(int(row[CALL]) for row in headers)
    reports: list[_GroupsOfARank] = gather_objects(
        _groups_of_this_rank(call, span),
        group,
        _header_device(call.views, group),
        what="the report of the groups",
        call=label,
    )
    loss = label[0]
    by_rank = {report.rank: report for report in reports}
    disagreements: dict[int, set[int]] = {report.rank: set() for report in reports}
    for report in reports:
        for field in ("rows", "features"):
            key, ranks = getattr(report, field)
            for peer in ranks:
                if peer != report.rank and peer in by_rank and getattr(by_rank[peer], field)[0] != key:
                    disagreements[report.rank].add(peer)
    most = max(len(peers) for peers in disagreements.values())
    named = [rank for rank, peers in disagreements.items() if len(peers) == most and most > 0] or sorted(by_rank)
    peers = sorted({peer for rank in named for peer in disagreements[rank]} - set(named))
    found = "; ".join(f"rank {rank} passes {_describe_groups(by_rank[rank])}" for rank in named)
    if peers:
        found += ", unlike " + "; ".join(f"rank {peer}: {_describe_groups(by_rank[peer])}" for peer in peers)
    message = (
        f"the ranks of {loss} must pass the same process groups as their peers: {found}. Pass group= the ranks that "
        "hold the other rows of this rank's columns (None: the default group; with feature_group, None means that "
        "the rows are not split) and feature_group= the ranks that hold the other columns of its rows (None: "
        "the columns are not split), the same on every rank of each group"
    )
    raise _named(ValueError(message))


def _named(error: Exception) -> Exception:
    """``error``, marked as raised on every rank of an exchange and naming its ranks already (an exchange that
    passes it on raises it as it is)."""
    setattr(error, "collective", True)  # noqa: B010
    return error


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
    common = set(group_ranks(row_group)) & set(group_ranks(feature_group))
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
    all_gather(gathered, flag, group, what="the error flags of feature_group's exchange", of_the_loss=False)
    flags = [[float(value)] for value in torch.cat(gathered).tolist()]
    if any(row[0] for row in flags):
        _raise_collective_error(error, flags, dist.get_rank(group), group, device, None)
