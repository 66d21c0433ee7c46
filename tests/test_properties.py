"""Hypothesis properties of the loss (DESIGN §7), in float64."""

import torch
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

import redundancy
from redundancy.reference import barlow_twins_loss_reference

EPS = 1e-5


@st.composite
def views(draw, min_rows=3, max_rows=24, max_features=20):
    """Two correlated float64 views with a drawn shape, seed, per-feature scale and offset."""
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, max_features))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.floats(1e-2, 1e3))
    offset = draw(st.floats(-1e3, 1e3))
    mixing = draw(st.floats(0.0, 1.0))
    z1 = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z2 = mixing * z1 + (1 - mixing) * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return z1 * scale + offset, z2 * scale - offset


def _assert_close(actual, expected, rtol):
    """Relative closeness, with an absolute floor for losses that are 0 up to rounding (e.g. identical views)."""
    assert abs(actual.item() - expected.item()) <= rtol * abs(expected.item()) + 1e-12, (actual, expected)


def _min_variance(*tensors):
    return min(z.var(0, correction=0).min().item() for z in tensors)


options = st.fixed_dictionaries(
    {
        "lambd": st.sampled_from([0.0051, 0.5, "auto"]),
        "correction": st.sampled_from([0, 1]),
        "off_diagonal_target": st.sampled_from([0.0, -1.0, 0.3]),
    }
)


@given(views(), options)
def test_every_algorithm_equals_the_reference(zs, opts):
    z1, z2 = zs
    expected = barlow_twins_loss_reference(z1, z2, **opts)
    for algorithm in ("auto", "cross", "gram"):
        loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, **opts)
        _assert_close(loss, expected, 1e-9)


@given(views(), options)
def test_symmetric_in_the_two_views(zs, opts):
    z1, z2 = zs
    swapped = redundancy.barlow_twins_loss(z2, z1, **opts)
    _assert_close(swapped, redundancy.barlow_twins_loss(z1, z2, **opts), 1e-12)


@given(views(), options, st.randoms(use_true_random=False))
def test_invariant_to_joint_permutations_of_rows_and_features(zs, opts, rng):
    z1, z2 = zs
    n, d = z1.shape
    rows, features = list(range(n)), list(range(d))
    rng.shuffle(rows)
    rng.shuffle(features)
    permuted = [z[rows][:, features] for z in (z1, z2)]
    loss = redundancy.barlow_twins_loss(z1, z2, **opts)
    _assert_close(redundancy.barlow_twins_loss(*permuted, **opts), loss, 1e-12)


@given(views(), st.integers(0, 2**31 - 1), st.sampled_from([0, 1]))
def test_invariant_to_positive_affine_maps_per_feature(zs, seed, correction):
    z1, z2 = zs
    generator = torch.Generator().manual_seed(seed)
    d = z1.shape[1]
    scale = torch.rand(d, generator=generator, dtype=torch.float64) * 10 + 0.1
    shift = torch.randn(d, generator=generator, dtype=torch.float64) * 100
    mapped = z1 * scale + shift
    min_variance = _min_variance(z1, mapped)
    assume(min_variance > 1e3 * EPS)  # the invariance holds while var ≫ eps
    # Exact without eps ...
    loss = redundancy.barlow_twins_loss(z1, z2, correction=correction, eps=0.0)
    _assert_close(redundancy.barlow_twins_loss(mapped, z2, correction=correction, eps=0.0), loss, 1e-9)
    # ... and with eps, each C_ij moves by at most about eps / var.
    c = redundancy.cross_correlation(z1, z2, correction=correction, eps=EPS)
    c_mapped = redundancy.cross_correlation(mapped, z2, correction=correction, eps=EPS)
    assert (c - c_mapped).abs().max() <= EPS / min_variance + 1e-12


@given(views(min_rows=2), st.sampled_from([1e-30, 1.0, 1e30]), options)
def test_finite_inputs_give_finite_outputs(zs, magnitude, opts):
    z1, z2 = (z * magnitude / z.abs().max().clamp_min(1e-300) for z in zs)
    assume(torch.isfinite(z1).all() and torch.isfinite(z2).all())
    z1[:, 0] = 7.0  # a constant column too
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    if opts["correction"] == 1:
        opts = {**opts, "eps": 1e-5}
    loss = redundancy.barlow_twins_loss(z1, z2, **opts)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
