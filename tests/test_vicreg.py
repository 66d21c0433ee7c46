"""VICReg and its variance/covariance regularizers against the reference: values, gradients, dtypes, properties."""

import itertools

import pytest
import torch
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import vicreg_loss_reference
from redundancy.reference import vicreg_terms_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

ALGORITHMS = ["cross", "gram"]
SHAPES = list(itertools.product([2, 37, 256], [1, 70, 512]))
GOLDEN_KEYS = {
    "official VICReg main_vicreg.py (25/25/1, eps=1e-4)": {},
    "lightly VICRegLoss() defaults": {},
    "solo-learn vicreg_loss_func defaults": {"variance_reduction": "sum"},
}
VARIANTS = {
    "official": {},
    "solo_sum": {"variance_reduction": "sum"},
    "biased": {"correction": 0},
    "gamma_eps": {"gamma": 2.0, "eps": 0.0},
    "weights": {"invariance_weight": 1.0, "variance_weight": 0.5, "covariance_weight": 0.04},
}


def _views(n, d, dtype=torch.float64):
    """Two correlated views whose feature scales straddle γ = 1, so the variance hinge is active on some."""
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    z1 = torch.randn(n, d, dtype=torch.float64) * scales + 0.5
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64) * scales
    return z1.to(dtype), z2.to(dtype)


def _reference_gradients(z1, z2, upstream=1.0, **options):
    z1 = z1.detach().double().requires_grad_(True)
    z2 = z2.detach().double().requires_grad_(True)
    loss = vicreg_loss_reference(z1, z2, **options)
    return (loss.detach(), *torch.autograd.grad(loss, (z1, z2), torch.tensor(upstream, dtype=torch.float64)))


# ------------------------------------------------------------------------------------------- float64 exactness


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_vicreg_float64_equals_official_formula(n, d, algorithm):
    z1, z2 = _views(n, d)
    assert_relative(redundancy.vicreg_loss(z1, z2, algorithm=algorithm), vicreg_loss_reference(z1, z2), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_vicreg_float64_variants_equal_their_formula(variant, algorithm):
    z1, z2 = _views(37, 70)
    options = VARIANTS[variant]
    loss = redundancy.vicreg_loss(z1, z2, algorithm=algorithm, **options)
    assert_relative(loss, vicreg_loss_reference(z1, z2, **options), 1e-10)


@pytest.mark.parametrize("key", sorted(GOLDEN_KEYS))
def test_vicreg_golden_values(golden_cases, key):
    for case in golden_cases:
        z1 = torch.tensor(case["z1"], dtype=torch.float64)
        z2 = torch.tensor(case["z2"], dtype=torch.float64)
        expected = torch.tensor(case["expected"][key], dtype=torch.float64)
        for algorithm in ALGORITHMS:
            loss = redundancy.vicreg_loss(z1, z2, algorithm=algorithm, **GOLDEN_KEYS[key])
            assert_relative(loss, expected, 1e-10, f"{case['name']} {algorithm}")
        assert_relative(vicreg_loss_reference(z1, z2, **GOLDEN_KEYS[key]), expected, 1e-10, "reference")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_vicreg_terms_equal_reference_terms(algorithm):
    z1, z2 = _views(37, 70)
    options = {"invariance_weight": 2.0, "variance_weight": 3.0, "covariance_weight": 0.5}
    terms = redundancy.vicreg_terms(z1, z2, algorithm=algorithm, **options)
    for name, expected in zip(("invariance", "variance", "covariance"), vicreg_terms_reference(z1, z2), strict=True):
        assert_relative(getattr(terms, name), expected, 1e-10, name)
    assert terms.variance > 0  # the hinge is active on the small-scale features
    assert torch.equal(terms.loss, redundancy.vicreg_loss(z1, z2, algorithm=algorithm, **options))
    assert_relative(terms.loss, 2.0 * terms.invariance + 3.0 * terms.variance + 0.5 * terms.covariance, 1e-14)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("correction", [0, 1])
def test_single_view_regularizers_equal_reference(algorithm, correction):
    z, _ = _views(37, 70)
    _, variance, covariance = vicreg_terms_reference(z, z, correction=correction)
    assert_relative(redundancy.vicreg_variance_loss(z, correction=correction), variance, 1e-10, "variance")
    covariance_loss = redundancy.vicreg_covariance_loss(z, correction=correction, algorithm=algorithm)
    assert_relative(covariance_loss, covariance / 2, 1e-10, "covariance")


# ------------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), [(5, 3), (3, 6)])
def test_vicreg_gradcheck(n, d, algorithm):
    z1, z2 = _views(n, d)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: redundancy.vicreg_loss(a, b, algorithm=algorithm), (z1, z2))
    assert torch.autograd.gradcheck(
        lambda a: redundancy.vicreg_covariance_loss(a, algorithm=algorithm, correction=0), (z1,)
    )
    assert torch.autograd.gradcheck(lambda a: redundancy.vicreg_variance_loss(a, gamma=3.0), (z1,))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gradients_with_upstream_equal_reference(algorithm):
    z1, z2 = _views(37, 70)
    _, g1_ref, g2_ref = _reference_gradients(z1, z2, upstream=-2.5)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    redundancy.vicreg_loss(z1, z2, algorithm=algorithm).backward(torch.tensor(-2.5, dtype=torch.float64))
    assert_relative(z1.grad, g1_ref, GRAD_TOL[torch.float64][0], "z1")
    assert_relative(z2.grad, g2_ref, GRAD_TOL[torch.float64][0], "z2")


# ----------------------------------------------------------------------------------------- dtypes and layouts


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_low_precision_against_float64_reference(dtype, algorithm):
    z1, z2 = _views(37, 70, dtype=dtype)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = redundancy.vicreg_loss(z1, z2, algorithm=algorithm)
    assert loss.dtype == torch.float32
    expected, g1_ref, g2_ref = _reference_gradients(z1, z2)
    assert_relative(loss, expected, LOSS_RTOL[dtype])
    loss.backward()
    assert z1.grad.dtype == dtype
    rtol, atol = GRAD_TOL[dtype]
    torch.testing.assert_close(z1.grad, g1_ref.to(dtype), rtol=rtol, atol=atol)
    torch.testing.assert_close(z2.grad, g2_ref.to(dtype), rtol=rtol, atol=atol)


def test_autocast_keeps_float32_accumulation():
    z1, z2 = _views(37, 70, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = redundancy.vicreg_loss(z1, z2)
    assert loss.dtype == torch.float32
    assert_relative(loss, vicreg_loss_reference(z1, z2, upcast=True), LOSS_RTOL[torch.float32])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_vicreg_non_contiguous_inputs(algorithm):
    z1, z2 = _views(70, 37)
    z1, z2 = z1.t(), z2.t()[:, :]  # (37, 70), column-major
    assert not z1.is_contiguous()
    loss = redundancy.vicreg_loss(z1, z2, algorithm=algorithm)
    assert_relative(loss, vicreg_loss_reference(z1.contiguous(), z2.contiguous()), 1e-10)


def test_vicreg_module_equals_function():
    z1, z2 = _views(37, 70)
    options = {"variance_reduction": "sum", "correction": 0, "gamma": 1.5, "algorithm": "gram"}
    criterion = redundancy.VICRegLoss(**options)
    assert torch.equal(criterion(z1, z2), redundancy.vicreg_loss(z1, z2, **options))
    assert torch.equal(criterion.terms(z1, z2).covariance, redundancy.vicreg_terms(z1, z2, **options).covariance)
    assert "variance_reduction='sum'" in repr(criterion)
    assert list(criterion.parameters()) == [] and list(criterion.buffers()) == []


# ---------------------------------------------------------------------------------------------- known values


def test_collapsed_views():
    z = torch.full((16, 8), 3.0, dtype=torch.float64)
    terms = redundancy.vicreg_terms(z, z.clone())
    assert terms.invariance == 0 and terms.covariance == 0
    assert_relative(terms.variance, torch.tensor(1 - 1e-4**0.5, dtype=torch.float64), 1e-14)


def test_single_feature_has_no_covariance():
    z1, z2 = _views(37, 1)
    assert redundancy.vicreg_terms(z1, z2).covariance == 0


def test_vicreg_non_finite_input_propagates():
    z1, z2 = _views(8, 4)
    z1[3, 2] = float("nan")
    for algorithm in ALGORITHMS:
        assert torch.isnan(redundancy.vicreg_loss(z1, z2, algorithm=algorithm))


# ------------------------------------------------------------------------------------------------ properties

_shapes = st.tuples(st.integers(2, 12), st.integers(1, 12))


@given(shape=_shapes, seed=st.integers(0, 2**16))
def test_symmetric_in_views(shape, seed):
    torch.manual_seed(seed)
    z1, z2 = _views(*shape)
    for algorithm in ALGORITHMS:
        a = redundancy.vicreg_loss(z1, z2, algorithm=algorithm)
        assert_relative(a, redundancy.vicreg_loss(z2, z1, algorithm=algorithm), 1e-12)


@given(shape=_shapes, seed=st.integers(0, 2**16))
def test_invariant_to_row_and_feature_permutation_and_shift(shape, seed):
    torch.manual_seed(seed)
    n, d = shape
    z1, z2 = _views(n, d)
    rows, features = torch.randperm(n), torch.randperm(d)
    shift = torch.randn(d, dtype=torch.float64) * 10
    expected = redundancy.vicreg_loss(z1, z2)
    moved = redundancy.vicreg_loss(z1[rows][:, features] + shift[features], z2[rows][:, features] + shift[features])
    assert_relative(moved, expected, 1e-9)


@given(shape=_shapes, seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_algorithms_agree_and_outputs_finite(shape, seed, scale):
    torch.manual_seed(seed)
    z1, z2 = _views(*shape)
    z1, z2 = z1 * scale, z2 * scale
    cross = redundancy.vicreg_terms(z1, z2, algorithm="cross")
    gram = redundancy.vicreg_terms(z1, z2, algorithm="gram")
    assert all(torch.isfinite(t) for t in cross)
    assume(cross.covariance > 1e-8 * torch.linalg.vector_norm(z1.var(0)) ** 2)  # Gram form's cancellation
    for name in ("loss", "invariance", "variance", "covariance"):
        assert_relative(getattr(gram, name), getattr(cross, name), 1e-9, name)


# ------------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"invariance_weight": -1.0}, ValueError, "invariance_weight"),
        ({"variance_weight": "25"}, TypeError, "variance_weight"),
        ({"covariance_weight": float("inf")}, ValueError, "covariance_weight"),
        ({"gamma": -1.0}, ValueError, "gamma"),
        ({"eps": -1e-4}, ValueError, "eps"),
        ({"correction": 2}, ValueError, "correction"),
        ({"correction": True}, ValueError, "correction"),
        ({"variance_reduction": "average"}, ValueError, "variance_reduction"),
        ({"algorithm": "fast"}, ValueError, "algorithm"),
    ],
)
def test_vicreg_bad_options(options, error, match):
    z1, z2 = _views(8, 4)
    with pytest.raises(error, match=match):
        redundancy.vicreg_loss(z1, z2, **options)
    with pytest.raises(error, match=match):
        redundancy.VICRegLoss(**options)


@pytest.mark.parametrize(
    ("z1", "z2", "error", "match"),
    [
        (torch.randn(8), torch.randn(8), ValueError, r"z1 must be 2-D.*\(8,\)"),
        (torch.randn(8, 4), torch.randn(8, 5), ValueError, r"same shape.*\(8, 4\).*\(8, 5\)"),
        (torch.randn(1, 4), torch.randn(1, 4), ValueError, r"at least 2 rows.*\(1, 4\)"),
        (torch.ones(8, 4, dtype=torch.int64), torch.randn(8, 4), TypeError, "z1 must have a floating-point"),
        ([[1.0, 2.0]], torch.randn(1, 2), TypeError, "z1 must be a torch.Tensor"),
    ],
)
def test_vicreg_bad_inputs(z1, z2, error, match):
    with pytest.raises(error, match=match):
        redundancy.vicreg_loss(z1, z2)


def test_single_view_bad_inputs():
    with pytest.raises(ValueError, match=r"z must be 2-D"):
        redundancy.vicreg_variance_loss(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        redundancy.vicreg_covariance_loss(torch.randn(1, 4))
    with pytest.raises(ValueError, match="algorithm"):
        redundancy.vicreg_covariance_loss(torch.randn(4, 4), algorithm="svd")
    with pytest.raises(ValueError, match="gamma"):
        redundancy.vicreg_variance_loss(torch.randn(4, 4), gamma=-1.0)
