"""Whether an op runs eagerly, on values the host can read."""

import torch


def values_are_readable(z: torch.Tensor) -> bool:
    """``False`` while ``torch.compile`` or ``torch.export`` traces the op, or a :mod:`torch.func` transform runs it
    (``z`` is then a wrapper whose values the host cannot branch on); ``True`` in eager mode."""
    return not torch.compiler.is_compiling() and not torch._C._functorch.is_functorch_wrapped_tensor(z)
