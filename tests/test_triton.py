"""The Triton kernels against the float64 reference: values, gradients, dtypes, layouts, determinism, compile.

Without CUDA ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before Triton is imported, so the kernels run on CPU
tensors through Triton's interpreter (marker ``triton``). With CUDA and without that variable the same tests run
natively on the GPU (marker ``gpu``). One process runs one of the two: Triton decides at kernel definition.
"""

import os

import pytest
import torch

# tests/conftest.py sets this too, before anything imports Triton (which reads it when it is imported).
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")

import redundancy
from redundancy._triton import interpreter_enabled
from redundancy.reference import barlow_twins_loss_reference
from redundancy.reference import barlow_twins_terms_reference
from tests.utils import STANDARDIZATIONS
from tests.utils import relative_error

#: (N, D): odd shapes, a batch smaller than one row tile, and one power of two.
SHAPES = [(37, 70), (5, 130), (32, 64)]
ALGORITHMS = ["cross", "gram"]
#: (standardization, eps, off_diagonal_target): every standardization (tests.utils.STANDARDIZATIONS), each with a
#: different target.
VARIANTS = [("biased", 1e-5, 0.0), ("unbiased", 0.0, -1.0), ("none", 1e-5, 0.5)]
#: Input dtype -> (k, atol): the kernels' relative error against the float64 reference must be at most
#: k × (plain PyTorch's error at that dtype) + atol, for the loss and for the gradients (DESIGN §7). atol is
#: about one unit of the dtype's last place for the half types (the gradients come back rounded to them).
LOW_PRECISION = {
    torch.float32: (2.0, 1e-6),
    torch.bfloat16: (2.0, 2.0**-8),
    torch.float16: (2.0, 2.0**-11),
}
UPSTREAM = 0.7  # upstream gradient of the loss, deliberately not 1


def _interpreter_device():
    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not set in this process: the kernels are compiled for CUDA")
    return torch.device("cpu")


def _cuda_device():
    if interpreter_enabled() or not torch.cuda.is_available():
        pytest.skip("needs CUDA and a process without TRITON_INTERPRET")
    return torch.device("cuda")


@pytest.fixture(
    params=[
        pytest.param(_interpreter_device, marks=pytest.mark.triton, id="interpreter"),
        pytest.param(_cuda_device, marks=pytest.mark.gpu, id="cuda"),
    ]
)
def device(request):
    return request.param()


def _views(n, d, dtype, device):
    """Two views that share signal (so C has a real diagonal), with gradients."""
    z1 = torch.randn(n, d, dtype=torch.float64)
    z2 = torch.randn(n, d, dtype=torch.float64) + 0.5 * z1
    return z1.to(device, dtype).requires_grad_(), z2.to(device, dtype).requires_grad_()


def _loss_and_grads(loss_fn, z1, z2):
    loss = loss_fn(z1, z2)
    grads = torch.autograd.grad(loss * UPSTREAM, [z1, z2])
    return loss.detach(), grads


def _triton_loss(**options):
    return lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, backend="triton", **options)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("standardization", "eps", "target"), VARIANTS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_float64_matches_reference(device, n, d, standardization, eps, target, algorithm):
    z1, z2 = _views(n, d, torch.float64, device)
    options = dict(**STANDARDIZATIONS[standardization], eps=eps, off_diagonal_target=target)
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", algorithm=algorithm, lambd=0.02, **options)
    invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, **options)
    assert relative_error(terms.invariance, invariance) <= 1e-10
    assert relative_error(terms.redundancy, redundancy_term) <= 1e-10

    loss, grads = _loss_and_grads(_triton_loss(algorithm=algorithm, lambd=0.02, **options), z1, z2)
    expected, expected_grads = _loss_and_grads(
        lambda a, b: barlow_twins_loss_reference(a, b, lambd=0.02, **options), z1, z2
    )
    assert loss.dtype == torch.float64
    assert relative_error(loss, expected) <= 1e-10
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert grad.dtype == torch.float64
        assert relative_error(grad, expected_grad) <= 1e-8


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", list(LOW_PRECISION), ids=str)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_low_precision_within_k_times_plain_pytorch(device, n, d, dtype, algorithm):
    k, atol = LOW_PRECISION[dtype]
    z1, z2 = _views(n, d, dtype, device)
    loss, grads = _loss_and_grads(_triton_loss(algorithm=algorithm), z1, z2)
    exact, exact_grads = _loss_and_grads(lambda a, b: barlow_twins_loss_reference(a, b, upcast=True), z1, z2)
    plain, plain_grads = _loss_and_grads(barlow_twins_loss_reference, z1, z2)

    assert loss.dtype == torch.float32
    loss_error, plain_error = relative_error(loss, exact), relative_error(plain, exact)
    assert loss_error <= k * plain_error + atol, f"loss error {loss_error:.2e}, plain PyTorch {plain_error:.2e}"
    for grad, exact_grad, plain_grad in zip(grads, exact_grads, plain_grads, strict=True):
        assert grad.dtype == dtype
        grad_error, plain_error = relative_error(grad, exact_grad), relative_error(plain_grad, exact_grad)
        assert grad_error <= k * plain_error + atol, f"grad error {grad_error:.2e}, plain {plain_error:.2e}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_smaller_tiles_give_the_same_answer(device, algorithm, monkeypatch):
    """Many tiles per dimension (partial last tiles everywhere) exercise every loop and mask of the kernels."""
    from redundancy._triton import launch

    small = launch.TileConfig(16, 16, 16)
    monkeypatch.setattr(launch, "INTERPRETER_CONFIGS", dict.fromkeys(launch.INTERPRETER_CONFIGS, small))
    monkeypatch.setattr(launch, "GPU_CONFIGS", dict.fromkeys(launch.GPU_CONFIGS, small))
    z1, z2 = _views(37, 70, torch.float64, device)
    options = dict(correction=0, off_diagonal_target=-1.0)
    loss, grads = _loss_and_grads(_triton_loss(algorithm=algorithm, **options), z1, z2)
    expected, expected_grads = _loss_and_grads(lambda a, b: barlow_twins_loss_reference(a, b, **options), z1, z2)
    assert relative_error(loss, expected) <= 1e-10
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) <= 1e-8


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_contiguous_inputs_give_identical_results(device, algorithm):
    """Strided views are read in place: the same numbers as their contiguous copies, bit for bit under the
    interpreter; on a GPU the compiler picks another thread layout for a transposed input, which changes the
    order of the reductions, so there the results agree to float32 rounding."""
    n, d = 37, 70
    base1 = torch.randn(d, n, device=device)  # z1 is its transpose: column-major
    base2 = torch.randn(n, 2 * d, device=device)  # z2 takes every other column
    z1, z2 = base1.t().requires_grad_(), base2[:, ::2].detach().requires_grad_()
    assert not z1.is_contiguous() and not z2.is_contiguous()
    loss_fn = _triton_loss(algorithm=algorithm, off_diagonal_target=-1.0)
    loss, grads = _loss_and_grads(loss_fn, z1, z2)
    c1, c2 = z1.detach().contiguous().requires_grad_(), z2.detach().contiguous().requires_grad_()
    contiguous_loss, contiguous_grads = _loss_and_grads(loss_fn, c1, c2)
    same = torch.equal if device.type == "cpu" else lambda a, b: relative_error(a, b) <= 1e-5
    assert same(loss, contiguous_loss)
    for grad, contiguous_grad in zip(grads, contiguous_grads, strict=True):
        assert same(grad, contiguous_grad)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_deterministic(device, algorithm):
    z1, z2 = _views(37, 70, torch.float32, device)
    first, first_grads = _loss_and_grads(_triton_loss(algorithm=algorithm), z1, z2)
    second, second_grads = _loss_and_grads(_triton_loss(algorithm=algorithm), z1, z2)
    assert torch.equal(first, second)
    for a, b in zip(first_grads, second_grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("trained", [0, 1], ids=["z1", "z2"])
def test_one_view_without_gradient(device, algorithm, trained):
    views = list(_views(37, 70, torch.float64, device))
    views[1 - trained] = views[1 - trained].detach()
    loss = redundancy.barlow_twins_loss(*views, backend="triton", algorithm=algorithm)
    (grad,) = torch.autograd.grad(loss, [views[trained]])
    (expected,) = torch.autograd.grad(barlow_twins_loss_reference(*views), [views[trained]])
    assert relative_error(grad, expected) <= 1e-8


def test_agrees_with_torch_backend_and_module(device):
    z1, z2 = _views(37, 70, torch.float32, device)
    options = dict(lambd="auto", scale=0.025, off_diagonal_target=-1.0)
    triton_loss = redundancy.barlow_twins_loss(z1, z2, backend="triton", **options)
    module_loss = redundancy.BarlowTwinsLoss(backend="triton", **options)(z1, z2)
    torch_loss = redundancy.barlow_twins_loss(z1, z2, backend="torch", **options)
    assert torch.equal(triton_loss, module_loss)
    assert relative_error(triton_loss, torch_loss) <= 1e-5


def test_large_common_offset_is_harmless(device):
    """The one-pass statistics merge centred row blocks, so an offset of 1e3 costs no accuracy (DESIGN §5)."""
    z1, z2 = _views(37, 70, torch.float32, device)
    loss = redundancy.barlow_twins_loss(z1, z2, backend="triton")
    shifted = redundancy.barlow_twins_loss(z1 + 1e3, z2 - 1e3, backend="triton")
    assert relative_error(shifted, loss) <= 1e-4


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_constant_feature_gives_zero_diagonal_and_finite_gradients(device, algorithm):
    z1, z2 = _views(37, 70, torch.float64, device)
    z1 = z1.detach().clone()
    z1[:, 3] = 2.5
    z1.requires_grad_()
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", algorithm=algorithm)
    invariance, _ = barlow_twins_terms_reference(z1, z2)
    assert relative_error(terms.invariance, invariance) <= 1e-10
    terms.loss.backward()
    assert torch.isfinite(z1.grad).all()


def test_triton_non_finite_input_propagates(device):
    z1, z2 = _views(37, 70, torch.float32, device)
    z1 = z1.detach().clone()
    z1[4, 5] = float("nan")
    assert torch.isnan(redundancy.barlow_twins_loss(z1, z2, backend="triton"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_torch_compile_fullgraph(device, algorithm):
    """The custom ops and their fake kernels let dynamo trace the whole loss, forward and backward."""
    torch._dynamo.reset()

    def step(z1, z2):
        return redundancy.barlow_twins_loss(z1, z2, backend="triton", algorithm=algorithm, off_diagonal_target=-1.0)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager" if device.type == "cpu" else "inductor")
    z1, z2 = _views(37, 70, torch.float32, device)
    loss, grads = _loss_and_grads(compiled, z1, z2)
    eager, eager_grads = _loss_and_grads(step, z1, z2)
    assert relative_error(loss, eager) <= 1e-6
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        assert relative_error(grad, eager_grad) <= 1e-5


@pytest.mark.parametrize(("algorithm", "target"), [("cross", 0.0), ("gram", -1.0)])
def test_custom_op_registration(device, algorithm, target):
    """``torch.library.opcheck``: schema, fake kernel and AOT dispatch of both ops. The ops themselves have no
    autograd formula (``ops.BarlowTwinsTermsFunction`` differentiates them), so they are checked on views that
    need no gradient."""
    from redundancy._triton import ops

    z1, z2 = (view.detach() for view in _views(37, 70, torch.float32, device))
    arguments = (z1, z2, True, 0, 1e-5, target, algorithm)
    torch.library.opcheck(ops.barlow_twins_terms_forward, arguments)
    _, _, stats, gram_a, gram_b, row_sums = ops.barlow_twins_terms_forward(*arguments)
    one = torch.ones((), device=device)
    backward_arguments = (one, one, z1, z2, stats, gram_a, gram_b, row_sums, True, 0, target, algorithm, True, True)
    torch.library.opcheck(ops.barlow_twins_terms_backward, backward_arguments)


# ------------------------------------------------------------------------ the numbers a GPU computes


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 2e-2), (torch.float16, 2e-2), (torch.float32, 1e-4)])
def test_loss_in_low_precision_is_close_to_float64(device, algorithm, dtype, tolerance):
    """Tensor cores round the standardized tiles to nearest even; the interpreter emulates that rounding, so a
    truncating cast (the interpreter's own) would bias the redundancy term well past these tolerances."""
    generator = torch.Generator().manual_seed(1)
    z1 = 2 * torch.randn(200, 33, dtype=torch.float64, generator=generator) + 1
    z2 = z1 + 0.4 * torch.randn(200, 33, dtype=torch.float64, generator=generator)
    exact = barlow_twins_loss_reference(z1, z2)
    loss = redundancy.barlow_twins_loss(
        z1.to(device, dtype), z2.to(device, dtype), backend="triton", algorithm=algorithm
    )
    assert relative_error(loss.double().cpu(), exact) <= tolerance


def _converged_views(n, d, dtype, device, correlation=0.9):
    """Decorrelated views: ``C = correlation · I`` up to an off-diagonal of RMS about 1e-4 / sqrt(N) (each view
    whitened; the second is ``correlation`` times the first plus an orthogonal part and a little noise)."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(n, 2 * d, dtype=torch.float64, generator=generator)
    q, _ = torch.linalg.qr(x - x.mean(0))
    z1, orthogonal = q[:, :d] * n**0.5, q[:, d:] * n**0.5
    z2 = correlation * z1 + (1 - correlation**2) ** 0.5 * orthogonal
    z2 = z2 + 1e-4 * torch.randn(n, d, dtype=torch.float64, generator=generator)
    return z1.to(device, dtype), z2.to(device, dtype)


@pytest.mark.parametrize("correlation", [0.9, 1.0])
@pytest.mark.parametrize(("correction", "eps", "target"), [(0, 1e-5, 0.0), (1, 0.0, -1.0)])
def test_converged_float32_embeddings_keep_both_terms(device, correlation, correction, eps, target):
    """Near convergence (C → I, N ≥ D picks cross) nothing cancels: the cross kernels sum (C_ij - t)² off the
    diagonal directly, and 1 - c_i is a sum of non-negative terms (the views' difference and eps), so float32
    stays within 1e-3 of float64 where ‖C‖² - Σc² goes negative and 1 - c_i rounds to 0 in float32."""
    z1, z2 = _converged_views(512, 48, torch.float32, device, correlation)
    options = dict(correction=correction, eps=eps, off_diagonal_target=target)
    expected = barlow_twins_terms_reference(z1.double(), z2.double(), **options)
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", **options)
    assert relative_error(terms.invariance.double(), expected[0]) <= 1e-3
    assert relative_error(terms.redundancy.double(), expected[1]) <= 1e-3


def test_converged_float32_embeddings_keep_both_terms_with_the_gram_algorithm_too(device):
    """The Gram kernels cannot separate the diagonal from ‖C‖² = ⟨AAᵀ, BBᵀ⟩/N² (their own regime, N < D, keeps
    the off-diagonal energy large): asked for at N ≥ D near convergence, the loss takes the cross kernels' exact
    value, so float32 stays within 1e-3 of float64 with either algorithm."""
    z1, z2 = _converged_views(512, 48, torch.float32, device)
    expected = barlow_twins_terms_reference(z1.double(), z2.double())
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", algorithm="gram")
    assert relative_error(terms.invariance.double(), expected[0]) <= 1e-3
    assert relative_error(terms.redundancy.double(), expected[1]) <= 1e-3


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float64_scalars_reach_the_kernels_exactly(device, algorithm):
    """eps and the target enter the float64 computation unrounded: with variances below eps, eps dominates the
    standardization, and a float32 eps (or target 0.1) would be off by far more than 1e-10."""
    z1, z2 = _views(37, 70, torch.float64, device)
    z1, z2 = 1e-3 * z1.detach(), 1e-3 * z2.detach()  # variances about 1e-6, below eps
    options = dict(eps=1e-5 + 1e-12, off_diagonal_target=0.1)
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", algorithm=algorithm, **options)
    invariance, redundancy_term = barlow_twins_terms_reference(z1, z2, **options)
    assert relative_error(terms.invariance, invariance) <= 1e-10
    assert relative_error(terms.redundancy, redundancy_term) <= 1e-10


#: (N, D, algorithm) of the accuracy test of the reductions into the terms: two small shapes, and the largest the
#: interpreter runs in about a minute per call (slow). "gram" at N >= D runs the cross kernels.
REDUCTION_SHAPES = [
    (64, 64, "cross"),
    (32, 512, "gram"),
    pytest.param(1024, 512, "cross", marks=pytest.mark.slow),
    pytest.param(256, 2048, "gram", marks=pytest.mark.slow),
]


def _float32_views(n, d, kind, device):
    """``"random"``: views that share signal. ``"converged"``: C ≈ 0.9·I where N >= 2D (:func:`_converged_views`);
    below that C cannot be I, and the views agree instead (``z2 = z1`` plus noise of 1e-3: every c_i ≈ 1)."""
    if kind == "converged" and n >= 2 * d:
        return _converged_views(n, d, torch.float32, device)
    generator = torch.Generator().manual_seed(3)
    z1 = torch.randn(n, d, dtype=torch.float64, generator=generator)
    noise = torch.randn(n, d, dtype=torch.float64, generator=generator)
    z2 = z1 + 1e-3 * noise if kind == "converged" else 0.5 * z1 + noise
    return z1.to(device, torch.float32), z2.to(device, torch.float32)


@pytest.mark.parametrize("target", [0.0, -1.0])
@pytest.mark.parametrize("kind", ["random", "converged"])
@pytest.mark.parametrize(("n", "d", "algorithm"), REDUCTION_SHAPES)
def test_float32_terms_are_accurate_to_the_float32_inputs(device, n, d, algorithm, kind, target):
    """Every partial result (tiles of the off-diagonal energy, Gram slices, ⟨AAᵀ, BBᵀ⟩, row sums, Σ c_i) is reduced
    into the terms without losing float32 accuracy: both terms within 1e-5 of float64 evaluated on the same float32
    inputs, and within 10 times the error of plain PyTorch (the reference's ``.pow(2).sum()`` of the float32 C),
    plus one rounding of the float32 result."""
    z1, z2 = _float32_views(n, d, kind, device)
    terms = redundancy.barlow_twins_terms(z1, z2, backend="triton", algorithm=algorithm, off_diagonal_target=target)
    exact = barlow_twins_terms_reference(z1, z2, off_diagonal_target=target, upcast=True)
    plain = barlow_twins_terms_reference(z1, z2, off_diagonal_target=target)
    for name, value, exact_value, plain_value in zip(
        ("invariance", "redundancy"), (terms.invariance, terms.redundancy), exact, plain, strict=True
    ):
        error, plain_error = relative_error(value, exact_value), relative_error(plain_value, exact_value)
        print(f"N={n} D={d} {algorithm} {kind} t={target}: {name} error {error:.2e}, plain PyTorch {plain_error:.2e}")
        assert error <= 1e-5, f"{name}: relative error {error:.2e} > 1e-5 (plain PyTorch {plain_error:.2e})"
        assert error <= 10 * plain_error + 2.0**-24, f"{name}: relative error {error:.2e}, plain {plain_error:.2e}"


# ------------------------------------------------------------------------ derivatives


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_second_derivatives_raise_an_error_naming_create_graph(device, algorithm):
    """A gradient penalty through the first-order kernels must fail loudly, never drop the second-order terms."""
    z1, z2 = _views(37, 70, torch.float64, device)
    loss = redundancy.barlow_twins_loss(z1, z2, backend="triton", algorithm=algorithm)
    (grad,) = torch.autograd.grad(loss, [z1], create_graph=True)
    (expected,) = torch.autograd.grad(barlow_twins_loss_reference(z1, z2), [z1])
    assert relative_error(grad.detach(), expected) <= 1e-8  # the first derivative is right
    with pytest.raises(RuntimeError, match=r"backend='triton' computes first derivatives only.*create_graph=True"):
        grad.square().sum().backward()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_torch_func_grad_equals_autograd(device, algorithm):
    z1, z2 = _views(37, 70, torch.float64, device)
    z1, z2 = z1.detach(), z2.detach()

    def loss_of(a, b):
        return redundancy.barlow_twins_loss(a, b, backend="triton", algorithm=algorithm, off_diagonal_target=-1.0)

    grads = torch.func.grad(loss_of, argnums=(0, 1))(z1, z2)
    expected = torch.autograd.grad(
        barlow_twins_loss_reference(z1.requires_grad_(), z2.requires_grad_(), off_diagonal_target=-1.0), [z1, z2]
    )
    for grad, expected_grad in zip(grads, expected, strict=True):
        assert relative_error(grad, expected_grad) <= 1e-8


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_torch_func_vmap_equals_a_loop(device, algorithm):
    """``vmap`` of the loss and of its gradient over a batch of view pairs: the same as one call per pair."""
    z1 = torch.randn(3, 16, 24, dtype=torch.float64, device=device)
    z2 = z1 + 0.5 * torch.randn(3, 16, 24, dtype=torch.float64, device=device)

    def loss_of(a, b):
        return redundancy.barlow_twins_loss(a, b, backend="triton", algorithm=algorithm, off_diagonal_target=-1.0)

    losses = torch.func.vmap(loss_of)(z1, z2)
    grads = torch.func.vmap(torch.func.grad(loss_of))(z1, z2)
    for index in range(3):
        assert torch.equal(losses[index], loss_of(z1[index], z2[index]))
        assert torch.equal(grads[index], torch.func.grad(loss_of)(z1[index], z2[index]))


# ------------------------------------------------------------------------ the GPU configuration, on the CPU


class _RecordingKernel:
    """Stands for a Triton kernel: ``kernel[grid](*args, **meta)`` records the launch and runs nothing."""

    def __init__(self, name, launches):
        self.name, self.launches = name, launches

    def __getitem__(self, grid):
        return lambda *args, **meta: self.launches.append((self.name, tuple(grid), meta, args))


def _recorded_launches(monkeypatch, n, d, dtype, algorithm, target=0.0):
    """The kernel launches (name, grid, meta, args) of one forward and one backward in the GPU configuration."""
    import types

    from redundancy._triton import kernels
    from redundancy._triton import launch

    forward_launches, backward_launches = [], []
    recorder = types.SimpleNamespace()
    monkeypatch.setattr(launch, "kernels", recorder)
    monkeypatch.setattr(launch, "_gpu_configuration", lambda: True)
    for name in dir(kernels):
        if name.endswith("_kernel"):
            setattr(recorder, name, _RecordingKernel(name, forward_launches))
    z1, z2 = torch.zeros(n, d, dtype=dtype), torch.zeros(n, d, dtype=dtype)
    outputs = launch.forward(z1, z2, True, 0, 1e-5, target, algorithm)
    for name in dir(recorder):
        if name.endswith("_kernel"):
            getattr(recorder, name).launches = backward_launches
    one = torch.ones((), dtype=outputs[2].dtype)
    launch.backward(one, one, z1, z2, *outputs[2:], True, 0, target, algorithm, True, True)
    return forward_launches, backward_launches


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("algorithm", "n", "d"), [("gram", 256, 8192), ("cross", 2048, 1024)])
def test_matrix_kernels_fill_an_h100(monkeypatch, algorithm, n, d, dtype):
    """At the benchmark shapes every kernel that multiplies matrices launches ≥ 2 programs per SM of an H100
    (132 SMs), forward and backward; the cross backward computes C once (one launch of the C tiles)."""
    forward, backward = _recorded_launches(monkeypatch, n, d, dtype, algorithm)
    multiplying = ("_cross_tile_kernel", "_gram_tile_kernel", "_cross_gradient_kernel", "_gram_gradient_kernel")
    for name, grid, _meta, _args in forward + backward:
        if name in multiplying:
            assert grid[0] * grid[1] * (grid[2] if len(grid) > 2 else 1) >= 264, (name, grid)
    assert sum(name in multiplying for name, *_ in forward) == 1
    assert sum(name in multiplying for name, *_ in backward) == (2 if algorithm == "cross" else 1)
    if algorithm == "cross":
        (c_tiles,) = [(grid, meta) for name, grid, meta, _ in backward if name == "_cross_tile_kernel"]
        grid, meta = c_tiles
        assert meta["GRADIENT"] and grid[0] * meta["BLOCK_M"] >= d and grid[1] * meta["BLOCK_N"] >= d
        assert (grid[0] - 1) * meta["BLOCK_M"] < d and (grid[1] - 1) * meta["BLOCK_N"] < d  # each tile once


@pytest.mark.triton
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float_options_reach_the_kernels_as_tensors(monkeypatch, algorithm):
    """A Python float kernel argument is a 32-bit float on the GPU: eps and the target must arrive otherwise
    (eps and the target as one-element tensors of the accumulation dtype)."""
    forward, backward = _recorded_launches(monkeypatch, 64, 48, torch.float64, algorithm, target=0.1)
    for name, _grid, _meta, args in forward + backward:
        assert not any(isinstance(arg, float) for arg in args), (name, args)


def test_float32_products_use_tf32x3():
    """float32 products on tensor cores with float32-level accuracy: three TF32 products (``tf32x3``)."""
    from redundancy._triton import launch

    precision = launch._precision(torch.zeros(0, dtype=torch.float32))
    assert (precision.dot_precision, precision.product_precision) == ("tf32x3", "tf32x3")


# ------------------------------------------------------------------------ backend="auto"


def _cuda_stand_in(dtype=torch.bfloat16, shape=(256, 8192)):
    """What select_backend reads of a CUDA tensor (device, dtype, shape), on a machine without CUDA."""
    import types

    return types.SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype, shape=shape)


def test_auto_uses_torch_on_cuda_until_a_benchmark_shows_triton_ahead(monkeypatch):
    import redundancy._triton as backend_choice

    monkeypatch.setattr(backend_choice, "_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    assert backend_choice.TRITON_FASTER == frozenset()  # no committed GPU benchmark yet
    assert backend_choice.select_backend("auto", _cuda_stand_in()) == "torch"
    measured = frozenset({("NVIDIA H100 80GB HBM3", "bfloat16", "gram")})
    monkeypatch.setattr(backend_choice, "TRITON_FASTER", measured)
    assert backend_choice.select_backend("auto", _cuda_stand_in()) == "triton"  # 256 x 8192: gram
    assert backend_choice.select_backend("auto", _cuda_stand_in(), algorithm="cross") == "torch"
    assert backend_choice.select_backend("auto", _cuda_stand_in(shape=(4096, 1024))) == "torch"  # cross
    assert backend_choice.select_backend("auto", _cuda_stand_in(dtype=torch.float32)) == "torch"
    monkeypatch.setattr(backend_choice, "_device_name", lambda index: "NVIDIA A100-SXM4-80GB")
    assert backend_choice.select_backend("auto", _cuda_stand_in()) == "torch"


@pytest.mark.parametrize("interpret", ["0", "1"])
def test_explicit_triton_without_triton_says_it_is_not_installed_first(monkeypatch, interpret):
    """Where Triton is missing, installing it is the first step whatever the device: the error says so (and how),
    not to set TRITON_INTERPRET=1, which cannot help without Triton."""
    import redundancy._triton as backend_choice

    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    missing = f"{backend_choice._NOT_INSTALLED} (No module named 'triton')"
    monkeypatch.setattr(backend_choice, "_IMPORT_OUTCOME", [missing])  # what a failed `import triton` leaves
    z = torch.randn(8, 4)
    with pytest.raises(RuntimeError, match=r"triton is not installed.*pip install 'redundancy\[triton\]'") as error:
        backend_choice.select_backend("triton", z)
    assert "TRITON_INTERPRET" not in str(error.value)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        redundancy.barlow_twins_loss(z, z, backend="triton")
