"""``torch.compile(fullgraph=True)`` traces the torch backend's loss, forward and backward, without graph breaks."""

import pytest
import torch

import redundancy
from tests.utils import relative_error


def _compare_with_eager(step, backend: str) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend=backend)  # raises on any graph break
    z1 = torch.randn(16, 24, requires_grad=True)
    z2 = torch.randn(16, 24, requires_grad=True)
    for fn in (compiled, step):
        loss = fn(z1, z2)
        loss.backward()
        yield loss.detach(), z1.grad.clone(), z2.grad.clone()
        z1.grad = z2.grad = None


@pytest.mark.parametrize("algorithm", ["cross", "gram"])
@pytest.mark.parametrize("standardize", [True, False])
def test_torch_backend_compiles_without_graph_breaks(algorithm, standardize):
    def step(z1, z2):
        return redundancy.barlow_twins_loss(
            z1, z2, backend="torch", algorithm=algorithm, standardize=standardize, off_diagonal_target=-1.0
        )

    (loss, *grads), (eager, *eager_grads) = _compare_with_eager(step, "aot_eager")
    assert relative_error(loss, eager) <= 1e-6
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        assert relative_error(grad, eager_grad) <= 1e-5


@pytest.mark.slow
def test_torch_backend_compiles_with_inductor():
    def step(z1, z2):
        return redundancy.barlow_twins_terms(z1, z2, backend="torch", algorithm="cross").loss

    (loss, *grads), (eager, *eager_grads) = _compare_with_eager(step, "inductor")
    assert relative_error(loss, eager) <= 1e-5
    for grad, eager_grad in zip(grads, eager_grads, strict=True):
        assert relative_error(grad, eager_grad) <= 1e-4


# ------------------------------------------------------------------------------------------ dynamic shapes

#: Every loss of the family as a function of two (N, D) views, for the dynamic-shape and export checks.
FAMILY = {
    "barlow_twins_cross": lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, algorithm="cross", lambd=0.01),
    "barlow_twins_gram": lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, algorithm="gram", scale=0.5),
    "vicreg": lambda z1, z2: redundancy.vicreg_loss(z1, z2),
    "decov": lambda z1, z2: redundancy.decov_loss(z1),
    "total_coding_rate": lambda z1, z2: redundancy.total_coding_rate(z1),
    "cca_ssg": lambda z1, z2: redundancy.cca_ssg_loss(z1, z2),
    "spectral_contrastive": lambda z1, z2: redundancy.spectral_contrastive_loss(z1, z2),
}
BATCH_SIZES = (9, 10, 13, 17, 24, 31, 40, 47, 52, 64)  # more than torch._dynamo's recompile limit of 8


@pytest.mark.parametrize("name", list(FAMILY))
def test_dynamic_compile_traces_once_for_every_batch_size(name):
    torch._dynamo.reset()
    frames = []

    def count_frames(graph, example_inputs):
        frames.append(graph)
        return graph.forward

    compiled = torch.compile(FAMILY[name], dynamic=True, fullgraph=True, backend=count_frames)
    for n in BATCH_SIZES:
        z1, z2 = torch.randn(n, 7, dtype=torch.float64), torch.randn(n, 7, dtype=torch.float64)
        assert relative_error(compiled(z1, z2), FAMILY[name](z1, z2)) <= 1e-12, f"N = {n}"
    assert len(frames) == 1, f"{name} was traced {len(frames)} times for {len(BATCH_SIZES)} batch sizes"


#: Losses with an explicit algorithm: with ``algorithm="auto"`` the choice depends on N, so an exported range of N
#: must then lie on one side of the crossover.
EXPORTED = {
    "barlow_twins_cross": FAMILY["barlow_twins_cross"],
    "barlow_twins_gram": FAMILY["barlow_twins_gram"],
    "vicreg_cross": lambda z1, z2: redundancy.vicreg_loss(z1, z2, algorithm="cross"),
}


@pytest.mark.parametrize("name", list(EXPORTED))
def test_export_with_a_dynamic_batch_dimension(name):
    class Criterion(torch.nn.Module):
        def forward(self, z1, z2):
            return EXPORTED[name](z1, z2)

    batch = torch.export.Dim("batch", min=2, max=4096)
    example = (torch.randn(16, 7, dtype=torch.float64), torch.randn(16, 7, dtype=torch.float64))
    exported = torch.export.export(Criterion(), example, dynamic_shapes=({0: batch}, {0: batch}))
    for n in (5, 33):
        z1, z2 = torch.randn(n, 7, dtype=torch.float64), torch.randn(n, 7, dtype=torch.float64)
        assert relative_error(exported.module()(z1, z2), EXPORTED[name](z1, z2)) <= 1e-12, f"N = {n}"


def test_options_given_as_numpy_scalars_are_real_numbers():
    np = pytest.importorskip("numpy")
    z1, z2 = torch.randn(16, 8, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    expected = redundancy.barlow_twins_loss(z1, z2, lambd=5e-3, scale=0.5)
    actual = redundancy.barlow_twins_loss(z1, z2, lambd=np.float32(5e-3), scale=np.float64(0.5))
    assert relative_error(actual, expected) <= 1e-7  # np.float32(5e-3) is 5e-3 to float32's precision
    assert redundancy.BarlowTwinsLoss(lambd=np.float64(5e-3), eps=np.float32(1e-5))(z1, z2).isfinite()
    assert torch.equal(
        redundancy.vicreg_loss(z1, z2, correction=np.int64(0)), redundancy.vicreg_loss(z1, z2, correction=0)
    )
    with pytest.raises(TypeError, match="lambd must be a real number"):
        redundancy.barlow_twins_loss(z1, z2, lambd=np.array([5e-3]))
