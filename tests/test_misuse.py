"""Distributed misuse of the API, by subject: ranks that span other process groups than their peers, ranks that ask
for the gradients of other views than their peers, and ranks that the others cannot see (a rank that never calls,
that fails before the call, that skips the backward), which the opt-in collective timeout names.

Each fixture spawns one set of gloo processes whose worker records, for every case, what each call returned or the
error it raised; the tests then read those records. The process group's timeout is short (a regression fails with
gloo's timeout instead of the expected message, and does not stall the suite). Every case that the ranks can see
must raise the same kind of error on every rank, naming the difference, and leave the ranks in step: the good call
after it is exact. A timed-out collective leaves its process group unusable (as any timed-out collective of
torch.distributed does), so each timeout case runs on a group of its own, or last.
"""

import functools

import pytest
import torch
import torch.distributed as dist

import redundancy
from benchmarks.common import spawn_gloo
from tests.test_feature_parallel import full_views
from tests.utils import assert_relative

pytestmark = pytest.mark.distributed

TIMEOUT = 30.0  # seconds: the process group's, after which a rank left waiting fails (a regression)
COLLECTIVE_TIMEOUT = 2.0  # seconds: redundancy.set_collective_timeout in the cases that need it
UPSTREAM = 0.7


def outcome(call):
    """What ``call()`` returned, or ``("error", type name, message)`` for any exception."""
    try:
        return call()
    except Exception as error:
        return ("error", type(error).__name__, str(error))


def is_error(result) -> bool:
    return isinstance(result, tuple) and len(result) == 3 and result[0] == "error"


def evaluate(function, z1, z2, *, grads=(True, True), enabled=True, backward=True, **options):
    """``(loss, grad1, grad2)`` of ``UPSTREAM · function(z1, z2)``, the views requiring grad as ``grads`` says and
    autograd ``enabled`` or not; the backward runs when the loss requires grad (and ``backward``)."""
    z1, z2 = z1.clone().requires_grad_(grads[0]), z2.clone().requires_grad_(grads[1])
    with torch.set_grad_enabled(enabled):
        loss = function(z1, z2, **options)
    if backward and loss.requires_grad:
        (loss * UPSTREAM).backward()
    return loss.detach(), z1.grad, z2.grad


def expected(z1, z2, *, grads=(True, True), **options):
    """``(loss, grad1, grad2)`` of one process on the full views (the truth)."""
    return evaluate(redundancy.barlow_twins_loss, z1, z2, grads=grads, **options)


def assert_every_rank_raised(results, key, *words, kinds=("ValueError",)):
    """Every rank's ``results[key]`` is an error of one of ``kinds`` whose message holds every word."""
    for rank, outcomes in enumerate(results):
        result = outcomes[key]
        assert is_error(result), f"rank {rank} did not raise for {key!r}: {result}"
        assert result[1] in kinds, f"rank {rank} raised {result[1]} for {key!r}: {result[2]}"
        for word in words:
            assert word in result[2], f"rank {rank}: {result[2]!r} does not mention {word!r}"


# ------------------------------------------------------------------------------------------------ two ranks

#: The 1×2 grid of the full 11×13 views: each rank holds all rows and its columns.
COLUMNS = (slice(0, 6), slice(6, 13))
#: The data-parallel split of the full views: each rank holds its rows and all columns.
ROWS = (slice(0, 5), slice(5, 11))

DATA_PARALLEL = {
    "all_gather": functools.partial(redundancy.barlow_twins_loss, strategy="all_gather"),
    "all_reduce": functools.partial(redundancy.barlow_twins_loss, strategy="all_reduce"),
}


def _two_rank_worker(rank: int, world_size: int) -> dict:
    full = full_views()
    columns = tuple(view[:, COLUMNS[rank]] for view in full)
    rows = tuple(view[ROWS[rank]] for view in full)
    world = dist.group.WORLD
    feature_group = dist.new_group([0, 1])  # the same ranks as the default group, another process group
    results = {}

    # ---- groups: rank 1 forgets feature_group for one call (the columns are the same width: 6 and 7).
    for name, group in (("a new group", feature_group), ("the default group", world)):
        forgetful = {} if rank == 1 else {"feature_group": group}
        results["forgotten feature_group", name] = outcome(
            lambda forgetful=forgetful: evaluate(redundancy.barlow_twins_loss, *columns, **forgetful)
        )
        results["forgotten feature_group", name, "then"] = outcome(
            lambda group=group: evaluate(redundancy.barlow_twins_loss, *columns, feature_group=group)
        )
    # A data-parallel call: the default group on rank 0, a group of the same ranks on rank 1.
    other = {"group": feature_group} if rank == 1 else {}
    results["another group of the same ranks"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, *rows, **other))
    results["another group of the same ranks", "then"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, *rows))

    # ---- gradients: the grid's cross algorithm with z2 requiring grad on rank 0 only.
    cross = functools.partial(redundancy.barlow_twins_loss, algorithm="cross", feature_group=feature_group)
    results["z2 requires grad on rank 0 only"] = outcome(lambda: evaluate(cross, *columns, grads=(True, rank == 0)))
    results["z2 requires grad on rank 0 only", "then"] = outcome(lambda: evaluate(cross, *columns))
    for strategy, function in DATA_PARALLEL.items():
        # rank 0 stops the gradient of z2, rank 1 that of z1
        stopped = (True, False) if rank == 0 else (False, True)
        results["stop-gradient of different views", strategy] = outcome(
            lambda function=function, stopped=stopped: evaluate(function, *rows, grads=stopped)
        )
        results["stop-gradient of different views", strategy, "then"] = outcome(
            lambda function=function: evaluate(function, *rows)
        )
        results["stop-gradient of z2 on every rank", strategy] = outcome(
            lambda function=function: evaluate(function, *rows, grads=(True, False))
        )
        results["no view requires grad on rank 1", strategy] = outcome(
            lambda function=function: evaluate(function, *rows, grads=(True, True) if rank == 0 else (False, False))
        )
        results["torch.no_grad on rank 1", strategy] = outcome(
            lambda function=function: evaluate(function, *rows, enabled=rank == 0)
        )
        results["torch.no_grad on rank 1", strategy, "then"] = outcome(
            lambda function=function: evaluate(function, *rows)
        )

    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return spawn_gloo(_two_rank_worker, 2, tmp_path_factory.mktemp("two_ranks"), timeout=TIMEOUT)


def _timeout_worker(rank: int, world_size: int) -> dict:
    """Ranks 0 and 1 of three, each case on a group of its own, under the collective timeout (rank 2 only creates
    the groups: a group of fewer ranks than the default group exchanges its headers over itself)."""
    rows = tuple(view[ROWS[rank]] for view in full_views()) if rank < 2 else None
    results = {}

    def case(name, call, *, on=(0, 1)):
        group = dist.new_group([0, 1])  # collective: every rank creates every group
        if rank in on:
            results[name] = outcome(functools.partial(call, group))

    def loss(group, **options):
        return evaluate(redundancy.barlow_twins_loss, *rows, group=group, **options)

    with redundancy.set_collective_timeout(COLLECTIVE_TIMEOUT):
        group = dist.new_group([0, 1])
        if rank < 2:
            results["timeout, nothing wrong"] = outcome(lambda: loss(group))
            lambd = 0.0051 if rank else 0.01
            results["timeout, a mismatch the headers see"] = outcome(lambda: loss(group, lambd=lambd))
            results["timeout, after the mismatch"] = outcome(lambda: loss(group))
        group, after = dist.new_group([0, 1]), dist.new_group([0, 1])
        if rank == 0:  # rank 1 does not call until rank 0 gave up on it, then calls late; then both call
            results["a rank that never calls"] = outcome(lambda: loss(group))
        if rank < 2:
            dist.barrier(group=after)
        if rank == 1:
            results["a rank that never calls", "its late call"] = outcome(lambda: loss(group))
        if rank < 2:
            results["a rank that never calls", "then"] = outcome(lambda: loss(group))
        # misspelt on rank 1: Python's TypeError at the call, before the loss runs
        options = {"lamda": 0.1} if rank == 1 else {}
        case("a misspelt keyword", lambda group: loss(group, **options))
        # rank 1 skips the backward and calls the loss of the next step
        group = dist.new_group([0, 1])
        if rank < 2:
            results["a rank that skips the backward"] = outcome(lambda: loss(group, backward=rank == 0))
        if rank == 1:
            results["a rank that skips the backward", "its next call"] = outcome(lambda: loss(group))
        if rank < 2:
            results["a rank that skips the backward", "then"] = outcome(lambda: loss(group))
    results["timeout after the context"] = outcome(redundancy.get_collective_timeout)
    return results


@pytest.fixture(scope="module")
def timeouts(tmp_path_factory):
    return spawn_gloo(_timeout_worker, 3, tmp_path_factory.mktemp("timeouts"), timeout=TIMEOUT)


def assert_grid_result(result, rank, what):
    """``result`` (a 1×2 grid evaluation on ``rank``) is the loss and the gradient blocks of the full views."""
    assert not is_error(result), f"{what}, rank {rank}: {result}"
    loss, *truth = expected(*full_views())
    assert_relative(result[0], loss, 1e-10, f"{what}: loss on rank {rank}")
    for grad, full_grad in zip(result[1:], truth, strict=True):
        assert_relative(grad, full_grad[:, COLUMNS[rank]], 1e-8, f"{what}: gradient on rank {rank}")


def assert_data_parallel_result(result, rank, what, *, grads=(True, True), **options):
    """``result`` (a data-parallel evaluation on ``rank``) is the loss of the full views and W times the gradient of
    this rank's rows (the default gradient convention); ``None`` for the views that do not require grad."""
    assert not is_error(result), f"{what}, rank {rank}: {result}"
    loss, *truth = expected(*full_views(), grads=grads, **options)
    assert_relative(result[0], loss, 1e-10, f"{what}: loss on rank {rank}")
    for grad, full_grad in zip(result[1:], truth, strict=True):
        if full_grad is None:
            assert grad is None, f"{what}: rank {rank} has a gradient of a view that does not require grad"
        else:
            assert_relative(grad, 2 * full_grad[ROWS[rank]], 1e-8, f"{what}: gradient on rank {rank}")


@pytest.mark.parametrize("group", ["a new group", "the default group"])
def test_a_forgotten_feature_group_is_named_on_every_rank_and_the_next_call_is_exact(two_ranks, group):
    """On a 1×2 grid, rank 1 passes its columns without ``feature_group``: rank 0 runs the grid's collectives and
    rank 1 the data-parallel ones, which pair up out of step (a wrong loss on both ranks, then on the next call)
    or wait. Every rank must name rank 1's groups instead, and the next call must be exact."""
    assert_every_rank_raised(two_ranks, ("forgotten feature_group", group), "feature_group", "rank 1")
    for rank, results in enumerate(two_ranks):
        assert_grid_result(results["forgotten feature_group", group, "then"], rank, "the call after")


def test_two_process_groups_of_the_same_ranks_are_told_apart(two_ranks):
    """The default group on rank 0 and ``new_group([0, 1])`` on rank 1 hold the same ranks, but their collectives
    never meet: every rank must name the difference at once."""
    assert_every_rank_raised(two_ranks, "another group of the same ranks", "group", "rank 1")
    for rank, results in enumerate(two_ranks):
        assert_data_parallel_result(results["another group of the same ranks", "then"], rank, "the call after")


def test_requires_grad_on_one_rank_only_is_named_at_the_call(two_ranks):
    """The grid's cross algorithm all-reduces the gradient of the gathered z2 in backward: a rank whose z2 does
    not require grad skips it and the other waits. The difference must be named at the call, on every rank."""
    assert_every_rank_raised(two_ranks, "z2 requires grad on rank 0 only", "z2", "requires grad", "rank 1")
    for rank, results in enumerate(two_ranks):
        assert_grid_result(results["z2 requires grad on rank 0 only", "then"], rank, "the call after")


@pytest.mark.parametrize("strategy", list(DATA_PARALLEL))
def test_the_stop_gradient_of_different_views_is_named_never_silently_wrong(two_ranks, strategy):
    """Rank 0 stops the gradient of z2 and rank 1 that of z1: each backward all-reduces the sums of the view it
    differentiates, so the sums of z1 on rank 0 met those of z2 on rank 1 (gradients wrong by up to 4e-2 with
    all_gather, 1.3e-3 with all_reduce, no error). The difference must be named on every rank at the call."""
    assert_every_rank_raised(two_ranks, ("stop-gradient of different views", strategy), "z1", "z2", "requires grad")
    for rank, results in enumerate(two_ranks):
        result = results["stop-gradient of different views", strategy, "then"]
        assert_data_parallel_result(result, rank, "the call after", strategy=strategy)


@pytest.mark.parametrize("strategy", list(DATA_PARALLEL))
def test_the_same_stop_gradient_on_every_rank_is_exact(two_ranks, strategy):
    for rank, results in enumerate(two_ranks):
        result = results["stop-gradient of z2 on every rank", strategy]
        assert_data_parallel_result(result, rank, "z2 detached", grads=(True, False), strategy=strategy)


@pytest.mark.parametrize("strategy", list(DATA_PARALLEL))
def test_a_rank_without_gradients_is_named_at_the_call(two_ranks, strategy):
    """A rank whose views do not require grad, or that calls under ``torch.no_grad``, has no backward to run: the
    others would wait in theirs. Named at the call on every rank instead."""
    assert_every_rank_raised(two_ranks, ("no view requires grad on rank 1", strategy), "requires grad", "rank 1")
    assert_every_rank_raised(two_ranks, ("torch.no_grad on rank 1", strategy), "requires grad", "rank 1")
    for rank, results in enumerate(two_ranks):
        result = results["torch.no_grad on rank 1", strategy, "then"]
        assert_data_parallel_result(result, rank, "the call after", strategy=strategy)


def test_the_collective_timeout_changes_nothing_when_nothing_is_wrong(timeouts):
    for rank, results in enumerate(timeouts[:2]):
        assert_data_parallel_result(results["timeout, nothing wrong"], rank, "with the timeout")
        result = results["timeout, a mismatch the headers see"]
        assert is_error(result) and "lambd" in result[2], f"rank {rank}: {result}"
        assert_data_parallel_result(results["timeout, after the mismatch"], rank, "the call after")
    for rank, results in enumerate(timeouts):
        assert results["timeout after the context"] is None, f"rank {rank}: the context did not restore the timeout"


def test_a_rank_that_never_calls_is_named_by_the_timeout(timeouts):
    """Rank 0 waits for rank 1, which does not call: rank 0 raises after the timeout, naming rank 1. No collective
    started, so when rank 1 calls late it is told, and the call after is exact on both."""
    result = timeouts[0]["a rank that never calls"]
    assert is_error(result) and result[1] == "CollectiveNotStarted", result
    for words in ("rank 1 did not arrive", "2 s", "set_collective_timeout"):
        assert words in result[2], f"{result[2]!r} does not mention {words!r}"
    late = timeouts[1]["a rank that never calls", "its late call"]
    assert is_error(late) and "after the others had waited 2 s" in late[2], late
    for rank in (0, 1):
        assert_data_parallel_result(timeouts[rank]["a rank that never calls", "then"], rank, "the call after")


def test_a_misspelt_keyword_is_pythons_error_on_its_rank_and_named_by_the_timeout_on_the_others(timeouts):
    mine = timeouts[1]["a misspelt keyword"]
    assert is_error(mine) and mine[1] == "TypeError" and "lamda" in mine[2], mine
    theirs = timeouts[0]["a misspelt keyword"]
    assert is_error(theirs) and theirs[1] == "CollectiveNotStarted", theirs
    assert "rank 1 did not arrive" in theirs[2], theirs[2]


def test_a_rank_that_skips_the_backward_is_named_on_both_ranks(timeouts):
    """Rank 0 is at the backward's first collective, rank 1 (which skipped the backward) at the exchange of its
    next call: both raise, naming where each rank is, and the call after is exact."""
    assert not is_error(timeouts[1]["a rank that skips the backward"])
    for rank, key in (
        (0, ("a rank that skips the backward",)),
        (1, ("a rank that skips the backward", "its next call")),
    ):
        result = timeouts[rank][key if len(key) > 1 else key[0]]
        assert is_error(result) and result[1] == "CollectiveNotStarted", f"rank {rank}: {result}"
        for words in ("different collectives", "rank 0 is at", "in the backward of", "rank 1 is at the exchange"):
            assert words in result[2], f"rank {rank}: {result[2]!r} does not mention {words!r}"
    for rank in (0, 1):
        result = timeouts[rank]["a rank that skips the backward", "then"]
        assert_data_parallel_result(result, rank, "the call after")


# ------------------------------------------------------------------------------------------------ a 2×2 grid

#: The 2×2 grid of the full 11×13 views: rank = row rank · 2 + feature rank.
GRID_ROWS = (slice(0, 7), slice(7, 11))
GRID_COLUMNS = (slice(0, 5), slice(5, 13))


def _grid_worker(rank: int, world_size: int) -> dict:
    row_rank, feature_rank = divmod(rank, 2)
    row_groups = [dist.new_group([p, p + 2]) for p in range(2)]  # the ranks holding the other rows of p's columns
    feature_groups = [dist.new_group([2 * r, 2 * r + 1]) for r in range(2)]  # the other columns of r's rows
    group, feature_group = row_groups[feature_rank], feature_groups[row_rank]
    z1, z2 = (view[GRID_ROWS[row_rank], GRID_COLUMNS[feature_rank]] for view in full_views())
    grid = {"group": group, "feature_group": feature_group}
    faults = {
        "group and feature_group swapped": {"group": feature_group, "feature_group": group},
        "feature_group passed as group too": {"group": feature_group, "feature_group": feature_group},
        "neither group": {},
    }
    results = {}
    for name, fault in faults.items():
        options = fault if rank == 3 else grid
        results[name] = outcome(lambda options=options: evaluate(redundancy.barlow_twins_loss, z1, z2, **options))
        results[name, "then"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, z1, z2, **grid))
    cross = functools.partial(redundancy.barlow_twins_loss, algorithm="cross", **grid)
    results["z2 requires grad on rank 3 only"] = outcome(lambda: evaluate(cross, z1, z2, grads=(True, rank == 3)))
    results["z2 requires grad on rank 3 only", "then"] = outcome(lambda: evaluate(cross, z1, z2))
    # Last: rank 3 passes group=None (its rows are taken as not split) and waits for rank 2 in their feature
    # group, while the others meet in the exchange of the grid; only the timeout can tell them.
    options = {"feature_group": feature_group} if rank == 3 else grid
    with redundancy.set_collective_timeout(COLLECTIVE_TIMEOUT):
        results["group=None on rank 3"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, z1, z2, **options))
    return results


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    return spawn_gloo(_grid_worker, 4, tmp_path_factory.mktemp("grid"), timeout=TIMEOUT)


def assert_two_by_two_result(result, rank, what, *, grads=(True, True)):
    """The loss of the full views and the rank's block of the full gradient, times R = 2 (the row ranks)."""
    assert not is_error(result), f"{what}, rank {rank}: {result}"
    loss, *truth = expected(*full_views(), grads=grads)
    assert_relative(result[0], loss, 1e-10, f"{what}: loss on rank {rank}")
    row_rank, feature_rank = divmod(rank, 2)
    for grad, full_grad in zip(result[1:], truth, strict=True):
        block = full_grad[GRID_ROWS[row_rank], GRID_COLUMNS[feature_rank]]
        assert_relative(grad, 2 * block, 1e-8, f"{what}: gradient on rank {rank}")


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("group and feature_group swapped", ["rank 3", "group=[2, 3]", "feature_group=[1, 3]"]),
        ("feature_group passed as group too", ["rank 3", "feature_group", "share"]),
        ("neither group", ["rank 3", "feature_group=None"]),
    ],
)
def test_a_rank_of_a_grid_with_other_groups_is_named_on_every_rank(two_by_two, fault, words):
    assert_every_rank_raised(two_by_two, fault, *words)
    for rank, results in enumerate(two_by_two):
        assert_two_by_two_result(results[fault, "then"], rank, f"the call after {fault}")


def test_requires_grad_on_one_rank_of_a_grid_is_named_at_the_call(two_by_two):
    assert_every_rank_raised(two_by_two, "z2 requires grad on rank 3 only", "z2", "requires grad", "rank 3")
    for rank, results in enumerate(two_by_two):
        assert_two_by_two_result(results["z2 requires grad on rank 3 only", "then"], rank, "the call after")


def test_group_none_on_one_rank_of_a_grid_is_named_by_the_timeout_on_every_rank(two_by_two):
    """Rank 3 passes ``group=None``: it takes its rows as the whole batch and waits for rank 2 in their feature
    group; the others wait for rank 3 in the exchange of the grid. No rank can see the other's exchange, but the
    timeout names, on every rank, the ranks that did not arrive."""
    for rank, results in enumerate(two_by_two):
        result = results["group=None on rank 3"]
        assert is_error(result) and result[1] == "CollectiveNotStarted", f"rank {rank}: {result}"
        assert "did not arrive" in result[2] and "set_collective_timeout" in result[2], f"rank {rank}: {result[2]}"
        missing = "rank 2" if rank == 3 else "rank 3"
        assert missing in result[2], f"rank {rank}: {result[2]!r} does not name {missing}"


# ------------------------------------------------------------------------------------------------ smaller grids


def _smaller_grid_worker(rank: int, world_size: int) -> dict:
    """Five ranks: ranks 0..3 form a 2×2 grid (smaller than the default group, so its headers travel over its row
    and feature groups), ranks 0 and 1 a 1×2 grid as well; rank 4 only creates the groups."""
    row_groups = [dist.new_group([p, p + 2]) for p in range(2)]
    feature_groups = [dist.new_group([2 * r, 2 * r + 1]) for r in range(2)]
    pair = dist.new_group([0, 1])
    results = {}
    if rank == 4:
        return results
    row_rank, feature_rank = divmod(rank, 2)
    group, feature_group = row_groups[feature_rank], feature_groups[row_rank]
    z1, z2 = (view[GRID_ROWS[row_rank], GRID_COLUMNS[feature_rank]] for view in full_views())
    grid = {"group": group, "feature_group": feature_group}
    for name, function in (("gram", redundancy.barlow_twins_loss), ("cross", CROSS)):
        results["2x2", name] = outcome(lambda function=function: evaluate(function, z1, z2, **grid))
    lambd = 0.1 if rank == 3 else 0.0051
    results["2x2, lambd on rank 3"] = outcome(
        lambda: evaluate(redundancy.barlow_twins_loss, z1, z2, lambd=lambd, **grid)
    )
    results["2x2, z2 requires grad on rank 3 only"] = outcome(
        lambda: evaluate(CROSS, z1, z2, grads=(True, rank == 3), **grid)
    )
    results["2x2, then"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, z1, z2, **grid))
    if rank < 2:
        columns = tuple(view[:, COLUMNS[rank]] for view in full_views())
        results["1x2"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, *columns, feature_group=pair))
        mistaken = {"group": pair} if rank == 1 else {"feature_group": pair}  # rank 1: group= for feature_group=
        results["1x2, the feature group passed as group"] = outcome(
            lambda: evaluate(redundancy.barlow_twins_loss, *columns, **mistaken)
        )
        results["1x2, then"] = outcome(lambda: evaluate(redundancy.barlow_twins_loss, *columns, feature_group=pair))
    return results


CROSS = functools.partial(redundancy.barlow_twins_loss, algorithm="cross")


@pytest.fixture(scope="module")
def smaller_grids(tmp_path_factory):
    return spawn_gloo(_smaller_grid_worker, 5, tmp_path_factory.mktemp("smaller_grids"), timeout=TIMEOUT)


def test_a_grid_smaller_than_the_default_group_gives_the_loss_of_the_full_views(smaller_grids):
    grid_ranks = smaller_grids[:4]
    for name in ("gram", "cross"):
        for rank, results in enumerate(grid_ranks):
            assert_two_by_two_result(results["2x2", name], rank, f"the {name} form")
    for rank, results in enumerate(grid_ranks):
        assert_two_by_two_result(results["2x2, then"], rank, "the call after the faults")
    for rank, results in enumerate(smaller_grids[:2]):
        assert_grid_result(results["1x2"], rank, "the 1×2 grid")
        assert_grid_result(results["1x2, then"], rank, "the call after the fault")


def test_faults_on_a_grid_smaller_than_the_default_group_raise_on_every_rank(smaller_grids):
    grid_ranks = smaller_grids[:4]
    assert_every_rank_raised(grid_ranks, "2x2, lambd on rank 3", "lambd", "same on every rank")
    assert_every_rank_raised(grid_ranks, "2x2, z2 requires grad on rank 3 only", "z2", "requires grad", "rank 3")
    assert_every_rank_raised(smaller_grids[:2], "1x2, the feature group passed as group", "rank 1", "group=[0, 1]")


def test_which_views_require_grad_is_a_code_the_compiler_traces_beyond_52_views():
    """Beyond 52 views the code is a hash of the bits, computed in plain Python: it traces under torch.compile, and
    it tells two patterns apart and equals itself on equal ones."""
    from redundancy._exchange import requires_grad_code

    views = [torch.zeros(1, requires_grad=index % 3 == 0) for index in range(60)]
    other = [torch.zeros(1, requires_grad=index % 3 == 1) for index in range(60)]
    compiled = torch.compile(
        lambda *v: torch.tensor(requires_grad_code(v), dtype=torch.float64), fullgraph=True, backend="eager"
    )
    torch._dynamo.reset()
    assert compiled(*views).item() == requires_grad_code(views) >= 2**52
    assert requires_grad_code(views) != requires_grad_code(other)
    assert requires_grad_code(views) == requires_grad_code([v.detach().requires_grad_(v.requires_grad) for v in views])
