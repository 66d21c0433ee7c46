"""The cost model behind algorithm="auto": its FLOP counts are those of the products the losses run."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import redundancy
from redundancy import cost

aten = torch.ops.aten


class MatrixProductFlops(TorchDispatchMode):
    """Counts the FLOPs (2 per multiply-add) of every matrix product dispatched while it is active.

    Independent of the cost model: it reads the operand shapes of the products as they run, in-place
    accumulating forms (``addmm_``, which the Gram backward uses) included. Matrix-vector and vector products
    (O(N·D), the standardization's share, which the model leaves out) are not counted.
    """

    PRODUCTS = frozenset({aten.mm.default, aten.bmm.default})
    ACCUMULATING_PRODUCTS = frozenset({aten.addmm.default, aten.addmm_.default, aten.baddbmm.default})

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.PRODUCTS or func in self.ACCUMULATING_PRODUCTS:
            first, second = args[1:3] if func in self.ACCUMULATING_PRODUCTS else args[:2]
            batch = first.shape[0] if first.ndim == 3 else 1
            self.flops += 2 * batch * first.shape[-2] * first.shape[-1] * second.shape[-1]
        return func(*args, **kwargs)


def _measured(loss_function, n: int, d: int) -> tuple[int, int]:
    """FLOPs of the matrix products of ``loss_function``'s forward and of its backward, on float64 inputs."""
    views = [torch.randn(n, d, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    with MatrixProductFlops() as forward:
        loss = loss_function(*views)
    with MatrixProductFlops() as backward:
        loss.backward()
    return forward.flops, backward.flops


#: (algorithm, N, D): both algorithms on either side of the crossover, and Grams large enough (N²·D ≥ 2**26) for
#: the symmetric product to split into row blocks, evenly (256) and not (300).
SHAPES = [
    ("cross", 96, 64),
    ("cross", 37, 70),
    ("gram", 32, 96),
    ("gram", 37, 70),
    ("gram", 256, 1024),
    ("gram", 300, 1024),
]


@pytest.mark.parametrize(("algorithm", "n", "d"), SHAPES)
def test_barlow_twins_flops_are_the_products_the_loss_runs(algorithm, n, d):
    forward, backward = _measured(lambda a, b: redundancy.barlow_twins_loss(a, b, algorithm=algorithm), n, d)
    assert cost.barlow_twins_flops(algorithm, n, d, backward=False) == forward
    assert cost.barlow_twins_flops(algorithm, n, d) == forward + backward


@pytest.mark.parametrize(("algorithm", "n", "d"), [("cross", 96, 64), ("gram", 32, 96), ("gram", 37, 70)])
def test_autocorrelation_flops_are_the_products_the_covariance_term_runs(algorithm, n, d):
    forward, backward = _measured(lambda a, _: redundancy.vicreg_covariance_loss(a, algorithm=algorithm), n, d)
    assert cost.autocorrelation_flops(algorithm, n, d, backward=False) == forward
    assert cost.autocorrelation_flops(algorithm, n, d) == forward + backward


def test_the_counter_counts_a_known_product():
    with MatrixProductFlops() as counter:
        torch.randn(3, 5) @ torch.randn(5, 7)
        torch.randn(4, 7).addmm_(torch.randn(4, 2), torch.randn(2, 7))
    assert counter.flops == 2 * 3 * 5 * 7 + 2 * 4 * 2 * 7


@pytest.mark.parametrize("d", [64, 128, 512, 2048, 4096])
def test_auto_switches_once_from_gram_to_cross_inside_the_measured_band(d):
    """Gram for small batches, cross for large ones, one switch, where the benchmark saw the two meet.

    The module docstring's measurement: cross became at least as fast as gram between N/D = 0.625 and 1.0.
    """
    choices = [cost.choose_algorithm(n, d) for n in range(1, 2 * d + 1)]
    switch = choices.index("cross")
    assert set(choices[:switch]) == {"gram"} and set(choices[switch:]) == {"cross"}
    assert 0.625 <= (switch + 1) / d <= 1.0


@pytest.mark.parametrize(("n", "d"), [(32, 8192), (256, 8192), (2048, 8192), (8192, 2048), (2048, 128)])
def test_auto_picks_the_algorithm_with_fewer_flops_away_from_the_crossover(n, d):
    cheaper = min(cost.ALGORITHMS, key=lambda algorithm: cost.barlow_twins_flops(algorithm, n, d))
    assert cost.choose_algorithm(n, d) == cheaper


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cost.barlow_twins_flops("auto", 4, 4)
