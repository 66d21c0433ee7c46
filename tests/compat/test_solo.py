"""``redundancy.compat.solo`` reproduces solo-learn's ``barlow_loss_func`` and ``vicreg_loss_func``."""

import inspect

import numpy as np
import pytest
import torch

from redundancy.compat import solo
from redundancy.reference import barlow_twins_loss_reference, vicreg_loss_reference, vicreg_terms_reference
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


def test_golden_values(golden_cases):
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
def test_gradients_equal_the_reference(n, d):
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


@pytest.mark.parametrize(
    "number",
    [np.float32(0.5), np.int64(2), torch.tensor(0.5), torch.tensor([2], dtype=torch.int32), 0.5],
    ids=["numpy-float32", "numpy-int64", "0-dim-tensor", "1-element-int-tensor", "float"],
)
def test_hyperparameters_are_any_real_number(number):
    z1, z2 = _views(16, 8, torch.float64)
    value = float(number.item() if isinstance(number, torch.Tensor) else number)
    expected = barlow_twins_loss_reference(z1, z2, lambd=value, scale=value)
    assert_relative(solo.barlow_loss_func(z1, z2, lamb=number, scale_loss=number), expected, 1e-12, "barlow")
    weights = {"invariance_weight": value, "variance_weight": value, "covariance_weight": value}
    expected = vicreg_loss_reference(z1, z2, variance_reduction="sum", **weights)
    assert_relative(solo.vicreg_loss_func(z1, z2, number, number, number), expected, 1e-12, "vicreg")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_half_precision_loss_is_float32_and_gradients_keep_the_dtype(function, dtype):
    z1, z2 = (z.requires_grad_() for z in _views(64, 16, dtype))
    loss = function(z1, z2)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z1.grad.dtype == dtype and z2.grad.dtype == dtype


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda z: solo.barlow_loss_func(z, z, lamb=-1.0), ValueError, "lamb must be non-negative"),
        (lambda z: solo.barlow_loss_func(z, z, scale_loss=float("inf")), ValueError, "scale_loss must be finite"),
        (lambda z: solo.barlow_loss_func(z, z, lamb="0.1"), TypeError, "lamb must be a real number"),
        (lambda z: solo.barlow_loss_func(z, z, lamb=torch.ones(3)), TypeError, "lamb must be a real number"),
        (lambda z: solo.vicreg_loss_func(z, z, sim_loss_weight=-1.0), ValueError, "sim_loss_weight must be non-neg"),
        (lambda z: solo.vicreg_loss_func(z, z, var_loss_weight=None), TypeError, "var_loss_weight must be a real"),
        (lambda z: solo.vicreg_loss_func(z, z, cov_loss_weight=np.nan), ValueError, "cov_loss_weight must be finite"),
    ],
)
def test_bad_options_are_named_as_solo_learn_names_them(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(8, 4))


@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_bad_inputs(function):
    with pytest.raises(ValueError, match="same shape"):
        function(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(TypeError, match="floating-point"):
        function(torch.ones(8, 4, dtype=torch.int32), torch.randn(8, 4))
