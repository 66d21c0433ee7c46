"""The Triton kernels against the float64 reference: values, gradients, dtypes, layouts, determinism, compile.

Without CUDA ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before Triton is imported, so the kernels run on CPU
tensors through Triton's interpreter (marker ``triton``). With CUDA and without that variable the same tests run
natively on the GPU (marker ``gpu``). One process runs one of the two: Triton decides at kernel definition.
"""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

# tests/conftest.py sets this too, before anything imports Triton (which reads it when it is imported).
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")

import redundancy
from redundancy._triton import interpreter_enabled
from redundancy.reference import barlow_twins_loss_reference, barlow_twins_terms_reference
from tests.utils import relative_error

#: (N, D): odd shapes, a batch smaller than one row tile, and one power of two.
SHAPES = [(37, 70), (5, 130), (32, 64)]
ALGORITHMS = ["cross", "gram"]
#: (normalization, eps, off_diagonal_target): every normalization, each with a different target.
VARIANTS = [("batchnorm", 1e-5, 0.0), ("std", 0.0, -1.0), ("none", 1e-5, 0.5)]
#: Input dtype -> (k, atol): the kernels' relative error against the float64 reference must be at most
#: k × (plain PyTorch's error at that dtype) + atol, for the loss and for the gradients (DESIGN §7). atol is
#: about one unit of the dtype's last place for the half types (the gradients come back rounded to them).
LOW_PRECISION = {
    torch.float32: (2.0, 1e-6),
    torch.bfloat16: (2.0, 2.0**-8),
    torch.float16: (2.0, 2.0**-11),
}
UPSTREAM = 0.7  # upstream gradient of the loss, deliberately not 1
ROOT = str(pathlib.Path(__file__).resolve().parents[1])


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
@pytest.mark.parametrize(("normalization", "eps", "target"), VARIANTS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_float64_matches_reference(device, n, d, normalization, eps, target, algorithm):
    z1, z2 = _views(n, d, torch.float64, device)
    options = dict(normalization=normalization, eps=eps, off_diagonal_target=target)
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

    small = launch.BlockConfig(block_n=16, block_d=16, block_owned=16)
    monkeypatch.setattr(launch, "INTERPRETER_CONFIG", small)
    monkeypatch.setattr(launch, "GPU_CONFIG", small)
    z1, z2 = _views(37, 70, torch.float64, device)
    options = dict(normalization="batchnorm", off_diagonal_target=-1.0)
    loss, grads = _loss_and_grads(_triton_loss(algorithm=algorithm, **options), z1, z2)
    expected, expected_grads = _loss_and_grads(lambda a, b: barlow_twins_loss_reference(a, b, **options), z1, z2)
    assert relative_error(loss, expected) <= 1e-10
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) <= 1e-8


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_contiguous_inputs_give_identical_results(device, algorithm):
    """Strided views are read in place: the same numbers as their contiguous copies, bit for bit."""
    n, d = 37, 70
    base1 = torch.randn(d, n, device=device)  # z1 is its transpose: column-major
    base2 = torch.randn(n, 2 * d, device=device)  # z2 takes every other column
    z1, z2 = base1.t().requires_grad_(), base2[:, ::2].detach().requires_grad_()
    assert not z1.is_contiguous() and not z2.is_contiguous()
    loss_fn = _triton_loss(algorithm=algorithm, off_diagonal_target=-1.0)
    loss, grads = _loss_and_grads(loss_fn, z1, z2)
    c1, c2 = z1.detach().contiguous().requires_grad_(), z2.detach().contiguous().requires_grad_()
    contiguous_loss, contiguous_grads = _loss_and_grads(loss_fn, c1, c2)
    assert torch.equal(loss, contiguous_loss)
    for grad, contiguous_grad in zip(grads, contiguous_grads, strict=True):
        assert torch.equal(grad, contiguous_grad)


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


def test_non_finite_input_propagates(device):
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


@pytest.mark.triton
@pytest.mark.slow
def test_kernels_compile_for_a_cuda_gpu(tmp_path):
    """Triton's compiler, not only its interpreter, accepts the kernels: a cubin for sm_90, built without a GPU."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=ROOT, TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    result = subprocess.run(
        [sys.executable, "-m", "tests.compile_kernels"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count(": ok") == 10, result.stdout


@pytest.mark.parametrize(("algorithm", "target"), [("cross", 0.0), ("gram", -1.0)])
def test_custom_op_registration(device, algorithm, target):
    """``torch.library.opcheck``: schema, fake kernel, autograd registration and AOT dispatch of the forward op."""
    from redundancy._triton import ops

    z1, z2 = _views(37, 70, torch.float32, device)
    torch.library.opcheck(ops.barlow_twins_terms_forward, (z1, z2, "batchnorm", 1e-5, target, algorithm))
