"""Barlow Twins against the reference: values, gradients, dtypes, layouts, edge cases, the Module, bad inputs.

What every loss of the family shares (every option choice against the reference, second derivatives, torch.func,
compiled forms, several ranks) is tested by ``tests/family.py``; this file holds what is particular to Barlow Twins.
"""

import itertools

import pytest
import torch

import redundancy
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import barlow_twins_terms_reference
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import STANDARDIZATIONS
from tests.utils import assert_relative
from tests.utils import relative_error

ALGORITHMS = ["cross", "gram"]
SHAPES = list(itertools.product([2, 3, 37, 256], [1, 2, 70, 512]))
# Options that each published variant uses (DESIGN §2).
VARIANTS = {
    "official": {},
    "algorithm1": {"correction": 1, "eps": 0.0},
    "hsic": {"off_diagonal_target": -1.0},
    "lambd_auto": {"lambd": "auto"},
    "solo_scale": {"lambd": 5e-3, "scale": 0.025},
    "none": {"standardize": False},
}


def _views(n, d, dtype=torch.float64, correlated=True):
    z1 = torch.randn(n, d, dtype=torch.float64) * 2 + 0.5
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d, dtype=torch.float64) if correlated else torch.randn(n, d)
    return z1.to(dtype), z2.to(dtype)


def _reference_gradients(z1, z2, upstream=1.0, **options):
    z1 = z1.detach().double().requires_grad_(True)
    z2 = z2.detach().double().requires_grad_(True)
    loss = barlow_twins_loss_reference(z1, z2, **options)
    g1, g2 = torch.autograd.grad(loss, (z1, z2), torch.tensor(upstream, dtype=torch.float64))
    return loss.detach(), g1, g2


# ------------------------------------------------------------------------------------------- float64 exactness


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_barlow_twins_float64_equals_official_formula(n, d, algorithm):
    z1, z2 = _views(n, d)
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
    assert_relative(loss, barlow_twins_loss_reference(z1, z2), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("n", "d"), [(3, 2), (37, 70), (5, 130)])
def test_barlow_twins_float64_variants_equal_their_formula(n, d, variant, algorithm):
    z1, z2 = _views(n, d)
    options = VARIANTS[variant]
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, **options)
    assert_relative(loss, barlow_twins_loss_reference(z1, z2, **options), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", ["official", "algorithm1", "hsic"])
def test_barlow_twins_terms_equal_reference_terms(variant, algorithm):
    z1, z2 = _views(37, 70)
    options = {k: v for k, v in VARIANTS[variant].items() if k not in ("lambd", "scale")}
    terms = redundancy.barlow_twins_terms(z1, z2, algorithm=algorithm, lambd=0.3, scale=2.0, **options)
    invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, **options)
    assert_relative(terms.invariance, invariance, 1e-10, "invariance")
    assert_relative(terms.redundancy, redundancy_term, 1e-10, "redundancy")
    assert_relative(terms.loss, 2.0 * (invariance + 0.3 * redundancy_term), 1e-10, "loss")
    assert torch.equal(
        terms.loss, redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, lambd=0.3, scale=2.0, **options)
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("n", "d"), [(2, 3), (37, 70), (5, 130), (256, 512)])
def test_float64_gradients_equal_autograd_through_reference(n, d, variant, algorithm):
    z1, z2 = _views(n, d)
    options = VARIANTS[variant]
    _, g1_ref, g2_ref = _reference_gradients(z1, z2, **options)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    g1, g2 = torch.autograd.grad(redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, **options), (z1, z2))
    if n == 2 and options.get("eps") == 0.0:
        # Two rows standardized without eps are ±1/√2 whatever z is: the true gradient is 0.
        assert g1.abs().max() < 1e-12 and g2.abs().max() < 1e-12
        return
    assert_relative(g1, g1_ref, 1e-8, "dz1")
    assert_relative(g2, g2_ref, 1e-8, "dz2")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("standardization", STANDARDIZATIONS)
@pytest.mark.parametrize("target", [0.0, -1.0])
@pytest.mark.parametrize(("n", "d"), [(6, 4), (4, 7)])
def test_barlow_twins_gradcheck(n, d, standardization, target, algorithm):
    z1, z2 = _views(n, d)
    z1.requires_grad_(True)
    z2.requires_grad_(True)

    def loss(a, b):
        return redundancy.barlow_twins_loss(
            a, b, algorithm=algorithm, **STANDARDIZATIONS[standardization], off_diagonal_target=target, lambd=0.3
        )

    assert torch.autograd.gradcheck(loss, (z1, z2))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gradcheck_of_each_term(algorithm):
    z1, z2 = _views(5, 6)
    z1.requires_grad_(True)
    z2.requires_grad_(True)

    def terms(a, b):
        t = redundancy.barlow_twins_terms(a, b, algorithm=algorithm, off_diagonal_target=0.5)
        return t.invariance, t.redundancy

    assert torch.autograd.gradcheck(terms, (z1, z2))


# ------------------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("n", "d"), [(37, 70), (5, 130), (256, 512)])
def test_barlow_twins_dtype_tolerance_table(n, d, dtype, algorithm):
    z1, z2 = _views(n, d, dtype)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
    assert loss.dtype == torch.float32
    loss_ref, g1_ref, g2_ref = _reference_gradients(z1, z2)
    assert_relative(loss, loss_ref, LOSS_RTOL[dtype], "loss")
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    assert g1.dtype == g2.dtype == dtype
    rtol, atol = GRAD_TOL[dtype]
    finfo = torch.finfo(dtype)
    subnormal_step = finfo.smallest_normal * finfo.eps  # gradients this small are rounded to this step
    for g, g_ref in [(g1, g1_ref), (g2, g2_ref)]:
        atol_g = max(atol * g_ref.abs().max().item(), subnormal_step)
        torch.testing.assert_close(g, g_ref.to(dtype), rtol=rtol, atol=atol_g)


def test_float32_within_1e5_of_float64_on_float64_inputs():
    z1, z2 = _views(256, 512)
    for algorithm in ALGORITHMS:
        loss32 = redundancy.barlow_twins_loss(z1.float(), z2.float(), algorithm=algorithm)
        loss64 = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
        assert_relative(loss32, loss64, 1e-5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fp16_inputs_of_magnitude_1e4_do_not_overflow(algorithm):
    z1 = torch.rand(64, 96, dtype=torch.float64) * 4 - 2
    z2 = 0.8 * z1 + 0.2 * (torch.rand(64, 96, dtype=torch.float64) * 4 - 2)
    z1, z2 = (z1 * 1e4).half(), (z2 * 1e4).half()  # |z| up to 2e4: finite in fp16, z² is not
    assert z1.abs().max() > 1e4 and torch.isfinite(z1).all() and torch.isfinite(z2).all()
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert_relative(loss, barlow_twins_loss_reference(z1, z2, upcast=True), 1e-5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_autocast_does_not_lower_the_accumulation(dtype, algorithm):
    z1, z2 = _views(37, 70, dtype)
    expected = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, expected)


# -------------------------------------------------------------------------------------------- layouts, upstream


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_barlow_twins_non_contiguous_inputs(algorithm):
    z1, z2 = _views(70, 37)
    z1t, z2t = z1.t(), z2[:, ::1].t()  # (37, 70), transposed views
    z3 = torch.randn(37, 140, dtype=torch.float64)[:, ::2]  # strided columns
    assert not z1t.is_contiguous() and not z3.is_contiguous()
    for a, b in [(z1t, z2t), (z1t, z3)]:
        loss = redundancy.barlow_twins_loss(a, b, algorithm=algorithm)
        assert_relative(loss, barlow_twins_loss_reference(a.contiguous(), b.contiguous()), 1e-10)
        _, g1_ref, g2_ref = _reference_gradients(a, b)
        a_leaf, b_leaf = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
        g1, g2 = torch.autograd.grad(
            redundancy.barlow_twins_loss(a_leaf, b_leaf, algorithm=algorithm), (a_leaf, b_leaf)
        )
        assert_relative(g1, g1_ref, 1e-8)
        assert_relative(g2, g2_ref, 1e-8)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_upstream_gradient_not_one(algorithm):
    z1, z2 = _views(37, 70)
    _, g1_ref, g2_ref = _reference_gradients(z1, z2, upstream=-2.7, off_diagonal_target=-1.0)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, off_diagonal_target=-1.0)
    loss.backward(torch.tensor(-2.7, dtype=torch.float64))
    assert_relative(z1.grad, g1_ref, 1e-8)
    assert_relative(z2.grad, g2_ref, 1e-8)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_separate_upstream_gradients_of_the_terms(algorithm):
    z1, z2 = _views(37, 70)
    u, w = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.3, dtype=torch.float64)
    leaves = [z.detach().requires_grad_(True) for z in (z1, z2)]
    inv_ref, red_ref = barlow_twins_terms_reference(*leaves, off_diagonal_target=0.25)
    expected = torch.autograd.grad((inv_ref, red_ref), leaves, (u, w))
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    terms = redundancy.barlow_twins_terms(z1, z2, algorithm=algorithm, off_diagonal_target=0.25)
    actual = torch.autograd.grad((terms.invariance, terms.redundancy), (z1, z2), (u, w))
    for g, g_ref in zip(actual, expected, strict=True):
        assert_relative(g, g_ref, 1e-8)


def test_gradient_only_for_the_view_that_requires_it():
    z1, z2 = _views(8, 16)
    z1.requires_grad_(True)
    for algorithm in ALGORITHMS:
        (g1,) = torch.autograd.grad(redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm), (z1,))
        _, g1_ref, _ = _reference_gradients(z1, z2)
        assert_relative(g1, g1_ref, 1e-8)


def test_same_tensor_for_both_views():
    z = torch.randn(37, 70, dtype=torch.float64, requires_grad=True)
    for algorithm in ALGORITHMS:
        (g,) = torch.autograd.grad(redundancy.barlow_twins_loss(z, z, algorithm=algorithm), (z,))
        z_ref = z.detach().requires_grad_(True)
        (g_ref,) = torch.autograd.grad(barlow_twins_loss_reference(z_ref, z_ref), (z_ref,))
        assert_relative(g, g_ref, 1e-8)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("standardization", STANDARDIZATIONS)
@pytest.mark.parametrize("wanted", ["both", "z1", "z2"])
def test_retained_graph_backward_twice_and_inputs_untouched(wanted, standardization, algorithm):
    # Without retain_graph the Gram backward forms gradients in the memory of its own standardized views; with it,
    # a second backward must see those views intact, and the caller's inputs are never written.
    z1, z2 = _views(37, 70)
    inputs = z1.clone(), z2.clone()
    options = {**STANDARDIZATIONS[standardization], "off_diagonal_target": 0.25}
    _, g1_ref, g2_ref = _reference_gradients(z1, z2, **options)
    chosen = {"both": (0, 1), "z1": (0,), "z2": (1,)}[wanted]
    leaves, expected = [(z1, z2)[i] for i in chosen], [(g1_ref, g2_ref)[i] for i in chosen]
    for z in leaves:
        z.requires_grad_(True)
    loss = redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm, **options)
    first = torch.autograd.grad(loss, leaves, retain_graph=True)
    second = torch.autograd.grad(loss, leaves)
    for g_first, g_second, g_ref in zip(first, second, expected, strict=True):
        assert_relative(g_first, g_ref, 1e-8)
        assert_relative(g_second, g_first, 1e-12)
    for z, original in zip((z1, z2), inputs, strict=True):
        assert torch.equal(z.detach(), original)


def test_gram_backward_forms_one_gradient_in_its_own_standardized_view():
    # The memory claim of the Gram op: one new N×D tensor in the backward, the other gradient reuses a view.
    z1, z2 = (z.float().requires_grad_(True) for z in _views(37, 70))
    saved = []

    def keep(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = redundancy.barlow_twins_loss(z1, z2, algorithm="gram")
    own_views = {t.data_ptr() for t in saved if t.shape == z1.shape} - {z1.data_ptr(), z2.data_ptr()}
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    assert len(own_views) == 2
    assert g1.data_ptr() in own_views
    assert g2.data_ptr() not in own_views


# ------------------------------------------------------------------------------------------ semantics, edge cases


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_identical_views_leave_off_diagonal_energy(algorithm):
    z = torch.randn(16, 32, dtype=torch.float64)
    terms = redundancy.barlow_twins_terms(z, z, algorithm=algorithm)
    assert terms.invariance < 1e-6  # C_ii = var / (var + eps) ≈ 1
    assert terms.redundancy > 1.0
    assert_relative(terms.loss, barlow_twins_loss_reference(z, z), 1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_constant_column_adds_exactly_one_and_has_finite_gradients(algorithm):
    z1, z2 = _views(37, 70)
    z1[:, 5] = 3.0
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    terms = redundancy.barlow_twins_terms(z1, z2, algorithm=algorithm)
    c = redundancy.cross_correlation(z1.detach(), z2)
    assert c[5, 5] == 0
    keep = [i for i in range(70) if i != 5]
    diagonal = c.diagonal()[keep]
    assert_relative(terms.invariance, (1 - diagonal).square().sum() + 1, 1e-12)
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_finite_inputs_propagate_nan(algorithm):
    z1, z2 = _views(8, 16)
    z1[3, 2] = float("nan")
    assert torch.isnan(redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm))
    z1[3, 2] = float("inf")
    assert not torch.isfinite(redundancy.barlow_twins_loss(z1, z2, algorithm=algorithm))


def test_algorithm1_with_eps_zero_has_no_eps():
    z1, z2 = _views(37, 70)
    a = (z1 - z1.mean(0)) / z1.std(0)
    b = (z2 - z2.mean(0)) / z2.std(0)
    c = a.T @ b / 37
    expected = (1 - c.diagonal()).pow(2).sum() + 0.0051 * (c.pow(2).sum() - c.diagonal().pow(2).sum())
    assert_relative(redundancy.barlow_twins_loss(z1, z2, correction=1, eps=0.0), expected, 1e-10)


# ------------------------------------------------------------------------------------------------- bad inputs

GOOD = torch.randn(8, 4)

BAD_INPUTS = [
    ((GOOD.numpy(), GOOD), {}, TypeError, r"z1 must be a torch\.Tensor"),
    ((GOOD, GOOD.long()), {}, TypeError, r"z2 must have a floating-point dtype, got torch\.int64"),
    ((GOOD[0], GOOD), {}, ValueError, r"z1 must be 2-D of shape \(N, D\), got shape \(4,\)"),
    ((GOOD, GOOD.view(8, 4, 1)), {}, ValueError, r"z2 must be 2-D"),
    ((GOOD, GOOD[:, :3]), {}, ValueError, r"z1 and z2 must have the same shape, got z1 \(8, 4\) and z2 \(8, 3\)"),
    ((GOOD[:1], GOOD[:1]), {}, ValueError, r"at least 2 rows, got shape \(1, 4\)"),
    ((GOOD[:, :0], GOOD[:, :0]), {}, ValueError, r"at least one feature column"),
    ((GOOD, GOOD.to("meta")), {}, ValueError, r"z2 is on the meta device, which holds no values"),
    ((GOOD, GOOD), {"lambd": -0.1}, ValueError, r"lambd must be non-negative, got -0\.1"),
    ((GOOD, GOOD), {"lambd": "half"}, TypeError, r"lambd must be a real number"),
    ((GOOD, GOOD), {"lambd": float("nan")}, ValueError, r"lambd must be finite"),
    ((GOOD, GOOD), {"scale": -1.0}, ValueError, r"scale must be non-negative"),
    ((GOOD, GOOD), {"eps": -1e-5}, ValueError, r"eps must be non-negative"),
    ((GOOD, GOOD), {"eps": True}, TypeError, r"eps must be a real number"),
    ((GOOD, GOOD), {"off_diagonal_target": float("inf")}, ValueError, r"off_diagonal_target must be finite"),
    ((GOOD, GOOD), {"correction": 2}, ValueError, r"correction must be 0 \(divide by N\) or 1 \(divide by N - 1\)"),
    ((GOOD, GOOD), {"correction": True}, ValueError, r"correction must be 0"),
    ((GOOD, GOOD), {"standardize": "yes"}, TypeError, r"standardize must be a bool, got str"),
    ((GOOD, GOOD), {"normalization": "batchnorm"}, TypeError, r"unexpected keyword argument 'normalization'"),
    ((GOOD, GOOD), {"algorithm": "fft"}, ValueError, r"algorithm must be one of \('auto', 'cross', 'gram'\)"),
    ((GOOD, GOOD), {"backend": "cuda"}, ValueError, r"backend must be one of"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        redundancy.barlow_twins_loss(*args, **kwargs)


# ------------------------------------------------------------------------------------------------- the Module


def test_barlow_twins_module_has_no_state_and_shows_its_options():
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
        (
            {"normalisation": "std"},
            TypeError,
            r"BarlowTwinsLoss\(\) got an unexpected keyword argument 'normalisation'",
        ),
        ({"algorithm": "dual"}, ValueError, "algorithm must be one of"),
        ({"scale": "big"}, TypeError, "scale must be a real number"),
    ],
)
def test_barlow_twins_module_bad_options_fail_at_construction(options, error, match):
    with pytest.raises(error, match=match):
        redundancy.BarlowTwinsLoss(**options)


# ------------------------------------------------------------------------------------------------- compiled


def _compiled_and_eager(step, backend: str):
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend=backend)  # raises on any graph break
    z1 = torch.randn(16, 24, requires_grad=True)
    z2 = torch.randn(16, 24, requires_grad=True)
    for fn in (compiled, step):
        loss = fn(z1, z2)
        loss.backward()
        yield loss.detach(), z1.grad.clone(), z2.grad.clone()
        z1.grad = z2.grad = None


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["cross", "gram"])
@pytest.mark.parametrize("standardize", [True, False])
def test_barlow_twins_compiles_without_graph_breaks(algorithm, standardize):
    def step(z1, z2):
        return redundancy.barlow_twins_loss(
            z1, z2, backend="torch", algorithm=algorithm, standardize=standardize, off_diagonal_target=-1.0
        )

    (loss, *grads), (eager, *eager_grads) = _compiled_and_eager(step, "aot_eager")
    assert relative_error(loss, eager) <= 1e-6
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        assert relative_error(grad, eager_grad) <= 1e-5


@pytest.mark.slow
def test_barlow_twins_compiles_with_inductor():
    def step(z1, z2):
        return redundancy.barlow_twins_terms(z1, z2, backend="torch", algorithm="cross").loss

    (loss, *grads), (eager, *eager_grads) = _compiled_and_eager(step, "inductor")
    assert relative_error(loss, eager) <= 1e-5
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        assert relative_error(grad, eager_grad) <= 1e-4
