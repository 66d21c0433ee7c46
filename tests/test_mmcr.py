"""MMCR: the golden values of the official code, the reference, the batched nuclear norm of
:mod:`redundancy._ops.nuclear_norm` (precision on nearly rank-deficient matrices, the gradient where singular values
vanish or repeat, second derivatives, :mod:`torch.func`, ``torch.compile``), and the public :func:`redundancy.mmcr_loss`
(the official values, lightly's unnormalized form, collapsed inputs, option errors, and three gloo ranks with uneven
shards: the nuclear norm of the global batch's centroids)."""

import json
import pathlib

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import redundancy
from benchmarks.common import spawn_gloo
from redundancy._ops.nuclear_norm import nuclear_norm
from redundancy.reference import mmcr_loss_reference
from redundancy.reference import mmcr_terms_reference
from tests.utils import assert_relative
from tests.utils import relative_error

GOLDEN = json.loads((pathlib.Path(__file__).resolve().parent / "golden" / "mmcr.json").read_text())
F64 = torch.float64


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def nuclear_norm_reference(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x).sum(dim=-1)


def mmcr_terms_from_ops(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(local, global)`` of MMCR from :func:`nuclear_norm`: views ``(V, N, D)``."""
    per_sample = torch.nn.functional.normalize(views, dim=-1).transpose(0, 1)  # (N, V, D)
    return nuclear_norm(per_sample).sum(), nuclear_norm(per_sample.mean(dim=1))


def mmcr_loss_from_ops(views: torch.Tensor, lmbda: float) -> torch.Tensor:
    local, global_ = mmcr_terms_from_ops(views)
    return lmbda * local / views.shape[1] - global_


def rank_deficient(n: int, d: int, rank: int, *, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """An n×d float64 matrix of the given rank with unit rows (normalized embeddings), plus ``noise``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rank, generator=generator, dtype=F64) @ torch.randn(rank, d, generator=generator, dtype=F64)
    x = x + noise * torch.randn(n, d, generator=generator, dtype=F64)
    return torch.nn.functional.normalize(x, dim=-1)


# ------------------------------------------------------------------------------------------------ golden values

GOLDEN_ENTRIES = [(case, entry) for case in GOLDEN["cases"] for entry in case["expected"]]


@pytest.mark.parametrize(
    ("case", "entry"), GOLDEN_ENTRIES, ids=[f"{case['name']}-lmbda={entry['lmbda']}" for case, entry in GOLDEN_ENTRIES]
)
@pytest.mark.parametrize("implementation", ["reference", "ops"])
def test_mmcr_reproduces_the_official_value_and_gradient(case, entry, implementation):
    views = tensor(case["views"]).requires_grad_(True)
    if implementation == "reference":
        local, global_ = mmcr_terms_reference(views)
        loss = mmcr_loss_reference(views, lmbda=entry["lmbda"])
    else:
        local, global_ = mmcr_terms_from_ops(views)
        loss = mmcr_loss_from_ops(views, entry["lmbda"])
    assert_relative(loss, torch.tensor(entry["loss"], dtype=F64), 1e-10, "loss")
    if entry["lmbda"] != 0.0:  # the official code reports 0 for the local term it skips when lmbda = 0
        assert_relative(local, torch.tensor(entry["local_nuc"], dtype=F64), 1e-10, "local")
    assert_relative(global_, torch.tensor(entry["global_nuc"], dtype=F64), 1e-10, "global")
    if "grad_views" in entry:
        (gradient,) = torch.autograd.grad(loss, views)
        assert_relative(gradient, tensor(entry["grad_views"]), 1e-10, "gradient")


def test_reference_accepts_a_sequence_of_views():
    views = torch.randn(3, 10, 6, dtype=F64)
    assert_relative(mmcr_loss_reference(list(views), lmbda=0.1), mmcr_loss_reference(views, lmbda=0.1), 1e-15)


# ------------------------------------------------------------------------------------------- nuclear norm, float64

SHAPES = [(4, 6), (6, 4), (5, 5), (37, 70), (70, 37), (37, 3, 70), (8, 1, 9), (2, 3, 5, 4)]


@pytest.mark.parametrize("shape", SHAPES)
def test_nuclear_norm_matches_svdvals_in_float64(shape):
    x = torch.randn(*shape, dtype=F64).requires_grad_(True)
    upstream = torch.randn(shape[:-2], dtype=F64)
    value = nuclear_norm(x)
    expected = nuclear_norm_reference(x)
    assert value.shape == shape[:-2]
    assert_relative(value, expected, 1e-10, "value")
    (gradient,) = torch.autograd.grad(value, x, upstream)
    (expected_gradient,) = torch.autograd.grad(expected, x, upstream)
    assert_relative(gradient, expected_gradient, 1e-10, "gradient")


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (3, 2, 5)])
def test_gram_path_matches_svdvals_in_float64_on_full_rank_inputs(shape):
    """The float32 path (the Gram in float64) evaluated on float64 numbers: the same answer as the SVD."""
    x = torch.randn(*shape, dtype=F64)
    value = nuclear_norm(x.float())
    assert_relative(value, nuclear_norm_reference(x.float().double()), 1e-6)


def test_nuclear_norm_of_non_contiguous_inputs():
    x = torch.randn(70, 37, dtype=F64).t()
    batched = torch.randn(5, 9, 3, dtype=F64).transpose(1, 2)  # (5, 3, 9)
    assert not x.is_contiguous() and not batched.is_contiguous()
    assert_relative(nuclear_norm(x), nuclear_norm_reference(x.contiguous()), 1e-10)
    assert_relative(nuclear_norm(batched.float()), nuclear_norm_reference(batched), 1e-6)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_empty_inputs(dtype):
    assert nuclear_norm(torch.zeros(0, 5, dtype=dtype)).item() == 0.0
    assert nuclear_norm(torch.zeros(0, 2, 5, dtype=dtype)).shape == (0,)


# ---------------------------------------------------------------------------------- float32 against float64

#: Nearly rank-deficient inputs: collapsed embeddings, views that agree. The Gram diagonalized in float32 would be
#: 1e-3 to 1e-2 off on the rank-deficient ones; in float64 the float32 path stays within 1e-6 of the float64 SVD.
NEARLY_RANK_DEFICIENT = {
    "random 256x64": lambda: torch.nn.functional.normalize(torch.randn(256, 64, dtype=F64), dim=-1),
    "random 64x256": lambda: torch.nn.functional.normalize(torch.randn(64, 256, dtype=F64), dim=-1),
    "rank 1, 512x128": lambda: rank_deficient(512, 128, 1),
    "rank 4, 64x256": lambda: rank_deficient(64, 256, 4),
    "rank 4 + 1e-6, 256x64": lambda: rank_deficient(256, 64, 4, noise=1e-6),
    "two nearly equal views, 128x2x96": lambda: torch.nn.functional.normalize(
        rank_deficient(128, 96, 96).unsqueeze(1).expand(128, 2, 96) + 1e-4 * torch.randn(128, 2, 96, dtype=F64),
        dim=-1,
    ),
    "six views of rank 3, 32x6x64": lambda: rank_deficient(32 * 3, 64, 64).reshape(32, 3, 64)[:, [0, 1, 2, 0, 1, 2]],
}


@pytest.mark.parametrize("inputs", list(NEARLY_RANK_DEFICIENT))
def test_float32_within_1e_5_of_float64(inputs):
    x = NEARLY_RANK_DEFICIENT[inputs]().float()
    exact = nuclear_norm_reference(x.double())
    assert_relative(nuclear_norm(x), exact, 1e-5)


def test_a_float32_gram_would_not_be_accurate_enough():
    """Why the Gram is diagonalized in float64: in float32 its zero eigenvalues come out near u₃₂·λ_max, whose roots
    (about 3e-4·σ_max each) add up on a nearly rank-deficient matrix."""
    x = rank_deficient(512, 128, 1).float()
    eigenvalues = torch.linalg.eigvalsh(x.mT @ x)
    float32_gram = eigenvalues.clamp_min(0).sqrt().sum()
    exact = nuclear_norm_reference(x.double())
    assert relative_error(float32_gram, exact) > 1e-4
    assert relative_error(nuclear_norm(x), exact) < 1e-6


@pytest.mark.parametrize("inputs", ["random 256x64", "random 64x256", "two nearly equal views, 128x2x96"])
def test_float32_gradient_against_float64(inputs):
    x = NEARLY_RANK_DEFICIENT[inputs]().float().requires_grad_(True)
    (gradient,) = torch.autograd.grad(nuclear_norm(x).sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    (expected,) = torch.autograd.grad(nuclear_norm_reference(x64).sum(), x64)
    assert gradient.dtype == torch.float32
    assert_relative(gradient, expected, 1e-5)


# ------------------------------------------------------------------ vanishing and repeated singular values


def assert_least_norm_subgradient(gradient: torch.Tensor, x: torch.Tensor, rank: int) -> None:
    """``gradient = U_r V_rᵀ``: singular values 1 (r times) and 0, on the row and column spaces of x, ⟨G, X⟩ = ‖X‖_*."""
    gradient, x = gradient.double(), x.double()
    assert torch.isfinite(gradient).all()
    singular_values = torch.linalg.svdvals(gradient)
    expected = torch.zeros_like(singular_values)
    expected[:rank] = 1.0
    assert (singular_values - expected).abs().max().item() <= 1e-5, singular_values
    assert_relative((gradient * x).sum(), nuclear_norm_reference(x), 1e-6, "⟨G, X⟩")
    pseudo_inverse = torch.linalg.pinv(x, rtol=1e-6)
    assert_relative(gradient @ (pseudo_inverse @ x), gradient, 1e-5, "row space")
    assert_relative((x @ pseudo_inverse) @ gradient, gradient, 1e-5, "column space")


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize(("n", "d", "rank"), [(6, 4, 2), (4, 6, 3), (37, 70, 5), (70, 37, 1)])
def test_gradient_at_rank_deficient_matrices_is_the_least_norm_subgradient(dtype, n, d, rank):
    x = rank_deficient(n, d, rank, seed=n + d).to(dtype).requires_grad_(True)
    (gradient,) = torch.autograd.grad(nuclear_norm(x), x)
    assert gradient.dtype == dtype
    assert_least_norm_subgradient(gradient, x.detach(), rank)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_gradient_at_repeated_singular_values(dtype):
    basis, _ = torch.linalg.qr(torch.randn(9, 9, dtype=F64))
    x = (2.0 * basis[:5]).to(dtype).requires_grad_(True)  # five singular values equal to 2
    value = nuclear_norm(x)
    (gradient,) = torch.autograd.grad(value, x)
    assert_relative(value, torch.tensor(10.0, dtype=F64), 1e-6)
    assert_relative(gradient, basis[:5], 1e-6)  # U Vᵀ = X / 2
    # a rank-deficient centroid matrix with a repeated singular value: rows e1, e1, e2, e2 (σ = √2, √2, 0, 0)
    identity = torch.eye(6, dtype=F64)
    centroids = torch.stack([identity[0], identity[0], identity[1], identity[1]]).to(dtype).requires_grad_(True)
    (gradient,) = torch.autograd.grad(nuclear_norm(centroids), centroids)
    assert_least_norm_subgradient(gradient, centroids.detach(), 2)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_zero_matrix_has_zero_value_and_gradient(dtype):
    x = torch.zeros(2, 3, 5, dtype=dtype, requires_grad=True)
    value = nuclear_norm(x)
    (gradient,) = torch.autograd.grad(value.sum(), x)
    assert torch.equal(value, torch.zeros(2, dtype=dtype)) and torch.equal(gradient, torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_mmcr_with_identical_views_has_a_finite_gradient(dtype):
    """Converged invariance: every sample's views are equal, so each V×D matrix has rank 1."""
    sample = torch.randn(16, 8, dtype=dtype)
    views = sample.expand(3, 16, 8).clone().requires_grad_(True)
    loss = mmcr_loss_from_ops(views, 0.5)
    (gradient,) = torch.autograd.grad(loss, views)
    assert torch.isfinite(gradient).all()
    expected = mmcr_loss_reference(views.detach().double(), lmbda=0.5)
    assert_relative(loss, expected, 1e-10 if dtype == F64 else 1e-6)


# ---------------------------------------------------------------------------------------- autograd, torch.func


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (3, 2, 5), (4, 4)])
def test_gradcheck_and_gradgradcheck(shape):
    x = torch.randn(*shape, dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(nuclear_norm, (x,))
    assert torch.autograd.gradgradcheck(nuclear_norm, (x,))


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (3, 2, 5)])
def test_second_derivatives_match_autograd_through_svdvals(shape):
    x = torch.randn(*shape, dtype=F64).requires_grad_(True)
    upstream = torch.randn(*shape, dtype=F64)
    results = []
    for function in (nuclear_norm, nuclear_norm_reference):
        (gradient,) = torch.autograd.grad(function(x).sum(), x, create_graph=True)
        results.append(torch.autograd.grad((gradient * upstream).sum(), x)[0])
    assert_relative(*results, 1e-9)


def test_second_derivatives_of_the_float32_path():
    x = torch.randn(5, 7, requires_grad=True)
    upstream = torch.randn(5, 7)
    (gradient,) = torch.autograd.grad(nuclear_norm(x), x, create_graph=True)
    (actual,) = torch.autograd.grad((gradient * upstream).sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    (gradient64,) = torch.autograd.grad(nuclear_norm_reference(x64), x64, create_graph=True)
    (expected,) = torch.autograd.grad((gradient64 * upstream.double()).sum(), x64)
    assert actual.dtype == torch.float32
    assert_relative(actual, expected, 1e-4)


TRANSFORMS = {
    "grad": torch.func.grad,
    "jacrev": torch.func.jacrev,
    "jacfwd": torch.func.jacfwd,
    "hessian": torch.func.hessian,
    "jacrev(jacrev)": lambda function: torch.func.jacrev(torch.func.jacrev(function)),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_mmcr_torch_func_transforms(transform):
    views = torch.randn(3, 5, 4, dtype=F64)
    actual = TRANSFORMS[transform](lambda views: mmcr_loss_from_ops(views, 0.1))(views)
    expected = TRANSFORMS[transform](lambda views: mmcr_loss_reference(views, lmbda=0.1))(views)
    assert_relative(actual, expected, 1e-9)


def test_mmcr_torch_func_vjp_and_vmap():
    x = torch.randn(4, 3, 6, dtype=F64)
    upstream = torch.randn(4, dtype=F64)
    _, pullback = torch.func.vjp(nuclear_norm, x)
    _, expected_pullback = torch.func.vjp(nuclear_norm_reference, x)
    assert_relative(pullback(upstream)[0], expected_pullback(upstream)[0], 1e-10)
    assert_relative(torch.func.vmap(nuclear_norm)(x), nuclear_norm_reference(x), 1e-10)
    assert_relative(torch.func.vmap(nuclear_norm)(x.float()), nuclear_norm_reference(x.float().double()), 1e-6)


# --------------------------------------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_mmcr_compiles_without_graph_breaks_once_for_every_batch_size(dtype):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")

    def step(views):
        return mmcr_loss_from_ops(views, 0.1)

    compiled = torch.compile(step, backend=counter, fullgraph=True, dynamic=True)  # raises on a graph break
    for n in (16, 23, 37):  # N > D: the centroids' D×D Gram (N ≤ D takes the N×N one: a second trace)
        views = torch.randn(3, n, 12, dtype=dtype, requires_grad=True)
        value = compiled(views)
        (gradient,) = torch.autograd.grad(value, views)
        expected = step(views)
        (expected_gradient,) = torch.autograd.grad(expected, views)
        assert_relative(value, expected, 1e-6, f"value, N = {n}")
        assert_relative(gradient, expected_gradient, 1e-5, f"gradient, N = {n}")
    assert counter.frame_count == 1


# ============================================================================================ the public function


@pytest.mark.parametrize(
    ("case", "entry"), GOLDEN_ENTRIES, ids=[f"{case['name']}-lmbda={entry['lmbda']}" for case, entry in GOLDEN_ENTRIES]
)
def test_mmcr_terms_reproduce_the_official_values_and_gradient(case, entry):
    views = tensor(case["views"]).requires_grad_(True)
    loss, samples, centroids = redundancy.mmcr_terms(views, lmbda=entry["lmbda"])
    assert_relative(loss, torch.tensor(entry["loss"], dtype=F64), 1e-10, "loss")
    if entry["lmbda"] != 0.0:  # the official code reports 0 for the local term it skips when lmbda = 0
        assert_relative(samples, torch.tensor(entry["local_nuc"], dtype=F64), 1e-10, "samples")
    assert_relative(centroids, torch.tensor(entry["global_nuc"], dtype=F64), 1e-10, "centroids")
    assert torch.equal(redundancy.mmcr_loss(list(views), lmbda=entry["lmbda"]), loss)
    if "grad_views" in entry:
        (gradient,) = torch.autograd.grad(loss, views)
        assert_relative(gradient, tensor(entry["grad_views"]), 1e-10, "gradient")


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(2, 37, 70), (4, 5, 12), (3, 40, 6)])
def test_mmcr_equals_the_reference(shape, normalize):
    views = (torch.randn(*shape, dtype=F64) * 2 + 0.3).requires_grad_(True)
    loss = redundancy.mmcr_loss(views, lmbda=0.2, normalize=normalize)
    expected = mmcr_loss_reference(views, lmbda=0.2, normalize=normalize)
    assert_relative(loss, expected, 1e-10, "loss")
    (gradient,) = torch.autograd.grad(loss, views)
    (expected_gradient,) = torch.autograd.grad(expected, views)
    assert_relative(gradient, expected_gradient, 1e-9, "gradient")


def test_the_loss_does_not_depend_on_the_norms_or_the_order_of_the_samples():
    views = torch.randn(3, 20, 9, dtype=F64)
    scales = torch.rand(3, 20, 1, dtype=F64) + 0.1
    order = torch.randperm(20)
    loss = redundancy.mmcr_loss(views, lmbda=0.3)
    assert_relative(redundancy.mmcr_loss(views * scales, lmbda=0.3), loss, 1e-12)
    assert_relative(redundancy.mmcr_loss(views[:, order], lmbda=0.3), loss, 1e-12)
    rotation, _ = torch.linalg.qr(torch.randn(9, 9, dtype=F64))
    assert_relative(redundancy.mmcr_loss(views @ rotation, lmbda=0.3), loss, 1e-12)  # singular values unchanged


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize(
    "views",
    [
        pytest.param(lambda: torch.randn(1, 16, 8).expand(3, -1, -1), id="identical views"),
        pytest.param(lambda: torch.randn(2, 16, 1) * torch.randn(1, 1, 8), id="collapsed to one direction"),
        pytest.param(lambda: torch.randn(2, 4, 30), id="N < D"),
        pytest.param(lambda: torch.eye(6)[:, None, :].expand(6, 2, 6).transpose(0, 1), id="repeated singular values"),
    ],
)
def test_a_finite_gradient_where_singular_values_vanish_or_repeat(views, dtype):
    views = views().to(dtype).contiguous().requires_grad_(True)
    loss = redundancy.mmcr_loss(views, lmbda=0.5)
    (gradient,) = torch.autograd.grad(loss, views)
    assert torch.isfinite(gradient).all()
    assert_relative(loss, mmcr_loss_reference(views.detach().double(), lmbda=0.5), 1e-10 if dtype == F64 else 1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mmcr_half_precision_views_are_accumulated_in_float32(dtype):
    views = torch.randn(2, 64, 16).to(dtype).requires_grad_(True)
    loss = redundancy.mmcr_loss(views, lmbda=0.1)
    assert loss.dtype == torch.float32
    assert_relative(loss, mmcr_loss_reference(views.detach().double(), lmbda=0.1), 1e-6)
    (gradient,) = torch.autograd.grad(loss, views)
    assert gradient.dtype == dtype


def test_mmcr_module_equals_the_function():
    views = torch.randn(3, 16, 5, dtype=F64)
    module = redundancy.MMCRLoss(lmbda=0.1, normalize=False)
    assert torch.equal(module(views), redundancy.mmcr_loss(views, lmbda=0.1, normalize=False))
    expected = redundancy.mmcr_terms(views, lmbda=0.1, normalize=False)
    assert all(torch.equal(a, b) for a, b in zip(module.terms(views), expected, strict=True))
    assert repr(module).startswith("MMCRLoss(lmbda=0.1, normalize=False")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lmbda": -0.1}, ValueError, "lmbda must be non-negative"),
        ({"lmbda": "0"}, TypeError, "lmbda must be a real number"),
        ({"normalize": 1}, TypeError, "normalize must be a bool"),
    ],
)
def test_mmcr_bad_options_raise_naming_the_option(options, error, match):
    with pytest.raises(error, match=match):
        redundancy.mmcr_loss(torch.randn(2, 8, 5), **options)
    with pytest.raises(error, match=match):
        redundancy.MMCRLoss(**options)


# ========================================================================================= three gloo ranks

WORLD_SIZE = 3
SHARDS = (4, 0, 7)
EQUAL = (3, 3, 3)
V, DIM = 3, 5
UPSTREAM = 0.7


def _views(shards=SHARDS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(51)
    signal = torch.randn(sum(shards), DIM, generator=generator, dtype=F64)
    return torch.stack([signal + 0.4 * torch.randn(sum(shards), DIM, generator=generator, dtype=F64) for _ in range(V)])


def _own(views: torch.Tensor, rank: int, shards=SHARDS) -> torch.Tensor:
    return views[:, sum(shards[:rank]) : sum(shards[: rank + 1])]


def _terms_and_grad(views: torch.Tensor, **options):
    leaf = views.clone().requires_grad_(True)
    terms = redundancy.mmcr_terms(leaf, **options)
    (terms.loss * UPSTREAM).backward()
    return torch.stack([term.detach() for term in terms]), leaf.grad


def _outcome(function):
    try:
        return function()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"


def _penalty(loss, views: torch.Tensor) -> torch.Tensor:
    leaf = views.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
    return gradient.square().sum()


def _mmcr_rank(rank: int, world_size: int) -> dict:
    views = _own(_views(), rank)
    records: dict = {}
    for convention in ("global", "official"):
        records[convention] = _terms_and_grad(views, lmbda=0.3, gradient_convention=convention)
    records["unnormalized"] = _terms_and_grad(views, lmbda=0.3, normalize=False)
    faulty = rank == 2
    faults = {
        "lmbda_differs": lambda: redundancy.mmcr_loss(views, lmbda=0.5 if faulty else 0.3),
        "normalize_differs": lambda: redundancy.mmcr_loss(views, normalize=not faulty),
        "view_count_differs": lambda: redundancy.mmcr_loss(views[:2] if faulty else views),
    }
    for fault, call in faults.items():
        records[fault] = _outcome(call)
        records[fault, "next"] = _outcome(lambda: redundancy.mmcr_loss(views).detach())
    # A graph of the backward across ranks: refused, MMCR's and every loss that gathers the rows (VICReg's here).
    records["create_graph"] = _outcome(lambda: _penalty(redundancy.mmcr_loss, views))
    records["create_graph_vicreg"] = _outcome(lambda: _penalty(lambda v: redundancy.vicreg_loss(v[0], v[1]), views))
    equal = _own(_views(EQUAL), rank, EQUAL)
    torch._dynamo.reset()
    compiled = torch.compile(redundancy.mmcr_terms, fullgraph=True, backend="aot_eager")
    leaf = equal.clone().requires_grad_(True)

    def compiled_terms():
        terms = compiled(leaf, lmbda=0.3)
        (terms.loss * UPSTREAM).backward()
        return torch.stack([term.detach() for term in terms]), leaf.grad

    records["compiled"] = _outcome(compiled_terms)
    torch._dynamo.reset()
    return records


@pytest.fixture(scope="module")
def mmcr_ranks(tmp_path_factory) -> list[dict]:
    return spawn_gloo(_mmcr_rank, WORLD_SIZE, tmp_path_factory.mktemp("mmcr"), timeout=60.0)


def _assert_global(records, expected, what, shards=SHARDS, factor=WORLD_SIZE):
    terms, gradient = expected
    for rank, (rank_terms, rank_gradient) in enumerate(records):
        assert_relative(rank_terms, terms, 1e-10, f"{what}: terms of rank {rank}")
        assert torch.equal(rank_terms, records[0][0]), f"{what}: rank {rank} differs from rank 0"
        own = _own(gradient, rank, shards)
        assert rank_gradient.shape == own.shape
        if shards[rank]:
            assert_relative(rank_gradient, factor * own, 1e-9, f"{what}: gradient of rank {rank}")


@pytest.mark.distributed
@pytest.mark.parametrize("convention", ["global", "official"])
def test_every_rank_has_the_nuclear_norms_of_the_global_batch(mmcr_ranks, convention):
    """``"official"``: each rank the gradient of its own rows, what the official code's all_gather gives."""
    expected = _terms_and_grad(_views(), lmbda=0.3)
    factor = WORLD_SIZE if convention == "global" else 1
    _assert_global([r[convention] for r in mmcr_ranks], expected, convention, factor=factor)


@pytest.mark.distributed
def test_the_unnormalized_form_over_the_ranks(mmcr_ranks):
    expected = _terms_and_grad(_views(), lmbda=0.3, normalize=False)
    _assert_global([r["unnormalized"] for r in mmcr_ranks], expected, "normalize=False")


FAULTS = {
    "lmbda_differs": "ValueError: lmbda must be the same on every rank of the process group, got lmbda = [0.3, 0.3, 0.",
    "normalize_differs": "ValueError: normalize must be the same on every rank of the process group",
    "view_count_differs": "ValueError: len(views) must be the same on every rank of the process group",
}


@pytest.mark.distributed
@pytest.mark.parametrize("fault", list(FAULTS))
def test_mmcr_a_fault_raises_on_every_rank_and_the_next_call_is_in_step(mmcr_ranks, fault):
    expected = redundancy.mmcr_loss(_views())
    for rank, records in enumerate(mmcr_ranks):
        assert isinstance(records[fault], str) and FAULTS[fault] in records[fault], f"rank {rank}: {records[fault]}"
        assert_relative(records[fault, "next"], expected, 1e-10, f"rank {rank}, the call after {fault}")


@pytest.mark.distributed
@pytest.mark.parametrize("key", ["create_graph", "create_graph_vicreg"])
def test_a_graph_of_the_backward_across_ranks_is_refused(mmcr_ranks, key):
    """The gathered rows' backward hands each rank its own rows of the gradient; differentiated once more, it would
    miss the other ranks' share (their gradients depend on these rows through the gathered batch)."""
    for rank, records in enumerate(mmcr_ranks):
        message = records[key]
        assert isinstance(message, str) and "second derivatives" in message and "not supported" in message, rank


@pytest.mark.distributed
@pytest.mark.slow
def test_mmcr_compiled_in_the_group(mmcr_ranks):
    records = [r["compiled"] for r in mmcr_ranks]
    assert not any(isinstance(record, str) for record in records), records
    expected = _terms_and_grad(_views(EQUAL), lmbda=0.3)
    _assert_global(records, expected, "compiled", shards=EQUAL)
