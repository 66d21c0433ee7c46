"""``redundancy.compat.lightly.SIGReg`` and ``LeJEPALoss`` reproduce lightly 1.6's, and differ where their docstrings
say (the directions' dtype, half-precision projections, LeJEPA's invariance term under DDP: see
``test_lightly_sigreg_distributed.py``).

The tests against lightly's own modules skip where lightly is not importable (tests/compat/README.md says how to
set it up); the others always run. SIGReg draws random directions: both sides are given the same state of the
default generator, from which lightly draws in the input's dtype and the adapter in float32.
"""

import inspect

import pytest
import torch

import redundancy
from redundancy.compat import lightly
from redundancy.reference import lejepa_loss_reference
from redundancy.reference import sigreg_loss_reference
from tests.utils import assert_relative

F64 = torch.float64


def _lightly():
    loss = pytest.importorskip("lightly.loss", reason="lightly is not installed (see tests/compat/README.md)")
    assert loss.SIGReg is not lightly.SIGReg, "lightly.loss is swapped for the adapters"
    return loss


def _proj(*shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator, dtype=F64) * 1.3 + 0.2).to(dtype)


def _seeded(function, *args, seed=5, **kwargs):
    torch.manual_seed(seed)
    return function(*args, **kwargs)


def _value_and_grad(criterion, proj, seed=5):
    leaf = proj.clone().requires_grad_(True)
    value = _seeded(criterion, leaf, seed=seed)
    (gradient,) = torch.autograd.grad(1.3 * value, leaf)
    return value.detach(), gradient


# ------------------------------------------------------------------------------------------------ SIGReg


def test_sigreg_signature_is_lightlys():
    parameters = list(inspect.signature(lightly.SIGReg).parameters.values())
    assert [(p.name, p.default) for p in parameters] == [
        ("knots", 17),
        ("t_max", 3.0),
        ("num_vectors", 1024),
        ("gather_distributed", False),
    ]
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"knots": 1}, "knots must be an integer greater than one."),
        ({"t_max": 0.0}, "t_max must be greater than zero."),
        ({"num_vectors": 0}, "num_vectors must be a positive integer."),
    ],
)
def test_sigreg_refuses_what_lightly_refuses(options, message):
    with pytest.raises(ValueError, match=message):
        lightly.SIGReg(**options)


def test_sigreg_buffers_are_lightlys():
    criterion = lightly.SIGReg(knots=9, t_max=2.0)
    assert list(criterion.state_dict()) == ["t", "phi", "weights"]
    t = torch.linspace(0, 2.0, 9)
    assert torch.equal(criterion.t, t) and torch.equal(criterion.phi, torch.exp(-t.square() / 2))
    assert_relative(criterion.weights.double(), torch.tensor(redundancy._ops.sigreg.trapezoid_weights(9, 2.0)), 1e-7)


@pytest.mark.parametrize("shape", [(64, 8), (3, 40, 6), (2, 3, 20, 5)])
def test_sigreg_is_the_statistic_of_float32_draws_averaged_over_the_leading_dimensions(shape):
    proj = _proj(*shape, dtype=F64)
    value = _seeded(lightly.SIGReg(num_vectors=32, knots=9), proj)
    expected = _seeded(sigreg_loss_reference, proj.reshape(-1, *shape[-2:]), num_slices=32, knots=9)
    assert_relative(value, expected, 1e-10)


def test_sigreg_errors_name_proj():
    with pytest.raises(ValueError, match=r"proj must be 2-D of shape \(N, D\), got shape \(8,\)"):
        lightly.SIGReg()(torch.randn(8))
    with pytest.raises(TypeError, match=r"proj\[0\] must have a floating-point dtype"):
        lightly.SIGReg()(torch.ones(2, 4, 3, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sigreg_half_precision_is_projected_in_float32(dtype):
    proj = _proj(256, 16, dtype=dtype)
    value = _seeded(lightly.SIGReg(num_vectors=64), proj)
    assert value.dtype == torch.float32
    assert torch.equal(value, _seeded(lightly.SIGReg(num_vectors=64), proj.float()))


def test_sigreg_against_lightly_in_float32_with_the_same_generator_state():
    theirs = _lightly().SIGReg(num_vectors=128)
    ours = lightly.SIGReg(num_vectors=128)
    for shape in [(512, 32), (2, 100, 16), (2, 2, 37, 70)]:
        proj = _proj(*shape)
        (value, gradient), (expected, expected_gradient) = _value_and_grad(ours, proj), _value_and_grad(theirs, proj)
        assert_relative(value, expected, 1e-5, f"{shape}: value")
        assert_relative(gradient, expected_gradient, 1e-4, f"{shape}: gradient")


def test_sigreg_formula_against_lightly_in_float64_on_lightlys_directions():
    """lightly draws float64 directions for float64 inputs: given those, the library's value is lightly's to the
    rounding of lightly's knots and weights, float32 buffers cast to float64 (2e-8 relative here); the adapter draws
    float32 directions (other numbers), as the official code does."""
    theirs = _lightly().SIGReg(num_vectors=64)
    proj = _proj(2, 50, 12, dtype=F64)
    expected, expected_gradient = _value_and_grad(theirs, proj)
    directions = _seeded(torch.randn, 12, 64, dtype=F64)  # what lightly drew
    value, gradient = _value_and_grad(lambda z: redundancy.sigreg_loss(z, directions=directions), proj)
    assert_relative(value, expected, 1e-7, "value")
    assert_relative(gradient, expected_gradient, 1e-7, "gradient")
    adapter = _seeded(lightly.SIGReg(num_vectors=64), proj)
    assert_relative(adapter, _seeded(sigreg_loss_reference, proj, num_slices=64), 1e-10)
    assert relative_difference(adapter, expected) > 1e-3  # other directions


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs() / b.double().abs()).item()


def test_lightlys_bfloat16_directions_and_projections_are_off_by_four_in_ten_thousand():
    """lightly draws and normalizes bfloat16 directions and projects in bfloat16: its value is 4e-4 off the float64
    statistic of the same (rounded) inputs on its own directions; the adapter's is within 1e-6 of it on its own."""
    peer = _lightly()
    proj = _proj(1024, 64, dtype=torch.bfloat16, seed=1) * 1.5
    drawn = {}
    original = peer.SIGReg._generate_unit_vectors

    def recorded(self, device, dtype, num_features):
        drawn["directions"] = original(self, device, dtype, num_features)
        return drawn["directions"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(peer.SIGReg, "_generate_unit_vectors", recorded)
        theirs = _seeded(peer.SIGReg(num_vectors=256), proj)
    assert drawn["directions"].dtype == torch.bfloat16
    truth = redundancy.sigreg_loss(proj.double(), directions=drawn["directions"].double())
    assert relative_difference(theirs, truth) > 1e-4
    ours = _seeded(lightly.SIGReg(num_vectors=256), proj)
    own_truth = redundancy.sigreg_loss(proj.double(), directions=_seeded(torch.randn, 64, 256).double())
    assert relative_difference(ours, own_truth) < 1e-6


def test_sigreg_state_dicts_load_both_ways():
    theirs = _lightly().SIGReg(knots=9, t_max=2.5)
    ours = lightly.SIGReg(knots=9, t_max=2.5)
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key


# ------------------------------------------------------------------------------------------------ LeJEPA


def test_lejepa_signature_is_lightlys():
    parameters = list(inspect.signature(lightly.LeJEPALoss).parameters.values())
    assert [(p.name, p.default) for p in parameters] == [
        ("lambda_param", 0.05),
        ("gather_distributed", False),
        ("sigreg_knots", 17),
        ("sigreg_t_max", 3.0),
        ("sigreg_num_vectors", 1024),
    ]
    forward = inspect.signature(lightly.LeJEPALoss.forward).parameters
    assert [(p.name, p.kind) for p in forward.values()][1:] == [
        ("local_proj", inspect.Parameter.KEYWORD_ONLY),
        ("global_proj", inspect.Parameter.KEYWORD_ONLY),
    ]
    criterion = lightly.LeJEPALoss(sigreg_knots=9, sigreg_num_vectors=64, gather_distributed=False)
    assert isinstance(criterion.sigreg, lightly.SIGReg) and criterion.sigreg.num_vectors == 64
    assert list(criterion.state_dict()) == ["sigreg.t", "sigreg.phi", "sigreg.weights"]


def test_lejepa_is_the_weighted_terms_with_the_global_views_as_the_centre():
    local_proj, global_proj = _proj(4, 30, 6, dtype=F64), _proj(2, 30, 6, dtype=F64, seed=1)
    criterion = lightly.LeJEPALoss(lambda_param=0.1, sigreg_num_vectors=32)
    value = _seeded(criterion, local_proj=local_proj, global_proj=global_proj)
    views = torch.cat([global_proj, local_proj])
    expected = _seeded(lejepa_loss_reference, views, lamb=0.1, global_views=2, num_slices=32)
    assert_relative(value, expected, 1e-10)


def test_lejepa_weight_is_read_at_the_call_and_gets_its_gradient():
    local_proj, global_proj = _proj(2, 20, 5, dtype=F64), _proj(1, 20, 5, dtype=F64, seed=1)
    criterion = lightly.LeJEPALoss(sigreg_num_vectors=16)
    criterion.lambda_param = torch.tensor(0.3, dtype=F64, requires_grad=True)
    value = _seeded(criterion, local_proj=local_proj, global_proj=global_proj)
    value.backward()
    terms = _seeded(redundancy.lejepa_terms, torch.cat([global_proj, local_proj]), global_views=1, num_slices=16)
    assert_relative(criterion.lambda_param.grad, terms.sigreg - terms.invariance, 1e-12)


@pytest.mark.parametrize(
    ("local_proj", "global_proj", "error", "message"),
    [
        (torch.randn(4, 3), torch.randn(1, 4, 3), ValueError, r"local_proj must have shape \(V_local, N, D\)"),
        (torch.randn(1, 4, 3), torch.randn(4, 3), ValueError, r"global_proj must have shape \(V_global, N, D\)"),
        (torch.randn(1, 4, 3), torch.randn(1, 5, 3), ValueError, "must have matching batch and feature dimensions"),
        (torch.randn(0, 4, 3), torch.randn(1, 4, 3), ValueError, "local_proj must have at least one local view"),
        (torch.randn(1, 4, 3), torch.randn(0, 4, 3), ValueError, "global_proj must have at least one global view"),
        (None, torch.randn(1, 4, 3), TypeError, "local_proj must be a torch.Tensor"),
        (torch.ones(2, 4, 3, dtype=torch.long), torch.randn(1, 4, 3), TypeError, r"local_proj\[0\] must have a"),
    ],
)
def test_lejepa_errors_are_lightlys(local_proj, global_proj, error, message):
    with pytest.raises(error, match=message):
        lightly.LeJEPALoss()(local_proj=local_proj, global_proj=global_proj)


def test_lejepa_refuses_a_weight_outside_the_unit_interval_as_lightly():
    with pytest.raises(ValueError, match=r"lambda_param must be in the unit interval \[0, 1\]."):
        lightly.LeJEPALoss(lambda_param=1.5)


def test_lejepa_against_lightly_with_the_same_generator_state():
    peer = _lightly()
    local_proj, global_proj = _proj(6, 64, 16), _proj(2, 64, 16, seed=1)
    results = []
    for criterion in (peer.LeJEPALoss(sigreg_num_vectors=128), lightly.LeJEPALoss(sigreg_num_vectors=128)):
        local, glob = local_proj.clone().requires_grad_(True), global_proj.clone().requires_grad_(True)
        value = _seeded(criterion, local_proj=local, global_proj=glob)
        results.append((value.detach(), *torch.autograd.grad(value, (local, glob))))
    (value, *gradients), (expected, *expected_gradients) = results[1], results[0]
    assert_relative(value, expected, 1e-5, "value")
    for gradient, expected_gradient in zip(gradients, expected_gradients, strict=True):
        assert_relative(gradient, expected_gradient, 1e-4, "gradient")
