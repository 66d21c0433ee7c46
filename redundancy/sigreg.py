r"""SIGReg (Balestriero & LeCun, 2025) and the LeJEPA objective built on it, with their Modules.

SIGReg tests M random one-dimensional projections ``p_nm = z_n · a_m`` of the embeddings (``a_m`` unit directions)
against a standard normal with the Epps–Pulley statistic on K knots ``t_k``, and averages the M statistics. LeJEPA
adds to it the squared distance of every view's embedding to the mean of the views. Both follow
``rbalestr-lab/lejepa`` (``MINIMAL.md``; ``lejepa/univariate/epps_pulley.py``; ``lejepa/multivariate/slicing.py``).

The statistic needs only the sums over the rows of ``cos(t_k p_nm)`` and ``sin(t_k p_nm)`` (M×K each), which
``redundancy._ops.characteristic_sums`` computes without the N×M×K tensor of the official code. The sums add up
over rows, so the loss of the global batch of several ranks is that of the sums all-reduced (the row count is their
first knot's cosine sum): one all-reduce of ``2·V·M·K`` numbers (and one more for LeJEPA's invariance), whatever N.

**The directions are the same on every rank**, or the ranks would test different projections and their sums would
not add up to anything. They come from one of three places:

- ``directions=`` a ``(D, M)`` tensor: the ranks compare a fingerprint of it in the exchange that opens every call
  (a host read of the tensor: on a GPU a copy of its ``D·M`` numbers and a synchronization per call);
- ``generator=`` a :class:`torch.Generator`: every rank draws from its own, and the ranks compare a fingerprint of
  the generator's state before the draw (a host read of the state, which a CUDA generator keeps on the host: no
  synchronization). Seed the generator alike on every rank;
- neither: every rank draws from the default generator of the embeddings' device (so that the default generators
  advance alike on every rank), and the first rank's draw is broadcast to the others (``D·M`` numbers per call);
  one process draws as ``MINIMAL.md`` does.

A mismatch raises the same error on every rank. Under ``torch.compile`` the exchange is traced and cannot read the
directions or a generator's state on the host: given ``directions`` are then compared on the device instead (a
fingerprint all-gathered and asserted equal with ``torch._assert_async``, no host read); ``generator=`` is refused
(dynamo cannot trace a :class:`torch.Generator`); the default generator's draw is broadcast as in eager mode.
"""

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
import torch.distributed as dist

from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._dtensor import is_dtensor
from redundancy._exchange import Shared
from redundancy._exchange import hash32
from redundancy._frame import POSITIVE
from redundancy._frame import Distributed
from redundancy._frame import GradientConvention
from redundancy._frame import Inputs
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import Options
from redundancy._frame import Views
from redundancy._frame import ViewsArgument
from redundancy._frame import ViewSequence
from redundancy._frame import module_options
from redundancy._frame import same_arguments_as
from redundancy._ops.sigreg import characteristic_sums
from redundancy._ops.sigreg import epps_pulley_from_sums
from redundancy._validation import check_embedding
from redundancy._validation import check_integer
from redundancy._validation import check_real

__all__ = [
    "LeJEPALoss",
    "LeJEPATerms",
    "SIGRegLoss",
    "lejepa_loss",
    "lejepa_terms",
    "sigreg_loss",
]


# ------------------------------------------------------------------------------------------------ the directions

#: Fingerprints are below this, so that they are exact in float64; 0 stands for "not given".
_FINGERPRINT_MODULUS = 2**52 - 1


def _byte_sums(tensor: torch.Tensor) -> torch.Tensor:
    """Two sums of the 16-bit words of ``tensor``'s bytes, plain and weighted by position (int64, on its device):
    equal for tensors equal bit for bit; for different tensors equal only by a contrived coincidence. No host read.
    """
    data = tensor.detach().contiguous().reshape(-1)
    if data.element_size() == 1:  # a generator's state: bytes
        words = data.to(torch.int64)
    else:  # floating dtypes are 2, 4 or 8 bytes: whole 16-bit words
        words = data.view(torch.int16).to(torch.int64) & 0xFFFF
    positions = torch.arange(words.numel(), device=words.device, dtype=torch.int64) % 65521 + 1
    return torch.stack((words.sum(), (words * positions).sum()))  # below 2^32 · numel: no overflow


def _fingerprint(tensor: torch.Tensor, *what: object) -> float:
    """A number, exact in float64, that is equal on two ranks when their tensors (and ``what``) are: the shape, the
    dtype and :func:`_byte_sums`, combined on the host (one read of two numbers)."""
    plain, weighted = _byte_sums(tensor).tolist()
    described = hash32(repr((tuple(tensor.shape), str(tensor.dtype), *what)))
    return float(1 + (described + 65599 * plain + 1000003 * weighted) % _FINGERPRINT_MODULUS)


def _compared() -> bool:
    """Whether a fingerprint is worth computing: eagerly, in a process group of several ranks (one process has no
    one to compare with; a ``torch.compile`` graph cannot read it on the host, see the module docstring)."""
    return (
        not torch.compiler.is_compiling()
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size() > 1
    )


def _check_directions(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, torch.Tensor) or is_dtensor(value):
        raise TypeError(f"{name} must be None or a torch.Tensor of shape (D, M), got {type(value).__name__}")
    if value.layout != torch.strided or value.is_meta:
        raise ValueError(f"{name} must be a dense tensor with values, got layout {value.layout} on {value.device}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if value.ndim != 2 or value.shape[0] < 1 or value.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D of shape (D, M) with D, M >= 1, got shape {tuple(value.shape)}")


def _encode_directions(value: torch.Tensor | None) -> float:
    return 0.0 if value is None or not _compared() else _fingerprint(value)


def _describe_directions(number: float) -> str:
    return "None" if number == 0 else f"a tensor of fingerprint {int(number):#x}"


def _check_generator(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be None or a torch.Generator, got {type(value).__name__}")
    if torch.compiler.is_compiling():
        raise ValueError(
            f"{name}=: torch.compile cannot trace a torch.Generator (its state lives outside the graph); draw the "
            "directions outside the compiled function and pass them as directions=, or leave generator=None to "
            "draw from the default generator, which the graph holds"
        )


def _encode_generator(value: torch.Generator | None) -> float:
    return 0.0 if value is None or not _compared() else _fingerprint(value.get_state(), value.device.type)


def _describe_generator(number: float) -> str:
    return "None" if number == 0 else f"a generator in a state of fingerprint {int(number):#x}"


def _check_knots(name: str, value: object) -> None:
    check_integer(name, value)
    if not value >= 2:  # type: ignore[operator]
        raise ValueError(f"{name} must be at least 2 (the knots t = 0 and t = t_max), got {value!r}")


#: ``metadata`` of ``directions``: the ranks compare a fingerprint of the tensor (see the module docstring).
DIRECTIONS = {"check": _check_directions, "encode": _encode_directions, "decode": _describe_directions}
#: ``metadata`` of ``generator``: the ranks compare a fingerprint of its state before the draw.
GENERATOR = {"check": _check_generator, "encode": _encode_generator, "decode": _describe_generator}
#: ``metadata`` of ``knots``: an integer of at least 2.
KNOTS = {"check": _check_knots, "encode": float, "decode": int}


def _check_one_source(options: Any) -> None:
    if options.directions is not None and options.generator is not None:
        raise ValueError(
            "pass directions or generator, not both: generator draws the directions when directions is None"
        )


def _unit_directions(options: Any, batch: GlobalBatch, device: torch.device) -> torch.Tensor:
    """The ``(D, M)`` directions of this call, the same on every rank, each column of unit norm, in the compute
    dtype on ``device``."""
    dim = batch.dim
    if options.directions is not None:
        raw = options.directions
        if raw.shape[0] != dim:  # D and the directions' fingerprint are compared: the same error on every rank
            raise ValueError(
                f"directions must have one row per feature, shape (D, M) = ({dim}, M), got {tuple(raw.shape)}"
            )
        if torch.compiler.is_compiling():
            batch.assert_same(
                _byte_sums(raw).to(device),
                "directions differ between the ranks of the process group (compared on the device inside the "
                "torch.compile graph): pass the same directions on every rank",
            )
    elif options.generator is not None:
        generator = options.generator
        raw = torch.randn((dim, options.num_slices), generator=generator, device=generator.device, dtype=torch.float32)
    else:  # every rank draws, so that the default generators advance alike; the first rank's draw is used
        raw = batch.broadcast(torch.randn((dim, options.num_slices), device=device, dtype=torch.float32))
    directions = raw.to(device=device, dtype=batch.dtype)
    return directions / torch.linalg.vector_norm(directions, dim=0)


def _knots(options: Any) -> int:
    """``knots`` as a Python int: ``torch.compile(dynamic=True)`` keeps an int argument symbolic (``int()`` does not
    change that, ``operator.index`` does), and the knots are laid out on the host."""
    return operator.index(options.knots)


def _characteristic_sums(options: Any, projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sums over this rank's rows of ``cos(t_k p)`` and ``sin(t_k p)``, ``(V, M, K)`` each, for ``projections``
    ``(V, N_r, M)``."""
    return characteristic_sums(projections, knots=_knots(options), t_max=options.t_max)


def _sigreg_from_sums(options: Any, batch: GlobalBatch, cos_sums: torch.Tensor, sin_sums: torch.Tensor):
    """The mean over views and slices of the Epps–Pulley statistic of the global batch, from its sums."""
    statistic = epps_pulley_from_sums(cos_sums, sin_sums, batch.count, knots=_knots(options), t_max=options.t_max)
    return statistic.mean()


# ------------------------------------------------------------------------------------------------ SIGReg


class Embeddings(Views):
    """``z``: the embeddings of one view, ``(N, D)``, or of V views of one batch stacked, ``(V, N, D)``.

    A ``(V, N, D)`` tensor is checked view by view (``z[v]``); the ranks of a process group compare V (0 for a 2-D
    ``z``).
    """

    def __init__(self) -> None:
        super().__init__("z")

    def check(self, inputs: tuple, min_rows: int) -> Inputs:
        (z,) = inputs
        if not (isinstance(z, torch.Tensor) and z.ndim == 3):
            views, names, _ = super().check(inputs, min_rows)
            return Inputs(views, names, (Shared("the views of z", 0.0, _describe_views),))
        if z.shape[0] < 1:
            raise ValueError(f"z of shape (V, N, D) needs at least one view, got shape {tuple(z.shape)}")
        views = tuple(z.unbind(0))
        names = tuple(f"z[{index}]" for index in range(len(views)))
        for name, view in zip(names, views, strict=True):
            check_embedding(name, view, min_rows=min_rows)
        return Inputs(views, names, (Shared("the views of z", float(len(views)), _describe_views),))


def _describe_views(number: float) -> str:
    return "none (2-D)" if number == 0 else f"{int(number)} (3-D)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SIGRegOptions(Options):
    """The options of :func:`sigreg_loss` (documented there), declared once."""

    num_slices: int = dataclasses.field(default=256, metadata=POSITIVE)
    knots: int = dataclasses.field(default=17, metadata=KNOTS)
    t_max: float = dataclasses.field(default=3.0, metadata=POSITIVE)
    directions: torch.Tensor | None = dataclasses.field(default=None, metadata=DIRECTIONS)
    generator: torch.Generator | None = dataclasses.field(default=None, metadata=GENERATOR)
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None

    def check_combination(self) -> None:
        _check_one_source(self)


SIGREG = Loss("sigreg_loss", SIGRegOptions, Embeddings(), min_rows=1)


def _refuse_stacked_dtensor(z: object) -> None:
    """A DTensor ``z`` must be 2-D: its placements say which ranks hold which rows of ``(N, D)``.

    The same on every rank (a DTensor's shape is global), so raising here leaves no rank waiting."""
    if is_dtensor(z) and isinstance(z, torch.Tensor) and z.ndim != 2:
        raise ValueError(
            f"z: a DTensor must be 2-D, (N, D) split by rows (Shard(0)), got shape {tuple(z.shape)}; pass the views "
            "of a (V, N, D) DTensor one call each, or each rank's block (to_local()) with group="
        )


def sigreg_loss(
    z: torch.Tensor,
    *,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    directions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""SIGReg (Balestriero & LeCun, 2025): how far random 1-D projections of ``z`` are from a standard normal.

    With the unit directions :math:`a_m` (the columns of ``directions`` divided by their norms), the projections
    :math:`p_{nm} = z_n \cdot a_m`, the knots :math:`t_k = k\,t_{\max}/(K-1)`, :math:`k = 0, \dots, K-1`, and the
    trapezoid weights :math:`w_k = c_k \Delta t\, e^{-t_k^2/2}` (:math:`c_k` = 2 inside, 1 at both ends,
    :math:`\Delta t = t_{\max}/(K-1)`):

    .. math::

        T_m = N \sum_k w_k \Big[\Big(\frac1N \sum_n \cos(t_k p_{nm}) - e^{-t_k^2/2}\Big)^2
              + \Big(\frac1N \sum_n \sin(t_k p_{nm})\Big)^2\Big],
        \qquad L = \frac1M \sum_m T_m,

    the Epps–Pulley statistic of each slice (the weighted squared distance of the empirical characteristic function
    from :math:`e^{-t^2/2}`, integrated over :math:`[-t_{\max}, t_{\max}]` by doubling the half range), averaged
    over the slices, and over the views for a ``(V, N, D)`` ``z`` (each view tested on its own; N is the number of
    rows of one view). The defaults are those of ``rbalestr-lab/lejepa``: 17 knots on ``[0, 3]`` (``EppsPulley``,
    ``MINIMAL.md``), 256 slices (``MINIMAL.md``). The N×M×K tensor of the official code is never formed (the sums
    over the rows are built from about 2√K complex exponentials per projection): at N = 2048, D = 1024 and the
    defaults, forward and backward in
    float32 add 21.5 MiB to the inputs where the official formula adds 205 MiB, in 0.57× its time on one CPU thread
    (``python -m benchmarks.sigreg``, ``benchmarks/results/cpu-sigreg-public``).

    Args:
        z: embeddings, shape ``(N, D)``, or V views of one batch stacked, ``(V, N, D)``, floating point. Under
            ``distributed="global"`` with several ranks, each rank passes its own rows (``N_r`` may be 0, the global
            ``N >= 1``) and the same V. A DTensor ``z`` is 2-D with its rows split (``Shard(0)``).
        num_slices: M, the number of directions drawn when ``directions`` is not given.
        knots: K, the number of knots on ``[0, t_max]`` (at least 2; the official ``EppsPulley`` asks for an odd
            number, ``MINIMAL.md`` does not).
        t_max: the last knot.
        directions: ``(D, M)`` directions (any norms, any device; they are moved to ``z``'s device and normalized
            in the compute dtype), the same on every rank; ``None`` draws them. Gradients reach them.
        generator: where to draw the ``(D, num_slices)`` directions from when ``directions`` is ``None``: standard
            normal float32 numbers on the generator's device, as ``SlicingUnivariateTest`` draws them (its first
            call draws what ``torch.Generator().manual_seed(0)`` draws). ``None``: the default generator of ``z``'s
            device, whose draw the first rank of a process group broadcasts to the others (under
            :func:`torch.func.vmap`, pass ``randomness="same"`` for one draw for all the problems, as given
            ``directions`` would be). A generator must be in the same state on every rank. Refused under
            ``torch.compile``.
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one rank,
            the statistic of the batch of all ranks: the sums over the rows of every rank, N the global count, the
            same value on every rank) or ``"local"`` (each rank's own batch, as ``MINIMAL.md`` computes it, each
            rank with its own draw). Without ``torch.distributed``, or with one rank, both are the single-process
            loss and nothing is communicated.
        gradient_convention: ``"global"`` (after DDP's gradient averaging, parameter gradients equal those of one
            process training on the concatenated batch; input gradients are W times ``∂L/∂z`` of this rank's
            rows) or ``"official"`` (``∂L/∂z`` itself, 1/W of the former), as in
            :func:`redundancy.barlow_twins_loss`.
        group: the process group of the global batch; ``None`` for the default group.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise (half-precision inputs are
        projected and summed in float32; their gradients come back in their own dtype).

    Example:
        >>> import torch
        >>> from redundancy import sigreg_loss
        >>> z = torch.randn(512, 32)
        >>> gaussian = sigreg_loss(z, generator=torch.Generator().manual_seed(0))
        >>> shifted = sigreg_loss(z + 1.0, generator=torch.Generator().manual_seed(0))
        >>> bool(gaussian < 2.0 < 20.0 < shifted)  # of order 1 for Gaussian samples, else growing with N
        True
    """
    _refuse_stacked_dtensor(z)
    with SIGREG.open(locals()) as call:  # every argument, by name
        return call.finish(_sigreg(call.options, call.batch, call.inputs[0]))


def _sigreg(options: SIGRegOptions, batch: GlobalBatch, z: torch.Tensor) -> torch.Tensor:
    views = z.to(batch.dtype) if z.ndim == 3 else z.to(batch.dtype).unsqueeze(0)
    projections = torch.matmul(views, _unit_directions(options, batch, views.device))
    cos_sums, sin_sums = batch.sum(*_characteristic_sums(options, projections))
    return _sigreg_from_sums(options, batch, cos_sums, sin_sums)


class SIGRegLoss(LossModule):
    r"""SIGReg as a module; ``forward(z)`` is :func:`redundancy.sigreg_loss`.

    The options are those of :func:`redundancy.sigreg_loss`, stored as attributes of the same names and checked
    here, at construction. The module has no parameters or buffers (a ``directions`` tensor is a plain attribute,
    which :meth:`torch.nn.Module.to` does not move; the loss moves it to the embeddings' device).

    Example:
        >>> import torch
        >>> from redundancy import SIGRegLoss
        >>> criterion = SIGRegLoss(num_slices=64, generator=torch.Generator().manual_seed(0))
        >>> z = torch.randn(128, 16, requires_grad=True)
        >>> criterion(z).backward()
        >>> z.grad.shape
        torch.Size([128, 16])
    """

    loss = SIGREG

    @module_options(SIGRegOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The value of :func:`redundancy.sigreg_loss` with this module's options."""
        return sigreg_loss(z, **self.options)


# ------------------------------------------------------------------------------------------------ LeJEPA


class LeJEPATerms(NamedTuple):
    """The LeJEPA loss and its two terms, as :func:`lejepa_terms` returns them.

    ``loss = lamb * sigreg + (1 - lamb) * invariance``. All three are 0-dim tensors and carry gradients.

    Example:
        >>> import torch
        >>> from redundancy import lejepa_terms
        >>> views = torch.randn(4, 64, 16)
        >>> generator = torch.Generator().manual_seed(0)
        >>> loss, sigreg, invariance = lejepa_terms(views, lamb=0.1, generator=generator)
        >>> torch.allclose(loss, 0.1 * sigreg + 0.9 * invariance)
        True
    """

    loss: torch.Tensor
    """The loss, as :func:`lejepa_loss` returns it."""
    sigreg: torch.Tensor
    """SIGReg of all the views (:func:`sigreg_loss` of the ``(V, N, D)`` stack, one set of directions)."""
    invariance: torch.Tensor
    """The mean over views, rows and features of the squared distance of each view to the centre of the views."""


def _check_global_views(name: str, value: object) -> None:
    if value is not None:
        check_integer(name, value, positive=True)


def _check_lamb(name: str, value: object) -> None:
    check_real(name, value, nonnegative=True)
    if not value <= 1:  # type: ignore[operator]
        raise ValueError(f"{name} must be in [0, 1] (the weights are lamb and 1 - lamb), got {value!r}")


#: ``metadata`` of ``global_views``: ``None`` or a positive integer (checked against V when the views are known).
GLOBAL_VIEWS = {"check": _check_global_views, "encode": lambda v: 0.0 if v is None else float(v), "decode": str}
#: ``metadata`` of ``lamb``: a real number in [0, 1].
LAMB = {"check": _check_lamb, "encode": float, "decode": float}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeJEPAOptions(Options):
    """The options of :func:`lejepa_loss` (documented there), declared once."""

    lamb: float = dataclasses.field(default=0.02, metadata=LAMB)
    global_views: int | None = dataclasses.field(default=None, metadata=GLOBAL_VIEWS)
    num_slices: int = dataclasses.field(default=256, metadata=POSITIVE)
    knots: int = dataclasses.field(default=17, metadata=KNOTS)
    t_max: float = dataclasses.field(default=3.0, metadata=POSITIVE)
    directions: torch.Tensor | None = dataclasses.field(default=None, metadata=DIRECTIONS)
    generator: torch.Generator | None = dataclasses.field(default=None, metadata=GENERATOR)
    distributed: Distributed = "global"
    gradient_convention: GradientConvention = "global"
    group: ProcessGroup | None = None

    def check_combination(self) -> None:
        _check_one_source(self)


LEJEPA = Loss("lejepa_loss", LeJEPAOptions, ViewSequence(), min_rows=1)


def _lejepa_terms(options: LeJEPAOptions, batch: GlobalBatch, views: Sequence[torch.Tensor]) -> LeJEPATerms:
    count = len(views)
    centred_views = options.global_views if options.global_views is not None else count
    if centred_views > count:  # V and global_views are compared: the same error on every rank
        raise ValueError(f"global_views must be at most the number of views, {count}, got {options.global_views}")
    proj = torch.stack([view.to(batch.dtype) for view in views])  # (V, N_r, D)
    centres = proj[:centred_views].mean(dim=0)
    squares = (centres - proj).square().sum()
    projections = torch.matmul(proj, _unit_directions(options, batch, proj.device))
    cos_sums, sin_sums, squares = batch.sum(*_characteristic_sums(options, projections), squares)
    sigreg = _sigreg_from_sums(options, batch, cos_sums, sin_sums)
    invariance = squares / (count * batch.count * batch.dim)
    return LeJEPATerms(sigreg * options.lamb + invariance * (1 - options.lamb), sigreg, invariance)


def lejepa_loss(
    views: ViewsArgument,
    *,
    lamb: float = 0.02,
    global_views: int | None = None,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    directions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    distributed: Distributed = "global",
    gradient_convention: GradientConvention = "global",
    group: ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The LeJEPA objective (Balestriero & LeCun, 2025) of V ≥ 2 views of one batch: SIGReg plus invariance.

    With the views :math:`z^{(v)}` stacked as ``(V, N, D)`` and their centre :math:`\bar z = \frac1G \sum_{v \le G}
    z^{(v)}` (the mean of the first G views, all V by default):

    .. math::

        L = \lambda\, \mathrm{SIGReg}(z)
          + (1 - \lambda) \frac{1}{VND} \sum_{v,n,i} \big(\bar z_{ni} - z^{(v)}_{ni}\big)^2,

    with :math:`\mathrm{SIGReg}` the loss of :func:`~redundancy.sigreg_loss` of all V views (one set of directions,
    each view tested on its own, the mean over views and slices). This is the objective of ``MINIMAL.md``'s
    training loop (``inv_loss = (proj.mean(0) - proj).square().mean()``, ``sigreg_loss * lamb + inv_loss * (1 -
    lamb)``): the invariance term averages over the D features too. ``lamb = 0.02`` is the value of its
    recommended command line (``+lamb=0.02``; the code has no default; lightly's ``LeJEPALoss`` takes 0.05).

    Args:
        views: the projected views, a sequence of V ≥ 2 tensors of shape ``(N, D)`` (same shape and device), or one
            tensor of shape ``(V, N, D)``. Under ``distributed="global"`` with several ranks, each rank passes its
            own rows ``(N_r, D)`` of every view (``N_r`` may be 0) and the same V.
        lamb: λ in [0, 1], the weight of SIGReg; the invariance term has weight ``1 - lamb``.
        global_views: G, the number of leading views whose mean is the centre (the multi-crop form: global views
            first, then local ones, as lightly's ``LeJEPALoss`` orders them); ``None`` takes all V, as ``MINIMAL.md``.
            Every view enters both terms.
        num_slices, knots, t_max, directions, generator: SIGReg's, as in :func:`~redundancy.sigreg_loss` (the same
            directions on every rank).
        distributed: ``"global"`` (when ``torch.distributed`` is initialized and ``group`` has more than one rank,
            the loss of the batch of all ranks: SIGReg's sums and the invariance term's sum over every rank's rows,
            the same value on every rank; one all-reduce of ``2·V·M·K + 1`` numbers) or ``"local"`` (each rank's own
            batch, as ``MINIMAL.md``). Without ``torch.distributed``, or with one rank, both are the single-process
            loss.
        gradient_convention, group: as in :func:`~redundancy.sigreg_loss`.

    Returns:
        The loss as a 0-dim tensor, float64 for float64 inputs and float32 otherwise.

    Example:
        >>> import torch
        >>> from redundancy import lejepa_loss, sigreg_loss
        >>> views = torch.randn(4, 64, 16)
        >>> directions = torch.randn(16, 256)
        >>> invariance = (views.mean(0) - views).square().mean()
        >>> expected = 0.02 * sigreg_loss(views, directions=directions) + 0.98 * invariance
        >>> torch.allclose(lejepa_loss(views, directions=directions), expected)
        True
    """
    return lejepa_terms(**locals()).loss  # every argument, by name


@same_arguments_as(lejepa_loss, LeJEPATerms)
def lejepa_terms(views: ViewsArgument, **options: Any) -> LeJEPATerms:
    r"""The LeJEPA loss together with its SIGReg and invariance terms, for logging.

    Takes the arguments of :func:`lejepa_loss`; ``terms.loss`` is exactly what that returns.

    Returns:
        :class:`LeJEPATerms` ``(loss, sigreg, invariance)``, each a 0-dim tensor with gradients.

    Example:
        >>> import torch
        >>> from redundancy import lejepa_terms
        >>> views = [torch.randn(32, 8) for _ in range(3)]
        >>> terms = lejepa_terms(views, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(terms.loss, 0.02 * terms.sigreg + 0.98 * terms.invariance)
        True
    """
    with LEJEPA.open(dict(options, views=views)) as call:
        return call.finish(_lejepa_terms(call.options, call.batch, call.inputs))


class LeJEPALoss(LossModule):
    r"""The LeJEPA objective as a module; ``forward(views)`` is :func:`redundancy.lejepa_loss`.

    The options are those of :func:`redundancy.lejepa_loss`, stored as attributes of the same names and checked
    here, at construction. The module has no parameters or buffers.

    Example:
        >>> import torch
        >>> from redundancy import LeJEPALoss
        >>> criterion = LeJEPALoss(lamb=0.05, generator=torch.Generator().manual_seed(0))
        >>> views = torch.randn(4, 64, 16, requires_grad=True)  # (V, N, D), or a list of V (N, D) tensors
        >>> criterion(views).backward()
        >>> criterion.terms(views).invariance.item() > 0
        True
    """

    loss = LEJEPA

    @module_options(LeJEPAOptions)
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def forward(self, views: ViewsArgument) -> torch.Tensor:
        """The value of :func:`redundancy.lejepa_loss` with this module's options."""
        return lejepa_loss(views, **self.options)

    def terms(self, views: ViewsArgument) -> LeJEPATerms:
        """The loss with its terms, as :func:`redundancy.lejepa_terms` returns them."""
        return lejepa_terms(views, **self.options)
