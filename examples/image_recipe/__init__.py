"""A Barlow Twins image recipe: ResNet, LARS, bf16 autocast, DDP, batched device augmentations.

Run the scripts (``train.py``, ``linear_eval.py``) directly or through ``torchrun``; see ``README.md``.
"""
