"""Collapse diagnostics against the reference, their bounds and known values, without gradients."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import cross_correlation_summary_reference
from redundancy.reference import effective_rank_reference
from tests.utils import STANDARDIZATIONS
from tests.utils import assert_relative

SHAPES = [(2, 1), (37, 70), (70, 37), (256, 64), (5, 130)]


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_effective_rank_equals_reference(n, d):
    z = torch.randn(n, d, dtype=torch.float64) * torch.linspace(0.1, 3.0, d, dtype=torch.float64)
    assert_relative(redundancy.effective_rank(z), effective_rank_reference(z), 1e-10)
    z32 = z.float()
    assert_relative(redundancy.effective_rank(z32), effective_rank_reference(z32), 1e-5, "float32")


def test_effective_rank_known_values():
    orthonormal = torch.linalg.qr(torch.randn(40, 40, dtype=torch.float64))[0][:, :12]
    assert_relative(redundancy.effective_rank(orthonormal * 5.0, eps=0.0), torch.tensor(12.0).double(), 1e-10)
    rank_one = torch.randn(30, 1, dtype=torch.float64) @ torch.randn(1, 20, dtype=torch.float64)
    assert redundancy.effective_rank(rank_one, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)


@given(n=st.integers(1, 20), d=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_effective_rank_bounds_and_orthogonal_invariance(n, d, seed):
    torch.manual_seed(seed)
    z = torch.randn(n, d, dtype=torch.float64)
    rank = redundancy.effective_rank(z, eps=0.0)
    assert 1.0 - 1e-9 <= rank.item() <= min(n, d) + 1e-9
    rotation = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))[0]
    rows = torch.randperm(n)
    assert_relative(redundancy.effective_rank(z[rows] @ rotation, eps=0.0), rank, 1e-8)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("correction", [0, 1])
def test_feature_std(correction, normalize):
    z = torch.randn(37, 70, dtype=torch.float64) * 2 + 1
    expected = (torch.nn.functional.normalize(z, dim=1) if normalize else z).std(dim=0, correction=correction)
    actual = redundancy.feature_std(z, correction=correction, normalize=normalize)
    assert actual.shape == (70,)
    assert_relative(actual, expected, 1e-12)


def test_feature_std_of_normalized_embeddings_shows_collapse():
    d = 64
    healthy = redundancy.feature_std(torch.randn(4096, d), normalize=True)
    assert healthy.mean().item() == pytest.approx(d**-0.5, rel=0.05)
    collapsed = torch.randn(1, d).repeat(4096, 1) + 1e-3 * torch.randn(4096, d)
    assert redundancy.feature_std(collapsed, normalize=True).mean() < 0.01 * d**-0.5


@pytest.mark.parametrize("standardization", STANDARDIZATIONS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_cross_correlation_summary_equals_reference(n, d, standardization):
    z1 = torch.randn(n, d, dtype=torch.float64) + 0.3
    z2 = 0.7 * z1 + 0.7 * torch.randn(n, d, dtype=torch.float64)
    mean_diagonal, off_diagonal_rms = cross_correlation_summary_reference(z1, z2, **STANDARDIZATIONS[standardization])
    for return_matrix in (False, True):
        summary = redundancy.cross_correlation_summary(
            z1, z2, **STANDARDIZATIONS[standardization], return_matrix=return_matrix
        )
        assert_relative(summary.mean_diagonal, mean_diagonal, 1e-10, "mean_diagonal")
        assert_relative(summary.off_diagonal_rms, off_diagonal_rms, 1e-9, "off_diagonal_rms")
        assert (summary.matrix is not None) == return_matrix
    if d > 1:
        assert summary.matrix.shape == (d, d)


def test_diagnostics_carry_no_gradient():
    z1 = torch.randn(16, 8, requires_grad=True)
    z2 = torch.randn(16, 8, requires_grad=True)
    outputs = [redundancy.effective_rank(z1), redundancy.feature_std(z1)]
    outputs += [t for t in redundancy.cross_correlation_summary(z1, z2, return_matrix=True)]
    assert not any(t.requires_grad for t in outputs)


def test_half_precision_inputs_are_summarized_in_float32():
    z = torch.randn(64, 32)
    summary = redundancy.cross_correlation_summary(z.half(), z.half())
    assert summary.mean_diagonal.dtype == torch.float32
    assert redundancy.effective_rank(z.bfloat16()).dtype == torch.float32


def test_diagnostics_bad_inputs():
    with pytest.raises(ValueError, match="z must be 2-D"):
        redundancy.effective_rank(torch.randn(4))
    with pytest.raises(ValueError, match="eps"):
        redundancy.effective_rank(torch.randn(4, 4), eps=-1.0)
    with pytest.raises(ValueError, match="correction"):
        redundancy.feature_std(torch.randn(4, 4), correction=2)
    with pytest.raises(TypeError, match="normalize"):
        redundancy.feature_std(torch.randn(4, 4), normalize="yes")
    with pytest.raises(ValueError, match="same shape"):
        redundancy.cross_correlation_summary(torch.randn(4, 4), torch.randn(4, 3))
    with pytest.raises(TypeError, match="normalization"):
        redundancy.cross_correlation_summary(torch.randn(4, 4), torch.randn(4, 4), normalization="layer")
    with pytest.raises(ValueError, match="correction must be 0"):
        redundancy.cross_correlation_summary(torch.randn(4, 4), torch.randn(4, 4), correction=0.5)
    with pytest.raises(TypeError, match="standardize must be a bool"):
        redundancy.cross_correlation_summary(torch.randn(4, 4), torch.randn(4, 4), standardize="no")
    with pytest.raises(TypeError, match="return_matrix"):
        redundancy.cross_correlation_summary(torch.randn(4, 4), torch.randn(4, 4), return_matrix=1)


@pytest.mark.parametrize("shape", [(12, 5), (5, 12)])
def test_effective_rank_of_non_finite_input_is_nan(shape):
    z = torch.randn(*shape)
    z[1, 2] = float("nan")
    assert torch.isnan(redundancy.effective_rank(z))
    z[1, 2] = float("inf")
    assert torch.isnan(redundancy.effective_rank(z))


def test_sparse_inputs_are_refused_naming_the_argument():
    dense = torch.randn(8, 4)
    sparse = dense.to_sparse()
    with pytest.raises(TypeError, match=r"^z must be a dense"):
        redundancy.effective_rank(sparse)
    with pytest.raises(TypeError, match=r"^z must be a dense"):
        redundancy.feature_std(sparse)
    with pytest.raises(TypeError, match=r"^z1 must be a dense"):
        redundancy.cross_correlation_summary(sparse, dense)
    with pytest.raises(TypeError, match=r"^z2 must be a dense"):
        redundancy.cross_correlation_summary(dense, dense.to_sparse_csr())
