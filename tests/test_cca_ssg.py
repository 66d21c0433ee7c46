"""CCA-SSG against the reference transcription of the official code: values, gradients, dtypes, properties."""

import itertools

import pytest
import torch
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import cca_ssg_loss_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

ALGORITHMS = ["cross", "gram"]
SHAPES = list(itertools.product([2, 37, 256], [1, 70, 130]))
VARIANTS = {"official": {}, "batchnorm": {"correction": 0, "eps": 1e-5}, "lambd": {"lambd": 0.05}}


def _views(n, d, dtype=torch.float64):
    z1 = torch.randn(n, d, dtype=torch.float64) * torch.linspace(0.5, 3.0, d, dtype=torch.float64) + 1.0
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64)
    return z1.to(dtype), z2.to(dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_cca_ssg_float64_equals_official_formula(n, d, algorithm):
    z1, z2 = _views(n, d)
    assert_relative(redundancy.cca_ssg_loss(z1, z2, algorithm=algorithm), cca_ssg_loss_reference(z1, z2), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cca_ssg_float64_variants(variant, algorithm):
    z1, z2 = _views(37, 70)
    loss = redundancy.cca_ssg_loss(z1, z2, algorithm=algorithm, **VARIANTS[variant])
    assert_relative(loss, cca_ssg_loss_reference(z1, z2, **VARIANTS[variant]), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cca_ssg_gradcheck_and_upstream(algorithm):
    z1, z2 = _views(5, 4)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: redundancy.cca_ssg_loss(a, b, algorithm=algorithm), (z1, z2))
    z1, z2 = (z.detach().requires_grad_(True) for z in _views(37, 70))
    redundancy.cca_ssg_loss(z1, z2, algorithm=algorithm).backward(torch.tensor(0.7, dtype=torch.float64))
    expected = torch.autograd.grad(cca_ssg_loss_reference(z1, z2) * 0.7, (z1, z2))
    assert_relative(z1.grad, expected[0], GRAD_TOL[torch.float64][0], "z1")
    assert_relative(z2.grad, expected[1], GRAD_TOL[torch.float64][0], "z2")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cca_ssg_low_precision(dtype):
    z1, z2 = _views(37, 70, dtype)
    z1.requires_grad_(True)
    loss = redundancy.cca_ssg_loss(z1, z2)
    assert loss.dtype == torch.float32
    assert_relative(loss, cca_ssg_loss_reference(z1.detach(), z2, upcast=True), LOSS_RTOL[dtype])
    loss.backward()
    assert z1.grad.dtype == dtype


def test_cca_ssg_non_contiguous_and_module():
    z1, z2 = _views(70, 37)
    z1, z2 = z1.t(), z2.t()
    expected = cca_ssg_loss_reference(z1.contiguous(), z2.contiguous(), lambd=0.01)
    criterion = redundancy.CCASSGLoss(lambd=0.01, algorithm="gram")
    assert_relative(criterion(z1, z2), expected, 1e-10)
    assert torch.equal(criterion(z1, z2), redundancy.cca_ssg_loss(z1, z2, lambd=0.01, algorithm="gram"))
    assert "lambd=0.01" in repr(criterion)


def test_cca_ssg_identical_views_known_value():
    """With A = B: -tr(AᵀA)/N = -D(N-1)/N, and each decorrelation term is ‖I - AᵀA/N‖²."""
    z, _ = _views(37, 70)
    a = (z - z.mean(0)) / z.std(0)
    decorrelation = (torch.eye(70, dtype=torch.float64) - a.T @ a / 37).pow(2).sum()
    expected = -70 * 36 / 37 + 1e-3 * 2 * decorrelation
    assert_relative(redundancy.cca_ssg_loss(z, z), expected, 1e-10)


@given(n=st.integers(3, 12), d=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_cca_ssg_properties(n, d, seed):
    torch.manual_seed(seed)
    z1, z2 = _views(n, d)
    assume(bool((z1.std(0) > 1e-3).all() and (z2.std(0) > 1e-3).all()))
    loss = redundancy.cca_ssg_loss(z1, z2)
    assert torch.isfinite(loss)
    assert_relative(redundancy.cca_ssg_loss(z2, z1), loss, 1e-10)
    rows, features = torch.randperm(n), torch.randperm(d)
    scale, shift = torch.rand(d, dtype=torch.float64) * 5 + 0.1, torch.randn(d, dtype=torch.float64) * 10
    moved = redundancy.cca_ssg_loss(z1[rows][:, features] * scale + shift, z2[rows][:, features])
    assert_relative(moved, loss, 1e-8)
    assert_relative(redundancy.cca_ssg_loss(z1, z2, algorithm="gram"), loss, 1e-8)


def test_cca_ssg_bad_inputs():
    z1, z2 = _views(8, 4)
    with pytest.raises(ValueError, match="lambd"):
        redundancy.cca_ssg_loss(z1, z2, lambd=-1.0)
    with pytest.raises(TypeError, match="normalization"):
        redundancy.CCASSGLoss(normalization="l2")
    with pytest.raises(ValueError, match="correction must be 0"):
        redundancy.CCASSGLoss(correction=2)
    with pytest.raises(ValueError, match="algorithm"):
        redundancy.cca_ssg_loss(z1, z2, algorithm="svd")
    with pytest.raises(ValueError, match="same shape"):
        redundancy.cca_ssg_loss(z1, z2[:, :3])
    with pytest.raises(ValueError, match="at least 2 rows"):
        redundancy.cca_ssg_loss(z1[:1], z2[:1])
    with pytest.raises(TypeError, match="floating-point"):
        redundancy.cca_ssg_loss(z1.long(), z2)
    z1[0, 0] = float("nan")
    assert torch.isnan(redundancy.cca_ssg_loss(z1, z2))
