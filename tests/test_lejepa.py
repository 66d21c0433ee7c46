"""LeJEPA through :func:`redundancy.lejepa_loss` and :func:`redundancy.lejepa_terms`: the values of ``MINIMAL.md``'s
training loop, the invariance term as the official code computes it, the multi-crop centre, option errors, and three
gloo ranks with uneven shards (both terms of the global batch, the same directions on every rank)."""

import json
import pathlib

import pytest
import torch

import redundancy
from benchmarks.common import spawn_gloo
from redundancy.reference import lejepa_loss_reference
from redundancy.reference import lejepa_terms_reference
from redundancy.reference import sigreg_loss_reference
from tests.utils import assert_relative

GOLDEN = json.loads((pathlib.Path(__file__).resolve().parent / "golden" / "sigreg.json").read_text())["lejepa"]
F64 = torch.float64


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


@pytest.mark.parametrize("expected", GOLDEN["expected"], ids=lambda entry: f"lamb={entry['lamb']}")
def test_lejepa_reproduces_the_minimal_training_loop(expected):
    views, directions = tensor(GOLDEN["views"]), tensor(GOLDEN["directions"])
    loss, sigreg, invariance = redundancy.lejepa_terms(views, lamb=expected["lamb"], directions=directions)
    assert_relative(invariance, torch.tensor(expected["inv_loss"], dtype=F64), 1e-10, "invariance")
    assert_relative(sigreg, torch.tensor(expected["sigreg_loss"], dtype=F64), 1e-10, "sigreg")
    assert_relative(loss, torch.tensor(expected["lejepa_loss"], dtype=F64), 1e-10, "loss")
    value = redundancy.lejepa_loss(list(views), lamb=expected["lamb"], directions=directions)
    assert torch.equal(value, loss)


@pytest.mark.parametrize("global_views", [None, 1, 2, 4])
def test_terms_equal_the_reference_with_gradients(global_views):
    views = (torch.randn(4, 23, 7, dtype=F64) * 1.4 + 0.2).requires_grad_(True)
    directions = torch.randn(7, 19, dtype=F64)
    options = {"lamb": 0.3, "global_views": global_views, "knots": 9, "t_max": 2.5}
    terms = redundancy.lejepa_terms(views, directions=directions, **options)
    invariance, sigreg = lejepa_terms_reference(views, directions, global_views=global_views, knots=9, t_max=2.5)
    expected = lejepa_loss_reference(views, directions, **options)
    assert_relative(terms.invariance, invariance, 1e-12, "invariance")
    assert_relative(terms.sigreg, sigreg, 1e-12, "sigreg")
    assert_relative(terms.loss, expected, 1e-12, "loss")
    (gradient,) = torch.autograd.grad(terms.loss, views)
    (expected_gradient,) = torch.autograd.grad(expected, views)
    assert_relative(gradient, expected_gradient, 1e-10, "gradient")


def test_the_terms_are_sigreg_of_the_stack_and_the_official_invariance():
    views = torch.randn(3, 40, 5, dtype=F64)
    directions = torch.randn(5, 12, dtype=F64)
    terms = redundancy.lejepa_terms(views, directions=directions)
    assert_relative(terms.sigreg, redundancy.sigreg_loss(views, directions=directions), 1e-14)
    assert_relative(terms.invariance, (views.mean(0) - views).square().mean(), 1e-14)  # MINIMAL.md's line
    assert_relative(terms.loss, terms.sigreg * 0.02 + terms.invariance * 0.98, 1e-15)


def test_identical_views_have_no_invariance_term_and_lamb_weighs_the_two():
    view = torch.randn(30, 6, dtype=F64)
    directions = torch.randn(6, 8, dtype=F64)
    terms = redundancy.lejepa_terms([view, view, view], directions=directions, lamb=0.4)
    assert terms.invariance < 1e-30  # the mean of three equal views rounds
    assert_relative(terms.loss, 0.4 * sigreg_loss_reference(view, directions), 1e-13)
    only_sigreg = redundancy.lejepa_loss([view, view + 1], directions=directions, lamb=1.0)
    only_invariance = redundancy.lejepa_loss([view, view + 1], directions=directions, lamb=0.0)
    assert_relative(only_sigreg, sigreg_loss_reference(torch.stack([view, view + 1]), directions), 1e-13)
    assert_relative(only_invariance, torch.tensor(0.25, dtype=F64), 1e-13)  # each view 0.5 from the centre


def test_lejepa_module_equals_the_function():
    views = torch.randn(3, 16, 5, dtype=F64)
    generator_state = torch.Generator().manual_seed(2).get_state()
    module = redundancy.LeJEPALoss(lamb=0.1, global_views=2, generator=torch.Generator().set_state(generator_state))
    terms = module.terms(views)
    expected = redundancy.lejepa_terms(
        views, lamb=0.1, global_views=2, generator=torch.Generator().set_state(generator_state)
    )
    assert all(torch.equal(a, b) for a, b in zip(terms, expected, strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lejepa_half_precision_views_are_accumulated_in_float32(dtype):
    views = (torch.randn(3, 64, 8) * 2).to(dtype).requires_grad_(True)
    directions = torch.randn(8, 32)
    terms = redundancy.lejepa_terms(views, directions=directions)
    expected = lejepa_terms_reference(views.detach().double(), directions.double())
    assert terms.loss.dtype == torch.float32
    assert_relative(terms.invariance, expected[0], 1e-6, "invariance")
    assert_relative(terms.sigreg, expected[1], 1e-6, "sigreg")
    (gradient,) = torch.autograd.grad(terms.loss, views)
    assert gradient.dtype == dtype


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lamb": 1.5}, ValueError, r"lamb must be in \[0, 1\]"),
        ({"lamb": -0.1}, ValueError, "lamb must be non-negative"),
        ({"lamb": "0.1"}, TypeError, "lamb must be a real number"),
        ({"global_views": 0}, ValueError, "global_views must be positive"),
        ({"global_views": 2.0}, TypeError, "global_views must be an integer"),
        ({"generator": torch.Generator(), "directions": torch.randn(5, 3)}, ValueError, "not both"),
    ],
)
def test_lejepa_bad_options_raise_naming_the_option(options, error, match):
    with pytest.raises(error, match=match):
        redundancy.lejepa_loss(torch.randn(3, 8, 5), **options)
    with pytest.raises(error, match=match):
        redundancy.LeJEPALoss(**options)


def test_more_global_views_than_views_is_refused():
    with pytest.raises(ValueError, match="global_views must be at most the number of views, 3, got 4"):
        redundancy.lejepa_loss(torch.randn(3, 8, 5), global_views=4)


def test_one_view_is_refused():
    with pytest.raises(ValueError, match="views must hold at least 2 views"):
        redundancy.lejepa_loss(torch.randn(1, 8, 5))


# ========================================================================================= three gloo ranks

WORLD_SIZE = 3
SHARDS = (4, 0, 7)
EQUAL = (3, 3, 3)
V, DIM, SLICES = 3, 5, 9
UPSTREAM = 0.7


def _views(shards=SHARDS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(41)
    signal = torch.randn(sum(shards), DIM, generator=generator, dtype=F64)
    return torch.stack([signal + 0.5 * torch.randn(sum(shards), DIM, generator=generator, dtype=F64) for _ in range(V)])


def _directions() -> torch.Tensor:
    return torch.randn(DIM, SLICES, generator=torch.Generator().manual_seed(42), dtype=F64)


def _own(views: torch.Tensor, rank: int, shards=SHARDS) -> torch.Tensor:
    return views[:, sum(shards[:rank]) : sum(shards[: rank + 1])]


def _terms_and_grad(views: torch.Tensor, **options):
    leaf = views.clone().requires_grad_(True)
    terms = redundancy.lejepa_terms(leaf, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([term.detach() for term in terms]), leaf.grad


def _outcome(function):
    try:
        return function()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"


def _lejepa_rank(rank: int, world_size: int) -> dict:
    views, directions = _own(_views(), rank), _directions()
    records: dict = {}
    for convention in ("global", "official"):
        records[convention] = _terms_and_grad(
            views, directions=directions, lamb=0.3, global_views=2, gradient_convention=convention
        )
    torch.manual_seed(100 + rank)
    records["default"] = _terms_and_grad(views, num_slices=SLICES)
    faulty = rank == 2
    faults = {
        "lamb_differs": lambda: redundancy.lejepa_loss(views, directions=directions, lamb=0.5 if faulty else 0.3),
        "global_views_differs": lambda: redundancy.lejepa_loss(
            views, directions=directions, global_views=1 if faulty else None
        ),
        "directions_differ": lambda: redundancy.lejepa_loss(views, directions=directions + (1.0 if faulty else 0.0)),
        "too_many_global_views": lambda: redundancy.lejepa_loss(views, directions=directions, global_views=V + 1),
    }
    for fault, call in faults.items():
        records[fault] = _outcome(call)
        records[fault, "next"] = _outcome(lambda: redundancy.lejepa_loss(views, directions=directions).detach())

    def penalty():
        leaf = views.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(redundancy.lejepa_loss(leaf, directions=directions), leaf, create_graph=True)
        return gradient.square().sum()

    records["create_graph"] = _outcome(penalty)
    equal = _own(_views(EQUAL), rank, EQUAL)
    torch._dynamo.reset()
    compiled = torch.compile(redundancy.lejepa_terms, fullgraph=True, backend="aot_eager")
    leaf = equal.clone().requires_grad_(True)

    def compiled_terms():
        terms = compiled(leaf, directions=directions, global_views=2)
        (terms.loss * UPSTREAM).backward()
        return torch.stack([term.detach() for term in terms]), leaf.grad

    records["compiled"] = _outcome(compiled_terms)
    torch._dynamo.reset()
    return records


@pytest.fixture(scope="module")
def lejepa_ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_lejepa_rank, WORLD_SIZE, tmp_path_factory.mktemp("lejepa"), timeout=60.0)


def _assert_global(records, expected, what, shards=SHARDS, factor=WORLD_SIZE):
    terms, gradient = expected
    for rank, (rank_terms, rank_gradient) in enumerate(records):
        assert_relative(rank_terms, terms, 1e-10, f"{what}: terms of rank {rank}")
        assert torch.equal(rank_terms, records[0][0]), f"{what}: rank {rank} differs from rank 0"
        own = _own(gradient, rank, shards)
        assert rank_gradient.shape == own.shape
        if shards[rank]:
            assert_relative(rank_gradient, factor * own, 1e-9, f"{what}: gradient of rank {rank}")


@pytest.mark.distributed
@pytest.mark.parametrize("convention", ["global", "official"])
def test_both_terms_are_those_of_the_global_batch(lejepa_ranks, convention):
    expected = _terms_and_grad(_views(), directions=_directions(), lamb=0.3, global_views=2)
    factor = WORLD_SIZE if convention == "global" else 1
    _assert_global([r[convention] for r in lejepa_ranks], expected, convention, factor=factor)


@pytest.mark.distributed
def test_the_default_generators_draw_is_the_first_ranks(lejepa_ranks):
    torch.manual_seed(100)
    expected = _terms_and_grad(_views(), num_slices=SLICES)
    _assert_global([r["default"] for r in lejepa_ranks], expected, "default generator")


FAULTS = {
    "lamb_differs": "ValueError: lamb must be the same on every rank of the process group, got lamb = [0.3, 0.3, 0.5]",
    "global_views_differs": "ValueError: global_views must be the same on every rank of the process group",
    "directions_differ": "ValueError: directions must be the same on every rank of the process group",
    "too_many_global_views": "ValueError: global_views must be at most the number of views, 3, got 4",
}


@pytest.mark.distributed
@pytest.mark.parametrize("fault", list(FAULTS))
def test_lejepa_a_fault_raises_on_every_rank_and_the_next_call_is_in_step(lejepa_ranks, fault):
    expected = redundancy.lejepa_loss(_views(), directions=_directions())
    for rank, records in enumerate(lejepa_ranks):
        assert isinstance(records[fault], str) and FAULTS[fault] in records[fault], f"rank {rank}: {records[fault]}"
        assert_relative(records[fault, "next"], expected, 1e-10, f"rank {rank}, the call after {fault}")


@pytest.mark.distributed
def test_lejepa_second_derivatives_across_ranks_are_refused(lejepa_ranks):
    for rank, records in enumerate(lejepa_ranks):
        assert "second derivatives" in records["create_graph"] and "not supported" in records["create_graph"], rank


@pytest.mark.distributed
@pytest.mark.slow
def test_lejepa_compiled_in_the_group(lejepa_ranks):
    records = [r["compiled"] for r in lejepa_ranks]
    assert not any(isinstance(record, str) for record in records), records
    expected = _terms_and_grad(_views(EQUAL), directions=_directions(), global_views=2)
    _assert_global(records, expected, "compiled", shards=EQUAL)
