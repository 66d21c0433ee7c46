"""The implementations a benchmark compares, each a ``loss_fn(z1, z2) -> loss`` with its FLOP count.

- ``reference``: :func:`redundancy.reference.barlow_twins_loss_reference` (the official formula, eager);
- ``reference-compiled``: the same under ``torch.compile``;
- ``lightly``: lightly's ``BarlowTwinsLoss`` when ``lightly`` is importable;
- ``redundancy-<algorithm>-<backend>``: :func:`redundancy.barlow_twins_loss` for each algorithm
  (``auto``, ``cross``, ``gram``) and available backend.
"""

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from redundancy import barlow_twins_loss
from redundancy import cost
from redundancy.reference import barlow_twins_loss_reference


@dataclass(frozen=True)
class Case:
    """One implementation under measurement."""

    name: str
    make: Callable[[], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    algorithm: Callable[[int, int], str]
    """The algorithm whose FLOPs the case performs, for a global batch of N rows and D features."""


def _reference():
    return barlow_twins_loss_reference


def _reference_compiled():
    return torch.compile(barlow_twins_loss_reference, dynamic=False)


def _lightly():
    from lightly.loss import BarlowTwinsLoss  # optional: only when installed

    return BarlowTwinsLoss(lambda_param=0.0051, gather_distributed=False)


def _redundancy(algorithm: str, backend: str):
    return functools.partial(barlow_twins_loss, algorithm=algorithm, backend=backend)


def available_backends(device: torch.device) -> list[str]:
    """The backends of :func:`redundancy.barlow_twins_loss` that run on ``device``."""
    backends = ["torch"]
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        backends.append("triton")
    return backends


def all_cases(device: torch.device) -> dict[str, Case]:
    """Every case that can run on ``device``, by name (``lightly`` only where it is installed)."""
    always_cross = lambda n, d: "cross"  # noqa: E731 - the reference and lightly build C
    cases = [
        Case("reference", _reference, always_cross),
        Case("reference-compiled", _reference_compiled, always_cross),
    ]
    if importlib.util.find_spec("lightly") is not None:
        cases.append(Case("lightly", _lightly, always_cross))
    for backend in available_backends(device):
        for algorithm in ("auto", *cost.ALGORITHMS):
            chosen = cost.choose_algorithm if algorithm == "auto" else (lambda n, d, a=algorithm: a)
            cases.append(
                Case(f"redundancy-{algorithm}-{backend}", functools.partial(_redundancy, algorithm, backend), chosen)
            )
    return {case.name: case for case in cases}
