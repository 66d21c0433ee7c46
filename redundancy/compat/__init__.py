"""Drop-in replacements with the signatures of other libraries' losses, computed by ``redundancy``.

- :mod:`redundancy.compat.lightly`: ``BarlowTwinsLoss`` and ``VICRegLoss`` of ``lightly.loss``.
- :mod:`redundancy.compat.solo`: ``barlow_loss_func`` and ``vicreg_loss_func`` of ``solo.losses``.

Each gives the value the library gives in a single process. Under ``torch.distributed`` each follows this
library's distributed semantics (DESIGN §5: the loss of the global batch), which is the one intended difference.
"""
