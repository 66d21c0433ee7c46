"""BarlowTwinsLoss is a thin wrapper: same values and gradients as the function, options checked at construction."""

import pytest
import torch

import redundancy

OPTIONS = [
    {},
    {"lambd": "auto", "scale": 0.025},
    {"correction": 1, "eps": 0.0, "algorithm": "gram"},
    {"off_diagonal_target": -1.0, "algorithm": "cross"},
    {"standardize": False, "backend": "torch"},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_module_equals_function(options):
    z1 = torch.randn(37, 70, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(37, 70, dtype=torch.float64, requires_grad=True)
    criterion = redundancy.BarlowTwinsLoss(**options)
    loss = criterion(z1, z2)
    expected = redundancy.barlow_twins_loss(z1, z2, **options)
    assert torch.equal(loss, expected)
    terms = redundancy.barlow_twins_terms(z1, z2, **options)
    assert all(torch.equal(a, b) for a, b in zip(criterion.terms(z1, z2), terms, strict=True))
    g_module = torch.autograd.grad(loss, (z1, z2))
    g_function = torch.autograd.grad(expected, (z1, z2))
    assert all(torch.equal(a, b) for a, b in zip(g_module, g_function, strict=True))


def test_module_has_no_state_and_shows_its_options():
    criterion = redundancy.BarlowTwinsLoss(lambd=0.01)
    assert list(criterion.parameters()) == [] and list(criterion.buffers()) == []
    assert "lambd=0.01" in repr(criterion) and "correction=0, standardize=True" in repr(criterion)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lambd": -1.0}, ValueError, "lambd must be non-negative"),
        ({"normalization": "batchnorm"}, TypeError, "unexpected keyword argument 'normalization'"),
        ({"correction": 2}, ValueError, "correction must be 0"),
        ({"standardize": None}, TypeError, "standardize must be a bool"),
        ({"normalisation": "std"}, TypeError, r"BarlowTwinsLoss\(\) got an unexpected keyword argument 'normal"),
        ({"algorithm": "dual"}, ValueError, "algorithm must be one of"),
        ({"scale": "big"}, TypeError, "scale must be a real number"),
    ],
)
def test_bad_options_fail_at_construction(options, error, match):
    with pytest.raises(error, match=match):
        redundancy.BarlowTwinsLoss(**options)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        redundancy.BarlowTwinsLoss(0.0051)
