"""Hyperparameters of the adapters: any real number the peer library accepts, checked under the peer's name."""

import torch

from redundancy._validation import check_real


def real_option(name: str, value: object, *, nonnegative: bool = True) -> float:
    """``value`` as a Python float, or a :class:`TypeError` / :class:`ValueError` naming ``name``.

    lightly and solo-learn take any number their arithmetic accepts, so the adapters do too: Python and numpy
    integers and floats, and 0-dim (or one-element) real tensors, which are read once, here. Booleans, complex
    numbers, strings and tensors of more than one element are refused.

    Example:
        >>> import numpy as np
        >>> real_option("lambda_param", np.float32(0.5)), real_option("lamb", torch.tensor(2))
        (0.5, 2.0)
        >>> real_option("lambda_param", -1.0)
        Traceback (most recent call last):
            ...
        ValueError: lambda_param must be non-negative, got -1.0
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            raise TypeError(
                f"{name} must be a real number or a one-element real tensor, got a tensor of dtype {value.dtype} "
                f"and shape {tuple(value.shape)}"
            )
        value = value.item()
    check_real(name, value, nonnegative=nonnegative)
    return float(value)
