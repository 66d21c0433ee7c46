"""Old spellings of options, accepted for one release with a :class:`FutureWarning` that names the new one.

A :class:`DeprecatedAlias` says what each value of an old option means in the new options. :func:`translate` is
the one place where an alias is handled: the functions of a loss and their ``terms`` forms
(:meth:`redundancy._loss.Loss.run`) and the Modules' constructors (:class:`redundancy._loss.LossModule`) call it
with the aliases their options dataclass lists (``aliases = (NORMALIZATION,)``), and the public helpers take it
through :func:`accepts_deprecated`. Making an option an alias of others is one entry here and one line where it
is accepted.
"""

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from redundancy._validation import check_choice


class DeprecatedAlias(NamedTuple):
    """An old option, the new options that replace it, and what each of its values means in them."""

    name: str
    replacements: tuple[str, ...]
    meanings: Mapping[Any, dict]

    def translate(self, value: Any) -> dict:
        """The new options that ``value`` of the old option means (a :class:`ValueError` names an unknown one)."""
        check_choice(self.name, value, tuple(self.meanings))
        return dict(self.meanings[value])


#: ``normalization=`` (deprecated): the variance divisor is ``correction`` (as in :func:`torch.var`), and
#: ``standardize=False`` uses the inputs as they are.
NORMALIZATION = DeprecatedAlias(
    "normalization",
    ("correction", "standardize"),
    {"batchnorm": {"correction": 0}, "std": {"correction": 1}, "none": {"standardize": False}},
)


def _spell(options: dict) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in options.items())


def translate(
    aliases: tuple[DeprecatedAlias, ...], names: frozenset[str], options: dict, caller: str, *, stacklevel: int
) -> dict:
    """``options`` with every deprecated alias replaced by the new options it means.

    Each alias passed emits one :class:`FutureWarning` naming its replacement (``stacklevel`` counts from this
    function to the user's call). Raises a :class:`TypeError` naming both spellings when an alias comes with one
    of its replacements, a :class:`ValueError` naming the alias for a value it does not have, and a
    :class:`TypeError` for a name that is neither in ``names`` nor an alias, as Python does for a function.

    Example:
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     translate((NORMALIZATION,), frozenset({"correction", "standardize", "eps"}),
        ...               {"normalization": "std", "eps": 0.0}, "f", stacklevel=2)
        {'eps': 0.0, 'correction': 1}
        >>> print(caught[0].message)
        normalization='std' is deprecated and will be removed in the next release; pass correction=1 instead
    """
    options = dict(options)
    for alias in aliases:
        if alias.name not in options:
            continue
        value = options.pop(alias.name)
        given = [name for name in alias.replacements if name in options]
        if given:
            raise TypeError(
                f"{caller}() got both {alias.name}= (deprecated) and {given[0]}=, which replaces it; "
                f"pass {given[0]}= only"
            )
        meaning = alias.translate(value)
        warnings.warn(
            f"{alias.name}={value!r} is deprecated and will be removed in the next release; "
            f"pass {_spell(meaning)} instead",
            FutureWarning,
            stacklevel=stacklevel,
        )
        options.update(meaning)
    for name in options:
        if name not in names:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
    return options


def accepts_deprecated(*aliases: DeprecatedAlias) -> Callable[[Callable], Callable]:
    """Decorate a public function with keyword options so that it also takes ``aliases`` (see :func:`translate`).

    The function's signature (what ``help`` and the docs show) keeps the new spelling only.
    """

    def decorate(function: Callable) -> Callable:
        names = frozenset(inspect.signature(function).parameters)

        @functools.wraps(function)
        def accepting(*args, **options):
            if not names.issuperset(options):  # an alias (or an unknown name, which translate reports)
                options = translate(aliases, names, options, function.__name__, stacklevel=3)
            return function(*args, **options)

        return accepting

    return decorate
