"""``redundancy.compat.solo`` reproduces solo-learn's ``barlow_loss_func`` and ``vicreg_loss_func``."""

import inspect

import numpy as np
import pytest
import torch

from redundancy.compat import solo
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import barlow_twins_terms_reference
from redundancy.reference import vicreg_loss_reference
from redundancy.reference import vicreg_terms_reference
from tests.utils import assert_relative

# The published signatures (solo/losses/barlow.py and vicreg.py).
SIGNATURES = {
    solo.barlow_loss_func: [
        ("z1", inspect.Parameter.empty),
        ("z2", inspect.Parameter.empty),
        ("lamb", 5e-3),
        ("scale_loss", 0.025),
    ],
    solo.vicreg_loss_func: [
        ("z1", inspect.Parameter.empty),
        ("z2", inspect.Parameter.empty),
        ("sim_loss_weight", 25.0),
        ("var_loss_weight", 25.0),
        ("cov_loss_weight", 1.0),
    ],
}
SHAPES = [(8, 6), (37, 70), (5, 130), (256, 64)]


def _views(n, d, dtype):
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    z1 = torch.randn(n, d, dtype=torch.float64) * scales
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64) * scales
    return z1.to(dtype), z2.to(dtype)


@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_signature_is_solo_learns(function):
    parameters = inspect.signature(function).parameters.values()
    assert [(p.name, p.default) for p in parameters] == SIGNATURES[function]


def test_solo_golden_values(golden_cases):
    for case in golden_cases:
        z1 = torch.tensor(case["z1"], dtype=torch.float64)
        z2 = torch.tensor(case["z2"], dtype=torch.float64)
        expected = case["expected"]
        key = "solo-learn barlow_loss_func defaults (lamb=5e-3, scale_loss=0.025)"
        barlow = torch.tensor(expected[key], dtype=torch.float64)
        assert_relative(solo.barlow_loss_func(z1, z2), barlow, 1e-10, f"{case['name']}: barlow")
        vicreg = torch.tensor(expected["solo-learn vicreg_loss_func defaults"], dtype=torch.float64)
        assert_relative(solo.vicreg_loss_func(z1, z2), vicreg, 1e-10, f"{case['name']}: vicreg")


def test_vicreg_differs_from_official_by_the_variance_average(golden_cases):
    """solo-learn sums the two views' variance hinges; the official code averages them."""
    for case in golden_cases:
        z1 = torch.tensor(case["z1"], dtype=torch.float64)
        z2 = torch.tensor(case["z2"], dtype=torch.float64)
        official = case["expected"]["official VICReg main_vicreg.py (25/25/1, eps=1e-4)"]
        _, variance_mean, _ = vicreg_terms_reference(z1, z2)
        difference = solo.vicreg_loss_func(z1, z2).item() - official
        assert difference == pytest.approx(25.0 * variance_mean.item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_float32_equals_solo_formula(n, d):
    z1, z2 = _views(n, d, torch.float32)
    expected = barlow_twins_loss_reference(z1, z2, lambd=0.01, scale=0.1)
    assert_relative(solo.barlow_loss_func(z1, z2, lamb=0.01, scale_loss=0.1), expected, 1e-6, "barlow")
    expected = vicreg_loss_reference(
        z1, z2, invariance_weight=10.0, variance_weight=20.0, covariance_weight=2.0, variance_reduction="sum"
    )
    assert_relative(solo.vicreg_loss_func(z1, z2, 10.0, 20.0, 2.0), expected, 1e-6, "vicreg")


@pytest.mark.parametrize(("n", "d"), [(37, 70), (256, 64)])
def test_solo_gradients_equal_the_reference(n, d):
    """Gradients included: float64 gradients of both functions equal those of the reference formula."""
    z1, z2 = _views(n, d, torch.float64)
    cases = [
        (
            lambda a, b: solo.barlow_loss_func(a, b, lamb=0.01, scale_loss=0.1),
            lambda a, b: barlow_twins_loss_reference(a, b, lambd=0.01, scale=0.1),
        ),
        (solo.vicreg_loss_func, lambda a, b: vicreg_loss_reference(a, b, variance_reduction="sum")),
    ]
    for function, reference in cases:
        inputs = [z1.clone().requires_grad_(), z2.clone().requires_grad_()]
        grads = torch.autograd.grad(function(*inputs), inputs)
        for grad, want in zip(grads, torch.autograd.grad(reference(*inputs), inputs), strict=True):
            assert_relative(grad, want, 1e-10, "gradient")


#: Weights of every kind solo-learn's arithmetic takes: ids -> value.
WEIGHTS = {
    "negative": -1.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "bool": True,
    "int": 3,
    "numpy-float32": np.float32(0.5),
    "numpy-int64": np.int64(2),
    "0-dim-tensor": torch.tensor(0.5),
    "float64-tensor": torch.tensor(-0.5, dtype=torch.float64),
    "1-element-int-tensor": torch.tensor([2], dtype=torch.int32),
    "bool-tensor": torch.tensor(True),
}


def _assert_same(actual, expected, rtol, what):
    """Equal within ``rtol`` (NaN where NaN, the same infinities), with the same dtype and shape."""
    assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), what
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=0.0, equal_nan=True, msg=what)


@pytest.mark.parametrize("value", list(WEIGHTS.values()), ids=list(WEIGHTS))
def test_any_real_weight_gives_solo_learns_arithmetic_on_the_terms(value):
    """solo-learn computes ``scale_loss * (invariance + lamb * redundancy)``: negative, NaN, infinite, bool too."""
    z1, z2 = _views(16, 8, torch.float32)
    invariance, redundancy = (t.float() for t in barlow_twins_terms_reference(z1.double(), z2.double()))
    lamb = value.float().reshape(()) if isinstance(value, torch.Tensor) else value  # multiplies C in place
    expected = 0.025 * (invariance + lamb * redundancy)
    _assert_same(solo.barlow_loss_func(z1, z2, lamb=value), expected, 1e-5, "lamb")
    expected = value * (invariance + 5e-3 * redundancy)
    _assert_same(solo.barlow_loss_func(z1, z2, scale_loss=value), expected, 1e-5, "scale_loss")
    terms = vicreg_terms_reference(z1.double(), z2.double(), variance_reduction="sum")
    invariance, variance, covariance = (t.float() for t in terms)
    expected = value * invariance + value * variance + value * covariance
    _assert_same(solo.vicreg_loss_func(z1, z2, value, value, value), expected, 1e-5, "vicreg")


def test_negative_scale_loss_negates_the_loss():
    z1, z2 = _views(16, 8, torch.float64)
    assert torch.equal(solo.barlow_loss_func(z1, z2, scale_loss=-1), -solo.barlow_loss_func(z1, z2, scale_loss=1))


def test_tensor_lamb_keeps_the_loss_a_scalar_of_the_inputs_dtype():
    """solo-learn multiplies C's entries by ``lamb`` in place; ``scale_loss`` broadcasts."""
    z1, z2 = _views(16, 8, torch.float32)
    lamb = torch.tensor([0.5], dtype=torch.float64)
    loss = solo.barlow_loss_func(z1, z2, lamb=lamb)
    assert (loss.dtype, loss.shape) == (torch.float32, ())
    loss = solo.barlow_loss_func(z1, z2, scale_loss=lamb)
    assert (loss.dtype, loss.shape) == (torch.float64, (1,))


def test_solo_weights_that_require_grad_get_their_gradients():
    z1, z2 = _views(16, 8, torch.float64)
    lamb, scale = (torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in (0.02, -0.5))
    solo.barlow_loss_func(z1, z2, lamb=lamb, scale_loss=scale).backward()
    invariance, redundancy = barlow_twins_terms_reference(z1, z2)
    assert_relative(lamb.grad, -0.5 * redundancy, 1e-12, "dL/dlamb")
    assert_relative(scale.grad, invariance + 0.02 * redundancy, 1e-12, "dL/dscale_loss")
    weights = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in (3.0, -2.0, 0.5)]
    solo.vicreg_loss_func(z1, z2, *weights).backward()
    terms = vicreg_terms_reference(z1, z2, variance_reduction="sum")
    for name, weight, term in zip(("sim", "var", "cov"), weights, terms, strict=True):
        assert_relative(weight.grad, term, 1e-12, f"dL/d{name}_loss_weight")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda z: solo.barlow_loss_func(z, z, lamb=1j), TypeError, "lamb must be a real number"),
        (lambda z: solo.barlow_loss_func(z, z, scale_loss=torch.tensor(1j)), TypeError, "scale_loss must be a real"),
        (lambda z: solo.barlow_loss_func(z, z, lamb=torch.ones(3)), TypeError, "lamb must be a real number"),
        (lambda z: solo.barlow_loss_func(z, z, scale_loss=torch.ones(2)), TypeError, "scale_loss must be a real"),
        (lambda z: solo.barlow_loss_func(z, z, lamb=np.bool_(True)), TypeError, "lamb must be a real number"),
        (lambda z: solo.barlow_loss_func(z, z, lamb="0.1"), TypeError, "lamb must be a real number"),
        (lambda z: solo.barlow_loss_func(z, z, scale_loss=10**400), ValueError, "scale_loss must fit in a float"),
        (lambda z: solo.vicreg_loss_func(z, z, sim_loss_weight=2j), TypeError, "sim_loss_weight must be a real"),
        (lambda z: solo.vicreg_loss_func(z, z, var_loss_weight=None), TypeError, "var_loss_weight must be a real"),
        (lambda z: solo.vicreg_loss_func(z, z, cov_loss_weight=np.ones(2)), TypeError, "cov_loss_weight must be a"),
    ],
    ids=[
        "complex-lamb",
        "complex-tensor-scale",
        "3-element-lamb",
        "2-element-scale",
        "numpy-bool",
        "str",
        "huge-int",
        "complex-sim",
        "none-var",
        "numpy-array-cov",
    ],
)
def test_refused_weights_are_named_as_solo_learn_names_them(call, error, match):
    """The refusals the module docstring lists."""
    with pytest.raises(error, match=match):
        call(torch.randn(8, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_solo_half_precision_loss_is_float32_and_gradients_keep_the_dtype(function, dtype):
    z1, z2 = (z.requires_grad_() for z in _views(64, 16, dtype))
    loss = function(z1, z2)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z1.grad.dtype == dtype and z2.grad.dtype == dtype


@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_solo_bad_inputs(function):
    with pytest.raises(ValueError, match="same shape"):
        function(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(TypeError, match="floating-point"):
        function(torch.ones(8, 4, dtype=torch.int32), torch.randn(8, 4))
