"""``no_autocast`` (``redundancy/_ops/_autocast.py``): the ops leave an autocast region for their own products, and
leave autocast alone when it is off. That every loss of the family gives the same value under autocast is tested
by ``tests/family.py``."""

import torch

from redundancy._ops._autocast import no_autocast


def test_no_autocast_disables_autocast_and_leaves_it_off_when_off():
    device = torch.device("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with no_autocast(device):
            assert not torch.is_autocast_enabled("cpu")
            assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
    with no_autocast(device):
        assert not torch.is_autocast_enabled("cpu")
    with no_autocast(torch.device("meta")):  # a device type autocast does not know
        assert torch.ones(1, device="meta").dtype == torch.float32
