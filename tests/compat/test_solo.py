"""``redundancy.compat.solo`` reproduces solo-learn's ``barlow_loss_func`` and ``vicreg_loss_func``."""

import inspect

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


@pytest.mark.parametrize("function", list(SIGNATURES), ids=lambda f: f.__name__)
def test_bad_inputs(function):
    with pytest.raises(ValueError, match="same shape"):
        function(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(TypeError, match="floating-point"):
        function(torch.ones(8, 4, dtype=torch.int32), torch.randn(8, 4))
    with pytest.raises(ValueError, match="must be non-negative"):
        function(torch.randn(8, 4), torch.randn(8, 4), -1.0)
