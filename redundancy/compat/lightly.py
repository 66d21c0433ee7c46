"""lightly's ``BarlowTwinsLoss``, ``VICRegLoss``, ``SIGReg``, ``LeJEPALoss`` and ``MMCRLoss`` as thin modules over
``redundancy``.

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

``SIGReg``, ``LeJEPALoss`` and ``MMCRLoss`` (lightly 1.6) say in their own docstrings where lightly's computation
differs from theirs: the directions of SIGReg, LeJEPA's invariance term and MMCR under ``torch.distributed``.
"""

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from redundancy import barlow_twins_terms
from redundancy import lejepa_terms
from redundancy import mmcr_terms
from redundancy import sigreg_loss
from redundancy import vicreg_terms
from redundancy._validation import check_real
from redundancy.compat._options import number
from redundancy.compat._options import weight

__all__ = ["BarlowTwinsLoss", "LeJEPALoss", "MMCRLoss", "SIGReg", "VICRegLoss"]


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
def _renamed(*substitutions: tuple[str, Any]) -> Iterator[None]:
    """The library's errors about its inputs and options, re-raised with lightly's names: each ``(pattern,
    replacement)`` as :func:`re.sub` takes them.

    The adapters leave the checks of the inputs to the loss itself rather than checking first: under
    ``torch.distributed`` the loss raises a bad input of one rank on every rank (a check made here would raise on
    that rank only and leave the others waiting), and in any mode it counts the call on every rank.
    """
    try:
        yield
    except (TypeError, ValueError) as error:
        message = str(error)
        for pattern, replacement in substitutions:
            message = re.sub(pattern, replacement, message)
        raise type(error)(message) from error


#: The library's ``z1`` and ``z2`` as lightly's ``z_a`` and ``z_b``, for :func:`_renamed`.
_VIEWS_AS_LIGHTLY = (r"\bz([12])\b", lambda match: "z_a" if match.group(1) == "1" else "z_b")


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
        with _renamed(_VIEWS_AS_LIGHTLY):
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
        >>> from redundancy import vicreg_loss
        >>> from redundancy.compat.lightly import VICRegLoss
        >>> local_a, local_b = torch.randn(32, 4, 16), torch.randn(32, 4, 16)  # VICRegL: 4 positions
        >>> per_position = torch.stack([vicreg_loss(local_a[:, m], local_b[:, m]) for m in range(4)])
        >>> torch.allclose(VICRegLoss()(local_a, local_b), per_position.mean())
        True
        >>> torch.allclose(VICRegLoss()(local_a[:, 0], local_b[:, 0]), per_position[0])  # (N, D)
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
        with _renamed(_VIEWS_AS_LIGHTLY):
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


# ------------------------------------------------------------------------------------------------ SIGReg, LeJEPA


def _view_names(first: str, second: str, count: int) -> tuple[str, Any]:
    """``views[i]`` of the library as ``first[i]`` for ``i < count``, else ``second[i - count]``."""

    def name(match: re.Match) -> str:
        index = int(match.group(1))
        return first.format(index) if index < count else second.format(index - count)

    return r"\bviews\[(\d+)\]", name


class SIGReg(nn.Module):
    r"""lightly's ``SIGReg``: :func:`redundancy.sigreg_loss` of the projections, with lightly's arguments.

    .. math::

        L = \frac{1}{M} \sum_m N \sum_k w_k \Big[\Big(\frac1N \sum_n \cos(t_k p_{nm}) - e^{-t_k^2/2}\Big)^2
            + \Big(\frac1N \sum_n \sin(t_k p_{nm})\Big)^2\Big]

    averaged over the leading dimensions of ``proj`` too, with ``num_vectors`` random unit directions drawn at each
    call (see :func:`redundancy.sigreg_loss`).

    Args:
        knots: K, the number of knots on ``[0, t_max]`` (lightly: an integer greater than one).
        t_max: the last knot.
        num_vectors: M, the number of directions drawn at each call (lightly's default 1024; the official
            ``MINIMAL.md`` uses 256, the library's default).
        gather_distributed: ``True``: the statistic of the global batch under ``torch.distributed``
            (``distributed="global"``), the directions drawn by rank 0 and broadcast, as lightly does; ``False``:
            each rank's own, with its own directions.

    The buffers ``t``, ``phi`` and ``weights`` are lightly's (so that a ``state_dict`` of either loads into the
    other); the loss computes its knots and weights in the compute dtype.

    Where this differs from lightly 1.6 (each shown by ``tests/compat/test_lightly_sigreg.py`` and
    ``test_lightly_sigreg_distributed.py``):

    - the directions are standard normal **float32** numbers from the default generator of the device, as the
      official code draws them, then normalized in the compute dtype. lightly draws them in the input's dtype: the
      same numbers for float32 inputs, other random numbers for float64 ones, and for bfloat16 or float16 inputs
      (autocast) directions rounded to half precision, normalized and projected in it;
    - half-precision ``proj`` is projected and summed in float32 (lightly projects in the input's dtype: 4e-4
      relative off the float64 statistic of the same inputs and directions, where the adapter is within 1e-6);
    - the knots and weights are computed in the compute dtype; lightly's are float32 buffers, which for float64
      inputs puts its value 2e-8 relative off the float64 formula;
    - with ``gather_distributed=True`` lightly counts the rows by an all-reduce in the input's dtype read with
      ``.item()`` (a host synchronization; in bfloat16 a global batch above 256 rows is miscounted, 257 as 256);
      here the count comes with the exchange that opens the call.

    Shape:
        ``proj``: ``(..., N, C)``; the result is a 0-dim float32 (float64 for float64 inputs) tensor.

    Example:
        >>> import torch
        >>> from redundancy.compat.lightly import SIGReg
        >>> criterion = SIGReg(num_vectors=256)
        >>> proj = torch.randn(2, 128, 32)  # two views of 128 rows
        >>> criterion(proj).shape
        torch.Size([])
    """

    t: torch.Tensor
    phi: torch.Tensor
    weights: torch.Tensor

    def __init__(
        self,
        *,
        knots: int = 17,
        t_max: float = 3.0,
        num_vectors: int = 1024,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if knots <= 1:
            raise ValueError("knots must be an integer greater than one.")
        if t_max <= 0:
            raise ValueError("t_max must be greater than zero.")
        if num_vectors <= 0:
            raise ValueError("num_vectors must be a positive integer.")
        _check_gather_distributed(gather_distributed)
        self.knots = knots
        self.t_max = t_max
        self.num_vectors = num_vectors
        self.gather_distributed = gather_distributed
        t = torch.linspace(0, t_max, knots, dtype=torch.float32)
        trapezoid = torch.full((knots,), 2 * t_max / (knots - 1), dtype=torch.float32)
        trapezoid[[0, -1]] = t_max / (knots - 1)
        window = torch.exp(-t.square() / 2.0)
        self.register_buffer("t", t)
        self.register_buffer("phi", window)
        self.register_buffer("weights", trapezoid * window)

    def forward(self, proj: torch.Tensor) -> torch.Tensor:
        z = proj
        if isinstance(proj, torch.Tensor) and proj.ndim > 3:  # lightly's (..., N, C): the leading dimensions are views
            z = proj.reshape(-1, *proj.shape[-2:])

        with _renamed((r"\bz\b(?!\[)", "proj"), (r"\bz\[", "proj[")):
            return sigreg_loss(
                z,
                num_slices=self.num_vectors,
                knots=self.knots,
                t_max=self.t_max,
                distributed=_distributed(self.gather_distributed),
            )


class LeJEPALoss(nn.Module):
    r"""lightly's ``LeJEPALoss``: the terms of :func:`redundancy.lejepa_terms`, weighed as lightly does.

    .. math::

        L = \lambda\, \mathrm{SIGReg}(\mathrm{all}) + (1 - \lambda)\, \frac{1}{V N D}
            \sum_{v,n,i} \big(\bar g_{ni} - \mathrm{all}^{(v)}_{ni}\big)^2,

    ``all`` the global views then the local ones (V of them), :math:`\bar g` the mean of the global views.

    Args:
        lambda_param: λ in [0, 1], the weight of SIGReg (lightly's default 0.05; ``MINIMAL.md``'s command line uses
            0.02, the library's default). Read at each call, as lightly reads it.
        gather_distributed: ``True``: both terms of the global batch under ``torch.distributed`` (see below);
            ``False``: each rank's own loss, as lightly.
        sigreg_knots, sigreg_t_max, sigreg_num_vectors: those of the ``sigreg`` submodule (:class:`SIGReg`).

    Where this differs from lightly 1.6 (shown by ``tests/compat/test_lightly_sigreg_distributed.py``): with
    ``gather_distributed=True`` lightly's SIGReg is that of the global batch, but its invariance term is each rank's
    own mean over its own rows. The ranks' values then differ, and with uneven shards the mean over the ranks weighs
    each rank alike instead of each row. Here both terms are those of the global batch: the value and the
    gradients (after DDP's averaging) of one process on the concatenated batch. SIGReg's directions are drawn as
    :class:`SIGReg` says.

    The shapes are checked as lightly checks them, by the rank that has them (lightly's checks too come before any
    collective); the library then checks the views together on every rank.

    Shape:
        ``local_proj``: ``(V_local, N, D)``, ``global_proj``: ``(V_global, N, D)``, each with at least one view;
        the result is a 0-dim tensor.

    Example:
        >>> import torch
        >>> from redundancy.compat.lightly import LeJEPALoss
        >>> criterion = LeJEPALoss(sigreg_num_vectors=256)
        >>> local_proj, global_proj = torch.randn(6, 32, 16), torch.randn(2, 32, 16)
        >>> criterion(local_proj=local_proj, global_proj=global_proj).shape
        torch.Size([])
    """

    def __init__(
        self,
        lambda_param: float = 0.05,
        gather_distributed: bool = False,
        sigreg_knots: int = 17,
        sigreg_t_max: float = 3.0,
        sigreg_num_vectors: int = 1024,
    ) -> None:
        super().__init__()
        if not 0.0 <= lambda_param <= 1.0:
            raise ValueError("lambda_param must be in the unit interval [0, 1].")
        self.lambda_param = lambda_param
        self.sigreg = SIGReg(
            knots=sigreg_knots,
            t_max=sigreg_t_max,
            num_vectors=sigreg_num_vectors,
            gather_distributed=gather_distributed,
        )

    def forward(self, *, local_proj: torch.Tensor, global_proj: torch.Tensor) -> torch.Tensor:
        _check_projections(local_proj=local_proj, global_proj=global_proj)
        count = global_proj.shape[0]
        views = [*global_proj.unbind(0), *local_proj.unbind(0)]

        sigreg = self.sigreg
        with _renamed(_view_names("global_proj[{}]", "local_proj[{}]", count)):
            terms = lejepa_terms(
                views,
                global_views=count,
                num_slices=sigreg.num_vectors,
                knots=sigreg.knots,
                t_max=sigreg.t_max,
                distributed=_distributed(sigreg.gather_distributed),
            )
        lambda_param = weight("lambda_param", self.lambda_param)
        return lambda_param * terms.sigreg + (1.0 - lambda_param) * terms.invariance


def _check_projections(*, local_proj: object, global_proj: object) -> None:
    """lightly's checks of ``LeJEPALoss``'s inputs, with its messages (and a TypeError for what is no tensor)."""
    for name, proj in (("local_proj", local_proj), ("global_proj", global_proj)):
        if not isinstance(proj, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (V, N, D), got {type(proj).__name__}")
    assert isinstance(local_proj, torch.Tensor) and isinstance(global_proj, torch.Tensor)
    if local_proj.ndim != 3:
        raise ValueError(f"local_proj must have shape (V_local, N, D), got {local_proj.shape}.")
    if global_proj.ndim != 3:
        raise ValueError(f"global_proj must have shape (V_global, N, D), got {global_proj.shape}.")
    if local_proj.shape[1:] != global_proj.shape[1:]:
        raise ValueError(
            "local_proj and global_proj must have matching batch and feature dimensions, got "
            f"{local_proj.shape} and {global_proj.shape}."
        )
    if local_proj.shape[0] < 1:
        raise ValueError(f"local_proj must have at least one local view, got {local_proj.shape}.")
    if global_proj.shape[0] < 1:
        raise ValueError(f"global_proj must have at least one global view, got {global_proj.shape}.")


# ------------------------------------------------------------------------------------------------ MMCR


class MMCRLoss(nn.Module):
    r"""lightly's ``MMCRLoss``: the nuclear norms of :func:`redundancy.mmcr_terms`, weighed as lightly does.

    .. math::

        L = -\lVert C \rVert_* + \lambda \frac{1}{B} \sum_b \lVert Z_b \rVert_*,

    :math:`Z_b` the ``2k × D`` matrix of sample b's online and momentum embeddings (not normalized, as lightly and its
    ``MMCRProjectionHead`` leave them; ``normalize=False`` of :func:`redundancy.mmcr_loss`), :math:`C` their
    centroids.

    Args:
        lmda: λ ≥ 0, the weight of the samples' nuclear norms (lightly's default 5e-3; the official scripts' 0).
            Read at each call.

    Where this differs from lightly 1.6 (shown by ``tests/compat/test_lightly_mmcr.py`` and
    ``test_lightly_sigreg_distributed.py``):

    - under ``torch.distributed`` lightly computes each rank's own loss: the nuclear norm of its own B×D centroids,
      which is not a part of the global batch's (nuclear norms do not add up over rows). Here the loss is that of
      the global batch (the centroids of every rank gathered), with the gradient convention of lightly's other
      losses (after DDP's averaging, the gradients of one process on the concatenated batch); lightly's
      ``MMCRLoss`` has no ``gather_distributed`` to ask for it;
    - half-precision inputs are accumulated in float32 (lightly's ``torch.linalg.svd`` refuses bfloat16 and float16
      on the CPU);
    - where singular values vanish (identical views: each sample's matrix has rank one) the gradient is the
      subgradient of least norm (see :func:`redundancy.mmcr_loss`); lightly's, through ``torch.linalg.svd``, adds
      the singular vectors of the zero singular values, which are whatever basis LAPACK returns for the null space;
    - a negative ``lmda`` set after construction is refused at the call (lightly refuses it at construction only);
    - ``online`` and ``momentum`` of different shapes raise a :class:`ValueError` naming them (lightly asserts).

    Shape:
        ``online``, ``momentum``: ``(B, k, D)``, the same shape; the result is a 0-dim tensor.

    Example:
        >>> import torch
        >>> from redundancy.compat.lightly import MMCRLoss
        >>> online, momentum = torch.randn(64, 2, 32), torch.randn(64, 2, 32)
        >>> MMCRLoss()(online, momentum).shape
        torch.Size([])
    """

    def __init__(self, lmda: float = 5e-3) -> None:
        super().__init__()
        if lmda < 0:
            raise ValueError("lmda must be greater than or equal to 0")
        self.lmda = lmda

    def forward(self, online: torch.Tensor, momentum: torch.Tensor) -> torch.Tensor:
        for name, value in (("online", online), ("momentum", momentum)):
            if not isinstance(value, torch.Tensor) or value.ndim != 3:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name} must have shape (batch_size, k, embedding_size), got {shape}")
        if online.shape != momentum.shape:
            raise ValueError(
                f"online and momentum need to have the same shape, got {tuple(online.shape)} and "
                f"{tuple(momentum.shape)}"
            )
        views = [*online.unbind(1), *momentum.unbind(1)]
        count = online.shape[1]

        with _renamed(_view_names("online[:, {}]", "momentum[:, {}]", count), (r"\blmbda\b", "lmda")):
            return mmcr_terms(views, lmbda=number("lmda", self.lmda), normalize=False).loss
