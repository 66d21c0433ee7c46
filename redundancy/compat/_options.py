"""The hyperparameters of the adapters, read when the loss is computed, as lightly and solo-learn read theirs.

The peers use their weights in plain arithmetic, ``invariance + lambda_param * redundancy``, so whatever that
arithmetic takes is a weight: the adapters combine the library's unweighted terms with the same arithmetic, and
check the weight at each call under the peer's name (:func:`weight`). ``eps`` of lightly's ``VICRegLoss`` is
different: it goes into the library's variance hinge, which takes a number and checks it (:func:`number`).
"""

import numbers

import torch


def weight(name: str, value: object) -> float | torch.Tensor:
    """``value`` as a factor of the loss: a Python float, or a one-element real tensor as it is.

    Any real number is a weight, negative, NaN, infinite or a ``bool`` included, as in the peers' arithmetic:
    Python and numpy numbers become floats (which is what torch does with them in arithmetic), and a tensor is
    returned unchanged, so that its dtype, its shape and its gradient take part as they do in the peer.

    Raises:
        TypeError: naming ``name``, for anything else: a string, ``None``, a complex number or tensor (the loss
            would be complex, which ``backward()`` refuses), a tensor of several elements (the loss would be a
            tensor of several losses), a numpy boolean.
        ValueError: naming ``name``, for an integer too large for a float (torch's arithmetic refuses it too).

    Example:
        >>> import numpy as np
        >>> weight("lambda_param", np.float32(0.5)), weight("lambda_param", -1), weight("lambda_param", True)
        (0.5, -1.0, 1.0)
        >>> weight("lambda_param", torch.tensor(0.02, requires_grad=True))
        tensor(0.0200, requires_grad=True)
        >>> weight("lambda_param", "0.1")
        Traceback (most recent call last):
            ...
        TypeError: lambda_param must be a real number or a one-element real tensor, got str '0.1'
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(
                f"{name} must be a real number or a one-element real tensor, got a tensor of dtype {value.dtype} "
                f"and shape {tuple(value.shape)}"
            )
        return value
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{name} must fit in a float, got an integer of {len(str(abs(value)))} digits") from None
    raise TypeError(
        f"{name} must be a real number or a one-element real tensor, got {type(value).__name__} {value!r:.80}"
    )


def number(name: str, value: object) -> float:
    """``value`` as a Python float, for an option that the library's loss takes as a number (and checks).

    The weights' types are taken (:func:`weight`); a tensor is read with ``.item()``, which waits for a CUDA
    tensor, and one that requires grad is refused, since no gradient would reach it through a number.

    Example:
        >>> number("eps", torch.tensor(1e-3, dtype=torch.float64)), number("eps", True)
        (0.001, 1.0)
        >>> number("eps", torch.tensor(1e-3, requires_grad=True))
        Traceback (most recent call last):
            ...
        TypeError: eps must not require grad: the loss takes it as a number, so it would get no gradient
    """
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise TypeError(f"{name} must not require grad: the loss takes it as a number, so it would get no gradient")
    value = weight(name, value)
    return float(value.item()) if isinstance(value, torch.Tensor) else value
