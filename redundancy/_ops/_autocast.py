"""Keep autocast away from the fp32 accumulations of the ops."""

import contextlib

import torch

_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "hpu")
_NOTHING_TO_DISABLE = contextlib.nullcontext()


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast for ``device`` (a no-op for device types autocast does not know).

    When autocast is off for ``device`` already, the context does nothing (entering a :class:`torch.autocast`
    costs a few µs, as much as a small op). While ``torch.compile`` traces, the autocast context is always
    entered: the traced graph then does not depend on the state of autocast at tracing time.
    """
    if device.type not in _AUTOCAST_DEVICE_TYPES:
        return _NOTHING_TO_DISABLE
    if not torch.is_autocast_enabled(device.type) and not torch.compiler.is_compiling():
        return _NOTHING_TO_DISABLE
    return torch.autocast(device_type=device.type, enabled=False)
