"""``lightly.loss.BarlowTwinsLoss`` and ``lightly.loss.VICRegLoss`` as thin modules over ``redundancy``.

Swap ``from lightly.loss import BarlowTwinsLoss`` for ``from redundancy.compat.lightly import BarlowTwinsLoss``:
the constructor arguments, their defaults, the attribute names and the accepted input shapes are lightly's, and in
one process the value and the gradients are the ones lightly computes (each view standardized like
``F.batch_norm``, biased variance and ε = 1e-5, for Barlow Twins; ``main_vicreg.py``'s formula for VICReg).

Hyperparameters are plain attributes read at each call, as lightly reads them: one set after construction
(``criterion.lambda_param = torch.tensor(0.02)``) takes effect at the next call. The library computes the unweighted
terms (:func:`redundancy.barlow_twins_terms`, :func:`redundancy.vicreg_terms`) and the adapter weighs them with
lightly's own arithmetic, ``invariance + lambda_param * redundancy`` and
``lambda_param * invariance + mu_param * variance + nu_param * covariance``, so any real weight gives lightly's
value: negative, NaN or infinite, a ``bool`` (``True`` is 1), a Python or numpy number, or a one-element tensor,
whose dtype and shape take part as in lightly (a float64 weight gives a float64 loss, one of shape ``(1,)`` a loss of
shape ``(1,)``) and which gets its gradient when it requires grad.

What the adapters refuse, where lightly computes (each names the argument):

- a complex weight (:class:`TypeError`): lightly returns a complex loss, which ``backward()`` refuses;
- a tensor weight of several elements (:class:`TypeError`): lightly returns a tensor of losses, one per element;
- a numpy boolean or array as a weight (:class:`TypeError`);
- an ``eps`` that is negative, NaN or infinite (:class:`ValueError`) or a tensor that requires grad
  (:class:`TypeError`): ε goes into the library's variance hinge, which takes a finite non-negative number.
  lightly computes with a negative ε (its ``sqrt(var + eps)`` is NaN for a feature whose variance is below
  ``-eps``) and gives a tensor ε its gradient;
- a ``gather_distributed`` that is not a ``bool`` (:class:`TypeError`): lightly takes any value by its truth, so
  ``gather_distributed="false"`` gathers there.

Inputs that the library refuses raise :class:`ValueError` or :class:`TypeError` naming ``z_a`` or ``z_b``, where
lightly's ``BarlowTwinsLoss`` raises :class:`ValueError` for a batch of one row (from ``F.batch_norm``),
:class:`AssertionError` for views of different widths and :class:`RuntimeError` for different batch sizes, and
its ``VICRegLoss`` raises :class:`AssertionError` for a batch of one row and for views of different shapes.

Under ``torch.distributed`` with ``gather_distributed=True`` the gradients follow lightly's convention (after
DDP's averaging, those of one process on the concatenated batch). The one intended difference is the statistics:
here they are those of the global batch (``distributed="global"`` of :func:`redundancy.barlow_twins_loss` and
:func:`redundancy.vicreg_loss`), where lightly

- Barlow Twins: standardizes each rank's rows with that rank's own mean and variance, then averages the per-rank
  cross-correlations;
- VICReg: gathers the embeddings for the variance and covariance terms (as here) but keeps each rank's own
  invariance term, so the ranks' values differ while their mean is the value here (equal per-rank batches).

Before (lightly, 2 ranks of 128 rows, ``gather_distributed=True``): ``C = ½ (C₀ + C₁)``, ``C_r`` from rank r's rows
standardized by rank r's statistics; a feature that is shifted on one rank in both views is standardized away.
After (this module, 2 ranks or 1): ``C`` of the 256 rows standardized by the statistics of all 256, the value one
process computes on the whole batch, so the result does not depend on how the batch is split. With
``gather_distributed=False`` each rank computes its own loss, as in lightly.

For half-precision inputs (float16, bfloat16) the loss comes back in float32, where lightly returns the input
dtype: every statistic is accumulated in float32, which makes the value closer to the float64 one. Gradients come
back in the input dtype.
"""

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from redundancy import barlow_twins_terms, vicreg_terms
from redundancy._validation import check_real
from redundancy.compat._options import number, weight

__all__ = ["BarlowTwinsLoss", "VICRegLoss"]


def _check_gather_distributed(gather_distributed: object) -> None:
    if not isinstance(gather_distributed, bool):
        raise TypeError(f"gather_distributed must be a bool, got {type(gather_distributed).__name__}")
    if gather_distributed and not dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available; "
            "set gather_distributed=False or install a torch build with distributed support"
        )


def _distributed(gather_distributed: object) -> Literal["global", "local"]:
    """lightly's ``gather_distributed`` (checked) as this library's ``distributed`` option."""
    _check_gather_distributed(gather_distributed)
    return "global" if gather_distributed else "local"


@contextlib.contextmanager
def _named_as_lightly() -> Iterator[None]:
    """The library's errors about its inputs, re-raised with lightly's argument names (``z_a``, ``z_b``).

    The adapters leave the checks of the inputs to the loss itself rather than checking first: under
    ``torch.distributed`` the loss raises a bad input of one rank on every rank (a check made here would raise on
    that rank only and leave the others waiting), and in any mode it counts the call on every rank.
    """
    try:
        yield
    except (TypeError, ValueError) as error:
        message = re.sub(r"\bz([12])\b", lambda match: "z_a" if match.group(1) == "1" else "z_b", str(error))
        raise type(error)(message) from error


def _has_positions(z_a: object, z_b: object) -> bool:
    """Whether the views are lightly's ``(N, ..., D)`` inputs of VICRegL: one loss per position, averaged."""
    return isinstance(z_a, torch.Tensor) and isinstance(z_b, torch.Tensor) and z_a.ndim > 2 and z_a.shape == z_b.shape


class BarlowTwinsLoss(nn.Module):
    r"""lightly's ``BarlowTwinsLoss``: the terms of :func:`redundancy.barlow_twins_terms`, weighed as lightly does.

    .. math::

        L = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2, \qquad
        C = \mathrm{bn}(z_a)^\top \mathrm{bn}(z_b) / N.

    Args:
        lambda_param: λ, weight of the redundancy term (lightly's default 5e-3; the official value is 0.0051).
            Any real number or one-element real tensor, read at each call (see the module docstring).
        gather_distributed: ``True``: the loss of the global batch under ``torch.distributed``
            (``distributed="global"``; see the module docstring for how this differs from lightly); ``False``: each
            rank's own loss (``distributed="local"``), as in lightly.

    Shape:
        ``z_a``, ``z_b``: ``(N, D)``, the same shape; the result is a 0-dim tensor (the shape of a tensor
        ``lambda_param`` broadcast with it), float32 for half-precision inputs (lightly returns the input dtype).

    Raises:
        ValueError: mismatched shapes or a batch of one row, ``gather_distributed=True`` without
            ``torch.distributed``.
        TypeError: a ``lambda_param`` that is not a real number or a one-element real tensor, a
            ``gather_distributed`` that is not a bool.

    Example:
        >>> import torch
        >>> from redundancy.compat.lightly import BarlowTwinsLoss
        >>> import redundancy
        >>> criterion = BarlowTwinsLoss()
        >>> z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(criterion(z_a, z_b), redundancy.barlow_twins_loss(z_a, z_b, lambd=5e-3))
        True
        >>> criterion.lambda_param = torch.tensor(-0.5, requires_grad=True)  # read at the call
        >>> criterion(z_a, z_b).backward()
        >>> torch.allclose(criterion.lambda_param.grad, redundancy.barlow_twins_terms(z_a, z_b).redundancy)
        True
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False) -> None:
        super().__init__()
        _check_gather_distributed(gather_distributed)
        weight("lambda_param", lambda_param)
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        distributed = _distributed(self.gather_distributed)
        with _named_as_lightly():
            terms = barlow_twins_terms(z_a, z_b, distributed=distributed)
        # Checked after the terms, as lightly's arithmetic fails after its collectives: a rank with a bad weight
        # does not leave the others waiting in the exchange.
        return terms.invariance + weight("lambda_param", self.lambda_param) * terms.redundancy

    def extra_repr(self) -> str:
        return f"lambda_param={self.lambda_param!r}, gather_distributed={self.gather_distributed!r}"


class VICRegLoss(nn.Module):
    r"""lightly's ``VICRegLoss``: the terms of :func:`redundancy.vicreg_terms`, weighed as lightly does.

    .. math::

        L = \lambda\, \mathrm{mse}(z_a, z_b) + \mu\, \tfrac12 \big(v(z_a) + v(z_b)\big) + \nu \big(c(z_a) + c(z_b)\big)

    with :math:`v` and :math:`c` the variance and covariance terms of :func:`redundancy.vicreg_loss` (unbiased,
    γ = 1).

    Inputs of shape ``(N, ..., D)`` (VICRegL's local features, ``(N, M, D)``) are lightly's generalization: the
    statistics are taken over the batch for each of the M positions separately, and each term is the mean over the
    positions of that term of each ``(N, D)`` slice (``z_a[:, m]``, ``z_b[:, m]``), which is what lightly computes.

    Args:
        lambda_param: λ, weight of the invariance term.
        mu_param: μ, weight of the variance term.
        nu_param: ν, weight of the covariance term.
        gather_distributed: ``True``: the loss of the global batch under ``torch.distributed``
            (``distributed="global"``; see the module docstring); ``False``: each rank's own loss
            (``distributed="local"``), as in lightly.
        eps: ε, added to the variance before the square root: a finite non-negative number (a tensor is read
            with ``.item()``).

    The weights may be any real number or one-element real tensor, and all hyperparameters are read at each call
    (see the module docstring).

    Shape:
        ``z_a``, ``z_b``: ``(N, D)`` or ``(N, ..., D)``, the same shape; the result is a 0-dim tensor (the shape of
        tensor weights broadcast with it), float32 for half-precision inputs (lightly returns the input dtype).

    Raises:
        ValueError: mismatched shapes, inputs of fewer than 2 dimensions or a batch of one row, a negative or
            non-finite ``eps``, ``gather_distributed=True`` without ``torch.distributed``.
        TypeError: a weight that is not a real number or a one-element real tensor, an ``eps`` that is not a real
            number or that requires grad, a ``gather_distributed`` that is not a bool.

    Example:
        >>> import torch
        >>> from redundancy.compat.lightly import VICRegLoss
        >>> import redundancy
        >>> criterion = VICRegLoss()
        >>> z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
        >>> torch.allclose(criterion(z_a, z_b), redundancy.vicreg_loss(z_a, z_b))
        True
        >>> local_a, local_b = torch.randn(32, 4, 16), torch.randn(32, 4, 16)  # VICRegL: 4 positions
        >>> per_position = [redundancy.vicreg_loss(local_a[:, m], local_b[:, m]) for m in range(4)]
        >>> torch.allclose(criterion(local_a, local_b), torch.stack(per_position).mean())
        True
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 0.0001,
    ) -> None:
        super().__init__()
        _check_gather_distributed(gather_distributed)
        for name, value in (("lambda_param", lambda_param), ("mu_param", mu_param), ("nu_param", nu_param)):
            weight(name, value)
        check_real("eps", number("eps", eps), nonnegative=True)  # as the variance hinge checks it at each call
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        options: dict[str, Any] = {"eps": number("eps", self.eps), "distributed": _distributed(self.gather_distributed)}
        with _named_as_lightly():
            if not _has_positions(z_a, z_b):  # (N, D), or inputs the loss itself refuses on every rank
                _, invariance, variance, covariance = vicreg_terms(z_a, z_b, **options)
            else:
                positions = math.prod(z_a.shape[1:-1])
                if positions == 0:
                    shape = tuple(z_a.shape)
                    raise ValueError(f"z_a and z_b need at least one position between batch and features, got {shape}")
                z_a = z_a.reshape(z_a.shape[0], positions, z_a.shape[-1])
                z_b = z_b.reshape(z_b.shape[0], positions, z_b.shape[-1])
                per_position = [vicreg_terms(z_a[:, m], z_b[:, m], **options)[1:] for m in range(positions)]
                invariance, variance, covariance = (
                    torch.stack(term).mean() for term in zip(*per_position, strict=True)
                )
        # Checked after the terms, as lightly's arithmetic fails after its collectives (see BarlowTwinsLoss).
        return (
            weight("lambda_param", self.lambda_param) * invariance
            + weight("mu_param", self.mu_param) * variance
            + weight("nu_param", self.nu_param) * covariance
        )

    def extra_repr(self) -> str:
        return (
            f"lambda_param={self.lambda_param!r}, mu_param={self.mu_param!r}, nu_param={self.nu_param!r}, "
            f"gather_distributed={self.gather_distributed!r}, eps={self.eps!r}"
        )
