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
@pytest.mark.parametrize("normalization", ["batchnorm", "none"])
def test_torch_backend_compiles_without_graph_breaks(algorithm, normalization):
    def step(z1, z2):
        return redundancy.barlow_twins_loss(
            z1, z2, backend="torch", algorithm=algorithm, normalization=normalization, off_diagonal_target=-1.0
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
