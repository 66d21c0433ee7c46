"""The reference reproduces the published implementations (golden values) and the official BatchNorm semantics."""

import pytest
import torch

import redundancy
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import barlow_twins_terms_reference
from redundancy.reference import batch_standardize_reference
from tests.utils import assert_relative

# Golden key -> the options of this library that reproduce it.
GOLDEN_OPTIONS = {
    "official_main_py (batchnorm, eps=1e-5, lambd=0.0051)": {},
    "lightly BarlowTwinsLoss(lambda_param=0.0051)": {},
    "lightly BarlowTwinsLoss() default lambda_param=5e-3": {"lambd": 5e-3},
    "paper Algorithm 1 (unbiased std, no eps, lambd=0.0051)": {"correction": 1, "eps": 0.0},
    "HSIC variant (batchnorm, eps=1e-5, lambd=0.0051, off-diagonal target -1)": {"off_diagonal_target": -1.0},
    "solo-learn barlow_loss_func defaults (lamb=5e-3, scale_loss=0.025)": {"lambd": 5e-3, "scale": 0.025},
}


def _golden_inputs(case):
    z1 = torch.tensor(case["z1"], dtype=torch.float64)
    z2 = torch.tensor(case["z2"], dtype=torch.float64)
    return z1, z2


@pytest.mark.parametrize("key", sorted(GOLDEN_OPTIONS))
def test_reference_reproduces_published_values(golden_cases, key):
    for case in golden_cases:
        z1, z2 = _golden_inputs(case)
        loss = barlow_twins_loss_reference(z1, z2, **GOLDEN_OPTIONS[key])
        assert_relative(loss, torch.tensor(case["expected"][key], dtype=torch.float64), 1e-10, f"{case['name']}: {key}")


@pytest.mark.parametrize("algorithm", ["auto", "cross", "gram"])
@pytest.mark.parametrize("key", sorted(GOLDEN_OPTIONS))
def test_public_api_reproduces_published_values(golden_cases, key, algorithm):
    for case in golden_cases:
        z1, z2 = _golden_inputs(case)
        loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, **GOLDEN_OPTIONS[key])
        assert_relative(loss, torch.tensor(case["expected"][key], dtype=torch.float64), 1e-10, f"{case['name']}: {key}")


@pytest.mark.parametrize("algorithm", ["cross", "gram"])
def test_public_api_reproduces_official_gradients(golden_cases, algorithm):
    for case in golden_cases:
        z1, z2 = _golden_inputs(case)
        z1.requires_grad_(True)
        z2.requires_grad_(True)
        redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm).backward()
        assert_relative(z1.grad, torch.tensor(case["official_grad_z1"], dtype=torch.float64), 1e-8, "dz1")
        assert_relative(z2.grad, torch.tensor(case["official_grad_z2"], dtype=torch.float64), 1e-8, "dz2")


def test_batchnorm_standardization_is_batchnorm1d_in_training_mode():
    z = torch.randn(37, 70, dtype=torch.float64) * 3 + 2
    bn = torch.nn.BatchNorm1d(70, affine=False, dtype=torch.float64).train()
    assert_relative(batch_standardize_reference(z), bn(z), 1e-13)


def test_std_standardization_is_the_unbiased_zscore():
    z = torch.randn(37, 70, dtype=torch.float64) * 3 + 2
    expected = (z - z.mean(0)) / z.std(0)
    assert_relative(batch_standardize_reference(z, correction=1, eps=0.0), expected, 1e-13)


def test_upcast_computes_in_float64():
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, upcast=True)
    assert invariance.dtype == redundancy_term.dtype == torch.float64
    assert barlow_twins_loss_reference(z1, z2).dtype == torch.float32


def test_lambd_auto_is_one_over_d():
    z1, z2 = torch.randn(16, 8, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    assert_relative(
        barlow_twins_loss_reference(z1, z2, lambd="auto"), barlow_twins_loss_reference(z1, z2, lambd=1 / 8), 1e-15
    )
