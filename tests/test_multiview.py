"""The multi-view losses are the mean over the pairs of views of the two-view loss, values and gradients.

Each case compares a multi-view call with the mean over the V(V-1)/2 pairs of the two-view function with the same
options, in float64 at 1e-10, gradients included (with a different upstream gradient on each term). Then the input
forms, the Modules, the errors, second derivatives against autograd through the reference formulas and float32.
The global batch of several ranks (every option variant, the stacked form, the faults of one rank) is tested for
every loss of the family by ``tests/family.py``.
"""

import itertools

import pytest
import torch

import redundancy
from redundancy import cost
from redundancy._ops.multiview import multiview_gram_terms
from redundancy._ops.standardize import Standardization
from redundancy.reference import barlow_twins_terms_reference
from tests.utils import assert_relative

BARLOW_TWINS_OPTIONS = [
    {"algorithm": "gram"},
    {"algorithm": "cross"},
    {"algorithm": "gram", "correction": 1, "eps": 0.0, "lambd": "auto"},
    {"algorithm": "cross", "correction": 1, "scale": 0.025},
    {"algorithm": "gram", "standardize": False, "off_diagonal_target": -1.0},
    {"algorithm": "cross", "standardize": False, "off_diagonal_target": 0.5, "lambd": "auto"},
    {"algorithm": "gram", "off_diagonal_target": -1.0, "lambd": 0.02, "scale": 3.0},
    {"algorithm": "cross", "off_diagonal_target": -1.0, "eps": 1e-3},
    {},
]
VICREG_OPTIONS = [
    {},
    {"algorithm": "gram", "variance_reduction": "sum"},
    {"algorithm": "cross", "correction": 0, "gamma": 2.0},
    {"invariance_weight": 1.0, "variance_weight": 3.0, "covariance_weight": 0.5, "eps": 0.0},
]
#: (N, D): the Gram path's value through the Grams (D > N) and through each pair's C (D ≤ N), and odd sizes.
SHAPES = [(37, 70), (70, 37), (16, 16), (3, 5)]


def _views(count: int, n: int, d: int, *, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """Correlated views (a shared signal plus noise), with offsets and scales per feature."""
    generator = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, d, generator=generator, dtype=torch.float64)
    views = [
        (signal + 0.7 * torch.randn(n, d, generator=generator, dtype=torch.float64)) * (1 + v) + 0.3 * v
        for v in range(count)
    ]
    return [view.to(dtype).requires_grad_() for view in views]


def _mean_over_pairs(function, views, **options):
    """The terms of ``function`` (a two-view terms function), each averaged over the pairs of views."""
    pairs = [function(views[u], views[v], **options) for u, v in itertools.combinations(range(len(views)), 2)]
    return type(pairs[0])(*(torch.stack(terms).mean() for terms in zip(*pairs, strict=True)))


UPSTREAM = (0.7, -1.3, 2.1, 0.4)  # a different weight on each term (none of them 1)


def _value_and_grads(terms, views):
    """The terms as one tensor, and the gradients of ``Σ_k UPSTREAM_k · terms_k`` with respect to the views."""
    total = sum(weight * term for weight, term in zip(UPSTREAM, terms, strict=False))
    return torch.stack([t.detach() for t in terms]), torch.autograd.grad(total, views)


def _assert_matches_pairs(multiview, two_view, views, options, what):
    value, grads = _value_and_grads(multiview(views, **options), views)
    expected, expected_grads = _value_and_grads(_mean_over_pairs(two_view, views, **options), views)
    assert_relative(value, expected, 1e-10, what)
    for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads, strict=True)):
        assert_relative(grad, expected_grad, 1e-10, f"gradient of view {index}, {what}")


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", BARLOW_TWINS_OPTIONS)
def test_barlow_twins_is_the_mean_over_pairs(options, shape, count):
    views = _views(count, *shape)
    what = f"{options}, {shape}, V={count}"
    _assert_matches_pairs(redundancy.multiview_barlow_twins_terms, redundancy.barlow_twins_terms, views, options, what)


@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", VICREG_OPTIONS)
def test_vicreg_is_the_mean_over_pairs(options, shape, count):
    views = _views(count, *shape, seed=1)
    what = f"{options}, {shape}, V={count}"
    _assert_matches_pairs(redundancy.multiview_vicreg_terms, redundancy.vicreg_terms, views, options, what)


def test_the_loss_is_the_first_term_and_both_algorithms_agree():
    views = _views(3, 24, 40)
    for loss, terms in (
        (redundancy.multiview_barlow_twins_loss, redundancy.multiview_barlow_twins_terms),
        (redundancy.multiview_vicreg_loss, redundancy.multiview_vicreg_terms),
    ):
        assert torch.equal(loss(views), terms(views).loss)
        assert_relative(loss(views, algorithm="gram"), loss(views, algorithm="cross"), 1e-10, loss.__name__)


@pytest.mark.parametrize("function", [redundancy.multiview_barlow_twins_terms, redundancy.multiview_vicreg_terms])
def test_invariant_to_the_order_of_the_views_and_to_a_joint_permutation_of_rows_and_features(function):
    views = [view.detach() for view in _views(4, 29, 35, seed=12)]
    generator = torch.Generator().manual_seed(3)
    rows, features = torch.randperm(29, generator=generator), torch.randperm(35, generator=generator)
    for algorithm in ("gram", "cross"):
        expected = torch.stack(function(views, algorithm=algorithm))
        reordered = [views[2], views[0], views[3], views[1]]
        assert_relative(torch.stack(function(reordered, algorithm=algorithm)), expected, 1e-12, "views reordered")
        permuted = [view[rows][:, features] for view in views]
        assert_relative(torch.stack(function(permuted, algorithm=algorithm)), expected, 1e-12, "rows and features")


def test_only_some_views_or_terms_need_gradients():
    views = _views(3, 12, 20)
    frozen = [views[0], views[1].detach(), views[2]]
    for algorithm in ("gram", "cross"):
        loss = redundancy.multiview_barlow_twins_loss(frozen, algorithm=algorithm)
        expected = _mean_over_pairs(redundancy.barlow_twins_terms, frozen, algorithm=algorithm).loss
        grads = torch.autograd.grad(loss, (views[0], views[2]))
        expected_grads = torch.autograd.grad(expected, (views[0], views[2]))
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert_relative(grad, expected_grad, 1e-10, algorithm)
    for term in ("invariance", "redundancy"):  # the other term's upstream gradient is None
        actual = getattr(redundancy.multiview_barlow_twins_terms(views, algorithm="gram"), term)
        expected = getattr(_mean_over_pairs(redundancy.barlow_twins_terms, views, algorithm="gram"), term)
        grads = torch.autograd.grad(actual, views)
        expected_grads = torch.autograd.grad(expected, views)
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert_relative(grad, expected_grad, 1e-10, f"gradient of the {term} term alone")


def test_a_retained_graph_gives_the_same_gradients_twice():
    views = _views(3, 20, 30)
    for algorithm in ("gram", "cross"):
        loss = redundancy.multiview_barlow_twins_loss(views, algorithm=algorithm, off_diagonal_target=-1.0)
        first = torch.autograd.grad(loss, views, retain_graph=True)
        second = torch.autograd.grad(loss, views)
        for grad, again in zip(first, second, strict=True):
            assert torch.equal(grad, again), algorithm


# ------------------------------------------------------------------------------------------------ inputs, Modules


@pytest.mark.parametrize(
    ("function", "module"),
    [
        (redundancy.multiview_barlow_twins_loss, redundancy.MultiviewBarlowTwinsLoss),
        (redundancy.multiview_vicreg_loss, redundancy.MultiviewVICRegLoss),
    ],
)
def test_stacked_views_list_and_module_agree(function, module):
    stacked = torch.stack([view.detach() for view in _views(4, 33, 21)]).requires_grad_()
    as_list = [view.detach().clone().requires_grad_() for view in stacked]
    options = {"algorithm": "gram"}
    loss = function(stacked, **options)
    assert torch.equal(loss, function(as_list, **options))
    assert torch.equal(loss, function(tuple(as_list), **options))
    criterion = module(**options)
    assert torch.equal(criterion(stacked), loss)
    assert torch.equal(criterion.terms(stacked).loss, loss)
    (grad,) = torch.autograd.grad(loss, stacked)
    list_grads = torch.autograd.grad(function(as_list, **options), as_list)
    assert torch.equal(grad, torch.stack(list_grads))
    assert "algorithm='gram'" in repr(criterion)


def test_non_contiguous_views():
    views = [view.detach().t().contiguous().t().requires_grad_() for view in _views(3, 40, 26)]  # column-major
    assert not views[0].is_contiguous()
    for algorithm in ("gram", "cross"):
        options = {"algorithm": algorithm}
        multiview, two_view = redundancy.multiview_barlow_twins_terms, redundancy.barlow_twins_terms
        _assert_matches_pairs(multiview, two_view, views, options, f"column-major views, {algorithm}")


@pytest.mark.parametrize("function", [redundancy.multiview_barlow_twins_loss, redundancy.multiview_vicreg_loss])
def test_bad_views_raise_errors_that_name_them(function):
    z = torch.randn(8, 5)
    sequence_or_tensor = "views must be a sequence of (N, D) tensors or one (V, N, D) tensor"
    cases = [
        ([z], ValueError, "views must hold at least 2 views (the loss is a mean over pairs), got 1"),
        (torch.randn(1, 8, 5), ValueError, "views must hold at least 2 views"),
        ([], ValueError, "views must hold at least 2 views"),
        (z, ValueError, f"{sequence_or_tensor}, got a tensor of shape (8, 5)"),
        (3.0, TypeError, f"{sequence_or_tensor}, got float"),
        ("ab", TypeError, f"{sequence_or_tensor}, got str"),
        ([z, z, torch.randn(8, 4)], ValueError, "views[0] and views[2] must have the same shape, got views[0] (8, 5)"),
        ([z, z.numpy()], TypeError, "views[1] must be a torch.Tensor, got ndarray"),
        ([z, z.long()], TypeError, "views[1] must have a floating-point dtype"),
        ([z, z[0]], ValueError, "views[1] must be 2-D of shape (N, D), got shape (5,)"),
        ([z[:1], z[:1]], ValueError, "views[0] needs a batch of at least 2 rows"),
    ]
    for views, error, message in cases:
        with pytest.raises(error) as raised:
            function(views)
        assert message in str(raised.value)
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'lambda'"):
        function([z, z], **{"lambda": 0.1})
    with pytest.raises(ValueError, match="algorithm must be one of"):
        function([z, z], algorithm="fast")


@pytest.mark.triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the kernels through the interpreter, on CPU")
@pytest.mark.parametrize("algorithm", ["gram", "cross"])
def test_triton_backend_is_the_mean_over_pairs_of_the_two_view_kernels(algorithm):
    views = _views(3, 16, 24, seed=3)
    options = {"backend": "triton", "algorithm": algorithm, "off_diagonal_target": -1.0}
    _assert_matches_pairs(
        redundancy.multiview_barlow_twins_terms, redundancy.barlow_twins_terms, views, options, f"triton, {algorithm}"
    )
    assert_relative(
        redundancy.multiview_barlow_twins_loss(views, **options),
        redundancy.multiview_barlow_twins_loss(views, algorithm=algorithm, off_diagonal_target=-1.0),
        1e-10,
        "triton against torch",
    )


# ------------------------------------------------------------------------------------------------ derivatives, dtypes


def _reference_mean_over_pairs(views, **options):
    pairs = itertools.combinations(range(len(views)), 2)
    terms = [torch.stack(barlow_twins_terms_reference(views[u], views[v], **options)) for u, v in pairs]
    return torch.stack(terms).mean(dim=0)


@pytest.mark.parametrize(
    "options",
    [{}, {"correction": 1, "off_diagonal_target": -1.0}, {"standardize": False, "off_diagonal_target": 0.5}],
)
@pytest.mark.parametrize("shape", [(9, 13), (13, 6)])
def test_multiview_second_derivatives_match_autograd_through_the_reference(options, shape):
    views = _views(3, *shape, seed=4)
    directions = [torch.randn_like(view) for view in views]
    upstream = torch.tensor([0.7, -1.3], dtype=torch.float64)

    def hessian_vector(terms):
        grads = torch.autograd.grad((terms * upstream).sum(), views, create_graph=True)
        inner = sum((grad * direction).sum() for grad, direction in zip(grads, directions, strict=True))
        return torch.autograd.grad(inner, views)

    terms = redundancy.multiview_barlow_twins_terms(views, algorithm="gram", **options)
    actual = hessian_vector(torch.stack([terms.invariance, terms.redundancy]))
    expected = hessian_vector(_reference_mean_over_pairs(views, **options))
    for index, (grad, expected_grad) in enumerate(zip(actual, expected, strict=True)):
        assert_relative(grad, expected_grad, 1e-9, f"Hessian-vector product, view {index}")


def test_gradcheck_and_gradgradcheck_of_the_gram_op():
    views = [view.detach().requires_grad_() for view in _views(3, 5, 7, seed=5)]

    def terms(*views):
        return multiview_gram_terms(views, target=-0.5, standardization=Standardization(unbiased=False, eps=1e-5))

    assert torch.autograd.gradcheck(terms, views)
    assert torch.autograd.gradgradcheck(terms, views)


def test_torch_func_transforms_of_the_gram_op():
    standardization = Standardization(unbiased=True, eps=1e-5)
    views = [view.detach() for view in _views(3, 9, 13, seed=8)]

    def loss(*views):
        invariance, redundancy = multiview_gram_terms(views, target=-0.5, standardization=standardization)
        return invariance + 0.3 * redundancy

    def reference(*views):
        pairs = itertools.combinations(range(len(views)), 2)
        terms = [
            barlow_twins_terms_reference(views[u], views[v], correction=1, off_diagonal_target=-0.5) for u, v in pairs
        ]
        return sum(invariance + 0.3 * redundancy for invariance, redundancy in terms) / len(terms)

    for argnums in (0, 2):
        assert_relative(torch.func.grad(loss, argnums)(*views), torch.func.grad(reference, argnums)(*views), 1e-10)
    mixed = torch.func.jacrev(torch.func.grad(loss, 0), 1)(*views)  # ∂²L/∂z_1∂z_0
    assert_relative(mixed, torch.func.jacrev(torch.func.grad(reference, 0), 1)(*views), 1e-9, "jacrev(grad)")
    batched = [torch.stack([view, 2 * view + 1, view.flip(0)]) for view in views]
    one_by_one = [[b[k] for b in batched] for k in range(3)]
    assert_relative(torch.vmap(loss)(*batched), torch.stack([loss(*v) for v in one_by_one]), 1e-12, "vmap")
    expected = torch.stack([torch.func.grad(loss)(*v) for v in one_by_one])
    assert_relative(torch.vmap(torch.func.grad(loss))(*batched), expected, 1e-12, "vmap of grad")


@pytest.mark.parametrize(
    ("function", "options"),
    [
        (redundancy.multiview_barlow_twins_loss, {"algorithm": "gram"}),
        (redundancy.multiview_barlow_twins_loss, {"algorithm": "cross", "off_diagonal_target": -1.0}),
        (redundancy.multiview_vicreg_loss, {}),
    ],
)
def test_compiles_without_graph_breaks(function, options):
    views = _views(3, 16, 40, seed=9)
    expected = function(views, **options)
    expected_grads = torch.autograd.grad(expected, views)
    for inputs in (views, torch.stack(views)):
        compiled = torch.compile(lambda views: function(views, **options), fullgraph=True, backend="aot_eager")
        value = compiled(inputs)
        assert_relative(value, expected, 1e-12, f"compiled {function.__name__}")
    grads = torch.autograd.grad(compiled(views), views)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_relative(grad, expected_grad, 1e-12, f"gradient of compiled {function.__name__}")


@pytest.mark.parametrize("algorithm", ["gram", "cross"])
def test_float32_within_the_tolerance_of_float64(algorithm):
    views64 = _views(4, 48, 96, seed=6)
    views32 = [view.detach().float().requires_grad_() for view in views64]
    value, grads = _value_and_grads(redundancy.multiview_barlow_twins_terms(views32, algorithm=algorithm), views32)
    expected, expected_grads = _value_and_grads(
        redundancy.multiview_barlow_twins_terms(views64, algorithm=algorithm), views64
    )
    assert value.dtype == torch.float32
    assert_relative(value, expected, 1e-5, f"float32 terms, {algorithm}")
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert grad.dtype == torch.float32
        assert_relative(grad, expected_grad, 1e-4, f"float32 gradient, {algorithm}")


def test_converged_float32_views_keep_a_non_negative_redundancy():
    generator = torch.Generator().manual_seed(7)
    base = torch.linalg.qr(torch.randn(256, 16, generator=generator, dtype=torch.float64))[0] * 16.0  # C = I
    views64 = [base + 1e-4 * torch.randn(256, 16, generator=generator, dtype=torch.float64) for _ in range(3)]
    expected = redundancy.multiview_barlow_twins_terms(views64, algorithm="gram").redundancy
    actual = redundancy.multiview_barlow_twins_terms([v.float() for v in views64], algorithm="gram").redundancy
    assert actual >= 0
    assert abs(actual.item() - expected.item()) <= 1e-3 * expected.item()


# ------------------------------------------------------------------------------------------------ cost model


def test_flop_count_of_the_shared_grams():
    for n, d, views in ((256, 8192, 4), (37, 70, 3), (2048, 512, 6)):
        pairs = views * (views - 1) // 2
        loop = pairs * cost.barlow_twins_flops("gram", n, d)
        shared = cost.multiview_barlow_twins_flops("gram", n, d, views)
        assert loop == (views - 1) * shared  # V Grams and V products instead of 2 of each per pair
        assert cost.multiview_barlow_twins_flops("cross", n, d, views) == pairs * cost.barlow_twins_flops("cross", n, d)
    with pytest.raises(ValueError, match="views must be an int >= 2"):
        cost.multiview_barlow_twins_flops("gram", 8, 8, 1)
    assert cost.choose_multiview_algorithm(1000, 1000, 2) == cost.choose_algorithm(1000, 1000) == "cross"
    assert cost.choose_multiview_algorithm(1000, 1000, 3) == "gram"
