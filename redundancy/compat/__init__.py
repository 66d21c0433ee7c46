"""Drop-in replacements with the signatures of other libraries' losses, computed by ``redundancy``.

- :mod:`redundancy.compat.lightly`: ``BarlowTwinsLoss``, ``VICRegLoss``, ``SIGReg``, ``LeJEPALoss`` and ``MMCRLoss``
  of ``lightly.loss``.
- :mod:`redundancy.compat.solo`: ``barlow_loss_func`` and ``vicreg_loss_func`` of ``solo.losses``.

Each gives the value and the gradients its library gives in one process and takes the same arguments: the
library computes the unweighted terms and the adapter weighs them with the peer's own arithmetic, so any real
weight (negative, NaN, infinite, a bool, a one-element tensor that requires grad) gives the peer's value and
gradients, and each module lists, with the reason, the few values it refuses where the peer computes. Under
``torch.distributed`` each keeps its library's gradient scale. The one intended difference is that under
``torch.distributed`` the statistics are those of the global batch of all ranks, so the value does not depend on
how the batch is split; each module says how the library differs. Half-precision inputs give a float32 loss.
"""
