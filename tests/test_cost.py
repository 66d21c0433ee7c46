"""The cost model behind algorithm="auto"."""

import pytest

from redundancy import cost


def test_flop_counts():
    assert cost.barlow_twins_flops("cross", 4, 8) == 6 * 4 * 8 * 8
    assert cost.barlow_twins_flops("gram", 4, 8) == 8 * 4 * 4 * 8
    assert cost.barlow_twins_flops("cross", 4, 8, backward=False) == 2 * 4 * 8 * 8
    assert cost.barlow_twins_flops("gram", 4, 8, backward=False) == 4 * 4 * 4 * 8


@pytest.mark.parametrize(("n", "d"), [(32, 128), (256, 8192), (2048, 8192), (2048, 128), (512, 512), (96, 128)])
def test_auto_follows_the_measured_crossover(n, d):
    assert cost.choose_algorithm(n, d) == ("gram" if n < cost.GRAM_CROSSOVER * d else "cross")


@pytest.mark.parametrize(("n", "d"), [(32, 8192), (256, 8192), (2048, 8192), (8192, 2048), (2048, 128)])
def test_auto_picks_the_algorithm_with_fewer_flops_away_from_the_crossover(n, d):
    cheaper = min(cost.ALGORITHMS, key=lambda algorithm: cost.barlow_twins_flops(algorithm, n, d))
    assert cost.choose_algorithm(n, d) == cheaper


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cost.barlow_twins_flops("auto", 4, 4)
