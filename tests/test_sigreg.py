"""SIGReg and LeJEPA at the op level: the golden values of the official code, the reference, the characteristic-function
sums of :mod:`redundancy._ops.sigreg` (precision, autograd, :mod:`torch.func`, ``torch.compile``, shards)."""

import json
import pathlib

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import redundancy._ops.sigreg as sigreg_ops
from redundancy._ops.sigreg import (
    characteristic_sums,
    draw_directions,
    epps_pulley_from_sums,
    knot_values,
    sliced_epps_pulley,
    trapezoid_weights,
)
from redundancy.reference import lejepa_loss_reference, lejepa_terms_reference, sigreg_loss_reference
from tests.utils import assert_relative, relative_error

GOLDEN = json.loads((pathlib.Path(__file__).resolve().parent / "golden" / "sigreg.json").read_text())
F64 = torch.float64


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def sums_reference(p: torch.Tensor, knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official code's N×M×K form of the sums."""
    x = p.unsqueeze(-1) * torch.linspace(0, t_max, knots, dtype=p.dtype)
    return x.cos().sum(dim=-3), x.sin().sum(dim=-3)


# ------------------------------------------------------------------------------------------------ golden values


@pytest.mark.parametrize("case", GOLDEN["sigreg"], ids=lambda case: case["name"])
@pytest.mark.parametrize("implementation", ["reference", "op"])
def test_sigreg_reproduces_the_official_value_and_gradient(case, implementation):
    z, directions = tensor(case["z"]).requires_grad_(True), tensor(case["directions"])
    options = {"knots": case["knots"], "t_max": case["t_max"]}
    if implementation == "reference":
        value = sigreg_loss_reference(z, directions, **options)
    else:
        value = sliced_epps_pulley(z, directions, **options)
    (gradient,) = torch.autograd.grad(value, z)
    assert_relative(value, torch.tensor(case["official"], dtype=F64), 1e-10, "value")
    assert_relative(gradient, tensor(case["official_grad_z"]), 1e-10, "gradient")
    if "minimal_md" in case:  # the two official implementations agree
        assert_relative(torch.tensor(case["minimal_md"], dtype=F64), torch.tensor(case["official"], dtype=F64), 1e-14)


@pytest.mark.parametrize("expected", GOLDEN["lejepa"]["expected"], ids=lambda entry: f"lamb={entry['lamb']}")
def test_lejepa_reference_reproduces_the_minimal_training_loop(expected):
    views, directions = tensor(GOLDEN["lejepa"]["views"]), tensor(GOLDEN["lejepa"]["directions"])
    invariance, sigreg = lejepa_terms_reference(views, directions)
    assert_relative(invariance, torch.tensor(expected["inv_loss"], dtype=F64), 1e-12, "invariance")
    assert_relative(sigreg, torch.tensor(expected["sigreg_loss"], dtype=F64), 1e-12, "sigreg")
    loss = lejepa_loss_reference(views, directions, lamb=expected["lamb"])
    assert_relative(loss, torch.tensor(expected["lejepa_loss"], dtype=F64), 1e-12, "loss")
    assert_relative(sliced_epps_pulley(views, directions, knots=17, t_max=3.0), sigreg, 1e-12, "op")


def test_lejepa_global_views_take_the_centre_from_the_first_views():
    views = torch.randn(5, 12, 4, dtype=F64)
    directions = torch.randn(4, 8, dtype=F64)
    invariance, sigreg = lejepa_terms_reference(views, directions, global_views=2)
    assert_relative(invariance, (views[:2].mean(0) - views).square().mean(), 1e-14)
    assert_relative(sigreg, lejepa_terms_reference(views, directions)[1], 1e-14)  # every view enters SIGReg


def test_directions_are_drawn_as_the_official_slicing_test_draws_them():
    drawn = GOLDEN["drawn"]
    raw = torch.randn((6, drawn["num_slices"]), generator=torch.Generator().manual_seed(drawn["seed"]))
    assert torch.equal(raw.double(), tensor(drawn["raw_directions_float32"]))
    directions = draw_directions(6, drawn["num_slices"], generator=torch.Generator().manual_seed(drawn["seed"]))
    assert torch.equal(directions, raw / raw.norm(p=2, dim=0))  # bit for bit in float32

    z = tensor(drawn["z_float32"]).float()
    official = torch.tensor(drawn["official_float32"], dtype=F64)
    generator = torch.Generator().manual_seed(drawn["seed"])
    reference = sigreg_loss_reference(z, num_slices=drawn["num_slices"], generator=generator)
    assert reference.dtype == torch.float32
    assert_relative(reference, official, 1e-6, "reference, float32")
    value = sliced_epps_pulley(z.double(), directions, knots=17, t_max=3.0)
    assert_relative(value, official, 1e-6, "op on the drawn directions")


def test_drawn_directions_do_not_depend_on_the_dtype():
    single = draw_directions(9, 5, generator=torch.Generator().manual_seed(3))
    double = draw_directions(9, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert double.dtype == F64
    assert_relative(double, single.double(), 1e-7)
    assert_relative(torch.linalg.vector_norm(double, dim=0), torch.ones(5, dtype=F64), 1e-15)


# -------------------------------------------------------------------------------------------- the quadrature


@pytest.mark.parametrize(("knots", "t_max"), [(17, 3.0), (9, 4.0), (10, 3.0), (2, 1.0), (33, 5.0), (16, 2.7)])
def test_knots_and_weights_are_the_official_ones(knots, t_max):
    t = torch.linspace(0, t_max, knots, dtype=F64)
    assert knot_values(knots, t_max) == t.tolist()
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, dtype=F64)
    weights[[0, -1]] = dt
    assert_relative(tensor(trapezoid_weights(knots, t_max)), weights * torch.exp(-t.square() / 2), 1e-15)


# ----------------------------------------------------------------------------------------- the sums, float64

SHAPES = [(64, 8), (37, 70), (5, 1), (3, 11, 9), (1, 6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("knots", "t_max"), [(17, 3.0), (2, 1.5), (3, 2.0), (10, 3.0), (26, 4.0), (33, 5.0)])
def test_sums_match_the_official_form_in_float64(shape, knots, t_max):
    p = torch.randn(*shape, dtype=F64) * 1.7
    cos_sums, sin_sums = characteristic_sums(p, knots=knots, t_max=t_max)
    expected_cos, expected_sin = sums_reference(p, knots, t_max)
    assert_relative(cos_sums, expected_cos, 1e-10, "cos")
    assert_relative(sin_sums, expected_sin, 1e-10, "sin")
    assert torch.equal(cos_sums[..., 0], torch.full_like(cos_sums[..., 0], shape[-2]))
    assert torch.equal(sin_sums[..., 0], torch.zeros_like(sin_sums[..., 0]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("knots", [17, 2, 3, 10, 26])
def test_sums_backward_with_any_upstream_gradient(shape, knots):
    p = (torch.randn(*shape, dtype=F64) * 1.3).requires_grad_(True)
    grad_cos = torch.randn(*shape[:-2], shape[-1], knots, dtype=F64)
    grad_sin = torch.randn(*shape[:-2], shape[-1], knots, dtype=F64)
    cos_sums, sin_sums = characteristic_sums(p, knots=knots, t_max=3.0)
    (actual,) = torch.autograd.grad((cos_sums, sin_sums), p, (grad_cos, grad_sin))
    expected_cos, expected_sin = sums_reference(p, knots, 3.0)
    (expected,) = torch.autograd.grad((expected_cos, expected_sin), p, (grad_cos, grad_sin))
    assert_relative(actual, expected, 1e-10)


@pytest.mark.parametrize("shape", [(37, 70), (3, 11, 9)])
def test_sigreg_op_matches_the_reference_in_float64(shape):
    z = torch.randn(*shape, dtype=F64).requires_grad_(True)
    directions = torch.randn(shape[-1], 24, dtype=F64)
    value = sliced_epps_pulley(z, directions, knots=17, t_max=3.0)
    expected = sigreg_loss_reference(z, directions)
    (gradient,) = torch.autograd.grad(value, z)
    (expected_gradient,) = torch.autograd.grad(expected, z)
    assert_relative(value, expected, 1e-10, "value")
    assert_relative(gradient, expected_gradient, 1e-10, "gradient")


@pytest.mark.parametrize("knots", [2, 3, 5, 17, 18, 50])
def test_baby_and_giant_steps_cover_every_knot_once(knots):
    baby, giant = sigreg_ops._steps(knots)
    assert baby * giant >= knots - 1 > baby * (giant - 1)
    assert baby + giant <= 2 * (knots - 1) ** 0.5 + 2


def test_row_blocks_give_the_one_block_answer(monkeypatch):
    p = (torch.randn(2, 300, 7, dtype=F64) * 2).requires_grad_(True)
    upstream = (torch.randn(2, 7, 17, dtype=F64), torch.randn(2, 7, 17, dtype=F64))
    whole = characteristic_sums(p, knots=17, t_max=3.0)
    (whole_gradient,) = torch.autograd.grad(whole, p, upstream)
    monkeypatch.setattr(sigreg_ops, "BLOCK_ELEMENTS", 100)
    assert len(sigreg_ops._row_blocks(p, 9)) > 10
    blocks = characteristic_sums(p, knots=17, t_max=3.0)
    (blocks_gradient,) = torch.autograd.grad(blocks, p, upstream)
    for actual, expected in zip(blocks, whole, strict=True):
        assert_relative(actual, expected, 1e-13)
    assert_relative(blocks_gradient, whole_gradient, 1e-13)


def test_non_contiguous_inputs():
    z = torch.randn(70, 37, dtype=F64).t().requires_grad_(True)  # 37×70, column-major
    directions = torch.randn(24, 70, dtype=F64).t()
    assert not z.is_contiguous() and not directions.is_contiguous()
    value = sliced_epps_pulley(z, directions, knots=17, t_max=3.0)
    expected = sigreg_loss_reference(z.contiguous(), directions.contiguous())
    assert_relative(value, expected, 1e-10)
    p = torch.randn(9, 40, dtype=F64)[:, ::2]
    for actual, reference in zip(characteristic_sums(p, knots=9, t_max=3.0), sums_reference(p, 9, 3.0), strict=True):
        assert_relative(actual, reference, 1e-10)


# --------------------------------------------------------------------------------------- several processes


def test_an_empty_shard_gives_zero_sums_and_an_empty_gradient():
    p = torch.zeros(0, 6, dtype=F64, requires_grad=True)
    cos_sums, sin_sums = characteristic_sums(p, knots=17, t_max=3.0)
    assert torch.equal(cos_sums, torch.zeros(6, 17, dtype=F64))
    assert torch.equal(sin_sums, torch.zeros(6, 17, dtype=F64))
    (gradient,) = torch.autograd.grad((cos_sums.sum() + sin_sums.sum()), p)
    assert gradient.shape == (0, 6)


def test_sums_of_shards_give_the_global_statistic_and_gradient():
    """Ranks sum locally, the sums are added (all-reduce), the statistic is computed from the global sums with the
    global N; each rank's backward through its own sums needs no collective."""
    z = torch.randn(50, 9, dtype=F64).requires_grad_(True)
    directions = torch.randn(9, 16, dtype=F64)
    unit = directions / directions.norm(dim=0)
    shards = [z[:0], z[:7], z[7:31], z[31:]]  # uneven, one empty
    sums = [characteristic_sums(shard @ unit, knots=17, t_max=3.0) for shard in shards]
    cos_sums = sum(part[0] for part in sums)
    sin_sums = sum(part[1] for part in sums)
    count = cos_sums[..., 0]  # the global N comes with the sums
    statistic = epps_pulley_from_sums(cos_sums, sin_sums, count, knots=17, t_max=3.0).mean()
    (gradient,) = torch.autograd.grad(statistic, z)
    expected = sigreg_loss_reference(z, directions)
    (expected_gradient,) = torch.autograd.grad(expected, z)
    assert_relative(statistic, expected, 1e-12)
    assert_relative(gradient, expected_gradient, 1e-12)


# ----------------------------------------------------------------------------------------- precision, dtypes

#: Input dtype -> (relative tolerance of the value, of the gradient) against the float64 reference on the same
#: (rounded) inputs, max-norm relative. Half inputs are projected and summed in float32 (values within 2e-7 measured);
#: their gradients come back in their own dtype, so they carry its rounding.
TOLERANCES = {torch.float32: (1e-6, 2e-5), torch.bfloat16: (1e-6, 1e-2), torch.float16: (1e-6, 2e-3)}


INPUTS = {
    "gaussian": lambda: torch.randn(1024, 32),
    "views, shifted": lambda: torch.randn(4, 128, 16) * 1.5 + 0.5,
    "odd, wide": lambda: 2 * torch.randn(37, 70),
}


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("inputs", list(INPUTS))
def test_low_precision_against_the_float64_reference(dtype, inputs):
    z = INPUTS[inputs]().to(dtype).requires_grad_(True)
    directions = torch.randn(z.shape[-1], 128)
    value = sliced_epps_pulley(z, directions, knots=17, t_max=3.0)
    (gradient,) = torch.autograd.grad(value, z)
    assert value.dtype == torch.float32 and gradient.dtype == dtype
    z64 = z.detach().double().requires_grad_(True)
    expected = sigreg_loss_reference(z64, directions.double())
    (expected_gradient,) = torch.autograd.grad(expected, z64)
    value_tolerance, gradient_tolerance = TOLERANCES[dtype]
    assert_relative(value, expected, value_tolerance, "value")
    assert_relative(gradient, expected_gradient, gradient_tolerance, "gradient")


def test_float32_sums_are_as_accurate_as_the_official_float32_form():
    p = torch.randn(2048, 64, dtype=F64) * 2
    exact = sums_reference(p, 17, 3.0)
    ours = characteristic_sums(p.float(), knots=17, t_max=3.0)
    official = sums_reference(p.float(), 17, 3.0)
    for actual, plain, truth in zip(ours, official, exact, strict=True):
        assert relative_error(actual, truth) <= 4 * relative_error(plain, truth) + 1e-7


def test_autocast_does_not_lower_the_precision():
    z = torch.randn(256, 16)
    directions = torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = sliced_epps_pulley(z, directions, knots=17, t_max=3.0)
    assert value.dtype == torch.float32
    assert_relative(value, sigreg_loss_reference(z.double(), directions.double()), 1e-6)


# ------------------------------------------------------------------------------------------- autograd, torch.func


def test_gradcheck_and_gradgradcheck_of_the_sums():
    p = (torch.randn(6, 3, dtype=F64) * 1.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: characteristic_sums(p, knots=7, t_max=3.0), (p,))
    assert torch.autograd.gradgradcheck(lambda p: characteristic_sums(p, knots=7, t_max=3.0), (p,))


def test_gradcheck_and_gradgradcheck_of_sigreg():
    z = torch.randn(2, 7, 4, dtype=F64).requires_grad_(True)
    directions = torch.randn(4, 5, dtype=F64)
    assert torch.autograd.gradcheck(lambda z: sliced_epps_pulley(z, directions, knots=9, t_max=3.0), (z,))
    assert torch.autograd.gradgradcheck(lambda z: sliced_epps_pulley(z, directions, knots=9, t_max=3.0), (z,))


def test_sigreg_second_derivatives_match_autograd_through_the_reference():
    z = torch.randn(11, 5, dtype=F64).requires_grad_(True)
    directions = torch.randn(5, 6, dtype=F64)
    upstream = torch.randn(11, 5, dtype=F64)
    results = []
    for function in (lambda z: sliced_epps_pulley(z, directions, knots=17, t_max=3.0), sigreg_loss_reference):
        value = function(z) if function is not sigreg_loss_reference else function(z, directions)
        (gradient,) = torch.autograd.grad(value, z, create_graph=True)
        results.append(torch.autograd.grad((gradient * upstream).sum(), z)[0])
    assert_relative(*results, 1e-10)


TRANSFORMS = {
    "grad": torch.func.grad,
    "jacrev": torch.func.jacrev,
    "jacfwd": torch.func.jacfwd,
    "hessian": torch.func.hessian,
    "jacrev(jacrev)": lambda function: torch.func.jacrev(torch.func.jacrev(function)),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_sigreg_torch_func_transforms(transform):
    z = torch.randn(9, 5, dtype=F64)
    directions = torch.randn(5, 4, dtype=F64)
    actual = TRANSFORMS[transform](lambda z: sliced_epps_pulley(z, directions, knots=9, t_max=3.0))(z)
    expected = TRANSFORMS[transform](lambda z: sigreg_loss_reference(z, directions, knots=9))(z)
    assert_relative(actual, expected, 1e-10)


def test_sigreg_torch_func_vjp_and_vmap():
    p = torch.randn(4, 9, 3, dtype=F64)
    upstream = (torch.randn(4, 3, 17, dtype=F64), torch.randn(4, 3, 17, dtype=F64))
    (_, pullback) = torch.func.vjp(lambda p: characteristic_sums(p, knots=17, t_max=3.0), p)
    (expected_outputs, expected_pullback) = torch.func.vjp(lambda p: sums_reference(p, 17, 3.0), p)
    assert_relative(pullback(upstream)[0], expected_pullback(upstream)[0], 1e-10)
    batched = torch.func.vmap(lambda p: characteristic_sums(p, knots=17, t_max=3.0))(p)
    for actual, expected in zip(batched, expected_outputs, strict=True):
        assert_relative(actual, expected, 1e-10)


# --------------------------------------------------------------------------------------------- torch.compile


def test_sigreg_compiles_without_graph_breaks_once_for_every_batch_size():
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    directions = torch.randn(10, 16)

    def step(z):
        return sliced_epps_pulley(z, directions, knots=17, t_max=3.0)

    compiled = torch.compile(step, backend=counter, fullgraph=True, dynamic=True)  # raises on a graph break
    for n in (9, 16, 37):
        z = torch.randn(n, 10, requires_grad=True)
        value = compiled(z)
        (gradient,) = torch.autograd.grad(value, z)
        expected = step(z)
        (expected_gradient,) = torch.autograd.grad(expected, z)
        assert_relative(value, expected, 1e-6, f"value, N = {n}")
        assert_relative(gradient, expected_gradient, 1e-5, f"gradient, N = {n}")
    assert counter.frame_count == 1
