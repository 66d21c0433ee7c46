"""The frame every loss of the family runs in: its options declared once, and the opening and closing of a call.

A loss file declares

- its **options**, a frozen keyword-only dataclass deriving from :class:`Options`. Each field's type annotation
  says what the option takes (``float``, ``bool``, ``int``, a ``Literal`` of choices, ``float | Literal["auto"]``,
  a process group) and is what the frame checks at run time; the field's ``metadata`` adds a bound
  (:data:`NONNEGATIVE`, :data:`POSITIVE`), how the ranks compare it (``encode``, ``decode``), or, for an option
  whose annotation does not say it all (a tensor, a generator), its ``check``. The public functions and Modules
  spell the same options in their signatures, and ``tests/test_signatures.py`` keeps the two equal;
- its **inputs** (:class:`Views` for named ``(N, D)`` tensors, :class:`ViewSequence` for a variable number of views,
  or a subclass that checks further inputs);
- a :class:`Loss` naming both.

A public function then reads as a few steps::

    with LOSS.open((z1, z2), options) as call:   # check the options and inputs, exchange with the other ranks
        terms = _compute(call.options, call.batch, *call.inputs)    # the loss's own computation (no autocast)
        return call.finish(terms)                # the gradient convention (and DTensor outputs)

:meth:`Loss.open` checks the options and the inputs, and in a process group of several ranks joins one exchange of
headers (:func:`redundancy._exchange.open_batch`) *even when its own checks failed*, so that a bad input or option
on any rank raises the same error on every rank instead of leaving the others waiting in a collective. The batch
it returns (:class:`redundancy._batch.GlobalBatch`) is that of all ranks: one process is a group of one rank, for
which every collective is the identity.
"""

import contextlib
import dataclasses
import functools
import inspect
import numbers
import typing
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from typing import NamedTuple

import torch

from redundancy import cost
from redundancy._batch import GlobalBatch
from redundancy._batch import ProcessGroup
from redundancy._dtensor import is_dtensor
from redundancy._dtensor import unwrap as unwrap_dtensors
from redundancy._exchange import LOSS_NAMES
from redundancy._exchange import Header
from redundancy._exchange import Shared
from redundancy._exchange import as_number
from redundancy._exchange import describe_feature_group
from redundancy._exchange import feature_group_size
from redundancy._exchange import hash32
from redundancy._exchange import is_global
from redundancy._exchange import open_batch
from redundancy._ops._autocast import no_autocast
from redundancy._ops.feature_shards import terms_algorithm
from redundancy._validation import check_bool
from redundancy._validation import check_choice
from redundancy._validation import check_correction
from redundancy._validation import check_group
from redundancy._validation import check_integer
from redundancy._validation import check_real
from redundancy._validation import check_views

# ------------------------------------------------------------------------------------------------ option types

#: ``algorithm=``: through the D×D matrix (``"cross"``), the N×N Gram matrices (``"gram"``), or the cheaper.
Algorithm = Literal["auto", "cross", "gram"]
#: ``backend=``: PyTorch operations, the Triton kernels, or the faster where a GPU benchmark measured it.
Backend = Literal["auto", "torch", "triton"]
#: ``strategy=``: how the ranks combine their rows (summing C, or gathering the standardized views).
Strategy = Literal["auto", "all_reduce", "all_gather"]
#: ``distributed=``: the loss of the batch of all ranks, or each rank's own.
Distributed = Literal["global", "local"]
#: ``gradient_convention=``: gradients of one process on the global batch, or the official script's (1/W).
GradientConvention = Literal["global", "official"]
#: ``correction=``: the variance divisor ``N - correction``, as :func:`torch.var` takes it.
Correction = Literal[0, 1]

#: ``metadata`` of a real-number option that must not be negative.
NONNEGATIVE = {"nonnegative": True}
#: ``metadata`` of a real-number (or integer) option that must be positive.
POSITIVE = {"positive": True}
#: ``metadata`` of ``feature_group``: the ranks compare the size of their feature groups.
FEATURE_GROUP = {"encode": feature_group_size, "decode": describe_feature_group}


class OptionSpec(NamedTuple):
    """One option of a loss as the frame reads it (plain attributes: ``torch.compile`` traces them).

    ``encode`` maps a checked value to a number, exact in float64, that is equal on two ranks exactly when the
    values are (``None``: the ranks do not compare it, as their process groups), and ``decode`` maps it back for
    error messages.
    """

    name: str
    default: Any
    check: Callable[[str, Any], None]
    encode: Callable[[Any], float] | None
    decode: Callable[[float], Any]


def _choices(annotation: Any) -> tuple | None:
    """The values of a ``Literal`` annotation (``None`` for any other)."""
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def _spec(field: dataclasses.Field, annotation: Any) -> OptionSpec:
    """The :class:`OptionSpec` of an options dataclass's field, from its type annotation and metadata."""
    name, default, metadata = field.name, field.default, field.metadata
    bounds = {"nonnegative": metadata.get("nonnegative", False), "positive": metadata.get("positive", False)}
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, type(int | str)) else ()
    choices = _choices(annotation)

    def real(option: str, value: Any) -> None:
        check_real(option, value, **bounds)

    if "check" in metadata:  # an option whose annotation does not say it all (a tensor, a generator)
        return OptionSpec(name, default, metadata["check"], metadata.get("encode"), metadata.get("decode", str))

    if annotation is bool:
        return OptionSpec(name, default, check_bool, float, bool)
    if annotation == Correction:  # a choice of two integers, numpy's included
        return OptionSpec(name, default, check_correction, float, int)
    if annotation is int:
        return OptionSpec(name, default, lambda option, value: check_integer(option, value, **bounds), float, int)
    if annotation is float:
        return OptionSpec(name, default, real, float, float)
    if choices is not None:
        return OptionSpec(
            name, default, lambda option, value: check_choice(option, value, choices), choices.index, _decoder(choices)
        )
    if float in members and any(_choices(member) == ("auto",) for member in members):

        def real_or_auto(option: str, value: Any) -> None:
            if not (isinstance(value, str) and value == "auto"):
                check_real(option, value, **bounds, or_auto=True)

        return OptionSpec(name, default, real_or_auto, _encode_real_or_auto, _decode_real_or_auto)
    if ProcessGroup in members:
        return OptionSpec(name, default, check_group, metadata.get("encode"), metadata.get("decode", str))
    raise TypeError(f"option {name!r} has an annotation the frame cannot check: {annotation!r}")


def _decoder(choices: tuple) -> Callable[[float], Any]:
    return lambda number: choices[int(number)]


def _encode_real_or_auto(value: Any) -> float:
    return float("-inf") if isinstance(value, str) else value


def _decode_real_or_auto(number: float) -> Any:
    return "auto" if number == float("-inf") else number


#: The options of the family that every loss takes, last in its signature: they say which ranks the batch spans.
FAMILY_OPTIONS = ("distributed", "gradient_convention", "group")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """The base of a loss's options: a frozen keyword-only dataclass whose fields are the options, in the order of
    the public signature, ending with ``distributed``, ``gradient_convention`` and ``group`` (and ``feature_group``
    where the loss takes it)."""

    if typing.TYPE_CHECKING:  # declared by every loss, last (see FAMILY_OPTIONS)
        distributed: Distributed
        gradient_convention: GradientConvention
        group: ProcessGroup | None

    def check_combination(self) -> None:
        """Checks that involve several options (a loss overrides it); each option alone is already checked."""


def _plain(value: Any) -> Any:
    """A real number that is neither an integer nor a float (a ``fractions.Fraction``, a numpy float32) as a float,
    which every tensor operation takes; any other value as it is (the checks judge it)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (numbers.Integral, float, torch.SymFloat)):
        return float(value)
    return value


# ------------------------------------------------------------------------------------------------ inputs


class Inputs(NamedTuple):
    """The checked inputs of a call: the views (``(N, D)`` tensors sharing their rows), their names, and the
    values of further inputs that every rank must pass alike."""

    views: tuple[torch.Tensor, ...]
    names: tuple[str, ...]
    shared: tuple[Shared, ...] = ()


class Views:
    """Inputs that are named ``(N, D)`` views of one batch (``Views("z1", "z2")``), and perhaps further inputs.

    ``check`` raises a :class:`TypeError` or :class:`ValueError` naming the argument: floating ``(N, D)`` tensors
    of one shape on one device, with at least ``min_rows`` rows. A loss with further inputs subclasses it and
    overrides :meth:`check_extra`.
    """

    def __init__(self, *names: str, extra: tuple[str, ...] = ()) -> None:
        self.names = names
        self.extra = extra
        self.arguments = names + extra

    def check(self, inputs: tuple, min_rows: int) -> Inputs:
        views = tuple(inputs[: len(self.names)])
        check_views(self.names, views, min_rows=min_rows)
        return Inputs(views, self.names, self.check_extra(views, tuple(inputs[len(self.names) :])))

    def check_extra(self, views: tuple[torch.Tensor, ...], extra: tuple) -> tuple[Shared, ...]:
        """Check the inputs after the views; return those the ranks must pass alike (none here)."""
        return ()


class ViewSequence:
    """One input ``views``: a sequence of V ≥ 2 ``(N, D)`` tensors, or one ``(V, N, D)`` tensor.

    The ranks of a process group compare V. Each view is checked as :class:`Views` checks them, under the name
    ``views[i]``.
    """

    names = None  # no fixed names: DTensor views are not taken here
    arguments = ("views",)

    def check(self, inputs: tuple, min_rows: int) -> Inputs:
        (views,) = inputs
        if isinstance(views, torch.Tensor):
            if views.ndim != 3:
                raise ValueError(
                    f"views must be a sequence of (N, D) tensors or one (V, N, D) tensor, got a tensor of shape "
                    f"{tuple(views.shape)}"
                )
            views = tuple(views.unbind(0))
        elif isinstance(views, Sequence) and not isinstance(views, str):
            views = tuple(views)
        else:
            raise TypeError(
                f"views must be a sequence of (N, D) tensors or one (V, N, D) tensor, got {type(views).__name__}"
            )
        if len(views) < 2:
            raise ValueError(f"views must hold at least 2 views (the loss is a mean over pairs), got {len(views)}")
        names = tuple(f"views[{index}]" for index in range(len(views)))
        check_views(names, views, min_rows=min_rows)
        return Inputs(views, names, (Shared("len(views)", len(views), as_number),))


# ------------------------------------------------------------------------------------------------ the loss

#: Why a call with ``feature_group`` leaves ``torch.compile``'s graph.
GRID_OUTSIDE_GRAPHS = (
    "feature_group= runs eagerly under torch.compile: the exchanges and collectives of a grid of row and feature "
    "shards are left out of the graph (a graph break), so fullgraph=True cannot compile the loss; compile without "
    "fullgraph, or call the loss outside the compiled region"
)

Function = typing.TypeVar("Function", bound=Callable[..., Any])


def eager_on_a_grid(function: Function) -> Function:
    """``function`` (a loss that takes ``feature_group``), run eagerly when a process group is passed as
    ``feature_group``: under ``torch.compile`` that call is a graph break (``fullgraph=True`` raises
    :data:`GRID_OUTSIDE_GRAPHS`), and the call runs with the compiler disabled, the functions it calls included.

    A call on a grid reads the headers of its exchanges on the host and runs the collectives of
    :class:`~redundancy._batch.FeatureShards` inside autograd Functions, which a graph cannot hold. The disabled
    form is made at the first grid call, not at import (making it imports ``torch._dynamo``, and with it Triton,
    which ``import redundancy`` must not).
    """
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not isinstance(kwargs.get("feature_group"), ProcessGroup):
            return function(*args, **kwargs)
        if torch.compiler.is_compiling():  # a graph break, and the reason under fullgraph=True
            raise RuntimeError(GRID_OUTSIDE_GRAPHS)
        if not disabled:
            disabled.append(torch.compiler.disable(function, recursive=True))
        return disabled[0](*args, **kwargs)

    return typing.cast(Function, run)


def algorithm_on_the_grid(algorithm: str, batch: GlobalBatch, grid_cost: cost.FeatureParallelCost) -> str:
    """The algorithm a loss with features split over ``feature_group`` runs for its ``algorithm=`` option: ``"auto"``
    is :func:`redundancy.cost.choose_feature_parallel_algorithm`'s choice for the grid of ``batch``, and ``"gram"``
    takes the cross form when D ≤ N (:func:`redundancy._ops.feature_shards.terms_algorithm`)."""
    features = batch.features
    assert features is not None, "a grid needs a feature group"
    if algorithm == "auto":
        algorithm = cost.choose_feature_parallel_algorithm(
            batch.count, batch.dim, batch.world_size, features.world_size, batch.dtype, loss=grid_cost
        )
    return terms_algorithm(algorithm, batch.count, batch.dim)


# ------------------------------------------------------------------------------------------------ signatures

Arguments = typing.ParamSpec("Arguments")
Options_ = typing.ParamSpec("Options_")
Returned = typing.TypeVar("Returned")
#: The views of a multi-view loss: a sequence of ``(N, D)`` tensors or one ``(V, N, D)`` tensor.
ViewsArgument = Sequence[torch.Tensor] | torch.Tensor


def _set_signature(function: Callable[..., Any], signature: inspect.Signature) -> None:
    typing.cast(Any, function).__signature__ = signature


def same_arguments_as(
    function: Callable[Arguments, Any], returns: type[Returned]
) -> Callable[[Callable[..., Returned]], Callable[Arguments, Returned]]:
    """Give the decorated function the arguments of ``function`` (its inputs and options, with their types and
    defaults) and the return type ``returns``, for type checkers and :func:`inspect.signature`.

    A loss's ``terms`` form takes the arguments of the loss: ``@same_arguments_as(barlow_twins_loss,
    BarlowTwinsTerms)`` on ``def barlow_twins_terms(z1, z2, **options)``.
    """

    def decorate(decorated: Callable[..., Returned]) -> Callable[Arguments, Returned]:
        _set_signature(decorated, inspect.signature(function).replace(return_annotation=returns))
        return decorated

    return decorate


def multiview_form_of(
    two_views: Callable[typing.Concatenate[torch.Tensor, torch.Tensor, Options_], Returned],
) -> Callable[[Callable[..., Returned]], Callable[typing.Concatenate[ViewsArgument, Options_], Returned]]:
    """Give the decorated function the signature of ``two_views`` with ``views`` in place of ``z1, z2``: the
    multi-view form of a two-view loss takes its options."""

    def decorate(decorated: Callable[..., Returned]) -> Callable[typing.Concatenate[ViewsArgument, Options_], Returned]:
        signature = inspect.signature(two_views)
        options = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        views = inspect.Parameter("views", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ViewsArgument)
        _set_signature(decorated, signature.replace(parameters=[views, *options]))
        return decorated

    return decorate


def module_options(
    options: Callable[Options_, Options],
) -> Callable[[Callable[..., None]], Callable[typing.Concatenate[Any, Options_], None]]:
    """Give a Module's ``__init__`` the options of its loss (the fields of the options dataclass), keyword-only with
    their types and defaults."""

    def decorate(init: Callable[..., None]) -> Callable[typing.Concatenate[Any, Options_], None]:
        hints = typing.get_type_hints(options)
        parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in dataclasses.fields(typing.cast(Any, options))
        ]
        _set_signature(init, inspect.Signature(parameters, return_annotation=None))
        return init

    return decorate


#: Checked options by the keywords of the call that gave them (see :meth:`Loss.checked_options`).
_CHECKED: dict = {}
_CHECKED_LIMIT = 4096


class Call(NamedTuple):
    """An opened call of a loss: its checked options, the batch of all ranks, and the inputs to compute on.

    ``inputs`` are this rank's own, as the public function took them (DTensors unwrapped to their local blocks),
    except for a :class:`ViewSequence`: its views, one tensor each. :meth:`finish` closes the call.
    """

    options: Any
    batch: GlobalBatch
    inputs: tuple
    wrap: Callable[[Any], Any] | None

    def finish(self, outputs: Any) -> Any:
        """``outputs`` (a tensor or a NamedTuple of tensors) with the gradient convention's backward, as DTensors
        replicated over the mesh when the views were DTensors."""
        outputs = self.batch.apply_gradient_convention(self.options.gradient_convention, outputs)
        return outputs if self.wrap is None else self.wrap(outputs)


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
    """A loss of the family as the frame sees it: its public name, its options and its inputs.

    Attributes:
        name: the public function's name (also what the ranks compare, so that they run the same loss).
        options: the options dataclass.
        inputs: how the inputs are checked (:class:`Views`, :class:`ViewSequence`).
        min_rows: the fewest rows one process may pass (the global batch needs as many).
        specs: the options as the frame reads them, in the order of the dataclass (and of the signature).
        option_names: their names.
        code: a number that names the loss in the exchange of the ranks (exact in float64).
    """

    name: str
    options: type[Options]
    inputs: Views | ViewSequence
    min_rows: int = 2
    specs: tuple[OptionSpec, ...] = dataclasses.field(init=False)
    option_names: frozenset[str] = dataclasses.field(init=False)
    code: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(self.options)
        specs = tuple(_spec(field, hints[field.name]) for field in dataclasses.fields(self.options))
        names = [spec.name for spec in specs]
        if not set(FAMILY_OPTIONS) <= set(names):
            raise TypeError(f"{self.options.__name__} must declare the family's options {FAMILY_OPTIONS}")
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "option_names", frozenset(names))
        object.__setattr__(self, "code", hash32(self.name) & 0xFFFFFF)
        named = LOSS_NAMES.setdefault(self.code, self.name)
        if named != self.name:  # the ranks would take the two losses for one
            raise RuntimeError(f"the losses {named!r} and {self.name!r} have the same code; rename one")

    # -------------------------------------------------------------------------------------------- steps

    @contextlib.contextmanager
    def open(self, arguments: Mapping[str, Any]) -> Iterator[Call]:
        """Check the options and inputs of a call, given by name (``locals()`` of a public function), and exchange
        with the other ranks (one process: nothing to exchange); the loss is computed inside the ``with`` block,
        with autocast disabled for the views' device (the loss accumulates in float32 whatever autocast says).

        Raises the first bad option's or input's :class:`TypeError`/:class:`ValueError` (naming it) on every rank
        of the group, an unknown option's name included.
        """
        inputs = tuple(arguments[name] for name in self.inputs.arguments)
        options = {name: value for name, value in arguments.items() if name not in self.inputs.arguments}
        wrap = None
        if self.inputs.names is not None and is_dtensor(inputs[0]):  # the placements name the groups
            names = self.inputs.names
            local, options, wrap = unwrap_dtensors(self.name, self.option_names, names, inputs, options)
            inputs = local + tuple(inputs[len(names) :])
        checked, error = self.checked_options(options)
        views, names, shared, error = self._checked_inputs(inputs, checked, error)
        header = Header(
            self.code,
            views,
            names,
            checked.distributed,
            checked.group,
            getattr(checked, "feature_group", None),
            self._shared(checked, shared) if error is None else (),
            self.min_rows,
        )
        batch = open_batch(header, error)  # raises any rank's error, on every rank
        with no_autocast(views[0].device):
            yield Call(checked, batch, inputs if self.inputs.names is not None else views, wrap)


    def checked_options(self, options: dict[str, Any]) -> tuple[Options, Exception | None]:
        """``(options, error)``: the options dataclass of ``options`` and the first option's error (or ``None``).

        Options that passed are remembered by the keywords that gave them (equal values of the same types, so that
        ``True`` is not taken for ``1``): a training loop's identical calls cost one dict lookup. Options that hold a
        tensor are not remembered: the memory would keep every call's tensor alive (a tensor is hashed by identity,
        so a new one each step would never be found again anyway).
        """
        unknown = [name for name in options if name not in self.option_names]
        if unknown:  # reported like any other error: on every rank
            error = TypeError(f"{self.name}() got an unexpected keyword argument {unknown[0]!r}")
            return self.options(**{name: options[name] for name in options if name not in unknown}), error
        key = None
        holds_tensor = any(isinstance(value, torch.Tensor) for value in options.values())
        if not torch.compiler.is_compiling() and not holds_tensor:  # nothing to remember in a graph
            try:
                key = (self.code, tuple(options.items()), tuple(map(type, options.values())))
                remembered = _CHECKED.get(key)
            except TypeError:  # an unhashable value: check it (and fail)
                key = remembered = None
            if remembered is not None:
                return remembered, None
        checked = self.options(**{name: _plain(value) for name, value in options.items()})
        try:
            self.check_options(checked)
        except (TypeError, ValueError) as error:
            return checked, error
        if key is not None:
            if len(_CHECKED) >= _CHECKED_LIMIT:
                _CHECKED.clear()
            _CHECKED[key] = checked
        return checked, None

    def check_options(self, options: Options) -> None:
        """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option."""
        for spec in self.specs:
            spec.check(spec.name, getattr(options, spec.name))
        options.check_combination()

    def _checked_inputs(self, inputs: tuple, options: Options, error: Exception | None):
        """``(views, names, shared, error)``: the checked views, or the inputs as given and the error."""
        # A rank of several holds part of the rows (maybe none): the global batch's size is checked in the exchange.
        feature_group = getattr(options, "feature_group", None)
        min_rows = 0 if is_global(options.distributed, options.group, feature_group) else self.min_rows
        if error is None:
            try:
                views, names, shared = self.inputs.check(inputs, min_rows)
                return views, names, shared, None
            except (TypeError, ValueError) as caught:
                error = caught
        return tuple(inputs), (), (), error

    def _shared(self, options: Options, shared: tuple[Shared, ...]) -> tuple[Shared, ...]:
        """What every rank must pass alike: the options the ranks compare, then ``shared`` inputs."""
        compared = tuple(
            Shared(spec.name, spec.encode(getattr(options, spec.name)), spec.decode)
            for spec in self.specs
            if spec.encode is not None
        )
        return compared + shared


# ------------------------------------------------------------------------------------------------ modules


class LossModule(torch.nn.Module):
    """The base of a loss's :class:`torch.nn.Module`: the options as plain attributes (``torch.nn`` style, so
    ``repr``, pickling and ``state_dict`` need nothing special), checked at construction.

    A Module names its loss, and its ``__init__`` takes the options of the loss (its signature from the options
    dataclass, :func:`module_options`), storing each as an attribute of the same name; its ``forward`` takes the
    function's inputs and calls it with :attr:`options`.
    """

    loss: ClassVar[Loss]

    def __init__(self, **options: Any) -> None:
        super().__init__()
        unknown = [name for name in options if name not in self.loss.option_names]
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}")
        for spec in self.loss.specs:
            setattr(self, spec.name, options.get(spec.name, spec.default))
        self.check()

    @property
    def options(self) -> dict[str, Any]:
        """The options, as the function takes them."""
        return {spec.name: getattr(self, spec.name) for spec in self.loss.specs}

    def check(self) -> None:
        """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option."""
        _, error = self.loss.checked_options(self.options)
        if error is not None:
            raise error

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())
