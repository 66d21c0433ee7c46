"""SIGReg: the golden values of the official code, the reference, the characteristic-function sums of
:mod:`redundancy._ops.sigreg` (precision, autograd, :mod:`torch.func`, ``torch.compile``, shards), and the public
:func:`redundancy.sigreg_loss`: the formula's properties, where its directions come from, and three gloo ranks with
uneven shards (the directions the same on every rank, or an error on every rank)."""

import json
import pathlib

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import redundancy
import redundancy._ops.sigreg as sigreg_ops
from benchmarks.common import spawn_gloo
from redundancy._ops.sigreg import characteristic_sums
from redundancy._ops.sigreg import draw_directions
from redundancy._ops.sigreg import epps_pulley_from_sums
from redundancy._ops.sigreg import knot_values
from redundancy._ops.sigreg import sliced_epps_pulley
from redundancy._ops.sigreg import trapezoid_weights
from redundancy.reference import lejepa_loss_reference
from redundancy.reference import lejepa_terms_reference
from redundancy.reference import sigreg_loss_reference
from tests.utils import assert_relative
from tests.utils import relative_error

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


# ============================================================================================ the public function


@pytest.mark.parametrize("case", GOLDEN["sigreg"], ids=lambda case: case["name"])
def test_sigreg_loss_reproduces_the_official_value_and_gradient(case):
    """``case["z"]`` is ``(N, D)`` or, for the ``views`` case, ``(V, N, D)``: both shapes, through the function."""
    z, directions = tensor(case["z"]).requires_grad_(True), tensor(case["directions"])
    value = redundancy.sigreg_loss(z, directions=directions, knots=case["knots"], t_max=case["t_max"])
    (gradient,) = torch.autograd.grad(value, z)
    assert_relative(value, torch.tensor(case["official"], dtype=F64), 1e-10, "value")
    assert_relative(gradient, tensor(case["official_grad_z"]), 1e-10, "gradient")


def test_sigreg_loss_draws_what_the_official_slicing_test_draws():
    drawn = GOLDEN["drawn"]
    z = tensor(drawn["z_float32"]).float()
    generator = torch.Generator().manual_seed(drawn["seed"])
    value = redundancy.sigreg_loss(z, num_slices=drawn["num_slices"], generator=generator)
    assert value.dtype == torch.float32
    assert_relative(value, torch.tensor(drawn["official_float32"], dtype=F64), 1e-6, "value")
    # The generator advanced by exactly one draw of (D, num_slices) float32 numbers.
    again = torch.Generator().manual_seed(drawn["seed"])
    torch.randn((6, drawn["num_slices"]), generator=again)
    assert torch.equal(generator.get_state(), again.get_state())


@pytest.mark.parametrize("shape", [(37, 70), (3, 11, 9), (1, 4)])
def test_sigreg_loss_equals_the_reference_on_drawn_directions(shape):
    z = torch.randn(*shape, dtype=F64) * 1.3
    value = redundancy.sigreg_loss(z, num_slices=24, generator=torch.Generator().manual_seed(4))
    expected = sigreg_loss_reference(z, num_slices=24, generator=torch.Generator().manual_seed(4))
    assert_relative(value, expected, 1e-10)


def test_without_a_generator_the_default_generator_of_the_device_draws():
    z = torch.randn(40, 8, dtype=F64)
    torch.manual_seed(12)
    value = redundancy.sigreg_loss(z, num_slices=16)
    torch.manual_seed(12)
    expected = sigreg_loss_reference(z, num_slices=16)
    assert_relative(value, expected, 1e-10)
    assert not torch.equal(redundancy.sigreg_loss(z, num_slices=16), value)  # a new draw at every call


def test_vmap_draws_once_for_all_problems_with_randomness_same_and_says_so_otherwise():
    z = torch.randn(3, 20, 5, dtype=F64)
    torch.manual_seed(7)
    batched = torch.func.vmap(lambda x: redundancy.sigreg_loss(x, num_slices=8), randomness="same")(z)
    torch.manual_seed(7)
    directions = torch.randn(5, 8)
    assert_relative(batched, torch.stack([redundancy.sigreg_loss(x, directions=directions) for x in z]), 1e-12)
    with pytest.raises(RuntimeError, match="vmap: called random operation"):
        torch.func.vmap(redundancy.sigreg_loss)(z)


def test_sigreg_module_equals_the_function():
    z = torch.randn(3, 30, 8, dtype=F64).requires_grad_(True)
    directions = torch.randn(8, 20, dtype=F64)
    module = redundancy.SIGRegLoss(knots=9, t_max=2.5, directions=directions)
    value = redundancy.sigreg_loss(z, knots=9, t_max=2.5, directions=directions)
    assert torch.equal(module(z), value)
    assert "knots=9" in repr(module) and "t_max=2.5" in repr(module)


# -------------------------------------------------------------------------------------------- the formula


def _sigreg(z, directions, **options):
    return redundancy.sigreg_loss(z, directions=directions, **options)


def test_the_loss_is_the_mean_of_one_statistic_per_slice_and_per_view():
    z = torch.randn(2, 25, 6, dtype=F64)
    directions = torch.randn(6, 5, dtype=F64)
    slices = [_sigreg(view, directions[:, m : m + 1]) for view in z for m in range(5)]
    assert_relative(_sigreg(z, directions), torch.stack(slices).mean(), 1e-13)


def test_directions_are_normalized_and_their_signs_do_not_matter():
    z = torch.randn(30, 6, dtype=F64) + 0.3
    directions = torch.randn(6, 7, dtype=F64)
    flips = torch.tensor([1.0, -1.0, 2.0, -0.5, 3.0, 1.0, -7.0], dtype=F64)
    assert_relative(_sigreg(z, directions * flips), _sigreg(z, directions), 1e-13)


def test_rows_in_any_order_and_the_reflected_batch_give_the_same_value():
    z = torch.randn(30, 6, dtype=F64) + 0.3
    directions = torch.randn(6, 7, dtype=F64)
    assert_relative(_sigreg(z[torch.randperm(30)], directions), _sigreg(z, directions), 1e-13)
    assert_relative(_sigreg(-z, directions), _sigreg(z, directions), 1e-13)  # sines change sign, squares do not


def test_a_batch_repeated_has_the_same_characteristic_function_and_twice_the_statistic():
    z = torch.randn(30, 6, dtype=F64)
    directions = torch.randn(6, 7, dtype=F64)
    assert_relative(_sigreg(torch.cat([z, z, z]), directions), 3 * _sigreg(z, directions), 1e-13)


def test_gaussian_samples_score_low_and_collapsed_ones_high():
    generator = torch.Generator().manual_seed(0)
    gaussian = torch.randn(4096, 16, generator=generator, dtype=F64)
    directions = torch.randn(16, 64, generator=generator, dtype=F64)
    collapsed = gaussian[:, :1].expand(-1, 16) / 4  # rank one
    # E[T_m] = ∫ e^{-t²/2} (1 - e^{-t²}) dt over [-3, 3] ≈ 1.06 for Gaussian samples, whatever N
    assert 0.8 < _sigreg(gaussian, directions) < 1.3
    assert _sigreg(collapsed, directions) > 100 * _sigreg(gaussian, directions)


def test_the_n_m_k_tensor_is_never_saved_for_backward():
    """Autograd keeps nothing of N×M×K elements (the official formula keeps its cosines and sines)."""
    n, d, m, k = 512, 16, 64, 17
    z = torch.randn(n, d, requires_grad=True)
    directions = torch.randn(d, m)
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        redundancy.sigreg_loss(z, directions=directions, knots=k).backward()
    assert max(sizes) <= n * max(d, m)
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        sigreg_loss_reference(z, directions, knots=k).backward()
    assert max(sizes) >= n * m * k  # what the official formula keeps


# --------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_projected_on_float32_directions(dtype):
    """Half-precision embeddings: the directions are drawn in float32 and the sums taken in float32, so the value is
    that of the same (rounded) embeddings in float32; lightly draws its directions in the input's dtype."""
    z = torch.randn(300, 12).to(dtype).requires_grad_(True)
    value = redundancy.sigreg_loss(z, generator=torch.Generator().manual_seed(1))
    expected = redundancy.sigreg_loss(z.detach().float(), generator=torch.Generator().manual_seed(1))
    assert value.dtype == torch.float32 and torch.equal(value, expected)
    (gradient,) = torch.autograd.grad(value, z)
    assert gradient.dtype == dtype


def test_half_precision_directions_are_normalized_in_the_compute_dtype():
    z = torch.randn(64, 10, dtype=F64)
    directions = torch.randn(10, 6).to(torch.bfloat16)
    assert_relative(_sigreg(z, directions), _sigreg(z, directions.double()), 1e-15)


# ---------------------------------------------------------------------------------------- options, errors

BAD_OPTIONS = [
    ({"directions": torch.randn(5, 3)}, ValueError, r"directions must have one row per feature, shape \(D, M\)"),
    ({"directions": torch.randn(6)}, ValueError, r"directions must be 2-D of shape \(D, M\)"),
    ({"directions": torch.zeros(6, 0)}, ValueError, r"directions must be 2-D of shape \(D, M\) with D, M >= 1"),
    ({"directions": torch.ones(6, 3, dtype=torch.long)}, TypeError, "directions must have a floating-point dtype"),
    ({"directions": [[1.0]]}, TypeError, "directions must be None or a torch.Tensor"),
    ({"generator": 0}, TypeError, "generator must be None or a torch.Generator, got int"),
    (
        {"directions": torch.randn(6, 3), "generator": torch.Generator()},
        ValueError,
        "pass directions or generator, not both",
    ),
    ({"knots": 1}, ValueError, r"knots must be at least 2"),
    ({"knots": 17.0}, TypeError, "knots must be an integer"),
    ({"num_slices": 0}, ValueError, "num_slices must be positive"),
    ({"t_max": 0.0}, ValueError, "t_max must be positive"),
]


@pytest.mark.parametrize(("options", "error", "match"), BAD_OPTIONS)
def test_sigreg_bad_options_raise_naming_the_option(options, error, match):
    with pytest.raises(error, match=match):
        redundancy.sigreg_loss(torch.randn(8, 6), **options)
    if "directions" not in options or "generator" in options:  # the Module checks what it can at construction
        with pytest.raises(error, match=match.split(",")[0]):
            redundancy.SIGRegLoss(**options)


@pytest.mark.parametrize(
    ("z", "error", "match"),
    [
        (torch.randn(8), ValueError, r"z must be 2-D of shape \(N, D\), got shape \(8,\)"),
        (torch.randn(0, 8, 6), ValueError, "z of shape \\(V, N, D\\) needs at least one view"),
        (torch.randn(2, 0, 6), ValueError, r"z\[0\] needs a batch of at least 1 rows"),
        (torch.ones(2, 3, 6, dtype=torch.long), TypeError, r"z\[0\] must have a floating-point dtype"),
        ([[1.0]], TypeError, "z must be a torch.Tensor"),
    ],
)
def test_bad_embeddings_raise_naming_them(z, error, match):
    with pytest.raises(error, match=match):
        redundancy.sigreg_loss(z)


def test_a_generator_is_refused_under_torch_compile_naming_the_way_out():
    torch._dynamo.reset()
    generator = torch.Generator().manual_seed(0)
    compiled = torch.compile(lambda z: redundancy.sigreg_loss(z, generator=generator), fullgraph=True, backend="eager")
    with pytest.raises(Exception, match=r"torch.compile cannot trace a torch.Generator.*pass them as directions="):
        compiled(torch.randn(8, 6))
    torch._dynamo.reset()


def test_compiled_with_the_default_generator_draws_as_eager():
    torch._dynamo.reset()
    compiled = torch.compile(redundancy.sigreg_loss, fullgraph=True, backend="aot_eager")
    z = torch.randn(32, 6, requires_grad=True)
    torch.manual_seed(3)
    value = compiled(z, num_slices=8)
    torch.manual_seed(3)
    expected = redundancy.sigreg_loss(z, num_slices=8)
    assert_relative(value, expected, 1e-6)
    torch._dynamo.reset()


def test_calls_with_a_directions_tensor_are_not_remembered_by_the_option_cache():
    """The frame remembers checked options by the values that gave them; a directions tensor (a new one each step)
    would be kept alive there, up to thousands of them."""
    from redundancy import _frame

    _frame._CHECKED.clear()
    z = torch.randn(16, 6)
    for _ in range(5):
        redundancy.sigreg_loss(z, directions=torch.randn(6, 4))
    assert not any(isinstance(value, torch.Tensor) for key in _frame._CHECKED for _, value in key[1])
    redundancy.sigreg_loss(z, generator=torch.Generator().manual_seed(0))  # a generator holds no tensor: remembered
    assert len(_frame._CHECKED) == 1


# ========================================================================================= three gloo ranks

WORLD_SIZE = 3
SHARDS = (4, 0, 7)  # uneven, with an empty rank that is not rank 0
EQUAL = (3, 3, 3)  # for the compiled calls (a compiled graph needs as many rows on every rank) and local calls
DIM, SLICES = 6, 10
UPSTREAM = 0.7


def _batch(shards=SHARDS, views: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(31)
    shape = (sum(shards), DIM) if views == 0 else (views, sum(shards), DIM)
    return torch.randn(*shape, generator=generator, dtype=F64) * 1.2 + 0.4


def _directions(shift: float = 0.0) -> torch.Tensor:
    return torch.randn(DIM, SLICES, generator=torch.Generator().manual_seed(32), dtype=F64) + shift


def _rows(rank: int, shards=SHARDS) -> slice:
    return slice(sum(shards[:rank]), sum(shards[: rank + 1]))


def _own(z: torch.Tensor, rank: int, shards=SHARDS) -> torch.Tensor:
    return z[..., _rows(rank, shards), :]


def _value_and_grad(function, z: torch.Tensor, **options):
    leaf = z.clone().requires_grad_(True)
    value = function(leaf, **options)
    (value * UPSTREAM).backward()
    return value.detach(), leaf.grad


def _outcome(function):
    """What ``function()`` returned, or ``"ExceptionType: message"`` of what it raised."""
    try:
        return function()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"


def _rng_after_one_draw(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    torch.randn(DIM, SLICES)
    return torch.get_rng_state()


def _sigreg_rank(rank: int, world_size: int) -> dict:
    import torch.distributed as dist

    sigreg = redundancy.sigreg_loss
    z, views, directions = _own(_batch(), rank), _own(_batch(views=2), rank), _directions()
    records: dict = {}
    for convention in ("global", "official"):
        records["directions", convention] = _value_and_grad(
            sigreg, z, directions=directions, gradient_convention=convention
        )
    records["views"] = _value_and_grad(sigreg, views, directions=directions)
    records["generator"] = _value_and_grad(sigreg, z, generator=torch.Generator().manual_seed(5), num_slices=SLICES)
    torch.manual_seed(100 + rank)  # every rank's default generator in another state: the first rank's draw is used
    records["default"] = _value_and_grad(sigreg, z, num_slices=SLICES)
    records["default_rng_advanced"] = torch.equal(torch.get_rng_state(), _rng_after_one_draw(100 + rank))
    local = _own(_batch(EQUAL), rank, EQUAL)
    records["local"] = _value_and_grad(sigreg, local, directions=directions, distributed="local")

    faulty = rank == 2
    faults = {
        "directions_differ": lambda: sigreg(z, directions=_directions(1.0 if faulty else 0.0)),
        "generator_differs": lambda: sigreg(z, generator=torch.Generator().manual_seed(6 if faulty else 5)),
        "generator_on_one_rank": lambda: sigreg(z, generator=torch.Generator() if faulty else None),
        "both_on_one_rank": lambda: sigreg(z, directions=directions, generator=torch.Generator() if faulty else None),
        "views_on_one_rank": lambda: sigreg(views if faulty else z, directions=directions),
        "directions_rows": lambda: sigreg(z, directions=torch.ones(DIM + 1, 3, dtype=F64)),
    }
    for fault, call in faults.items():
        records[fault] = _outcome(call)
        records[fault, "next"] = _outcome(lambda: sigreg(z, directions=directions).detach())

    def penalty():
        leaf = z.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(sigreg(leaf, directions=directions), leaf, create_graph=True)
        return gradient.square().sum()

    records["create_graph"] = _outcome(penalty)

    # Under the collective timeout the broadcast of the draw and the sums meet the others in the store first.
    with redundancy.set_collective_timeout(30):
        torch.manual_seed(100 + rank)
        records["default_under_timeout"] = _value_and_grad(sigreg, z, num_slices=SLICES)

    # The first rank of a subgroup draws for it.
    subgroup = dist.new_group([1, 2])
    if rank in (1, 2):
        torch.manual_seed(300 + rank)
        records["subgroup"] = _value_and_grad(sigreg, z, num_slices=SLICES, group=subgroup)

    # Compiled inside the group (equal shards): given directions (compared on the device), the default generator.
    equal = _own(_batch(EQUAL), rank, EQUAL)
    torch._dynamo.reset()
    compiled = torch.compile(sigreg, fullgraph=True, backend="aot_eager")
    records["compiled_directions"] = _outcome(lambda: _value_and_grad(compiled, equal, directions=directions))
    torch.manual_seed(200 + rank)
    records["compiled_default"] = _outcome(lambda: _value_and_grad(compiled, equal, num_slices=SLICES))
    records["compiled_mismatch"] = _outcome(
        lambda: compiled(equal, directions=_directions(1.0 if faulty else 0.0)).detach()
    )
    torch._dynamo.reset()
    return records


@pytest.fixture(scope="module")
def sigreg_ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_sigreg_rank, WORLD_SIZE, tmp_path_factory.mktemp("sigreg"), timeout=60.0)


def _one_process(z: torch.Tensor, **options):
    return _value_and_grad(redundancy.sigreg_loss, z, **options)


def _assert_global(records, expected, what: str, shards=SHARDS, ranks=range(WORLD_SIZE), factor=WORLD_SIZE):
    """Every rank's value is one process's on the concatenated batch; its gradient ``factor`` times its rows'."""
    value, gradient = expected
    for rank in ranks:
        rank_value, rank_gradient = records[rank]
        assert_relative(rank_value, value, 1e-10, f"{what}: value of rank {rank}")
        assert torch.equal(rank_value, records[ranks[0]][0]), f"{what}: rank {rank} differs from rank {ranks[0]}"
        assert rank_gradient.shape == _own(gradient, rank, shards).shape
        if shards[rank]:
            own = _own(gradient, rank, shards)
            assert_relative(rank_gradient, factor * own, 1e-9, f"{what}: gradient of rank {rank}")


@pytest.mark.distributed
@pytest.mark.parametrize("convention", ["global", "official"])
def test_every_rank_has_the_loss_of_the_global_batch_with_given_directions(sigreg_ranks, convention):
    expected = _one_process(_batch(), directions=_directions())
    factor = WORLD_SIZE if convention == "global" else 1
    _assert_global([r["directions", convention] for r in sigreg_ranks], expected, convention, factor=factor)


@pytest.mark.distributed
def test_stacked_views_over_the_ranks(sigreg_ranks):
    expected = _one_process(_batch(views=2), directions=_directions())
    _assert_global([r["views"] for r in sigreg_ranks], expected, "(V, N, D)")


@pytest.mark.distributed
def test_a_generator_in_the_same_state_on_every_rank(sigreg_ranks):
    expected = _one_process(_batch(), generator=torch.Generator().manual_seed(5), num_slices=SLICES)
    _assert_global([r["generator"] for r in sigreg_ranks], expected, "generator")


@pytest.mark.distributed
def test_the_default_generators_draw_is_the_first_ranks_and_every_generator_advances(sigreg_ranks):
    torch.manual_seed(100)  # rank 0's state
    expected = _one_process(_batch(), num_slices=SLICES)
    _assert_global([r["default"] for r in sigreg_ranks], expected, "default generator")
    assert all(r["default_rng_advanced"] for r in sigreg_ranks)


@pytest.mark.distributed
def test_the_broadcast_draw_under_the_collective_timeout(sigreg_ranks):
    torch.manual_seed(100)
    expected = _one_process(_batch(), num_slices=SLICES)
    _assert_global([r["default_under_timeout"] for r in sigreg_ranks], expected, "default generator, timeout")


@pytest.mark.distributed
def test_the_first_rank_of_a_subgroup_draws_for_it(sigreg_ranks):
    rows = torch.cat([_own(_batch(), 1), _own(_batch(), 2)])
    torch.manual_seed(301)  # the subgroup's first rank is rank 1
    expected = _one_process(rows, num_slices=SLICES)
    records = {rank: sigreg_ranks[rank]["subgroup"] for rank in (1, 2)}
    shards = (0, SHARDS[1], SHARDS[2])  # rank 1's rows come first in the subgroup
    _assert_global(records, expected, "subgroup", shards=shards, ranks=[1, 2], factor=2)


@pytest.mark.distributed
def test_a_local_call_is_each_ranks_own_loss(sigreg_ranks):
    for rank, records in enumerate(sigreg_ranks):
        expected = _one_process(_own(_batch(EQUAL), rank, EQUAL), directions=_directions())
        assert_relative(records["local"][0], expected[0], 1e-12, f"rank {rank}")
        assert_relative(records["local"][1], expected[1], 1e-12, f"rank {rank}")


FAULTS = {
    "directions_differ": "ValueError: directions must be the same on every rank of the process group, got directions "
    "= ['a tensor of fingerprint",
    "generator_differs": "ValueError: generator must be the same on every rank of the process group, got generator = "
    "['a generator in a state of fingerprint",
    "generator_on_one_rank": "ValueError: generator must be the same on every rank",
    "both_on_one_rank": "ValueError: pass directions or generator, not both",
    "views_on_one_rank": "ValueError: the views of z must be the same on every rank of the process group, got the "
    "views of z = ['none (2-D)', 'none (2-D)', '2 (3-D)']",
    "directions_rows": "ValueError: directions must have one row per feature, shape (D, M) = (6, M), got (7, 3)",
}


@pytest.mark.distributed
@pytest.mark.parametrize("fault", list(FAULTS))
def test_sigreg_a_fault_on_one_rank_raises_on_every_rank_and_the_next_call_is_in_step(sigreg_ranks, fault):
    expected, _ = _one_process(_batch(), directions=_directions())
    for rank, records in enumerate(sigreg_ranks):
        assert isinstance(records[fault], str) and FAULTS[fault] in records[fault], f"rank {rank}: {records[fault]}"
        if fault == "both_on_one_rank":  # rank 2's own check failed: every rank raises its error, naming it
            assert "(on rank 2)" in records[fault], records[fault]
        elif fault != "directions_rows":  # values that differ: every rank lists them, rank by rank
            assert "on ranks 0..2" in records[fault], records[fault]
        assert_relative(records[fault, "next"], expected, 1e-10, f"rank {rank}, the call after {fault}")


@pytest.mark.distributed
def test_sigreg_second_derivatives_across_ranks_are_refused(sigreg_ranks):
    for rank, records in enumerate(sigreg_ranks):
        assert (
            "second derivatives (create_graph=True, torch.func transforms) are not supported" in records["create_graph"]
        ), f"rank {rank}"


@pytest.mark.distributed
@pytest.mark.slow
def test_compiled_in_the_group_with_given_directions_and_the_default_generator(sigreg_ranks):
    expected = _one_process(_batch(EQUAL), directions=_directions())
    records = [r["compiled_directions"] for r in sigreg_ranks]
    assert not any(isinstance(record, str) for record in records), records
    _assert_global(records, expected, "compiled, directions", shards=EQUAL)
    torch.manual_seed(200)
    expected = _one_process(_batch(EQUAL), num_slices=SLICES)
    records = [r["compiled_default"] for r in sigreg_ranks]
    assert not any(isinstance(record, str) for record in records), records
    _assert_global(records, expected, "compiled, default generator", shards=EQUAL)


@pytest.mark.distributed
@pytest.mark.slow
def test_compiled_directions_that_differ_fail_on_every_rank(sigreg_ranks):
    for rank, records in enumerate(sigreg_ranks):
        message = records["compiled_mismatch"]
        assert isinstance(message, str) and "directions differ between the ranks" in message, f"rank {rank}: {message}"
