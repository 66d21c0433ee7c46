"""The ops at the edges: converged embeddings in float32, extreme magnitudes, dynamic-shape compilation.

Float64 is the truth throughout. Converged embeddings (C ≈ I with tiny off-diagonal entries, N ≥ D) are where
``‖C‖² - Σ c_i²`` cancels: both numbers are close to D while their difference is tiny.
"""

import math

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

import redundancy
from redundancy._ops import Standardization
from redundancy._ops import cross_correlation_terms
from redundancy._ops import gram_terms
from redundancy._ops import off_diagonal_energy
from redundancy._ops import standardize
from tests.utils import assert_relative

ALGORITHMS = ("cross", "gram")


def converged_views(n: int, d: int, *, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 views with C = 0.99·I up to off-diagonal entries of order ``noise`` (features decorrelated).

    The columns of both views come from one orthonormal basis of 2D directions, so their cross-correlation is
    exactly diagonal before the noise; columns have different scales and offsets (standardization removes them).
    """
    generator = torch.Generator().manual_seed(seed)
    columns = torch.randn(n, 2 * d, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(columns - columns.mean(dim=0))  # orthonormal columns of zero mean
    angle = math.acos(0.99)
    scales = torch.linspace(0.5, 2.0, d, dtype=torch.float64) * math.sqrt(n)
    z1 = basis[:, :d] * scales + 3.0
    z2 = (math.cos(angle) * basis[:, :d] + math.sin(angle) * basis[:, d:]) * scales - 1.0
    return z1, z2 + noise * torch.randn(n, d, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def converged():
    return converged_views(2048, 256, seed=3, noise=2e-4)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_converged_barlow_twins_terms_in_float32_match_float64(converged, algorithm):
    z1, z2 = converged
    exact = redundancy.barlow_twins_terms(z1, z2, algorithm=algorithm)
    single = redundancy.barlow_twins_terms(z1.float(), z2.float(), algorithm=algorithm)
    assert exact.redundancy < 1e-4  # off-diagonal RMS below 1e-4 while ‖C‖² ≈ 251
    for name in ("loss", "invariance", "redundancy"):
        assert getattr(single, name) >= 0, name
        assert_relative(getattr(single, name), getattr(exact, name), 1e-3, name)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_converged_autocorrelation_energies_in_float32_match_float64(converged, algorithm):
    z1, z2 = converged
    single = redundancy.vicreg_terms(z1.float(), z2.float(), algorithm=algorithm)
    exact = redundancy.vicreg_terms(z1, z2, algorithm=algorithm)
    assert single.covariance >= 0
    assert_relative(single.covariance, exact.covariance, 1e-3, "VICReg covariance")
    decov = redundancy.decov_loss(z2.float(), algorithm=algorithm)
    assert decov >= 0
    assert_relative(decov, redundancy.decov_loss(z2, algorithm=algorithm), 1e-3, "DeCov")
    cca = redundancy.cca_ssg_loss(z1.float(), z2.float(), algorithm=algorithm)
    assert_relative(cca, redundancy.cca_ssg_loss(z1, z2, algorithm=algorithm), 1e-6, "CCA-SSG")


@pytest.mark.parametrize("return_matrix", [False, True])
def test_converged_summary_in_float32_matches_float64(converged, return_matrix):
    z1, z2 = converged
    exact = redundancy.cross_correlation_summary(z1, z2)
    single = redundancy.cross_correlation_summary(z1.float(), z2.float(), return_matrix=return_matrix)
    assert exact.off_diagonal_rms < 1e-3
    assert_relative(single.off_diagonal_rms, exact.off_diagonal_rms, 1e-3, "off_diagonal_rms")


@pytest.mark.parametrize("op", [cross_correlation_terms, gram_terms])
def test_redundancy_of_one_feature_is_exactly_zero(op):
    z = torch.randn(16, 1)
    _, redundancy_term = op(z, z * 2.0 + 1.0, target=0.0, standardization=Standardization(False, 1e-5))
    assert redundancy_term == 0


# ------------------------------------------------------------------------------------------------ magnitudes


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("magnitude", [5e17, 1e30])
def test_huge_float32_embeddings_give_the_right_loss(algorithm, correction, magnitude):
    # Enough rows that a column's sum of squares overflows float32 even where each square does not.
    z1 = torch.randn(2048, 12, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(2048, 12, dtype=torch.float64)
    z1, z2 = z1 * magnitude, z2 * magnitude
    options = dict(algorithm=algorithm, correction=correction, off_diagonal_target=-0.5)
    expected = redundancy.barlow_twins_terms(z1, z2, **options)
    z1_single, z2_single = z1.float().requires_grad_(), z2.float().requires_grad_()
    actual = redundancy.barlow_twins_terms(z1_single, z2_single, **options)
    for name in ("loss", "invariance", "redundancy"):
        assert_relative(getattr(actual, name), getattr(expected, name), 1e-4, name)
    actual.loss.backward()
    assert torch.isfinite(z1_single.grad).all() and torch.isfinite(z2_single.grad).all()


def test_standardize_columns_of_every_finite_magnitude():
    z = torch.randn(40, 4, dtype=torch.float64) * torch.tensor([1e-3, 1.0, 5e17, 5e36], dtype=torch.float64)
    standardization = Standardization(unbiased=True, eps=1e-5)
    expected = standardize(z, standardization)
    actual = standardize(z.float(), standardization)
    assert torch.isfinite(actual).all()
    assert_relative(actual, expected, 1e-5, "standardized columns")


def test_huge_magnitudes_where_the_scale_is_always_applied():
    # Under torch.func transforms and compile traces (and off the CPU) the scale is found before squaring, without
    # first trying the unscaled variance: the same values.
    z = torch.randn(3, 2048, 4, dtype=torch.float64) * torch.tensor([1.0, 5e17, 1e30, 1e-3], dtype=torch.float64)
    standardization = Standardization(unbiased=False, eps=1e-5)
    expected = torch.stack([standardize(view, standardization) for view in z])
    batched = torch.func.vmap(lambda view: standardize(view, standardization))(z.float())
    assert_relative(batched, expected, 1e-5, "vmap")
    compiled = torch.compile(lambda view: standardize(view, standardization), backend="aot_eager", fullgraph=True)
    assert_relative(compiled(z[0].float()), expected[0], 1e-5, "compiled")


def test_float16_magnitude_1e4_still_standardizes():
    z1 = (torch.randn(32, 16) * 1e4).half()
    z2 = (z1.float() + 1e3 * torch.randn(32, 16)).half()
    expected = redundancy.barlow_twins_loss(z1.double(), z2.double())
    assert_relative(redundancy.barlow_twins_loss(z1, z2), expected, 1e-4, "float16 loss")


# ------------------------------------------------------------------------------------------------ compile

STANDARDIZATION = Standardization(unbiased=False, eps=1e-5)
COMPILED_OPS = {
    "gram_terms": lambda a, b: sum(gram_terms(a, b, target=-1.0, standardization=STANDARDIZATION)),
    "cross_correlation_terms": lambda a, b: sum(
        cross_correlation_terms(a, b, target=0.0, standardization=STANDARDIZATION)
    ),
    "standardize": lambda a, b: (standardize(a, STANDARDIZATION) * b).sum(),
    "off_diagonal_energy": lambda a, b: (
        off_diagonal_energy(a, algorithm="gram") + off_diagonal_energy(b, algorithm="cross")
    ),
}


@pytest.mark.parametrize("name", COMPILED_OPS)
def test_dynamic_compile_traces_once_for_several_batch_sizes(name):
    # Batch sizes that the eager code splits differently (row slabs of column_dot, row blocks of symmetric_gram).
    op = COMPILED_OPS[name]
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(op, backend=counter, dynamic=True, fullgraph=True)
    for n in (300, 520, 777):
        a = torch.randn(n, 2048, requires_grad=True)
        b = torch.randn(n, 2048, requires_grad=True)
        value = compiled(a, b)
        value.backward()
        assert_relative(value, op(a, b), 1e-4, f"compiled value at N = {n}")
    assert counter.frame_count == 1


class _AllOps(torch.nn.Module):
    def forward(self, a, b):
        return sum(op(a, b) for op in COMPILED_OPS.values())


def test_ops_export_with_a_dynamic_batch_dimension():
    # One exported program for batches smaller and larger than D (the Gram forms branch on N ≥ D in eager mode).
    batch = torch.export.Dim("batch", min=2, max=4096)
    program = torch.export.export(
        _AllOps(), (torch.randn(64, 48), torch.randn(64, 48)), dynamic_shapes=({0: batch}, {0: batch})
    )
    for n in (3, 47, 300):
        a, b = torch.randn(n, 48), torch.randn(n, 48)
        assert_relative(program.module()(a, b), _AllOps()(a, b), 1e-4, f"exported program at N = {n}")
