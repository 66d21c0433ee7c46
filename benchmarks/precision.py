"""Float32 accuracy: this library's loss values beside the same formula in plain PyTorch, both against float64.

For each row the float32 inputs (two correlated views, :func:`benchmarks.common.make_views`) are evaluated three
ways: by this library in float32, by the reference formula of :mod:`redundancy.reference` in float32 (what plain
PyTorch code computes: ``C = bn(z1)ᵀ bn(z2) / N``, the entries squared and summed with ``.pow(2).sum()``), and by
the same reference formula in float64 on the same inputs (``upcast=True``), the truth. The table gives the
relative error of the first two against the third.

    python -m benchmarks.precision                        # the table of the documentation (a few minutes on a CPU)
    python -m benchmarks.precision --quick                # small shapes: a smoke run
    python -m benchmarks.precision --device cuda
"""

import argparse
from collections.abc import Callable
from typing import NamedTuple

import torch

import redundancy
from benchmarks.common import environment
from benchmarks.common import make_views
from redundancy import reference


class Row(NamedTuple):
    """One value of the table: how this library and the reference formula compute it from two views."""

    label: str
    n: int
    d: int
    library: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    reference: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def _vicreg_covariance(z1: torch.Tensor, z2: torch.Tensor, upcast: bool) -> torch.Tensor:
    return reference.vicreg_terms_reference(z1, z2, upcast=upcast)[2]


def rows(quick: bool = False) -> list[Row]:
    """The rows of the table, at its shapes (small ones with ``quick``)."""
    wide, square = ((64, 256), (128, 128)) if quick else ((512, 8192), (2048, 2048))
    return [
        Row(
            'barlow_twins_loss(algorithm="cross")',
            *wide,
            lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, algorithm="cross"),
            lambda z1, z2, upcast: reference.barlow_twins_loss_reference(z1, z2, upcast=upcast),
        ),
        Row(
            'vicreg_loss(algorithm="cross")',
            *wide,
            lambda z1, z2: redundancy.vicreg_loss(z1, z2, algorithm="cross"),
            lambda z1, z2, upcast: reference.vicreg_loss_reference(z1, z2, upcast=upcast),
        ),
        Row(
            'VICReg covariance term (algorithm="cross")',
            *wide,
            lambda z1, z2: redundancy.vicreg_terms(z1, z2, algorithm="cross").covariance,
            _vicreg_covariance,
        ),
        Row(
            "barlow_twins_loss (auto)",
            *square,
            redundancy.barlow_twins_loss,
            lambda z1, z2, upcast: reference.barlow_twins_loss_reference(z1, z2, upcast=upcast),
        ),
        Row(
            "VICReg covariance term (auto)",
            *square,
            lambda z1, z2: redundancy.vicreg_terms(z1, z2).covariance,
            _vicreg_covariance,
        ),
    ]


def relative_error(value: torch.Tensor, truth: torch.Tensor) -> float:
    return abs(value.item() - truth.item()) / abs(truth.item())


def measure(row: Row, device: torch.device, seed: int = 0) -> dict:
    """The relative errors against float64 of this library and of the float32 reference formula for ``row``."""
    z1, z2 = (z.detach() for z in make_views(row.n, row.d, device=device, seed=seed))
    with torch.no_grad():
        library = row.library(z1, z2)
        plain = row.reference(z1, z2, False)
        truth = row.reference(z1, z2, True)
    return {
        "label": row.label,
        "n": row.n,
        "d": row.d,
        "library": relative_error(library, truth),
        "reference_float32": relative_error(plain, truth),
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| float32, relative error vs float64 | N×D | this library | reference formula in float32 |",
        "|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result['label']} | {result['n']}×{result['d']} | {result['library']:.1e} "
            f"| {result['reference_float32']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":  # TF32 would measure the matrix products' precision, not the reductions'
        torch.backends.cuda.matmul.allow_tf32 = False
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()))
    results = []
    for row in rows(quick=args.quick):
        results.append(measure(row, device, seed=args.seed))
    print(markdown(results))


if __name__ == "__main__":
    main()
