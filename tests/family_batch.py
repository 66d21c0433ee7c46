"""The batch that the distributed tests of the family share: three gloo ranks with uneven shards, one empty.

``global_views()`` is the concatenated float64 batch (three views, for Mixed Barlow Twins' mixed one); rank r holds
``rows(r)`` of it. Each rank's Mixed Barlow Twins permutation permutes its own rows, so the one-process reference
uses their block-diagonal union, ``global_permutation()``. ``evaluate`` runs one loss of a table
``{name: (function, number of views)}`` and returns its value (its terms stacked) and the views' gradients.
"""

import torch

WORLD_SIZE = 3
SHARDS = (4, 0, 7)  # uneven, with an empty rank that is not rank 0
DIM = 6
ALPHA = 0.3  # Mixed Barlow Twins' mixing coefficient
UPSTREAM = 0.7  # an upstream gradient that is not 1


def global_views() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    n = sum(SHARDS)
    z1 = torch.randn(n, DIM, generator=generator, dtype=torch.float64) * 1.5 + 2.0
    z2 = z1 @ torch.randn(DIM, DIM, generator=generator, dtype=torch.float64) + 0.3
    z3 = 0.5 * z1 - z2 + torch.randn(n, DIM, generator=generator, dtype=torch.float64)
    return [z1, z2, z3]


def rows(rank: int) -> slice:
    start = sum(SHARDS[:rank])
    return slice(start, start + SHARDS[rank])


def permutation(rank: int) -> torch.Tensor:
    """Rank ``rank``'s permutation of its own rows."""
    return torch.randperm(SHARDS[rank], generator=torch.Generator().manual_seed(rank))


def global_permutation() -> torch.Tensor:
    """Each rank's own permutation of its rows, as one block-diagonal permutation of the global batch."""
    return torch.cat([permutation(rank) + sum(SHARDS[:rank]) for rank in range(WORLD_SIZE)])


def evaluate(losses: dict, name: str, views: list[torch.Tensor], perm: torch.Tensor, **options):
    """``(value, gradients)`` of ``UPSTREAM · loss`` with respect to the views (the loss's terms when it has them)."""
    function, count = losses[name]
    views = [view.clone().requires_grad_() for view in views[:count]]
    extra = (perm, ALPHA) if name.startswith("mixed") else ()
    value = function(*views, *extra, **options)
    loss = value if isinstance(value, torch.Tensor) else value.loss
    (loss * UPSTREAM).backward()
    value = value.detach() if isinstance(value, torch.Tensor) else torch.stack([t.detach() for t in value])
    return value, [view.grad for view in views]
