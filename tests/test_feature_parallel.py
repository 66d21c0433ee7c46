"""Barlow Twins and VICReg over a grid of row and feature shards (``group=`` and ``feature_group=``).

Four gloo processes hold blocks of one float64 pair of views (N = 11 rows, D = 13 features), uneven along both
axes, as a 2×2 grid, as 1×4 (features only) and as 4×1 (rows only, with one-rank feature groups). On every rank
the loss and its terms must equal one process on the full matrices at 1e-10, and every block's gradient must be
its block of the full gradient, times R (the ranks of the row group) under the default gradient convention and
times 1 under ``"official"``. Then the grid at its edges: extreme shards (an empty row rank, one-column ranks,
D_p > N, N = 2), half precision and autocast, non-contiguous and aliased blocks, second derivatives, converged
float32 embeddings, the cost model's bytes against what the collectives carry, evaluation without autograd,
``torch.compile``, and faults made on one rank only, which must raise on every rank of the grid. DTensor views
are tested in ``tests/test_dtensor.py``.

One spawned set of four gloo processes (short timeout: a rank left waiting fails fast) runs every section and
records, for each call, what it returned or the error it raised; the tests read those records. Float64 on one
process, on the full matrices, is the truth throughout.
"""

import functools
import math

import pytest
import torch
import torch.distributed as dist

import redundancy
from benchmarks.common import spawn_gloo
from redundancy import cost
from redundancy._frame import GRID_OUTSIDE_GRAPHS
from redundancy.barlow_twins import FEATURE_PARALLEL_COST as BARLOW_TWINS_COST
from redundancy.vicreg import FEATURE_PARALLEL_COST as VICREG_COST
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

pytestmark = pytest.mark.distributed

TIMEOUT = 20.0  # seconds: a rank left waiting in a collective fails the test quickly
N, D = 11, 13
UPSTREAM = 0.7

#: layout -> (rows on each row rank, columns on each feature rank); rank = row_rank · F + feature_rank.
LAYOUTS = {
    "2x2": ((7, 4), (5, 8)),
    "1x4": ((11,), (3, 4, 1, 5)),
    "4x1": ((4, 0, 5, 2), (13,)),
}

#: name -> terms function with its options; each is checked on every layout.
LOSSES = {
    "barlow_twins_cross": functools.partial(redundancy.barlow_twins_terms, algorithm="cross", lambd=0.02),
    "barlow_twins_gram": functools.partial(redundancy.barlow_twins_terms, algorithm="gram"),
    "barlow_twins_auto_std_hsic": functools.partial(
        redundancy.barlow_twins_terms, correction=1, off_diagonal_target=-1.0, lambd="auto", scale=0.5
    ),
    "barlow_twins_gram_hsic": functools.partial(
        redundancy.barlow_twins_terms, algorithm="gram", off_diagonal_target=-1.0, standardize=False
    ),
    "barlow_twins_cross_hsic": functools.partial(
        redundancy.barlow_twins_terms, algorithm="cross", off_diagonal_target=-1.0, eps=0.0
    ),
    "vicreg_cross": functools.partial(redundancy.vicreg_terms, algorithm="cross"),
    "vicreg_gram": functools.partial(redundancy.vicreg_terms, algorithm="gram", correction=0, gamma=2.0),
}


def full_views(count: int = 2) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(5)
    z1 = torch.randn(N, D, generator=generator, dtype=torch.float64) * 1.5 + 2.0
    z2 = z1 @ torch.randn(D, D, generator=generator, dtype=torch.float64) * 0.3 + 0.1
    z3 = z2 - 0.5 * z1 + torch.randn(N, D, generator=generator, dtype=torch.float64)
    return (z1, z2, z3)[:count]


#: name -> multi-view terms function with its options (three views).
MULTIVIEW_LOSSES = {
    "multiview_barlow_twins_cross": functools.partial(
        redundancy.multiview_barlow_twins_terms, algorithm="cross", off_diagonal_target=-1.0
    ),
    "multiview_barlow_twins_gram": functools.partial(
        redundancy.multiview_barlow_twins_terms, algorithm="gram", off_diagonal_target=0.5, lambd="auto"
    ),
    "multiview_vicreg_cross": functools.partial(redundancy.multiview_vicreg_terms, algorithm="cross"),
    "multiview_vicreg_gram": functools.partial(
        redundancy.multiview_vicreg_terms, algorithm="gram", variance_reduction="sum", gamma=2.0
    ),
}


#: name -> terms function with its options, checked on every extreme layout.
EXTREME_LOSSES = {
    "barlow_twins_cross": functools.partial(redundancy.barlow_twins_terms, algorithm="cross"),
    "barlow_twins_gram": functools.partial(redundancy.barlow_twins_terms, algorithm="gram", off_diagonal_target=-1.0),
    "barlow_twins_auto": functools.partial(redundancy.barlow_twins_terms, lambd="auto", correction=1),
    "vicreg_cross": functools.partial(redundancy.vicreg_terms, algorithm="cross"),
    "vicreg_gram": functools.partial(redundancy.vicreg_terms, algorithm="gram"),
}


#: layout -> (rows on each row rank, columns on each feature rank); rank = row_rank · F + feature_rank. Each has
#: an edge: a row rank with no rows, a feature rank with one column, more columns on a rank than rows in the batch
#: (D_p > N), a global batch of N = 2.
EXTREME_LAYOUTS = {
    "2x2, an empty row rank, a 1-column rank, D_p > N": ((3, 0), (1, 12)),
    "2x2, N = 2": ((1, 1), (6, 7)),
    "1x4, N = 2, three 1-column ranks": ((2,), (1, 1, 1, 10)),
    "4x1, two empty row ranks": ((0, 2, 0, 1), (13,)),
}


def block(layout: tuple, rank: int) -> tuple[slice, slice]:
    """The rows and columns of the full views that ``rank`` holds in ``layout`` (row counts, column counts)."""
    row_counts, column_counts = layout
    row_rank, feature_rank = divmod(rank, len(column_counts))
    start, first = sum(row_counts[:row_rank]), sum(column_counts[:feature_rank])
    return slice(start, start + row_counts[row_rank]), slice(first, first + column_counts[feature_rank])


def grid_groups(layout: tuple, rank: int):
    """``(group, feature_group)`` of ``rank`` (collective: every rank creates every group, in the same order)."""
    row_counts, column_counts = layout
    rows, features = len(row_counts), len(column_counts)
    group = feature_group = None
    for feature_rank in range(features):
        created = dist.new_group([r * features + feature_rank for r in range(rows)])
        if rank % features == feature_rank:
            group = created
    for row_rank in range(rows):
        created = dist.new_group([row_rank * features + p for p in range(features)])
        if rank // features == row_rank:
            feature_group = created
    return (None if rows == 1 else group), feature_group


def views_of(layout: tuple, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The full views with the layout's N rows (the first rows of :func:`full_views`), in ``dtype``."""
    n = sum(layout[0])
    return tuple(view[:n].to(dtype) for view in full_views())


def evaluate(function, z1, z2, *, grads=(True, True), **options):
    """``(terms, grad1, grad2)`` of ``function`` with the upstream gradient ``UPSTREAM`` on the loss."""
    z1, z2 = z1.clone().requires_grad_(grads[0]), z2.clone().requires_grad_(grads[1])
    terms = function(z1, z2, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([t.detach() for t in terms]), z1.grad, z2.grad


def outcome(call):
    """What ``call()`` returned, or ``("error", type name, message)`` for any exception (a test asserts which)."""
    try:
        return call()
    except Exception as error:
        return ("error", type(error).__name__, str(error))


def is_error(result) -> bool:
    return isinstance(result, tuple) and len(result) == 3 and result[0] == "error"


def evaluate_views(function, views, **options):
    """``(terms, gradients)`` of ``UPSTREAM · loss`` of a multi-view function, for any number of views."""
    views = [view.clone().requires_grad_() for view in views]
    terms = function(views, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([t.detach() for t in terms]), *(view.grad for view in views)


def _grid_worker(rank: int, world_size: int, layout: str) -> dict:
    group, feature_group = grid_groups(LAYOUTS[layout], rank)
    rows, columns = block(LAYOUTS[layout], rank)
    z1, z2 = (view[rows, columns] for view in full_views())
    results = {}
    for name, function in LOSSES.items():
        results[name] = evaluate(function, z1, z2, group=group, feature_group=feature_group)
    official = functools.partial(redundancy.barlow_twins_terms, gradient_convention="official")
    results["official"] = evaluate(official, z1, z2, group=group, feature_group=feature_group)
    module = redundancy.VICRegLoss(feature_group=feature_group, group=group)
    results["module"] = module(z1, z2).detach()
    views = [view[rows, columns] for view in full_views(3)]
    for name, function in MULTIVIEW_LOSSES.items():
        results[name] = evaluate_views(function, views, group=group, feature_group=feature_group)
    return results


# ------------------------------------------------------------------------------------------------ one spawn


def _worker(rank: int, world_size: int) -> dict:
    """Every section of this file on one rank of the four (run by :func:`benchmarks.common.spawn_gloo`)."""
    results = {("grid", layout): _grid_worker(rank, world_size, layout) for layout in LAYOUTS}
    results["extreme"] = _extreme_worker(rank, world_size)
    results["inputs"] = _inputs_worker(rank, world_size)
    results["groups"] = _groups_worker(rank, world_size)
    results["layout_faults"] = _layout_fault_worker(rank, world_size)
    results["grid_faults"] = _grid_fault_worker(rank, world_size)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_worker, 4, tmp_path_factory.mktemp("grid"), timeout=TIMEOUT)


@pytest.fixture(scope="module", params=list(LAYOUTS))
def grid(request, ranks):
    return request.param, [results["grid", request.param] for results in ranks]


def _section(name: str):
    """A fixture of one section of every rank's records."""

    @pytest.fixture(scope="module", name=name)
    def section(ranks):
        return [results[name] for results in ranks]

    return section


extreme = _section("extreme")
inputs = _section("inputs")
groups = _section("groups")
layout_faults = _section("layout_faults")
grid_faults = _section("grid_faults")


@pytest.mark.parametrize("name", [*LOSSES, "official"])
def test_grid_equals_one_process_on_the_full_views(grid, name):
    layout, results = grid
    function = LOSSES.get(name) or functools.partial(redundancy.barlow_twins_terms, gradient_convention="official")
    expected, grad1, grad2 = evaluate(function, *full_views())
    row_ranks = len(LAYOUTS[layout][0])
    factor = 1 if name == "official" else row_ranks
    for rank, result in enumerate(results):
        value, block1, block2 = result[name]
        assert_relative(value, expected, 1e-10, f"{name} terms on rank {rank} ({layout})")
        rows, columns = block(LAYOUTS[layout], rank)
        for got, full in ((block1, grad1), (block2, grad2)):
            if got.numel():
                assert_relative(got, factor * full[rows, columns], 1e-10, f"{name} gradient on rank {rank} ({layout})")


@pytest.mark.parametrize("name", list(MULTIVIEW_LOSSES))
def test_grid_multiview_equals_one_process_on_the_full_views(grid, name):
    layout, results = grid
    expected, *grads = evaluate_views(MULTIVIEW_LOSSES[name], full_views(3))
    row_ranks = len(LAYOUTS[layout][0])
    for rank, result in enumerate(results):
        value, *blocks = result[name]
        assert_relative(value, expected, 1e-10, f"{name} terms on rank {rank} ({layout})")
        rows, columns = block(LAYOUTS[layout], rank)
        for got, full in zip(blocks, grads, strict=True):
            if got.numel():
                expected_block = row_ranks * full[rows, columns]
                assert_relative(got, expected_block, 1e-10, f"{name} gradient on rank {rank} ({layout})")


def test_grid_module(grid):
    layout, results = grid
    expected = redundancy.vicreg_loss(*full_views())
    for rank, result in enumerate(results):
        assert_relative(result["module"], expected, 1e-10, f"VICRegLoss on rank {rank} ({layout})")


#: fault -> (what the faulty rank passes instead, words every rank's error must contain). On the 2×2 grid, rank 3
#: is at row 1, column 1: its column's ranks are {1, 3} and its row's {2, 3}, so ranks 0 reaches it in two hops.
GRID_FAULTS = {
    "one-dimensional input": (lambda z1, z2: ((z1[:, 0], z2), {}), ["z1", "rank"]),
    "lambd on one rank": (lambda z1, z2: ((z1, z2), {"lambd": 0.1}), ["lambd", "same on every rank"]),
    "rows differ in a feature group": (lambda z1, z2: ((z1[:2], z2[:2]), {}), ["same rows", "feature_group"]),
    "columns differ in a row group": (lambda z1, z2: ((z1[:, :3], z2[:, :3]), {}), ["number of features D"]),
    "distributed='local' on one rank": (lambda z1, z2: ((z1, z2), {"distributed": "local"}), ["distributed"]),
    "backend on every rank": (None, ["backend"]),
}


def _grid_fault_worker(rank: int, world_size: int) -> dict:
    group, feature_group = grid_groups(LAYOUTS["2x2"], rank)
    rows, columns = block(LAYOUTS["2x2"], rank)
    z1, z2 = (view[rows, columns] for view in full_views())
    grid = {"group": group, "feature_group": feature_group}
    outcomes = {}
    for name, (fault, _) in GRID_FAULTS.items():
        inputs, options = (z1, z2), {}
        if fault is None:
            options = {"backend": "triton"}
        elif rank == 3:
            inputs, options = fault(z1, z2)
        try:
            redundancy.barlow_twins_loss(*inputs, **grid, **options)
            outcomes[name] = None
        except (TypeError, ValueError, RuntimeError) as error:
            outcomes[name] = (type(error).__name__, str(error))
        outcomes[name + ", then a good call"] = redundancy.barlow_twins_loss(z1, z2, **grid).detach()
    outcomes["local"] = redundancy.vicreg_loss(z1, z2, distributed="local", **grid).detach()
    compiled = torch.compile(lambda a, b: redundancy.barlow_twins_loss(a, b, **grid) * 2.0)
    outcomes["compiled"] = compiled(z1, z2).detach() / 2.0
    try:
        torch.compile(lambda a, b: redundancy.barlow_twins_loss(a, b, **grid), fullgraph=True)(z1, z2)
        outcomes["fullgraph"] = None
    except Exception as error:  # torch._dynamo's Unsupported: the graph break that fullgraph refuses
        outcomes["fullgraph"] = str(error)
    return outcomes


@pytest.mark.parametrize("fault", list(GRID_FAULTS))
def test_a_fault_on_one_rank_raises_on_every_rank_of_the_grid(grid_faults, fault):
    words = GRID_FAULTS[fault][1]
    kinds = set()
    for rank, outcome in enumerate(grid_faults):
        assert outcome[fault] is not None, f"rank {rank} did not raise for {fault}"
        kind, message = outcome[fault]
        kinds.add(kind)
        for word in words:
            assert word in message, f"rank {rank}: {message!r} does not mention {word!r}"
    assert len(kinds) == 1, f"the ranks raised different errors: {kinds}"
    expected = redundancy.barlow_twins_loss(*full_views())
    for rank, outcome in enumerate(grid_faults):
        assert_relative(outcome[fault + ", then a good call"], expected, 1e-10, f"the call after {fault}, rank {rank}")


def test_a_local_call_on_a_grid_is_the_loss_of_its_rows_and_every_feature(grid_faults):
    for rank, outcome in enumerate(grid_faults):
        rows, _ = block(LAYOUTS["2x2"], rank)
        expected = redundancy.vicreg_loss(*(view[rows] for view in full_views()))
        assert_relative(outcome["local"], expected, 1e-10, f"the local loss of rank {rank}")


def test_torch_compile_breaks_the_graph_at_a_grid_loss(grid_faults):
    """The grid's collectives run in eager mode: compiled callers get the loss, fullgraph=True says why it fails."""
    expected = redundancy.barlow_twins_loss(*full_views())
    for rank, outcome in enumerate(grid_faults):
        assert_relative(outcome["compiled"], expected, 1e-10, f"the compiled loss on rank {rank}")
        assert outcome["fullgraph"] is not None and GRID_OUTSIDE_GRAPHS in outcome["fullgraph"], outcome["fullgraph"]


# ------------------------------------------------------------------------------------------------ extreme shards


def _extreme_worker(rank: int, world_size: int) -> dict:
    results = {}
    for layout_name, layout in EXTREME_LAYOUTS.items():
        group, feature_group = grid_groups(layout, rank)
        rows, columns = block(layout, rank)
        z1, z2 = (view[rows, columns] for view in views_of(layout))
        grid = {"group": group, "feature_group": feature_group}
        for name, function in EXTREME_LOSSES.items():
            results[layout_name, name] = outcome(functools.partial(evaluate, function, z1, z2, **grid))
        official = functools.partial(redundancy.barlow_twins_terms, gradient_convention="official")
        results[layout_name, "official"] = outcome(functools.partial(evaluate, official, z1, z2, **grid))
    for layout_name, layout in TOO_SMALL_LAYOUTS.items():
        group, feature_group = grid_groups(layout, rank)
        rows, columns = block(layout, rank)
        z1, z2 = (view[rows, columns] for view in views_of(layout))
        call = functools.partial(redundancy.vicreg_loss, z1, z2, group=group, feature_group=feature_group)
        results[layout_name] = outcome(call)
        z1, z2 = (view[:4, 3 * rank : 3 * rank + 3] for view in full_views())
        then = functools.partial(redundancy.vicreg_loss, z1, z2, feature_group=dist.group.WORLD)
        results[layout_name, "then a good call"] = outcome(then)
    return results


#: layout -> words of the error every rank raises: grids whose loss does not exist.
TOO_SMALL_LAYOUTS = {
    "2x2, N = 1": ((1, 0), (6, 7)),
    "1x4, N = 1": ((1,), (3, 3, 3, 4)),
    "2x2, a feature rank without columns": ((3, 4), (0, 13)),
}
TOO_SMALL_WORDS = {
    "2x2, N = 1": ["at least 2 rows"],
    "1x4, N = 1": ["z1", "at least 2 rows"],
    "2x2, a feature rank without columns": ["z1", "feature column"],
}


@pytest.mark.parametrize("name", [*EXTREME_LOSSES, "official"])
@pytest.mark.parametrize("layout_name", list(EXTREME_LAYOUTS))
def test_extreme_shards_give_the_loss_and_gradients_of_the_full_views(extreme, layout_name, name):
    layout = EXTREME_LAYOUTS[layout_name]
    function = EXTREME_LOSSES.get(name) or functools.partial(
        redundancy.barlow_twins_terms, gradient_convention="official"
    )
    expected, grad1, grad2 = evaluate(function, *views_of(layout))
    factor = 1 if name == "official" else len(layout[0])
    first = extreme[0][layout_name, name]
    for rank, results in enumerate(extreme):  # the same loss on every rank, to the bit
        assert is_error(first) or torch.equal(results[layout_name, name][0], first[0]), f"rank {rank} differs"
    for rank, results in enumerate(extreme):
        result = results[layout_name, name]
        assert not is_error(result), f"rank {rank}: {result}"
        value, block1, block2 = result
        assert_relative(value, expected, 1e-10, f"{name} terms on rank {rank}")
        rows, columns = block(layout, rank)
        assert block1.shape == (rows.stop - rows.start, columns.stop - columns.start)
        for got, full in ((block1, grad1), (block2, grad2)):
            # With N = 2 the gradient through "std" standardization is roundoff (two rows standardize to ±1
            # whatever they are): an absolute floor at float64 roundoff.
            torch.testing.assert_close(got, factor * full[rows, columns], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout_name", list(TOO_SMALL_LAYOUTS))
def test_a_grid_without_a_loss_raises_on_every_rank(extreme, layout_name):
    z1, z2 = (view[:4, :12] for view in full_views())
    expected = redundancy.vicreg_loss(z1, z2)
    for rank, results in enumerate(extreme):
        result = results[layout_name]
        assert is_error(result) and result[1] == "ValueError", f"rank {rank}: {result}"
        for word in TOO_SMALL_WORDS[layout_name]:
            assert word in result[2], f"rank {rank}: {result[2]!r} does not mention {word!r}"
        assert_relative(results[layout_name, "then a good call"], expected, 1e-10, f"the call after, rank {rank}")


# ------------------------------------------------------------------------------------------------ inputs and autograd

GRID = ((7, 4), (5, 8))  # 2×2, uneven along both axes
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _inputs_worker(rank: int, world_size: int) -> dict:
    group, feature_group = grid_groups(GRID, rank)
    rows, columns = block(GRID, rank)
    z1, z2 = (view[rows, columns] for view in views_of(GRID))
    grid = {"group": group, "feature_group": feature_group}
    results = {}
    for dtype in HALF_DTYPES:
        for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_gram"):

            def half(name=name, dtype=dtype):
                a, b = z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()
                terms = EXTREME_LOSSES[name](a, b, **grid)
                (terms.loss * UPSTREAM).backward()
                return terms.loss.dtype, terms.loss.detach(), a.grad.dtype, b.grad.dtype, a.grad.float()

            results[dtype, name] = outcome(half)
    for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_cross"):
        for backward_under_autocast in (False, True):

            def autocast(name=name, backward_under_autocast=backward_under_autocast):
                a, b = z1.float().requires_grad_(), z2.float().requires_grad_()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    terms = EXTREME_LOSSES[name](a, b, **grid)
                    if backward_under_autocast:
                        (terms.loss * UPSTREAM).backward()
                if not backward_under_autocast:
                    (terms.loss * UPSTREAM).backward()
                return terms.loss.dtype, terms.loss.detach(), a.grad, b.grad

            results["autocast", name, backward_under_autocast] = outcome(autocast)
    for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_cross"):
        function = EXTREME_LOSSES[name]
        column_major = (z1.t().contiguous().t(), z2.t().contiguous().t())
        results["non-contiguous", name] = outcome(functools.partial(evaluate, function, *column_major, **grid))

        def aliased(function=function):
            z = z1.clone().requires_grad_()
            (function(z, z, **grid).loss * UPSTREAM).backward()
            return z.grad

        results["z1 is z2", name] = outcome(aliased)
        for grads in ((True, False), (False, True)):
            one = functools.partial(evaluate, function, z1, z2, grads=grads, **grid)
            results["requires_grad on one view", name, grads] = outcome(one)
        local = functools.partial(evaluate, function, z1, z2, distributed="local", **grid)
        results["local", name] = outcome(local)

        def second_derivative(function=function):
            a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
            (grad,) = torch.autograd.grad(function(a, b, **grid).loss, a, create_graph=True)
            return grad.detach()

        results["create_graph", name] = outcome(second_derivative)

        def func_grad(function=function):
            return torch.func.grad(lambda a: function(a, z2, **grid).loss)(z1)

        results["torch.func.grad", name] = outcome(func_grad)
        results["after the transforms", name] = outcome(functools.partial(evaluate, function, z1, z2, **grid))
    return results


@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_gram"])
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_blocks_give_a_float32_loss_and_gradients_in_their_dtype(inputs, dtype, name):
    rounded = tuple(view.to(dtype).double() for view in views_of(GRID))
    expected = EXTREME_LOSSES[name](*rounded).loss
    for rank, results in enumerate(inputs):
        result = results[dtype, name]
        assert not is_error(result), f"rank {rank}: {result}"
        loss_dtype, loss, grad1_dtype, grad2_dtype, grad1 = result
        assert loss_dtype == torch.float32 and grad1_dtype == grad2_dtype == dtype, f"rank {rank}: {result[::2]}"
        assert_relative(loss, expected, LOSS_RTOL[dtype], f"{name} in {dtype} on rank {rank}")
        assert torch.isfinite(grad1).all()


BACKWARD_UNDER_AUTOCAST = pytest.mark.xfail(
    strict=True,
    reason="the grid's cross form is plain torch operations: a backward run inside an autocast region (which PyTorch "
    "advises against) runs their matrix products in bfloat16 (gradient error 3e-3 for Barlow Twins); the "
    "one-process ops guard their own backward",
)


@pytest.mark.parametrize(
    ("name", "backward_under_autocast"),
    [
        ("barlow_twins_cross", False),
        ("barlow_twins_gram", False),
        ("vicreg_cross", False),
        ("barlow_twins_gram", True),
        pytest.param("barlow_twins_cross", True, marks=BACKWARD_UNDER_AUTOCAST),
        pytest.param("vicreg_cross", True, marks=BACKWARD_UNDER_AUTOCAST),
    ],
)
def test_autocast_keeps_the_grid_in_float32(inputs, name, backward_under_autocast):
    rounded = tuple(view.float().double() for view in views_of(GRID))
    expected, grad1, grad2 = evaluate(EXTREME_LOSSES[name], *rounded)
    for rank, results in enumerate(inputs):
        result = results["autocast", name, backward_under_autocast]
        assert not is_error(result), f"rank {rank}: {result}"
        loss_dtype, loss, got1, got2 = result
        assert loss_dtype == torch.float32
        assert_relative(loss, expected[0], LOSS_RTOL[torch.float32], f"{name} under autocast on rank {rank}")
        rows, columns = block(GRID, rank)
        for got, full in ((got1, grad1), (got2, grad2)):
            assert_relative(got, 2 * full[rows, columns], 1e-4, f"{name} gradient under autocast on rank {rank}")


@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_cross"])
def test_non_contiguous_aliased_and_one_sided_inputs(inputs, name):
    function = EXTREME_LOSSES[name]
    expected, grad1, grad2 = evaluate(function, *views_of(GRID))
    z = views_of(GRID)[0].clone().requires_grad_()
    (function(z, z).loss * UPSTREAM).backward()
    for rank, results in enumerate(inputs):
        rows, columns = block(GRID, rank)
        value, *blocks = results["non-contiguous", name]
        assert_relative(value, expected, 1e-10, f"non-contiguous {name} on rank {rank}")
        for got, full in zip(blocks, (grad1, grad2), strict=True):
            assert_relative(got, 2 * full[rows, columns], 1e-10, f"non-contiguous {name} gradient on rank {rank}")
        assert_relative(results["z1 is z2", name], 2 * z.grad[rows, columns], 1e-10, f"z1 is z2, rank {rank}")
        for grads, full in (((True, False), grad1), ((False, True), grad2)):
            value, *blocks = results["requires_grad on one view", name, grads]
            assert_relative(value, expected, 1e-10, f"{name} with requires_grad {grads} on rank {rank}")
            got, other = blocks if grads[0] else blocks[::-1]
            assert other is None
            assert_relative(got, 2 * full[rows, columns], 1e-10, f"{name} with requires_grad {grads} on rank {rank}")


@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_cross"])
def test_local_with_a_feature_group_is_the_loss_of_this_rows_full_width(inputs, name):
    """``distributed="local"`` keeps the rows local (each row rank its own loss) and still joins the columns."""
    for rank, results in enumerate(inputs):
        rows, columns = block(GRID, rank)
        expected, grad1, _ = evaluate(EXTREME_LOSSES[name], *(view[rows] for view in views_of(GRID)))
        value, block1, _ = results["local", name]
        assert_relative(value, expected, 1e-10, f"local {name} on rank {rank}")
        assert_relative(block1, grad1[:, columns], 1e-10, f"local {name} gradient on rank {rank}")


@pytest.mark.parametrize("transform", ["create_graph", "torch.func.grad"])
@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_cross"])
def test_second_derivatives_raise_a_clear_error_on_every_rank_or_are_right(inputs, transform, name):
    expected, grad1, _ = evaluate(EXTREME_LOSSES[name], *views_of(GRID))
    for rank, results in enumerate(inputs):
        result = results[transform, name]
        if is_error(result):
            assert "second derivatives" in result[2] and "feature_group" in result[2], f"rank {rank}: {result}"
        else:
            rows, columns = block(GRID, rank)
            assert_relative(result, 2 * grad1[rows, columns] / UPSTREAM, 1e-10, f"{transform} on rank {rank}")
        value, _, _ = results["after the transforms", name]
        assert_relative(value, expected, 1e-10, f"the call after {transform}, rank {rank}")


# ---------------------------------------------------------------------------------------- precision, groups, cost

#: Even grids for the byte count (each rank holds N/R rows of D/F columns, as the cost model assumes); with D ≤ N
#: "gram" takes the cross form.
COUNTED_GRIDS = {
    "2x2": ((4, 4), (6, 6)),
    "1x4": ((8,), (3, 3, 3, 3)),
    "2x2, D <= N": ((4, 4), (2, 2)),
    "4x1": ((2, 2, 2, 2), (12,)),
}

#: name -> (terms function, the cost model's algorithm, loss and off_diagonal_target).
COUNTED_LOSSES = {
    "barlow_twins_cross": (
        functools.partial(redundancy.barlow_twins_terms, algorithm="cross"),
        "cross",
        {"loss": BARLOW_TWINS_COST},
    ),
    "barlow_twins_gram": (
        functools.partial(redundancy.barlow_twins_terms, algorithm="gram"),
        "gram",
        {"loss": BARLOW_TWINS_COST},
    ),
    "barlow_twins_cross_hsic": (
        functools.partial(redundancy.barlow_twins_terms, algorithm="cross", off_diagonal_target=-1.0),
        "cross",
        {"off_diagonal_target": -1.0, "loss": BARLOW_TWINS_COST},
    ),
    "barlow_twins_gram_hsic": (
        functools.partial(redundancy.barlow_twins_terms, algorithm="gram", off_diagonal_target=-1.0),
        "gram",
        {"off_diagonal_target": -1.0, "loss": BARLOW_TWINS_COST},
    ),
    "vicreg_cross": (functools.partial(redundancy.vicreg_terms, algorithm="cross"), "cross", {"loss": VICREG_COST}),
    "vicreg_gram": (functools.partial(redundancy.vicreg_terms, algorithm="gram"), "gram", {"loss": VICREG_COST}),
}

#: A 2×2 grid of converged float32 embeddings: N = 256 rows, D = 32 features (D ≤ N, where the Gram difference
#: cancels).
CONVERGED_GRID = ((100, 156), (13, 19))


def _three_views(function):
    """``function`` of the multi-view losses on three views (the second one twice), taking two views."""
    return lambda z1, z2, **options: function([z1, z2, z2], **options)


CONVERGED_LOSSES = {
    "barlow_twins_cross": functools.partial(redundancy.barlow_twins_terms, algorithm="cross"),
    "barlow_twins_gram": functools.partial(redundancy.barlow_twins_terms, algorithm="gram"),
    "barlow_twins_auto": redundancy.barlow_twins_terms,
    "vicreg_cross": functools.partial(redundancy.vicreg_terms, algorithm="cross"),
    "vicreg_gram": functools.partial(redundancy.vicreg_terms, algorithm="gram"),
    "vicreg_auto": redundancy.vicreg_terms,
    "multiview_barlow_twins_gram": _three_views(
        functools.partial(redundancy.multiview_barlow_twins_terms, algorithm="gram")
    ),
    "multiview_vicreg_gram": _three_views(functools.partial(redundancy.multiview_vicreg_terms, algorithm="gram")),
}


def converged_full_views() -> tuple[torch.Tensor, torch.Tensor]:
    from tests.test_ops_edges import converged_views

    return converged_views(sum(CONVERGED_GRID[0]), sum(CONVERGED_GRID[1]), seed=4, noise=2e-4)


class CollectiveLog:
    """Records the elements each ``all_gather`` and ``all_reduce`` of :mod:`torch.distributed` carries."""

    def __init__(self) -> None:
        self.calls = []
        self._originals = {}

    def __enter__(self):
        for op in ("all_gather", "all_reduce"):
            original = self._originals[op] = getattr(dist, op)

            def logged(*args, op=op, original=original, **kwargs):
                tensor = args[1] if op == "all_gather" else args[0]
                group = kwargs.get("group")
                self.calls.append((op, dist.get_world_size(group), tensor.numel(), tensor.element_size()))
                return original(*args, **kwargs)

            setattr(dist, op, logged)
        return self

    def __exit__(self, *_):
        for op, original in self._originals.items():
            setattr(dist, op, original)

    def ring_bytes(self) -> int:
        """Bytes this rank sends with ring collectives: ``(W-1)·n`` per all-gather, ``2(W-1)n/W`` per all-reduce."""
        total = 0
        for op, size, numel, itemsize in self.calls:
            if op == "all_gather":
                total += (size - 1) * numel * itemsize
            else:
                total += math.ceil(2 * (size - 1) * numel / size) * itemsize
        return total


def _groups_worker(rank: int, world_size: int) -> dict:
    results = {}
    full = full_views()
    for grid_name, layout in COUNTED_GRIDS.items():
        group, feature_group = grid_groups(layout, rank)
        rows, columns = block(layout, rank)
        n, d = sum(layout[0]), sum(layout[1])
        z1, z2 = (view[:n, :d][rows, columns].float() for view in full)
        for name, (function, _, _) in COUNTED_LOSSES.items():
            with CollectiveLog() as log:
                evaluate(function, z1, z2, group=group, feature_group=feature_group)
            results["bytes", grid_name, name] = log.ring_bytes()
    group, feature_group = grid_groups(CONVERGED_GRID, rank)
    rows, columns = block(CONVERGED_GRID, rank)
    z1, z2 = (view[rows, columns].float() for view in converged_full_views())
    for name, function in CONVERGED_LOSSES.items():
        results["converged", name] = outcome(
            lambda function=function: torch.stack(list(function(z1, z2, group=group, feature_group=feature_group)))
        )
    # The Modules and lambd="auto" on the 2×2 grid of the full 11×13 views.
    group, feature_group = grid_groups(GRID, rank)
    rows, columns = block(GRID, rank)
    z1, z2 = (view[rows, columns] for view in full)
    grid = {"group": group, "feature_group": feature_group}
    for module in (redundancy.BarlowTwinsLoss(lambd="auto", **grid), redundancy.VICRegLoss(algorithm="gram", **grid)):
        results["module", type(module).__name__] = outcome(
            lambda module=module: (module(z1, z2).detach(), torch.stack(list(module.terms(z1, z2))).detach())
        )
    for mode in ("no_grad", "inference_mode"):
        for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_cross", "vicreg_gram"):

            def without_autograd(mode=mode, function=COUNTED_LOSSES[name][0]):
                with getattr(torch, mode)():
                    return torch.stack(list(function(z1, z2, **grid))).clone()

            results[mode, name] = outcome(without_autograd)
    # A NaN in one rank's block reaches every rank's loss (never masked).
    group, feature_group = grid_groups(COUNTED_GRIDS["2x2"], rank)
    rows, columns = block(COUNTED_GRIDS["2x2"], rank)
    z1, z2 = (view[:8, :12][rows, columns].clone() for view in full)
    if rank == 3:
        z2[0, 0] = float("nan")
    for name in ("barlow_twins_cross", "barlow_twins_gram", "vicreg_cross", "vicreg_gram"):
        function = COUNTED_LOSSES[name][0]
        results["NaN on rank 3", name] = outcome(
            lambda function=function: function(z1, z2, group=group, feature_group=feature_group).loss
        )
    # The row group and the feature group are one group here: not a grid.
    z1, z2 = (view[:8, 3 * rank : 3 * rank + 3] for view in full)
    world = dist.group.WORLD
    overlap = functools.partial(redundancy.barlow_twins_loss, z1, z2, group=world, feature_group=world)
    results["group is feature_group"] = outcome(overlap)
    results["then a good call"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2, feature_group=world))
    return results


@pytest.mark.parametrize("name", list(COUNTED_LOSSES))
@pytest.mark.parametrize("grid_name", list(COUNTED_GRIDS))
def test_the_cost_model_counts_the_bytes_the_collectives_carry(groups, grid_name, name):
    row_counts, column_counts = COUNTED_GRIDS[grid_name]
    _, algorithm, options = COUNTED_LOSSES[name]
    n, d, r, f = sum(row_counts), sum(column_counts), len(row_counts), len(column_counts)
    modelled = cost.feature_parallel_bytes(algorithm, n, d, r, f, torch.float32, **options)
    for rank, results in enumerate(groups):
        assert results["bytes", grid_name, name] == modelled, f"rank {rank}"


@pytest.mark.parametrize("name", list(CONVERGED_LOSSES))
def test_converged_float32_terms_match_float64_and_are_never_negative(groups, name):
    """C ≈ I with D ≤ N: the float32 terms on the grid stay within 1e-3 of float64 (§2), whatever the algorithm."""
    exact = torch.stack(list(CONVERGED_LOSSES[name](*converged_full_views())))
    redundancy_index = 3 if "vicreg" in name else 2
    assert exact[redundancy_index] < 1e-3 * exact.sum()  # converged: the off-diagonal energy is tiny
    for rank, results in enumerate(groups):
        result = results["converged", name]
        assert not is_error(result), f"rank {rank}: {result}"
        assert (result >= 0).all(), f"rank {rank}: negative terms {result.tolist()}"
        for index, (got, want) in enumerate(zip(result, exact, strict=True)):
            assert_relative(got, want, 1e-3, f"{name} term {index} on rank {rank}")


def test_modules_on_the_grid_equal_the_functions_on_the_full_views(groups):
    z1, z2 = full_views()
    expected = {
        "BarlowTwinsLoss": redundancy.barlow_twins_terms(z1, z2, lambd=1.0 / z1.shape[1]),  # "auto" is 1/D of all D
        "VICRegLoss": redundancy.vicreg_terms(z1, z2, algorithm="gram"),
    }
    for rank, results in enumerate(groups):
        for name, terms in expected.items():
            result = results["module", name]
            assert not is_error(result), f"rank {rank}: {result}"
            loss, got = result
            assert_relative(loss, terms.loss, 1e-10, f"{name} on rank {rank}")
            assert_relative(got, torch.stack(list(terms)), 1e-10, f"{name}.terms on rank {rank}")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_cross", "vicreg_gram"])
def test_the_grid_evaluates_without_autograd(groups, mode, name):
    expected = torch.stack(list(COUNTED_LOSSES[name][0](*full_views())))
    for rank, results in enumerate(groups):
        result = results[mode, name]
        assert not is_error(result), f"rank {rank}: {result}"
        assert_relative(result, expected, 1e-10, f"{name} under {mode} on rank {rank}")


@pytest.mark.parametrize("name", ["barlow_twins_cross", "barlow_twins_gram", "vicreg_cross", "vicreg_gram"])
def test_a_nan_on_one_rank_reaches_the_loss_on_every_rank(groups, name):
    for rank, results in enumerate(groups):
        result = results["NaN on rank 3", name]
        assert not is_error(result) and torch.isnan(result), f"rank {rank}: {result}"


def test_one_group_for_rows_and_features_is_refused_on_every_rank(groups):
    """``group`` and ``feature_group`` naming the same ranks is not a grid: its loss would mix columns as rows."""
    expected = redundancy.barlow_twins_loss(*(view[:8, :12] for view in full_views()))
    for rank, results in enumerate(groups):
        result = results["group is feature_group"]
        assert is_error(result), f"rank {rank} returned {result}"
        assert "feature_group" in result[2] and "group" in result[2], f"rank {rank}: {result}"
        assert_relative(results["then a good call"], expected, 1e-10, f"the call after, rank {rank}")


# ------------------------------------------------------------------------------------------------ compile, mismatches


COMPILE_MODES = ("fullgraph, first", "no fullgraph", "fullgraph, after a grid call")


def _two_rank_worker(rank: int, world_size: int) -> dict:
    world = dist.group.WORLD
    z1, z2 = (view[:8, 6 * rank : 6 * rank + 6] for view in full_views())  # 1×2, even columns
    results = {}
    # fullgraph=True first, in a process whose grid has not run yet; then without it; then fullgraph=True again.
    for mode in COMPILE_MODES:
        torch._dynamo.reset()  # compiled frames are cached by code: each mode compiles its own
        compiled = torch.compile(
            functools.partial(redundancy.barlow_twins_loss, feature_group=world), fullgraph=mode.startswith("fullgraph")
        )
        results["torch.compile", mode] = outcome(lambda compiled=compiled: compiled(z1, z2).detach())
        results["after torch.compile", mode] = outcome(
            lambda: redundancy.barlow_twins_loss(z1, z2, feature_group=world).detach()
        )
    # feature_group on rank 0 only: rank 1 takes its block for rows of the default group. The columns are even, so
    # the shapes alone do not tell the two apart.
    mismatched = {"feature_group": world} if rank == 0 else {}
    results["feature_group on one rank"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2, **mismatched))
    results["then a good call"] = outcome(lambda: redundancy.barlow_twins_loss(z1, z2, feature_group=world))
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return spawn_gloo(_two_rank_worker, 2, tmp_path_factory.mktemp("two_ranks"), timeout=TIMEOUT)


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_torch_compile_raises_a_clear_error_or_works(two_ranks, mode):
    """Without ``fullgraph`` a grid call is a graph break that runs eagerly; ``fullgraph=True`` cannot compile it and
    raises the compiler's error, which names the reason (the first grid call of the process included)."""
    expected = redundancy.barlow_twins_loss(*(view[:8, :12] for view in full_views()))
    for rank, results in enumerate(two_ranks):
        result = results["torch.compile", mode]
        if mode == "no fullgraph":
            assert not is_error(result), f"rank {rank}: {result}"
            assert_relative(result, expected, 1e-10, f"compiled loss on rank {rank}")
        else:
            assert is_error(result) and result[1] == "Unsupported", f"rank {rank}: {result}"
            assert "feature_group= runs eagerly under torch.compile" in result[2], f"rank {rank}: {result}"
        assert_relative(results["after torch.compile", mode], expected, 1e-10, f"the call after, rank {rank}")


def test_feature_group_on_some_ranks_only_raises_on_every_rank(two_ranks):
    expected = redundancy.barlow_twins_loss(*(view[:8, :12] for view in full_views()))
    for rank, results in enumerate(two_ranks):
        result = results["feature_group on one rank"]
        assert is_error(result), f"rank {rank} returned {result}"
        assert "feature_group" in result[2], f"rank {rank}: {result}"
        assert_relative(results["then a good call"], expected, 1e-10, f"the call after, rank {rank}")


# ------------------------------------------------------------------------------------------------ faults on one rank

FAULT_LAYOUTS = {
    "1x4": ((11,), (3, 4, 1, 5)),
    "4x1": ((4, 0, 5, 2), (13,)),
    "2x2, an empty row rank": ((11, 0), (1, 12)),
}

#: fault -> (what rank 3 passes instead: (inputs, options), words every rank's error must contain). Rank 3 is the
#: last of its feature group and of its row group in every layout (in "2x2, an empty row rank" it has no rows).
LAYOUT_FAULTS = {
    "one-dimensional input": (lambda z1, z2: ((z1[:, 0], z2), {}), ["z1", "rank 3"]),
    "lambd on one rank": (lambda z1, z2: ((z1, z2), {"lambd": 0.1}), ["lambd", "same on every rank"]),
    "algorithm on one rank": (lambda z1, z2: ((z1, z2), {"algorithm": "cross"}), ["algorithm", "same on every rank"]),
    "float64 and float32": (lambda z1, z2: ((z1.float(), z2.float()), {}), ["compute dtype"]),
    "a negative eps on one rank": (lambda z1, z2: ((z1, z2), {"eps": -1.0}), ["eps", "rank 3"]),
}


def _layout_fault_worker(rank: int, world_size: int) -> dict:
    outcomes = {}
    for layout_name, layout in FAULT_LAYOUTS.items():
        group, feature_group = grid_groups(layout, rank)
        rows, columns = block(layout, rank)
        z1, z2 = (view[rows, columns] for view in views_of(layout))
        grid = {"group": group, "feature_group": feature_group}
        for name, (fault, _) in LAYOUT_FAULTS.items():
            inputs, options = fault(z1, z2) if rank == 3 else ((z1, z2), {})
            outcomes[layout_name, name] = outcome(
                functools.partial(redundancy.barlow_twins_loss, *inputs, **grid, **options)
            )
            good = outcome(functools.partial(redundancy.barlow_twins_loss, z1, z2, **grid))
            outcomes[layout_name, name, "then a good call"] = good if is_error(good) else good.detach()
    return outcomes


@pytest.mark.parametrize("fault", list(LAYOUT_FAULTS))
@pytest.mark.parametrize("layout_name", list(FAULT_LAYOUTS))
def test_a_fault_on_one_rank_raises_on_every_rank_in_every_layout(layout_faults, layout_name, fault):
    words = LAYOUT_FAULTS[fault][1]
    kinds = set()
    for rank, outcomes in enumerate(layout_faults):
        result = outcomes[layout_name, fault]
        assert is_error(result), f"rank {rank} did not raise for {fault}: {result}"
        kinds.add(result[1])
        # A rank's own error names that rank once, however many groups it crossed (not each group's index of it).
        assert result[2].count("(on rank") <= 1, f"rank {rank}: {result[2]!r}"
        for word in words:
            assert word in result[2], f"rank {rank}: {result[2]!r} does not mention {word!r}"
    assert len(kinds) == 1 and kinds <= {"TypeError", "ValueError"}, f"the ranks raised {kinds}"
    expected = redundancy.barlow_twins_loss(*views_of(FAULT_LAYOUTS[layout_name]))
    for rank, outcomes in enumerate(layout_faults):
        good = outcomes[layout_name, fault, "then a good call"]
        assert not is_error(good), f"rank {rank}: the call after {fault}: {good}"
        assert_relative(good, expected, 1e-10, f"the call after {fault}, rank {rank}")


# ------------------------------------------------------------------------------------------------ the automatic choice


@pytest.mark.parametrize("loss", [BARLOW_TWINS_COST, VICREG_COST], ids=["barlow_twins", "vicreg"])
def test_auto_never_takes_the_cancelling_gram_difference_when_d_is_at_most_n(loss):
    """With D ≤ N the summed Grams' difference cancels near convergence: ``auto`` must not choose it there, and
    ``"gram"`` costs what the cross form it then takes costs."""
    for n in (2, 8, 256, 2048, 8192):
        for d in sorted({1, 2, n // 3 or 1, n // 2 or 1, n - 1 or 1, n}):
            for r, f in ((1, 2), (2, 2), (4, 8), (8, 1)):
                if f > d:
                    continue
                chosen = cost.choose_feature_parallel_algorithm(n, d, r, f, loss=loss)
                assert chosen == "cross", (n, d, r, f, chosen)
                if f > 1:
                    for model in (cost.feature_parallel_bytes, cost.feature_parallel_flops):
                        assert model("gram", n, d, r, f, loss=loss) == model("cross", n, d, r, f, loss=loss)
