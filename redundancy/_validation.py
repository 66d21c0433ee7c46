"""The checks every public function shares, and the one compute-dtype rule.

Each check raises a :class:`ValueError` or :class:`TypeError` whose message names the argument. The checks of
plain option values are written with comparisons only, so that ``torch.compile`` traces them (with
``dynamic=True`` a float option may reach them as a symbolic float: no ``math.isfinite``, no ``float()``).
"""

import numbers
from typing import cast

import torch
import torch.distributed

from redundancy._dtensor import is_dtensor

#: What an option that takes a real number accepts: Python and numpy numbers, and the symbolic numbers of a trace.
_REAL_TYPES = (numbers.Real, torch.SymFloat, torch.SymInt)
#: The largest finite float64: a larger integer has no float value (``float()`` of it raises ``OverflowError``).
_LARGEST_FLOAT = int(torch.finfo(torch.float64).max)


def check_real(
    name: str, value: object, *, nonnegative: bool = False, positive: bool = False, or_auto: bool = False
) -> None:
    """Raise unless ``value`` is a finite real number (``bool`` is not), non-negative or positive if asked.

    ``or_auto`` says, in the message of a value that is not a number, that the option also takes ``"auto"``.

    Example:
        >>> import numpy as np
        >>> check_real("lambd", np.float32(5e-3), nonnegative=True)  # numpy scalars are real numbers
        >>> check_real("scale", -1.0, nonnegative=True)
        Traceback (most recent call last):
            ...
        ValueError: scale must be non-negative, got -1.0
    """
    if isinstance(value, bool) or not isinstance(value, _REAL_TYPES):
        what = "a real number or 'auto'" if or_auto else "a real number"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r:.80}")
    number = cast(float, value)  # a real number: it compares with floats
    if isinstance(value, numbers.Integral) and not isinstance(value, torch.SymInt) and abs(number) > _LARGEST_FLOAT:
        raise ValueError(f"{name} must be finite as a float, got an integer of {len(str(abs(number)))} digits")
    if not -float("inf") < number < float("inf"):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not number > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if nonnegative and not number >= 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")


def check_integer(name: str, value: object, *, nonnegative: bool = False, positive: bool = False) -> None:
    """Raise unless ``value`` is an integer (``bool`` is not; numpy integers are), non-negative or positive if asked.

    Example:
        >>> check_integer("num_slices", 0, positive=True)
        Traceback (most recent call last):
            ...
        ValueError: num_slices must be positive, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, torch.SymInt)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.80}")
    number = cast(int, value)
    if positive and not number > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if nonnegative and not number >= 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")


def check_group(name: str, group: object) -> None:
    """Raise a :class:`TypeError` unless ``group`` is ``None`` or a :class:`torch.distributed.ProcessGroup`."""
    if group is None:
        return
    if not torch.distributed.is_available() or not isinstance(group, torch.distributed.ProcessGroup):
        raise TypeError(f"{name} must be None or a torch.distributed.ProcessGroup, got {type(group).__name__}")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise unless ``value`` is one of ``choices`` (strings, or ints that are not bools).

    Example:
        >>> check_choice("algorithm", "fast", ("auto", "cross", "gram"))
        Traceback (most recent call last):
            ...
        ValueError: algorithm must be one of ('auto', 'cross', 'gram'), got 'fast'
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r:.80}")


def check_bool(name: str, value: object) -> None:
    """Raise unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_correction(name: str, value: object) -> None:
    """Raise unless ``value`` is a variance divisor ``N - correction`` as :func:`torch.var` takes it: 0 or 1.

    Example:
        >>> check_correction("correction", 2)
        Traceback (most recent call last):
            ...
        ValueError: correction must be 0 (divide by N) or 1 (divide by N - 1), got 2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in (0, 1):
        raise ValueError(f"{name} must be 0 (divide by N) or 1 (divide by N - 1), got {value!r:.80}")


def check_standardization(standardize: object, correction: object, eps: object) -> None:
    """Raise unless the options of a standardization are right: a bool, 0 or 1, and a non-negative real number."""
    check_bool("standardize", standardize)
    check_correction("correction", correction)
    check_real("eps", eps, nonnegative=True)


def check_embedding(name: str, z: object, *, min_rows: int = 2) -> None:
    """Raise unless ``z`` is a dense floating tensor of shape ``(N, D)`` with ``N >= min_rows`` and ``D >= 1``.

    Example:
        >>> check_embedding("z1", torch.zeros(8))
        Traceback (most recent call last):
            ...
        ValueError: z1 must be 2-D of shape (N, D), got shape (8,)
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if is_dtensor(z):
        raise TypeError(
            f"{name} is a DTensor: the two-view losses take DTensor views; here pass each rank's block "
            "(DTensor.to_local()) with group= (and feature_group=) naming the ranks"
        )
    if z.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {z.layout}")
    if z.is_meta:
        raise ValueError(f"{name} is on the meta device, which holds no values")
    if not z.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {z.dtype}")
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (N, D), got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} needs a batch of at least {min_rows} rows, got shape {tuple(z.shape)}")
    if z.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature column, got shape {tuple(z.shape)}")


def check_same_batch(names: tuple[str, ...], views: tuple[torch.Tensor, ...]) -> None:
    """Raise unless the (already checked) ``views`` have one shape and one device; ``names`` name them.

    Example:
        >>> check_same_batch(("z1", "z2"), (torch.zeros(4, 3), torch.zeros(4, 2)))
        Traceback (most recent call last):
            ...
        ValueError: z1 and z2 must have the same shape, got z1 (4, 3) and z2 (4, 2)
    """
    first, reference = names[0], views[0]
    for name, view in zip(names[1:], views[1:], strict=True):
        if view.shape != reference.shape:
            raise ValueError(
                f"{first} and {name} must have the same shape, got {first} {tuple(reference.shape)} and "
                f"{name} {tuple(view.shape)}"
            )
        if view.device != reference.device:
            raise ValueError(f"{first} and {name} must be on the same device, got {reference.device} and {view.device}")


def check_views(names: tuple[str, ...], views: tuple[torch.Tensor, ...], *, min_rows: int = 2) -> None:
    """Raise unless each of ``views`` passes :func:`check_embedding` and together they pass
    :func:`check_same_batch`, in that order; ``names`` name them.

    Example:
        >>> check_views(("z1", "z2"), (torch.zeros(4, 3), torch.zeros(1, 3)))
        Traceback (most recent call last):
            ...
        ValueError: z2 needs a batch of at least 2 rows, got shape (1, 3)
    """
    for name, view in zip(names, views, strict=True):
        check_embedding(name, view, min_rows=min_rows)
    check_same_batch(names, views)


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the losses compute in: float64 when any input is float64, otherwise float32.

    Half-precision inputs (float16, bfloat16) are accumulated in float32; their gradients come back in their own
    dtype.

    Example:
        >>> compute_dtype(torch.zeros(1, dtype=torch.bfloat16)), compute_dtype(torch.zeros(1, dtype=torch.float64))
        (torch.float32, torch.float64)
    """
    return torch.float64 if any(z.dtype == torch.float64 for z in tensors) else torch.float32
