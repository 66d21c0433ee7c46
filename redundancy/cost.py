"""The cost model that ``algorithm="auto"`` uses, and the FLOP counts the benchmarks report.

Counted for the forward and backward of the loss given the standardized views (the O(N·D) standardization
work is left out, as it is the same for every algorithm):

- ``cross``: ``C = AᵀB`` forward (2·N·D²), ``B Cᵀ`` and ``A C`` backward (4·N·D²): 6·N·D².
- ``gram``: ``A Aᵀ`` and ``B Bᵀ`` forward (4·N²·D), ``(B Bᵀ) A`` and ``(A Aᵀ) B`` backward (4·N²·D): 8·N²·D.

The Gram algorithm is the cheaper one when ``8·N²·D < 6·N·D²``, that is ``N < 0.75·D``.
"""

ALGORITHMS = ("cross", "gram")

#: ``auto`` picks ``gram`` when ``N < GRAM_CROSSOVER * D``.
GRAM_CROSSOVER = 0.75


def barlow_twins_flops(algorithm: str, n: int, d: int, *, backward: bool = True) -> int:
    """Floating-point operations of the matrix products of one loss evaluation.

    Args:
        algorithm: ``"cross"`` or ``"gram"``.
        n: batch size N.
        d: feature dimension D.
        backward: count the backward pass too (forward only when ``False``).

    Returns:
        The FLOP count (a multiply-add counts as 2).

    Example:
        >>> barlow_twins_flops("cross", 256, 8192) // barlow_twins_flops("gram", 256, 8192)
        24
    """
    if algorithm == "cross":
        forward, backward_flops = 2 * n * d * d, 4 * n * d * d
    elif algorithm == "gram":
        forward, backward_flops = 4 * n * n * d, 4 * n * n * d
    else:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return forward + backward_flops if backward else forward


def choose_algorithm(n: int, d: int) -> str:
    """The algorithm ``algorithm="auto"`` uses for a global batch of ``n`` rows and ``d`` features.

    Example:
        >>> choose_algorithm(256, 8192), choose_algorithm(2048, 128)
        ('gram', 'cross')
    """
    return "gram" if n < GRAM_CROSSOVER * d else "cross"


def autocorrelation_flops(algorithm: str, n: int, d: int, *, backward: bool = True) -> int:
    """Floating-point operations of the off-diagonal energy ``Σ_{i≠j} (XᵀX)_ij²`` of one view (VICReg, DeCov).

    ``cross`` forms ``K = XᵀX`` (2·N·D²) and backpropagates ``X K`` (2·N·D²); ``gram`` forms ``G = X Xᵀ``
    (2·N²·D) and backpropagates ``G X`` (2·N²·D). The Gram form is the cheaper one when ``N < D``.

    Example:
        >>> autocorrelation_flops("cross", 256, 8192) // autocorrelation_flops("gram", 256, 8192)
        32
    """
    if algorithm == "cross":
        forward, backward_flops = 2 * n * d * d, 2 * n * d * d
    elif algorithm == "gram":
        forward, backward_flops = 2 * n * n * d, 2 * n * n * d
    else:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return forward + backward_flops if backward else forward


def choose_autocorrelation_algorithm(n: int, d: int) -> str:
    """The algorithm ``algorithm="auto"`` uses for the one-view auto-correlation of ``n`` rows and ``d`` features.

    Example:
        >>> choose_autocorrelation_algorithm(256, 8192), choose_autocorrelation_algorithm(2048, 128)
        ('gram', 'cross')
    """
    return "gram" if n < d else "cross"
