"""The test battery of the family, derived from its registry (:data:`redundancy._registry.FAMILY`).

As torchmetrics' ``MetricTester`` runs one battery on every metric, this module runs one on every loss of the
family, from its :class:`~redundancy._registry.Member` alone:

- **inputs**: :data:`KINDS` says, once per kind of ``Loss.inputs`` (keyed by its class), how many ``(N, D)``
  views a call takes, what the loss calls them, how they and any further inputs are passed, and which faults of
  those further inputs one rank can make. A new kind of inputs needs one entry there; a new loss needs none.
- **options**: :func:`variants` reads the options dataclass: each choice of each option that has choices
  (``correction``, ``standardize``, ``lambd="auto"``, ...) and every real option moved off its default, crossed
  with each ``algorithm`` (and, on several ranks, each ``strategy``); the options that say how (not what) are not
  passed to the reference.
- **one process** (:class:`Case`): float64 against the reference (1e-10), the function, its ``terms`` form and
  its Module alike, ``gradcheck``, an upstream gradient that is not 1, second derivatives (a gradient penalty and
  ``jacrev(jacrev)``) against autograd through the reference, non-contiguous inputs, the dtype tolerance table of
  :mod:`tests.utils`, autocast, ``torch.compile`` (``fullgraph=True``, and ``dynamic=True`` with one trace for
  every batch size), ``torch.export`` and :mod:`torch.func`.
- **three gloo ranks** (:func:`rank_battery`, run on every rank of one spawned group for the whole family): uneven
  shards with an empty rank; every variant under both gradient conventions, a per-rank call, faults made on one
  rank, and compiled calls. :func:`one_process` is what one process gives on the concatenated batch, the truth the
  records are compared with.

``tests/test_family.py`` and ``tests/test_family_distributed.py`` parametrize these over the registry, so that a
loss added to ``FAMILY`` gets the battery without a test file edited.
"""

import copy
import dataclasses
import functools
import inspect
import pickle
import typing
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import NamedTuple

import torch
import torch.utils._pytree as pytree
from torch.func import grad
from torch.func import jacrev
from torch.func import vjp
from torch.func import vmap

from redundancy._frame import FAMILY_OPTIONS
from redundancy._frame import Loss
from redundancy._frame import Views
from redundancy._frame import ViewSequence
from redundancy._registry import FAMILY as REGISTERED
from redundancy._registry import Member
from redundancy.mixed_barlow_twins import MixingInputs
from redundancy.sigreg import Embeddings
from tests.utils import GRAD_TOL
from tests.utils import LOSS_RTOL
from tests.utils import assert_relative
from tests.utils import relative_error

# ------------------------------------------------------------------------------------------------ inputs


def example_views(count: int, n: int, d: int, *, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """``count`` correlated views of one batch: a shared signal plus noise, with feature scales from 0.3 to 2 (so
    that VICReg's variance hinge is active on some features) and an offset per view."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    signal = torch.randn(n, d, generator=generator, dtype=torch.float64)
    views = []
    for index in range(count):
        noise = torch.randn(n, d, generator=generator, dtype=torch.float64)
        views.append(((0.8 * signal + 0.6 * noise) * scales + 0.5 * (index + 1)).to(dtype))
    return views


#: The group of the distributed battery: three ranks, rank 2 the one that makes the faults.
WORLD_SIZE = 3

#: What every rank's error must be: the whole message (``"ValueError: ..."``), or words it must contain.
Expected = str | tuple[str, ...]
#: ``fault -> (inputs of the faulty rank, what every rank's error must be)``, as a kind of inputs makes them.
Faults = dict[str, tuple[tuple, Expected]]


def differs(name: str, values: list) -> str:
    """The error every rank raises when ``name`` has ``values`` on the ranks (the last one, rank 2's, differs)."""
    return (
        f"ValueError: {name} must be the same on every rank of the process group, got {name} = {values} on "
        f"ranks 0..{WORLD_SIZE - 1}"
    )


class NamedViews:
    """``Views("z1", "z2")``: one ``(N, D)`` tensor per name, passed in that order, and no further inputs."""

    def __init__(self, spec: Views) -> None:
        self.spec = spec

    @property
    def count(self) -> int:
        """How many ``(N, D)`` views a call takes."""
        return len(self.spec.names)

    def names(self, count: int) -> tuple[str, ...]:
        """What the loss calls each of ``count`` views in its errors."""
        return tuple(self.spec.names)

    def arguments(self, views: Sequence[torch.Tensor], extra: tuple) -> tuple:
        """The function's positional arguments."""
        return (*views, *extra)

    def extra(self, shards: Sequence[int]) -> tuple[list[tuple], tuple]:
        """The further inputs of ranks holding ``shards`` rows each, and those of one process on their rows."""
        return [() for _ in shards], ()

    def forms(self, views: Sequence[torch.Tensor], extra: tuple) -> dict[str, tuple]:
        """Other spellings of the same call's arguments, which must give the same value."""
        return {}

    def faults(self, views: list[torch.Tensor], extra: tuple, faulty: bool) -> Faults:
        """Faults of the inputs that rank 2 makes while the others call well (``faulty``: this is rank 2)."""
        narrow = [view[:, :-1] if faulty else view for view in views]
        d = views[0].shape[1]
        words = (
            f"ValueError: {' and '.join(self.names(len(views)))} must have the same number of features D on every "
            f"rank of the process group, got D = {[d] * (WORLD_SIZE - 1) + [d - 1]} on ranks 0..{WORLD_SIZE - 1}"
        )
        return {"features_differ": (self.arguments(narrow, extra), words)}


class SequenceOfViews(NamedViews):
    """``ViewSequence()``: one argument ``views``, a sequence of V ≥ 2 views (the battery passes three)."""

    COUNT = 3

    @property
    def count(self) -> int:
        return self.COUNT

    def names(self, count: int) -> tuple[str, ...]:
        return tuple(f"views[{index}]" for index in range(count))

    def arguments(self, views: Sequence[torch.Tensor], extra: tuple) -> tuple:
        return (list(views),)

    def forms(self, views: Sequence[torch.Tensor], extra: tuple) -> dict[str, tuple]:
        return {"stacked": (torch.stack(list(views)),)}  # one (V, N, D) tensor

    def faults(self, views: list[torch.Tensor], extra: tuple, faulty: bool) -> Faults:
        count = len(views)
        return {
            **super().faults(views, extra, faulty),
            "view_count_differs": (
                self.arguments(views[:-1] if faulty else views, extra),
                differs("len(views)", [count] * (WORLD_SIZE - 1) + [count - 1]),
            ),
            "one_view": (
                self.arguments(views[:1] if faulty else views, extra),
                "ValueError: views must hold at least 2 views (the loss is a mean over pairs), got 1 (on rank 2)",
            ),
        }


class MixedViews(NamedViews):
    """:class:`~redundancy.mixed_barlow_twins.MixingInputs`: ``z1, z2, z_mixed``, then how the batch was mixed,
    ``permutation`` (each rank permutes its own rows) and ``alpha`` (the same on every rank)."""

    ALPHA = 0.3

    @staticmethod
    def permutation(rows: int, seed: int) -> torch.Tensor:
        return torch.randperm(rows, generator=torch.Generator().manual_seed(seed))

    def extra(self, shards: Sequence[int]) -> tuple[list[tuple], tuple]:
        """Each rank's own permutation of its rows; one process on the concatenated batch mixes by their
        block-diagonal union."""
        permutations = [self.permutation(rows, seed=rank) for rank, rows in enumerate(shards)]
        offsets = [sum(shards[:rank]) for rank in range(len(shards))]
        whole = torch.cat([p + offset for p, offset in zip(permutations, offsets, strict=True)])
        return [(p, self.ALPHA) for p in permutations], (whole, self.ALPHA)

    def faults(self, views: list[torch.Tensor], extra: tuple, faulty: bool) -> Faults:
        permutation, alpha = extra
        return {
            **super().faults(views, extra, faulty),
            "alpha_differs": (
                self.arguments(views, (permutation, 0.9 if faulty else alpha)),
                differs("alpha", [alpha] * (WORLD_SIZE - 1) + [0.9]),
            ),
            "permutation_dtype": (
                self.arguments(views, (permutation.float() if faulty else permutation, alpha)),
                ("TypeError: permutation must be an int64 or int32 torch.Tensor, got tensor(", "(on rank 2)"),
            ),
        }


#: The kinds of inputs, by the class of ``Loss.inputs``: the one place that knows how to build each.
KINDS: dict[type, type[NamedViews]] = {
    Views: NamedViews,
    Embeddings: NamedViews,  # SIGReg's z: one (N, D) view here (its (V, N, D) form has its own tests)
    ViewSequence: SequenceOfViews,
    MixingInputs: MixedViews,
}


def kind_of(loss: Loss) -> NamedViews:
    """The kind of ``loss``'s inputs (a class of inputs that :data:`KINDS` does not know fails here, naming it)."""
    try:
        return KINDS[type(loss.inputs)](loss.inputs)
    except KeyError:
        raise LookupError(
            f"tests/family.py has no kind of inputs for {type(loss.inputs).__qualname__} ({loss.name}): add one to "
            "KINDS (how many views, what they are called, how they and the further inputs are passed)"
        ) from None


# ------------------------------------------------------------------------------------------------ random directions

#: How many directions the battery gives the members that draw random ones (SIGReg, LeJEPA).
SLICES = 16


def fixed_directions(dim: int) -> torch.Tensor:
    """``(dim, SLICES)`` directions, the same on every call and every rank, built from arithmetic alone (no
    generator), so that a compiled, exported or ``vmap``-ed call makes them in its graph."""
    i = torch.arange(dim, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(SLICES, dtype=torch.float64).unsqueeze(0)
    return torch.sin(1.7 * i * (j + 1) + 0.3 * i + 0.9 * j + 0.5)


def _first_tensor(arguments: tuple) -> Any:
    first = arguments[0] if arguments else None
    return first[0] if isinstance(first, (list, tuple)) and first else first


def _with_fixed_directions(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` given :func:`fixed_directions` of its views' D unless the call passes ``directions`` or a
    ``generator``: the battery compares calls (with the reference, with each other, across ranks), so the
    directions a member would draw at random are fixed."""

    @functools.wraps(function)
    def call(*arguments: Any, **options: Any) -> Any:
        first = _first_tensor(arguments)
        if options.get("directions") is None and options.get("generator") is None and isinstance(first, torch.Tensor):
            options["directions"] = fixed_directions(first.shape[-1])
        return function(*arguments, **options)

    return call


def battery_member(member: Member) -> Member:
    """``member`` as the battery calls it: with fixed directions where it would draw random ones."""
    if "directions" not in member.loss.option_names:
        return member
    terms = None if member.terms is None else _with_fixed_directions(member.terms)
    return member._replace(
        function=_with_fixed_directions(member.function),
        terms=terms,
        reference=_with_fixed_directions(member.reference),
    )


def module_options(member: Member, dim: int, options: dict) -> dict:
    """The options of a Module of ``member`` that will see views of ``dim`` features (fixed directions added where
    the member draws random ones)."""
    if "directions" in member.loss.option_names and options.get("generator") is None:
        return {"directions": fixed_directions(dim)} | options
    return options


#: The family as the battery calls it.
FAMILY = [battery_member(member) for member in REGISTERED]


class Example(NamedTuple):
    """Inputs of one call: the views (what gradients flow to) and the further inputs, as one process passes them."""

    views: list[torch.Tensor]
    extra: tuple


# ------------------------------------------------------------------------------------------------ options

#: Options that choose how the loss is computed, not its value: varied, but not passed to the reference.
HOW = ("algorithm", "backend", "strategy")
#: Options that say which ranks the batch spans: the distributed battery sets them itself.
RANKS = (*FAMILY_OPTIONS, "feature_group")
#: Choices left to their own tests: the Triton kernels (tests/test_triton.py runs them in the interpreter).
LEFT_OUT = {("backend", "triton")}


def _choices(annotation: Any) -> tuple:
    """The values an option of this annotation chooses from (``()`` for a real number or a process group)."""
    if annotation is bool:
        return (False, True)
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    members = typing.get_args(annotation)
    return tuple(value for member in members if typing.get_origin(member) is Literal for value in member.__args__)


class OptionField(NamedTuple):
    """One option of a loss as the battery reads it from the options dataclass.

    ``kind`` is ``"real"`` (a real number, perhaps also ``"auto"``), ``"integer"``, ``"choice"`` (a ``bool`` or a
    ``Literal``) or ``"other"`` (a process group: the distributed battery sets those itself).
    """

    name: str
    choices: tuple
    default: Any
    kind: str


def option_fields(loss: Loss) -> list[OptionField]:
    """The options of ``loss``, in the order of its dataclass."""
    hints = typing.get_type_hints(loss.options)
    found = []
    for field in dataclasses.fields(loss.options):
        annotation = hints[field.name]
        members = typing.get_args(annotation) if typing.get_origin(annotation) is not Literal else ()
        choices = _choices(annotation)
        if annotation is float or float in members:
            kind = "real"
        elif annotation is int:
            kind = "integer"
        else:
            kind = "choice" if choices else "other"
        found.append(OptionField(field.name, choices, field.default, kind))
    return found


def off_default(field: OptionField) -> float | int:
    """A number option's value away from its default, within every bound the frame knows (positive)."""
    return 2 * field.default + 1 if field.kind == "integer" else 1.5 * field.default + 0.25


def numeric_fields(loss: Loss) -> list[OptionField]:
    """The options that take a number (and that the battery moves off their defaults)."""
    return [field for field in option_fields(loss) if field.kind in ("real", "integer") and field.name not in RANKS]


def value_options(options: dict) -> dict:
    """The options that change the value (those the reference takes)."""
    return {name: value for name, value in options.items() if name not in HOW + RANKS}


def _label(options: dict) -> str:
    parts = [str(options["algorithm"])] if "algorithm" in options else []
    parts += [f"{name}={value}" for name, value in options.items() if name != "algorithm"]
    return "-".join(parts) or "defaults"


def variants(loss: Loss, *, ranks: bool = False) -> list[tuple[str, dict]]:
    """``(label, options)`` of each option variant worth testing, valid by the frame's own checks.

    Each ``algorithm`` that names a path (``"cross"``, ``"gram"``), crossed with the defaults and each other choice
    of one value-changing option at a time (``correction=1``, ``standardize=False``, ``lambd="auto"``, ...), each
    with the real options at their defaults and all moved off them; ``algorithm="auto"`` and each other choice of
    ``backend`` once, with the defaults. On several ranks (``ranks=True``), each of these with every ``strategy``.
    """
    fields = option_fields(loss)
    choices_of = {name: [c for c in choices if (name, c) not in LEFT_OUT] for name, choices, _, _ in fields}
    defaults = {name: default for name, _, default, _ in fields}
    paths = [{"algorithm": c} for c in choices_of.get("algorithm", ()) if c != defaults["algorithm"]] or [{}]
    one_at_a_time: list[dict] = [{}]
    for name, _, default, _ in fields:
        if name not in HOW and name not in RANKS:
            one_at_a_time += [{name: choice} for choice in choices_of[name] if choice != default]
    off = {field.name: off_default(field) for field in numeric_fields(loss)}
    reals = [{}, off] if off else [{}]
    found = [(_label(p | c) + ("-reals" if r else ""), p | c | r) for p in paths for c in one_at_a_time for r in reals]
    if paths != [{}]:  # the loss as called with every option at its default (algorithm="auto")
        found.append((_label({"algorithm": defaults["algorithm"]}), {}))
    found += [(f"backend={c}", {"backend": c}) for c in choices_of.get("backend", ()) if c != defaults["backend"]]
    if ranks and "strategy" in choices_of:
        found = [
            (f"{label}-{s}", options | {"strategy": s}) for label, options in found for s in choices_of["strategy"]
        ]
    return [(label, options) for label, options in found if _valid(loss, options)]


def _valid(loss: Loss, options: dict) -> bool:
    try:
        loss.check_options(loss.options(**options))
    except (TypeError, ValueError):  # a combination the frame refuses, e.g. all_reduce with the Gram path
        return False
    return True


# ------------------------------------------------------------------------------------------------ one process

N, D = 37, 70  # an odd shape with D > N (where "auto" takes the Gram path)
SHAPES = ((53, 12), (N, D))  # one with N > D, and the gradients at the last
SMALL_SHAPES = ((6, 4),)  # for gradcheck
UPSTREAM = -2.7  # an upstream gradient that is not 1
BATCH_SIZES = (9, 10, 13, 17, 24, 31, 40, 47, 52, 64)  # more than torch._dynamo's recompile limit of 8
DYNAMIC_D = 4  # below every member's crossover at N >= 9, so that "auto" takes one path for every batch size
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _value(outputs: Any) -> torch.Tensor:
    """The loss of a function's or terms form's outputs."""
    return outputs if isinstance(outputs, torch.Tensor) else outputs.loss


def _stacked(outputs: Any) -> torch.Tensor:
    """A function's value, or a terms form's terms stacked (the loss first)."""
    return outputs.detach() if isinstance(outputs, torch.Tensor) else torch.stack([t.detach() for t in outputs])


def outcome(function: Callable[[], Any]) -> Any:
    """What ``function()`` returned (detached), or ``"ExceptionType: message"`` of what it raised."""
    try:
        value = function()
    except (TypeError, ValueError, RuntimeError, IndexError, OverflowError, AttributeError) as error:
        return f"{type(error).__name__}: {error}"
    return pytree.tree_map(lambda x: x.detach() if isinstance(x, torch.Tensor) else x, value)


class Case(NamedTuple):
    """One member of the family with one choice of its options, and the checks the battery runs on it."""

    member: Member
    label: str
    options: dict

    @property
    def id(self) -> str:
        return f"{self.member.name}-{self.label}"

    @property
    def kind(self) -> NamedViews:
        return kind_of(self.member.loss)

    # -------------------------------------------------------------------------------------------- calls

    def example(self, n: int = N, d: int = D, *, seed: int = 0, dtype=torch.float64) -> Example:
        kind = self.kind
        _, extra = kind.extra((n,))
        return Example(example_views(kind.count, n, d, seed=seed, dtype=dtype), extra)

    def function(self, extra: tuple, **options) -> Callable[..., torch.Tensor]:
        """The loss as a function of the views alone, the further inputs fixed."""
        kind, member = self.kind, self.member
        return lambda *views: member.function(*kind.arguments(views, extra), **(self.options | options))

    def reference(self, extra: tuple, **options) -> Callable[..., torch.Tensor]:
        """The reference as a function of the views, with the options that change the value."""
        kind, member = self.kind, self.member
        return lambda *views: member.reference(*kind.arguments(views, extra), **value_options(self.options), **options)

    def terms_or_function(self, extra: tuple, **options) -> Callable[..., Any]:
        """The terms form where the loss has one (all its terms), else the function."""
        if self.member.terms is None:
            return self.function(extra, **options)
        kind, terms = self.kind, self.member.terms
        return lambda *views: terms(*kind.arguments(views, extra), **(self.options | options))

    # -------------------------------------------------------------------------------------------- checks

    def check_reference(self) -> None:
        """float64 equals the reference to 1e-10, on both sides of the algorithm crossover, and the gradients of
        ``UPSTREAM · L`` (an upstream gradient that is not 1) equal those through the reference to 1e-8."""
        for index, (n, d) in enumerate(SHAPES):
            views, extra = self.example(n, d, seed=index)
            expected = self.reference(extra)(*views)
            assert_relative(self.function(extra)(*views), expected, 1e-10, f"{self.id} at N={n}, D={d}")
        expected = _gradients(self.reference(extra), views, UPSTREAM)
        actual = _gradients(self.function(extra), views, UPSTREAM)
        for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
            assert_relative(a, b, 1e-8, f"gradient of view {index}")

    def check_forms(self) -> None:
        """The function, its terms form and its Module give the same value and the same gradients, bit for bit."""
        views, extra = self.example(seed=1)
        leaves = [view.clone().requires_grad_() for view in views]
        value = self.function(extra)(*leaves)
        module = self.member.module(**module_options(self.member, leaves[0].shape[-1], self.options))
        arguments = self.kind.arguments(leaves, extra)
        forms = {"Module": module(*arguments)}
        if self.member.terms is not None:
            terms = self.terms_or_function(extra)(*leaves)
            forms["terms"] = terms.loss
            module_terms = module.terms(*arguments)
            assert all(torch.equal(a, b) for a, b in zip(module_terms, terms, strict=True)), "Module.terms"
        expected_grads = torch.autograd.grad(value, leaves)
        for what, other in forms.items():
            assert torch.equal(other, value), f"{what} differs from the function"
            grads = torch.autograd.grad(other, leaves)
            assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads, strict=True)), f"{what} gradients"

    def check_gradcheck(self) -> None:
        """``torch.autograd.gradcheck`` in float64 on small shapes, of every term where the loss has terms."""
        for n, d in SMALL_SHAPES:
            views, extra = self.example(n, d, seed=2)
            leaves = tuple(view.requires_grad_() for view in views)
            assert torch.autograd.gradcheck(_tensors(self.terms_or_function(extra)), leaves)

    def check_gradient_penalty(self) -> None:
        """∂/∂θ of ``‖∂L/∂x‖²`` through a linear layer (a gradient penalty, ``create_graph=True``) equals autograd
        through the reference: second derivatives, not the first-order part alone."""
        views, extra = self.example(11, 5, seed=4)
        value, weight, bias = _gradient_penalty(self.function(extra), views)
        expected_value, expected_weight, expected_bias = _gradient_penalty(self.reference(extra), views)
        assert_relative(value, expected_value, 1e-10, "loss")
        assert_relative(weight, expected_weight, 1e-8, "second derivative (weight)")
        assert_relative(bias, expected_bias, 1e-8, "second derivative (bias)")

    def check_hessian(self) -> None:
        """``jacrev(jacrev(L))`` with respect to the first view equals the reference's (1e-8)."""
        views, extra = self.example(11, 4, seed=5)
        actual = jacrev(jacrev(self.function(extra)))(*views)
        assert_relative(actual, jacrev(jacrev(self.reference(extra)))(*views), 1e-8, "jacrev(jacrev)")

    def check_torch_func(self) -> None:
        """``torch.func``: ``vmap`` equals a loop (1e-12), ``vmap(grad)``, ``grad``, ``vjp`` and ``jacrev`` equal
        ``torch.autograd.grad`` (1e-10)."""
        count, (n, d) = self.kind.count, (11, 7)
        batched = [
            torch.stack(views) for views in zip(*[self.example(n, d, seed=s).views for s in range(3)], strict=True)
        ]
        _, extra = self.example(n, d)
        function = self.function(extra)
        values, grads = [], []
        for problem in range(3):
            leaves = [view[problem].clone().requires_grad_() for view in batched]
            value = function(*leaves)
            values.append(value.detach())
            grads.append(torch.autograd.grad(value, leaves))
        argnums = tuple(range(count))
        assert_relative(vmap(function)(*batched), torch.stack(values), 1e-12, "vmap")
        vmapped = vmap(grad(function, argnums=argnums))(*batched)
        for index in range(count):
            assert_relative(vmapped[index], torch.stack([g[index] for g in grads]), 1e-10, f"vmap(grad), view {index}")
        first = [view[0] for view in batched]
        for index, gradient in enumerate(grad(function, argnums=argnums)(*first)):
            assert_relative(gradient, grads[0][index], 1e-10, f"grad, view {index}")
        value, pullback = vjp(function, *first)
        assert_relative(value, values[0], 1e-12, "vjp value")
        for index, gradient in enumerate(pullback(torch.tensor(UPSTREAM, dtype=torch.float64))):
            assert_relative(gradient, UPSTREAM * grads[0][index], 1e-10, f"vjp, view {index}")
        assert_relative(jacrev(function)(*first), grads[0][0], 1e-10, "jacrev")

    def check_non_contiguous(self) -> None:
        """Transposed and column-strided views give the value (1e-10) and gradients (1e-8) of contiguous ones."""
        views, extra = self.example(seed=6)
        strided = []
        for index, view in enumerate(views):
            if index % 2 == 0:
                strided.append(view.t().contiguous().t())  # column-major
            else:
                wide = torch.zeros(view.shape[0], 2 * view.shape[1], dtype=view.dtype)
                wide[:, ::2] = view
                strided.append(wide[:, ::2])  # every other column
        assert not any(view.is_contiguous() for view in strided)
        assert_relative(self.function(extra)(*strided), self.reference(extra)(*views), 1e-10, "value")
        actual = _gradients(self.function(extra), strided, 1.0)
        for index, (a, b) in enumerate(zip(actual, _gradients(self.reference(extra), views, 1.0), strict=True)):
            assert_relative(a, b, 1e-8, f"gradient of view {index}")

    def check_dtype(self, dtype: torch.dtype) -> None:
        """The dtype tolerance table: the loss in float32 within ``LOSS_RTOL`` of the float64 reference on the same
        (rounded) inputs, the gradients in the inputs' dtype within ``GRAD_TOL`` of the reference's, rounded.

        The absolute part of the gradients' bound is relative to their largest entry, and is at least the rounding
        step of subnormal numbers and the error of plain PyTorch (the reference computed in float32 on the same
        inputs): a loss whose float32 problem is ill-conditioned (the log-determinant of the total coding rate
        through its D×D form) is held to doing no worse than the formula evaluated in float32.
        """
        views, extra = self.example(dtype=dtype, seed=7)
        leaves = [view.requires_grad_() for view in views]
        value = self.function(extra)(*leaves)
        assert value.dtype == torch.float32
        assert_relative(value, self.reference(extra, upcast=True)(*leaves), LOSS_RTOL[dtype], f"loss in {dtype}")
        grads = torch.autograd.grad(value, leaves)
        truths = _gradients(self.reference(extra), [view.detach().double() for view in leaves], 1.0)
        plain = _gradients(self.reference(extra), [view.detach().float() for view in leaves], 1.0)
        rtol, atol = GRAD_TOL[dtype]
        finfo = torch.finfo(dtype)
        subnormal_step = finfo.smallest_normal * finfo.eps  # gradients this small are rounded to this step
        for index, (gradient, truth, single) in enumerate(zip(grads, truths, plain, strict=True)):
            assert gradient.dtype == dtype, f"gradient of view {index}"
            plain_error = (single.double() - truth).abs().max().item()
            bound = max(atol * truth.abs().max().item(), subnormal_step, plain_error)
            torch.testing.assert_close(gradient, truth.to(dtype), rtol=rtol, atol=bound)

    def check_autocast(self) -> None:
        """Autocast to bfloat16 leaves the loss as it is (float32, the same value): the ops accumulate in float32."""
        views, extra = self.example(12, 6, seed=8, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = self.function(extra)(*views)
        assert autocast.dtype == torch.float32
        assert torch.equal(autocast, self.function(extra)(*views))

    def check_compile(self) -> None:
        """``torch.compile(fullgraph=True)`` (any graph break raises) gives the eager loss (1e-6) and gradients
        (1e-5) on float32 inputs, or differs from them no more than eager float32 differs from float64 where the
        problem's conditioning makes that larger (compiling reorders float32 rounding, it must not add error)."""
        torch._dynamo.reset()
        views, extra = self.example(16, 24, seed=9, dtype=torch.float32)
        compiled = torch.compile(self.member.function, fullgraph=True, backend="aot_eager")
        results = []
        for step, dtype in (
            (compiled, torch.float32),
            (self.member.function, torch.float32),
            (self.member.function, torch.float64),
        ):
            leaves = [view.to(dtype).requires_grad_() for view in views]
            value = step(*self.kind.arguments(leaves, extra), **self.options)
            results.append((value.detach(), torch.autograd.grad(value, leaves)))
        (value, grads), (eager, eager_grads), (exact, exact_grads) = results
        bound = max(1e-6, relative_error(eager, exact))
        assert relative_error(value, eager) <= bound, f"loss: {relative_error(value, eager):.1e}"
        for index, (gradient, eager_gradient, exact_gradient) in enumerate(
            zip(grads, eager_grads, exact_grads, strict=True)
        ):
            error, bound = (
                relative_error(gradient, eager_gradient),
                max(1e-5, relative_error(eager_gradient, exact_gradient)),
            )
            assert error <= bound, f"gradient of view {index}: {error:.1e} > {bound:.1e}"

    def check_dynamic_compile(self) -> None:
        """``torch.compile(dynamic=True, fullgraph=True)`` traces once for every batch size (more sizes than the
        recompile limit) and equals eager (1e-12).

        With ``DYNAMIC_D`` features every batch size lies on one side of every crossover of ``algorithm="auto"``
        (a choice that changes with N is a guard, and a second graph, as it should be); each path is compiled on
        its own in the cases that name it."""
        torch._dynamo.reset()
        frames = []

        def count_frames(graph, example_inputs):
            frames.append(graph)
            return graph.forward

        compiled = torch.compile(self.member.function, dynamic=True, fullgraph=True, backend=count_frames)
        for n in BATCH_SIZES:
            arguments = self.kind.arguments(*self.example(n, DYNAMIC_D, seed=n))
            expected = self.member.function(*arguments, **self.options)
            assert relative_error(compiled(*arguments, **self.options), expected) <= 1e-12, f"N = {n}"
        assert len(frames) == 1, f"traced {len(frames)} times for {len(BATCH_SIZES)} batch sizes"

    def check_export(self) -> None:
        """``torch.export`` with a dynamic batch dimension: the exported program equals eager at other N (1e-12).

        The program takes the tensors among the arguments (views, and further inputs such as a permutation); the
        other arguments are constants of the program."""
        member, options = self.member, self.options
        tensors, constants = _split(self.kind.arguments(*self.example(16, 7, seed=10)))

        class Criterion(torch.nn.Module):
            def forward(self, *tensors):
                return member.function(*_join(constants, tensors), **options)

        batch = torch.export.Dim("batch", min=2, max=4096)
        exported = torch.export.export(
            Criterion(), tuple(tensors), dynamic_shapes={"tensors": tuple({0: batch} for _ in tensors)}
        )
        for n in (5, 33):
            arguments = self.kind.arguments(*self.example(n, 7, seed=n))
            tensors, _ = _split(arguments)
            expected = member.function(*arguments, **options)
            assert relative_error(exported.module()(*tensors), expected) <= 1e-12, f"N = {n}"


def _tensors(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` returning a tensor or a tuple of tensors (a terms form's NamedTuple as a plain tuple)."""

    def outputs(*inputs: torch.Tensor) -> Any:
        result = function(*inputs)
        return result if isinstance(result, torch.Tensor) else tuple(result)

    return outputs


def _split(arguments: tuple) -> tuple[list[torch.Tensor], tuple]:
    """The tensors among ``arguments`` (views in sequences included) and what rebuilds the arguments from them."""
    leaves, spec = pytree.tree_flatten(arguments)
    tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    constants = tuple(None if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves)
    return tensors, (constants, spec)


def _join(constants: tuple, tensors: Sequence[torch.Tensor]) -> tuple:
    leaves, spec = constants
    supply = iter(tensors)
    return pytree.tree_unflatten([next(supply) if leaf is None else leaf for leaf in leaves], spec)


def _gradients(function: Callable[..., torch.Tensor], views: Sequence[torch.Tensor], upstream: float):
    leaves = [view.detach().clone().requires_grad_() for view in views]
    value = _value(function(*leaves))
    return torch.autograd.grad(value, leaves, torch.tensor(upstream, dtype=value.dtype))


def _gradient_penalty(function: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor]):
    """``(L, ∂P/∂W, ∂P/∂b)`` for ``P = Σ_v ‖w_v ⊙ ∂L/∂x_v‖²`` and ``L = loss(tanh(Wx₁ + b), 1.5 (Wx₂ + b), ...)``."""
    torch.manual_seed(1)
    d = inputs[0].shape[1]
    linear = torch.nn.Linear(d, d + 2, dtype=torch.float64)
    leaves = [x.clone().requires_grad_() for x in inputs]
    embeddings = [torch.tanh(linear(x)) if v == 0 else linear(x) * (1.0 + 0.5 * v) for v, x in enumerate(leaves)]
    value = _value(function(*embeddings))
    gradients = torch.autograd.grad(value, leaves, create_graph=True)
    weights = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    penalty = sum((g * weights**v).square().sum() for v, g in enumerate(gradients))
    penalty.backward()
    return value.detach(), linear.weight.grad, linear.bias.grad


def cases(*, ranks: bool = False) -> list[Case]:
    """Every variant of every member of the family."""
    return [Case(member, label, options) for member in FAMILY for label, options in variants(member.loss, ranks=ranks)]


def algorithm_cases() -> list[Case]:
    """Every member with each of its algorithms and every other option at its default."""
    return [case for case in cases() if set(case.options) <= {"algorithm"}]


def path_cases() -> list[Case]:
    """Every member with each algorithm that names one path (not ``"auto"``), every other option at its default."""
    return [case for case in algorithm_cases() if case.options or "algorithm" not in case.member.loss.option_names]


def default_cases() -> list[Case]:
    """Every member as called with every option at its default."""
    return [Case(member, "defaults", {}) for member in FAMILY]


# ------------------------------------------------------------------------------------------------ Modules and options


def numpy_options(loss: Loss, np) -> dict:
    """Every option that takes a number or a choice of strings or integers, off its default, as a numpy scalar
    (``float32`` and ``float64`` in turn for real numbers)."""
    found = {}
    for index, field in enumerate(option_fields(loss)):
        others = [c for c in field.choices if c != field.default and (field.name, c) not in LEFT_OUT]
        if field.name in RANKS:
            continue
        if field.kind == "real":
            found[field.name] = (np.float32, np.float64)[index % 2](off_default(field))
        elif field.kind == "integer":
            found[field.name] = np.int64(off_default(field))
        elif others and all(isinstance(c, str) for c in field.choices):
            found[field.name] = np.str_(others[-1])
        elif others and all(isinstance(c, int) and not isinstance(c, bool) for c in field.choices):
            found[field.name] = np.int64(others[-1])
    return found


def check_module_copies(member: Member, options: dict) -> None:
    """A Module with ``options`` equals the function with them, and so do its pickled and deep copies; it holds no
    state, and its repr and ``options`` list every option of the function's signature, in order."""
    module = member.module(**module_options(member, 5, options))
    kind = kind_of(member.loss)
    views, extra = Case(member, "", {}).example(10, 5, seed=11)
    arguments = kind.arguments(views, extra)
    expected = member.function(*arguments, **options)
    for copied in (module, pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert torch.equal(copied(*arguments), expected)
        assert repr(copied) == repr(module)
    assert module.state_dict() == {} and list(module.parameters()) == [] and list(module.buffers()) == []
    signature = inspect.signature(member.function)
    keywords = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
    assert list(module.options) == keywords
    for name in keywords:
        assert f"{name}=" in repr(module)


# ------------------------------------------------------------------------------------------------ several ranks

SHARDS = (4, 0, 7)  # uneven, with an empty rank that is not rank 0
DIM = 6
DISTRIBUTED_UPSTREAM = 0.7
EQUAL_ROWS = 3  # rows per rank of the compiled calls (a compiled graph needs as many rows on every rank)
CONVENTIONS = ("global", "official")


def rows(rank: int, shards: Sequence[int] = SHARDS) -> slice:
    start = sum(shards[:rank])
    return slice(start, start + shards[rank])


def global_views(member: Member, shards: Sequence[int] = SHARDS, *, seed: int = 11) -> list[torch.Tensor]:
    """The concatenated batch of every rank (float64)."""
    return example_views(kind_of(member.loss).count, sum(shards), DIM, seed=seed)


def evaluate(case: Case, views: Sequence[torch.Tensor], extra: tuple, **options):
    """``(value, gradients)``: the value (the terms stacked, where the loss has them) and the gradients of
    ``DISTRIBUTED_UPSTREAM · L`` with respect to the views."""
    leaves = [view.clone().requires_grad_() for view in views]
    outputs = case.terms_or_function(extra, **options)(*leaves)
    loss = _value(outputs)
    (loss * DISTRIBUTED_UPSTREAM).backward()
    return _stacked(outputs), [leaf.grad for leaf in leaves]


def one_process(case: Case, shards: Sequence[int] = SHARDS):
    """What one process computes on the concatenated batch: ``(value, gradients)``."""
    _, whole = case.kind.extra(shards)
    return evaluate(case, global_views(case.member, shards), whole)


def shard(case: Case, rank: int, shards: Sequence[int] = SHARDS) -> Example:
    """Rank ``rank``'s rows of the concatenated batch, and its further inputs."""
    per_rank, _ = case.kind.extra(shards)
    return Example([view[rows(rank, shards)] for view in global_views(case.member, shards)], per_rank[rank])


def rank_battery(rank: int) -> dict:
    """The family's battery on one rank of the group of :data:`WORLD_SIZE` (run by ``tests/test_family_distributed``).

    Returns the records the tests compare with :func:`one_process`; every call records what it returned or the
    error it raised, so that one failing call fails one test (the ranks raise together, and stay in step).
    """
    records: dict = {}
    for case in cases(ranks=True):
        views, extra = shard(case, rank)
        for convention in CONVENTIONS:
            records[case.id, convention] = outcome(
                lambda: evaluate(case, views, extra, gradient_convention=convention)  # noqa: B023
            )
    for member in FAMILY:
        records.update(_member_records(member, rank))
    return records


def member_faults(member: Member, example: Example, faulty: bool) -> dict[str, tuple[tuple, dict, Expected]]:
    """``fault -> (arguments, options, what every rank's error must be)`` of the faults that rank 2 makes, given its own
    inputs when ``faulty`` and the good inputs otherwise: a bad first view (not a tensor, 1-D, integer), the faults
    of the kind of inputs, each real option off the others' value, each option with choices given a bad one."""
    kind = kind_of(member.loss)
    views, extra = example
    first, n = kind.names(len(views))[0], views[0].shape[0]
    good = kind.arguments(views, extra)

    def first_view(bad: Any) -> tuple:
        return kind.arguments([bad if faulty else views[0], *views[1:]], extra)

    found = {
        "non_tensor": (first_view(None), {}, f"TypeError: {first} must be a torch.Tensor, got NoneType (on rank 2)"),
        "one_dimensional": (
            first_view(views[0][:, 0]),
            {},
            f"ValueError: {first} must be 2-D of shape (N, D), got shape ({n},) (on rank 2)",
        ),
        "integer": (
            first_view(views[0].long()),
            {},
            f"TypeError: {first} must have a floating-point dtype, got torch.int64 (on rank 2)",
        ),
    }
    for fault, (arguments, words) in kind.faults(views, extra, faulty).items():
        found[fault] = (arguments, {}, words)
    for field in option_fields(member.loss):
        option, choices, default = field.name, field.choices, field.default
        if option in RANKS:
            continue
        if field.kind in ("real", "integer"):
            value = off_default(field) if faulty else default
            values = [default] * (WORLD_SIZE - 1) + [off_default(field)]
            found[f"{option}_differs"] = (good, {option: value}, differs(option, values))
        if choices:
            words = f"{option} must be a bool" if all(isinstance(c, bool) for c in choices) else f"{option} must be"
            found[f"{option}_bad"] = (good, {option: "bogus" if faulty else default}, (words, "(on rank 2)"))
    return found


def _member_records(member: Member, rank: int) -> dict:
    """Per-rank calls, faults on rank 2, small global batches and compiled calls of one member (defaults)."""
    case = Case(member, "defaults", {})
    kind, name, function = case.kind, member.name, member.function
    example = shard(case, rank)
    good = kind.arguments(*example)
    records = {(name, "local"): outcome(lambda: evaluate(case, *example, distributed="local"))}
    for form, arguments in kind.forms(*example).items():
        records[name, "form", form] = outcome(lambda: function(*arguments))  # noqa: B023
    for fault, (arguments, options, _) in member_faults(member, example, rank == 2).items():
        records[name, fault] = outcome(lambda: function(*arguments, **options))  # noqa: B023
        records[name, fault, "next"] = outcome(lambda: function(*good))

    # A global batch of exactly min_rows rows, all on rank 0; one of fewer rows.
    for label, total in (("min_rows", member.loss.min_rows), ("too_few_rows", member.loss.min_rows - 1)):
        small = shard(case, rank, (total, 0, 0))
        records[name, label] = outcome(lambda: function(*kind.arguments(*small)))  # noqa: B023

    # Compiled inside the group, on equal shards: forward and backward, then without autograd and dynamic shapes.
    equal = (EQUAL_ROWS,) * WORLD_SIZE
    views, extra = shard(case, rank, equal)
    torch._dynamo.reset()
    compiled = torch.compile(case.function(extra), fullgraph=True, backend="aot_eager")
    records[name, "compiled"] = outcome(lambda: compiled_value_and_grads(compiled, views))
    torch._dynamo.reset()
    dynamic = torch.compile(case.function(extra), fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        records[name, "compiled_no_grad"] = outcome(lambda: dynamic(*views))
    torch._dynamo.reset()
    return records


def compiled_value_and_grads(function, views):
    leaves = [view.clone().requires_grad_() for view in views]
    value = function(*leaves)
    (value * DISTRIBUTED_UPSTREAM).backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def compiled_one_process(member: Member):
    """One process's value and gradients on the concatenated batch of the compiled calls' equal shards."""
    case = Case(member, "defaults", {})
    equal = (EQUAL_ROWS,) * WORLD_SIZE
    _, whole = case.kind.extra(equal)
    return compiled_value_and_grads(case.function(whole), global_views(member, equal))


def one_process_loss(member: Member, shards: Sequence[int] = SHARDS) -> torch.Tensor:
    """The loss (every option at its default) of one process on the concatenated batch of ranks of ``shards``."""
    case = Case(member, "defaults", {})
    _, whole = case.kind.extra(shards)
    return member.function(*case.kind.arguments(global_views(member, shards), whole))
