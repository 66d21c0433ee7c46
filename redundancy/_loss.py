"""How a loss of the family is declared once, and the one path that runs it in one process or in many.

A loss is three things:

- its **options**, a frozen dataclass deriving from :class:`Options`: each field carries its default and its check
  (:func:`option`), and the dataclass is the only place an option is written down. The public function's
  signature, the ``terms`` form, the Module's constructor, the checks and the options that the ranks of a process
  group compare all follow from it;
- its **inputs**, named (``("z1", "z2")``, ``("z",)``, ...);
- its **computation**, ``compute(options, batch, *inputs)``, which returns the loss or a NamedTuple whose first
  field is the loss and the others its terms. ``batch`` (:class:`redundancy.distributed.GlobalBatch`) is the
  batch of all ranks: one process is a group of one rank, for which every collective is the identity.

:func:`takes_options_of` gives the public function (``f(*inputs, **options)`` whose body is :meth:`Loss.run`) the
signature of its options. A call checks the options and the inputs, then, in a process group of several ranks,
joins one exchange of headers (:meth:`redundancy.distributed.GlobalBatch.open`) *even when its own checks failed*,
so that a bad input or option on any rank raises the same error on every rank instead of leaving the others
waiting in a collective. Afterwards the gradient convention is applied to every output.
"""

import dataclasses
import inspect
import zlib
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch

from redundancy import distributed as distributed_ops
from redundancy._deprecated import DeprecatedAlias, translate
from redundancy._dtensor import is_dtensor
from redundancy._dtensor import unwrap as unwrap_dtensors
from redundancy._ops._autocast import no_autocast
from redundancy._validation import (
    check_bool,
    check_choice,
    check_correction,
    check_embedding,
    check_real,
    check_same_batch,
)

# ------------------------------------------------------------------------------------------------ options


def option(
    default: Any,
    check: Callable[[str, Any], None],
    *,
    encode: Callable[[Any], Any] = float,
    decode: Callable[[float], Any] = float,
    shared: bool = True,
) -> dataclasses.Field:
    """A field of an options dataclass: its default, ``check(name, value)``, and how ranks compare it.

    ``encode`` maps a checked value to a number (exact in float64) that is equal on two ranks exactly when the
    values are, and ``decode`` maps it back for error messages; ``shared=False`` leaves the option out of that
    comparison (the process group itself).
    """
    metadata = {"check": check, "encode": encode, "decode": decode, "shared": shared}
    return dataclasses.field(default=default, metadata=metadata)


def real(*, nonnegative: bool = False, positive: bool = False) -> Callable[[str, Any], None]:
    """The check of a real-number option."""

    def check(name: str, value: Any) -> None:
        check_real(name, value, nonnegative=nonnegative, positive=positive)

    return check


def real_or_auto(*, nonnegative: bool = False) -> Callable[[str, Any], None]:
    """The check of a real-number option that also takes ``"auto"``."""

    def check(name: str, value: Any) -> None:
        if not (isinstance(value, str) and value == "auto"):
            check_real(name, value, nonnegative=nonnegative)

    return check


def real_or_auto_option(default: Any, *, nonnegative: bool = False) -> dataclasses.Field:
    """A real-number option that also takes ``"auto"`` (sent to the other ranks as -inf)."""
    return option(
        default,
        real_or_auto(nonnegative=nonnegative),
        encode=lambda value: float("-inf") if isinstance(value, str) else value,
        decode=lambda number: "auto" if number == float("-inf") else number,
    )


def one_of(*choices: Any) -> Callable[[str, Any], None]:
    """The check of an option that takes one of a few values."""

    def check(name: str, value: Any) -> None:
        check_choice(name, value, choices)

    return check


def choice_option(default: Any, choices: tuple) -> dataclasses.Field:
    """An option that takes one of ``choices``; ranks compare its index."""
    return option(default, one_of(*choices), encode=choices.index, decode=lambda number: choices[int(number)])


def correction_option(default: int) -> dataclasses.Field:
    """The ``correction`` option, the variance divisor ``N - correction`` (as :func:`torch.var`): 0 or 1."""
    return option(default, check_correction, encode=int, decode=int)


def flag_option(default: bool) -> dataclasses.Field:
    """An option that is ``True`` or ``False``."""
    return option(default, check_bool, encode=float, decode=bool)


ALGORITHMS = ("auto", "cross", "gram")


class OptionSpec(NamedTuple):
    """One option of a loss, as the frame reads it (plain attributes: ``torch.compile`` traces them)."""

    name: str
    default: Any
    check: Callable[[str, Any], None]
    encode: Callable[[Any], Any]
    decode: Callable[[float], Any]
    shared: bool


def options_dataclass(cls: type) -> type:
    """Make ``cls`` a frozen, keyword-only dataclass and record its fields as :class:`OptionSpec` in ``specs``.

    ``specs`` lists the loss's own options first and the distributed ones (those of :class:`Options`) last: the
    order of the function's signature, of the Module's repr and of the values the ranks compare.
    """
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    fields = dataclasses.fields(cls)
    common = {"distributed", "gradient_convention", "group", "feature_group"}
    ordered = [f for f in fields if f.name not in common] + [f for f in fields if f.name in common]
    cls.specs = tuple(
        OptionSpec(f.name, f.default, *(f.metadata[key] for key in ("check", "encode", "decode", "shared")))
        for f in ordered
    )
    cls.names = frozenset(spec.name for spec in cls.specs)
    return cls


#: Checked options by the keywords of the call that gave them (see :meth:`Options.checked`), at most
#: ``_CHECKED_LIMIT`` of them.
_CHECKED: dict = {}
_CHECKED_LIMIT = 4096


@options_dataclass
class Options:
    """The options every loss of the family takes (see :mod:`redundancy.distributed`).

    A loss's options derive from it, decorated with :func:`options_dataclass`.
    """

    specs: ClassVar[tuple[OptionSpec, ...]]
    names: ClassVar[frozenset[str]]
    aliases: ClassVar[tuple[DeprecatedAlias, ...]] = ()
    """Old spellings of some options, still accepted with a warning (:mod:`redundancy._deprecated`)."""

    distributed: str = choice_option("global", distributed_ops.DISTRIBUTED_MODES)
    gradient_convention: str = choice_option("global", distributed_ops.GRADIENT_CONVENTIONS)
    group: Any = option(None, distributed_ops.check_group, shared=False)
    """The process group of the global batch (not compared between ranks: each holds its own handle)."""

    @classmethod
    def checked(cls, keywords: dict) -> "Options":
        """The options of ``keywords`` (names of fields only), checked as :meth:`check` checks them.

        Options that passed are remembered by the keywords that gave them (equal values of the same types, so that
        ``True`` is not taken for ``1``): the options of a training loop's identical calls cost one dict lookup
        instead of a new dataclass and its checks.
        """
        key = None
        if not torch.compiler.is_compiling():  # nothing to remember in a graph
            try:
                key = (cls, tuple(keywords.items()), tuple(map(type, keywords.values())))
                options = _CHECKED.get(key)
            except TypeError:  # an unhashable value: check it (and fail)
                key = options = None
            if options is not None:
                return options
        options = cls(**keywords)
        options.check()
        if key is not None:
            if len(_CHECKED) >= _CHECKED_LIMIT:
                _CHECKED.clear()
            _CHECKED[key] = options
        return options

    def check(self) -> None:
        """Raise a :class:`ValueError` or :class:`TypeError` naming the first bad option."""
        for spec in self.specs:
            spec.check(spec.name, getattr(self, spec.name))
        self.check_combination()

    def check_combination(self) -> None:
        """Checks that involve several options (a loss overrides it); each option alone is already checked."""

    def shared_values(self) -> list:
        """The options every rank must share, as numbers (in the order of ``specs``)."""
        return [spec.encode(getattr(self, spec.name)) for spec in self.specs if spec.shared]

    def as_dict(self) -> dict:
        """The options by name, in the order of ``specs``."""
        return {spec.name: getattr(self, spec.name) for spec in self.specs}


def options_signature(
    options_type: type[Options], inputs: tuple[str, ...], returns: Any, *, self_parameter: bool = False
) -> inspect.Signature:
    """The signature ``(inputs..., *, options...)`` of a loss's function (or of its Module's constructor)."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] if self_parameter else []
    parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in inputs]
    hints = {**Options.__annotations__, **options_type.__annotations__}
    for spec in options_type.specs:
        annotation = hints.get(spec.name, inspect.Parameter.empty)
        parameters.append(
            inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=spec.default, annotation=annotation)
        )
    return inspect.Signature(parameters, return_annotation=returns)


# ------------------------------------------------------------------------------------------------ the loss


def check_views(names: tuple[str, ...], views: tuple, *, min_rows: int) -> None:
    """The default input check: floating ``(N, D)`` tensors of one shape on one device."""
    for name, view in zip(names, views, strict=True):
        check_embedding(name, view, min_rows=min_rows)
    check_same_batch(names, views)


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss of the family: its name, options, inputs and computation (see the module docstring).

    Attributes:
        name: the public function's name (also what the ranks compare, so that they run the same loss).
        options: the options dataclass.
        views: names of the embedding inputs, ``(N, D)`` tensors sharing their rows.
        extra: names of further inputs, checked by ``check_inputs``.
        compute: ``compute(options, batch, *views, *extra)``.
        min_rows: the fewest rows one process may pass (the global batch needs as many).
        check_inputs: ``check_inputs(names, inputs, min_rows)``; the default checks the views only.
        shared_inputs: names of ``extra`` real-number inputs that every rank must pass alike (compared in the
            exchange of a process group, like the options).
        unpack: for a loss of a variable number of views, ``unpack(inputs) -> (views, names)`` turns the public
            function's inputs into the views and their names (raising a ``TypeError``/``ValueError`` naming the
            argument); ``views`` then names that one argument, and the ranks of a process group also compare
            the number of views.
    """

    name: str
    options: type[Options]
    views: tuple[str, ...]
    compute: Callable
    extra: tuple[str, ...] = ()
    min_rows: int = 2
    check_inputs: Callable = dataclasses.field(default=None)
    shared_inputs: tuple[str, ...] = ()
    unpack: Callable | None = None

    code: int = dataclasses.field(init=False)
    """A number that names the loss in the exchange of the ranks (exact in float64)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", zlib.crc32(self.name.encode()) & 0xFFFFFF)
        distributed_ops.LOSS_NAMES[self.code] = self.name

    def run(self, inputs: tuple, options: dict):
        """Evaluate the loss: check, exchange (several ranks), compute, apply the gradient convention."""
        if torch.compiler.is_compiling() and isinstance(options.get("feature_group"), distributed_ops.ProcessGroup):
            return _run_eagerly(self, inputs, options)  # a graph break: the grid's collectives run in eager mode
        if self.unpack is None and is_dtensor(inputs[0]):  # the placements name the groups (redundancy._dtensor)
            views, options, as_dtensors = unwrap_dtensors(self.name, self.options.names, self.views, inputs, options)
            return as_dtensors(self.run(views + tuple(inputs[len(views) :]), options))
        error = None
        if not self.options.names.issuperset(options):  # a deprecated alias, or an unknown name
            try:
                options = translate(self.options.aliases, self.options.names, options, self.name, stacklevel=4)
            except (TypeError, ValueError) as caught:  # reported like any other error: on every rank
                error = caught
                options = {name: value for name, value in options.items() if name in self.options.names}
        checked = None
        if error is None:
            try:
                checked = self.options.checked(options)
            except (TypeError, ValueError) as caught:
                error = caught  # raised by GlobalBatch.open, on every rank of the group
        options = checked if checked is not None else self.options(**options)
        names = self.views
        # A rank of several holds part of the rows (maybe none): the global batch's size is checked in the exchange.
        feature_group = getattr(options, "feature_group", None)
        min_rows = 0 if distributed_ops.is_global(options.distributed, options.group, feature_group) else self.min_rows
        if error is None:
            try:
                if self.unpack is not None:
                    inputs, names = self.unpack(inputs)
                self._check_inputs(inputs, names, min_rows)
            except (TypeError, ValueError) as caught:
                error = caught  # raised by GlobalBatch.open, on every rank of the group
        views = inputs[: len(names)]
        shared = []  # inputs every rank must pass alike, compared in the exchange like the options
        if error is None:
            named = names + self.extra
            shared = [(name, float(inputs[named.index(name)])) for name in self.shared_inputs]
            if self.unpack is not None:
                shared.append(("len(views)", len(views)))
        batch = distributed_ops.GlobalBatch.open(
            self.code, options, views, names, error=error, shared=shared, min_rows=self.min_rows
        )
        with no_autocast(views[0].device):
            outputs = self.compute(options, batch, *inputs)
        return batch.apply_gradient_convention(options.gradient_convention, outputs)

    def _check_inputs(self, inputs: tuple, names: tuple[str, ...], min_rows: int) -> None:
        if self.check_inputs is None:
            check_views(names, inputs, min_rows=min_rows)
        else:
            self.check_inputs(names + self.extra, inputs, min_rows)


@distributed_ops.outside_graphs
def _run_eagerly(loss: Loss, inputs: tuple, options: dict):
    """:meth:`Loss.run` outside a ``torch.compile`` graph (a graph break where it is called from one).

    :func:`redundancy.distributed.outside_graphs` makes the eager function at the first call, not at import:
    ``torch.compiler.disable`` imports ``torch._dynamo``, and that imports Triton, which ``import redundancy`` must
    not.
    """
    return loss.run(inputs, options)


def takes_options_of(loss: Loss) -> Callable[[Callable], Callable]:
    """Decorate a public function ``f(*inputs, **options)`` of ``loss``: its signature lists the options.

    The function's own positional parameters stay; ``**options`` is shown as the keyword-only options of the
    loss's dataclass, with their defaults (what :func:`inspect.signature`, ``help`` and the docs show). The
    function's body calls :meth:`Loss.run`, which rejects unknown options by name.
    """

    def decorate(function: Callable) -> Callable:
        own = inspect.signature(function)
        inputs = tuple(p.name for p in own.parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD)
        function.__signature__ = options_signature(loss.options, inputs, own.return_annotation)
        function.loss = loss
        return function

    return decorate


# ------------------------------------------------------------------------------------------------ modules


class LossModule(torch.nn.Module):
    """A loss as a :class:`torch.nn.Module`: the options as plain attributes, ``forward`` one call of the function.

    A subclass names its function (``class BarlowTwinsLoss(LossModule, function=barlow_twins_terms)``); the
    constructor takes that function's keyword options, checks them, and stores each as an attribute of the same
    name, as :mod:`torch.nn`'s losses do (so ``repr``, pickling and ``state_dict`` need nothing special).
    ``forward`` returns the loss; where the function returns terms, ``terms`` returns them all.
    """

    _function: Callable

    def __init_subclass__(cls, *, function: Callable, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._function = staticmethod(function)
        cls.__doc__ = cls.__doc__ or f"The loss of :func:`redundancy.{function.__name__}` as a module."

        def __init__(self, **options) -> None:
            LossModule.__init__(self, **options)

        __init__.__signature__ = options_signature(function.loss.options, (), None, self_parameter=True)
        __init__.__qualname__ = f"{cls.__name__}.__init__"
        __init__.__doc__ = f"Check and store the options of :func:`redundancy.{function.__name__}`."
        cls.__init__ = __init__
        if function.__signature__.return_annotation not in (torch.Tensor, "torch.Tensor"):

            def terms(self, *inputs):
                return self._function(*inputs, **self.options)

            terms.__qualname__ = f"{cls.__name__}.terms"
            terms.__doc__ = f"The loss with its terms, as :func:`redundancy.{function.__name__}` returns them."
            cls.terms = terms

    def __init__(self, **options) -> None:
        super().__init__()
        declared = self._function.loss.options
        if not declared.names.issuperset(options):  # a deprecated alias, or an unknown name
            options = translate(declared.aliases, declared.names, options, type(self).__name__, stacklevel=4)
        checked = declared(**options)
        checked.check()
        for name, value in checked.as_dict().items():
            setattr(self, name, value)

    @property
    def options(self) -> dict:
        """The options, as the function takes them."""
        return {spec.name: getattr(self, spec.name) for spec in self._function.loss.options.specs}

    def forward(self, *inputs) -> torch.Tensor:
        outputs = self._function(*inputs, **self.options)
        return outputs if isinstance(outputs, torch.Tensor) else outputs.loss

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())
