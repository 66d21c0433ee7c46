"""DeCov and the total coding rate against the reference: values, gradients, dtypes, properties, bad inputs."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy._ops import half_logdet_identity_plus_gram
from redundancy.reference import decov_loss_reference
from redundancy.reference import total_coding_rate_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative

ALGORITHMS = ["cross", "gram"]
SHAPES = [(2, 1), (2, 70), (37, 70), (70, 37), (5, 130), (256, 64)]


def _activations(n, d, dtype=torch.float64):
    mixing = torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, dtype=torch.float64)
    return (torch.randn(n, d, dtype=torch.float64) @ mixing + 0.5).to(dtype)


def _unit_rows(n, d, dtype=torch.float64):
    return torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1).to(dtype)


# ------------------------------------------------------------------------------------------------------ DeCov


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_decov_float64_equals_formula(n, d, algorithm, correction):
    h = _activations(n, d)
    loss = redundancy.decov_loss(h, algorithm=algorithm, correction=correction)
    expected = decov_loss_reference(h, correction=correction)
    if d == 1:
        assert loss == 0 and expected == 0
    else:
        assert_relative(loss, expected, 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decov_gradcheck_and_upstream(algorithm):
    h = _activations(5, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: redundancy.decov_loss(x, algorithm=algorithm), (h,))
    h = _activations(37, 70).requires_grad_(True)
    redundancy.decov_loss(h, algorithm=algorithm).backward(torch.tensor(-3.0, dtype=torch.float64))
    expected = torch.autograd.grad(decov_loss_reference(h) * -3.0, h)[0]
    assert_relative(h.grad, expected, GRAD_TOL[torch.float64][0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_decov_low_precision(dtype):
    h = _activations(37, 70, dtype)
    loss = redundancy.decov_loss(h)
    assert loss.dtype == torch.float32
    assert_relative(loss, decov_loss_reference(h, upcast=True), LOSS_RTOL[dtype])


def test_decov_known_value_and_module():
    h = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]], dtype=torch.float64)  # cov: [[1, 2, 0], [2, 4, 0], 0]
    assert redundancy.decov_loss(h).item() == pytest.approx(4.0, rel=1e-14)
    criterion = redundancy.DeCovLoss(correction=1, algorithm="gram")
    h = _activations(37, 70)
    assert torch.equal(criterion(h), redundancy.decov_loss(h, correction=1, algorithm="gram"))
    assert "correction=1" in repr(criterion)


@given(n=st.integers(2, 10), d=st.integers(1, 10), seed=st.integers(0, 2**16), scale=st.floats(0.1, 10.0))
def test_decov_properties(n, d, seed, scale):
    torch.manual_seed(seed)
    h = _activations(n, d)
    loss = redundancy.decov_loss(h)
    rows, units = torch.randperm(n), torch.randperm(d)
    shift = torch.randn(d, dtype=torch.float64) * 100
    assert torch.isfinite(loss) and loss >= 0
    assert_relative(redundancy.decov_loss(h[rows][:, units] + shift), loss, 1e-8)
    assert_relative(redundancy.decov_loss(h * scale), loss * scale**4, 1e-9)
    # The Gram form subtracts Σ_i C_ii² from ‖C‖²: exact up to rounding of ‖C‖² ≤ (Σ_i C_ii)².
    gram, cross = redundancy.decov_loss(h, algorithm="gram"), redundancy.decov_loss(h, algorithm="cross")
    torch.testing.assert_close(gram, cross, rtol=1e-8, atol=1e-12 * h.var(dim=0, correction=0).sum().item() ** 2)


def test_decov_bad_inputs():
    with pytest.raises(ValueError, match="h must be 2-D"):
        redundancy.decov_loss(torch.randn(4, 4, 4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        redundancy.decov_loss(torch.randn(1, 4))
    with pytest.raises(TypeError, match="floating-point"):
        redundancy.decov_loss(torch.ones(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="correction"):
        redundancy.decov_loss(torch.randn(4, 4), correction=2)
    with pytest.raises(ValueError, match="algorithm"):
        redundancy.DeCovLoss(algorithm="fast")
    h = torch.randn(4, 4)
    h[0, 0] = float("inf")
    assert torch.isnan(redundancy.decov_loss(h))


# ---------------------------------------------------------------------------------------- total coding rate


@pytest.mark.parametrize("eps", [0.2, 0.01])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_total_coding_rate_float64_equals_formula(n, d, algorithm, eps):
    z = _unit_rows(n, d)
    rate = redundancy.total_coding_rate(z, eps=eps, algorithm=algorithm)
    assert_relative(rate, total_coding_rate_reference(z, eps=eps), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_total_coding_rate_gradcheck_and_upstream(algorithm):
    z = _activations(5, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: redundancy.total_coding_rate(x, eps=0.5, algorithm=algorithm), (z,))
    z = _unit_rows(37, 70).requires_grad_(True)
    redundancy.total_coding_rate(z, algorithm=algorithm).backward(torch.tensor(-1.5, dtype=torch.float64))
    expected = torch.autograd.grad(total_coding_rate_reference(z) * -1.5, z)[0]
    assert_relative(z.grad, expected, GRAD_TOL[torch.float64][0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_total_coding_rate_low_precision(dtype, algorithm):
    z = _unit_rows(37, 70, dtype).requires_grad_(True)
    rate = redundancy.total_coding_rate(z, algorithm=algorithm)
    assert rate.dtype == torch.float32
    assert_relative(rate, total_coding_rate_reference(z.detach(), upcast=True), LOSS_RTOL[dtype])
    rate.backward()
    assert z.grad.dtype == dtype


def test_total_coding_rate_known_values_and_module():
    assert redundancy.total_coding_rate(torch.zeros(8, 4)) == 0
    # Orthonormal columns times c: zᵀz = c² I_k, so R = k/2 · log(1 + D c² / (N eps)).
    n, k, c, eps = 20, 6, 0.7, 0.2
    z = torch.linalg.qr(torch.randn(n, k, dtype=torch.float64))[0] * c
    expected = k / 2 * math.log(1 + k * c * c / (n * eps))
    for algorithm in ALGORITHMS:
        assert redundancy.total_coding_rate(z, eps=eps, algorithm=algorithm).item() == pytest.approx(expected, 1e-12)
    tcr = redundancy.TotalCodingRate(eps=0.5, algorithm="gram")
    assert torch.equal(tcr(z), redundancy.total_coding_rate(z, eps=0.5, algorithm="gram"))


@given(n=st.integers(1, 10), d=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_total_coding_rate_properties(n, d, seed):
    torch.manual_seed(seed)
    z = _unit_rows(n, d)
    rate = redundancy.total_coding_rate(z)
    assert torch.isfinite(rate) and rate >= 0
    rotation = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))[0]
    assert_relative(redundancy.total_coding_rate(z[torch.randperm(n)] @ rotation), rate, 1e-9)
    assert_relative(redundancy.total_coding_rate(z, algorithm="gram"), rate, 1e-9)
    assert redundancy.total_coding_rate(z, eps=0.4) <= rate  # less resolution, fewer nats


def test_total_coding_rate_bad_inputs():
    with pytest.raises(ValueError, match="eps must be positive"):
        redundancy.total_coding_rate(torch.randn(4, 4), eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        redundancy.TotalCodingRate(eps=-0.2)
    with pytest.raises(TypeError, match="eps"):
        redundancy.total_coding_rate(torch.randn(4, 4), eps="0.2")
    with pytest.raises(ValueError, match="z must be 2-D"):
        redundancy.total_coding_rate(torch.randn(4))
    z = torch.randn(4, 6)
    z[1, 2] = float("nan")
    for algorithm in ALGORITHMS:
        assert torch.isnan(redundancy.total_coding_rate(z, algorithm=algorithm))


@pytest.mark.parametrize("algorithm", ["cross", "gram"])
def test_total_coding_rate_of_rank_deficient_large_float32_inputs(algorithm):
    # A duplicated row makes z zᵀ singular: float32 loses I's contribution to rounding (NaN, -inf or a wrong value).
    failures = []
    for seed in range(12):
        generator = torch.Generator().manual_seed(seed)
        scale = (1.0, 10.0, 100.0)[seed % 3]
        z = scale * torch.randn(96, 320, generator=generator)
        z[seed % 96] = z[(seed * 7 + 1) % 96]
        single = z.clone().requires_grad_()
        rate = redundancy.total_coding_rate(single, algorithm=algorithm)
        rate.backward()
        expected = redundancy.total_coding_rate(z.double(), algorithm=algorithm)
        error = ((rate.double() - expected).abs() / expected).item()
        if not (torch.isfinite(rate) and torch.isfinite(single.grad).all() and error < 1e-6):
            failures.append((seed, rate.item(), expected.item()))
    assert not failures, failures


def test_total_coding_rate_float64_beyond_factorization_raises_and_nan_propagates():
    z = torch.randn(8, 16, dtype=torch.float64) * 1e12
    z[1] = z[0]
    with pytest.raises(ValueError, match="float64"):
        redundancy.total_coding_rate(z)
    z = torch.randn(8, 16)
    z[2, 3] = float("nan")
    assert torch.isnan(redundancy.total_coding_rate(z))


@pytest.mark.parametrize("algorithm", ["cross", "gram"])
def test_total_coding_rate_op_compiles_with_a_dynamic_batch(algorithm):
    def rate(z):
        return half_logdet_identity_plus_gram(z, alpha=0.7, algorithm=algorithm)

    compiled = torch.compile(rate, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (9, 23):
        z = torch.randn(n, 16, requires_grad=True)
        value = compiled(z)
        (gradient,) = torch.autograd.grad(value, z)
        z_eager = z.detach().requires_grad_()
        expected = rate(z_eager)
        assert_relative(value, expected, 1e-6, "compiled rate")
        assert_relative(gradient, torch.autograd.grad(expected, z_eager)[0], 1e-5, "compiled gradient")
