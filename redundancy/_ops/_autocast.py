"""Keep autocast away from the fp32 accumulations of the ops."""

import contextlib

import torch

_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "hpu")


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast for ``device`` (a no-op for device types autocast does not know)."""
    if device.type in _AUTOCAST_DEVICE_TYPES:
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
