"""LeJEPA beside Barlow Twins on scikit-learn's bundled digits, four views per image, offline, on a CPU.

Pretrains two copies of one small convolutional encoder on the unlabelled training images, each with four random
views of every image: one with the LeJEPA objective (:class:`redundancy.LeJEPALoss`: SIGReg of the projections plus
their distance to the centre of the views) and one with the multi-view Barlow Twins loss
(:class:`redundancy.MultiviewBarlowTwinsLoss`, the mean over the six pairs of views). Then it freezes them and fits
linear probes with 2%, 10% and 100% of the training labels, against the raw pixels and the encoder at its random
initialization, as ``digits_barlow_twins.py`` does (same split, augmentations, encoder and probes).

Each method keeps its own projector and hyperparameters: LeJEPA the 16-dimensional projection and λ = 0.02 of the
official minimal recipe (``rbalestr-lab/lejepa`` ``MINIMAL.md``: ``+lamb=0.02 +V=4 +proj_dim=16``), 256 slices;
Barlow Twins the 512-wide projector and λ = 0.0051 of ``digits_barlow_twins.py``. Both: AdamW, learning rate 2e-3
with a 5% warm-up and cosine decay, weight decay 1e-4, batches of 256 images (1024 views), the four views of a batch
through the networks together (as ``MINIMAL.md`` does).

Run::

    pip install ".[examples]"
    python examples/digits_lejepa.py              # about 2 minutes of CPU time, one thread
    python examples/digits_lejepa.py --help       # epochs, views, output folder, ...

It prints the results table and writes ``results.json`` and ``losses.png`` to ``--out`` (default
``runs/digits_lejepa``).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np
import torch
from digits_barlow_twins import DigitsEncoder
from digits_barlow_twins import augment
from digits_barlow_twins import embed
from digits_barlow_twins import load_digits_split
from digits_barlow_twins import probe_all
from digits_barlow_twins import results_table
from torch import nn

from redundancy import LeJEPALoss
from redundancy import MultiviewBarlowTwinsLoss


def head(in_features: int, width: int, out_features: int) -> nn.Sequential:
    """A projector: two (Linear, BatchNorm, ReLU) blocks of ``width``, then a Linear layer to ``out_features``."""
    return nn.Sequential(
        nn.Linear(in_features, width, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, width, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, out_features),
    )


def pretrain(
    encoder: nn.Module,
    projector: nn.Module,
    criterion: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    views: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    name: str,
    progress: bool = True,
) -> list[float]:
    """Train ``encoder`` and ``projector`` with ``criterion`` of the ``(views, batch, D)`` projections; return the
    loss of every step. AdamW, a linear warm-up over the first 5% of steps, then cosine decay; the last incomplete
    batch of an epoch is dropped."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(
        [*encoder.parameters(), *projector.parameters()], lr=learning_rate, weight_decay=weight_decay
    )
    steps_per_epoch = len(images) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size ({batch_size}) must not exceed the number of images ({len(images)})")
    total = epochs * steps_per_epoch
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
    )
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    encoder.train()
    projector.train()
    bar = tqdm(total=total, desc=name, unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            batch = images[order[step * batch_size : (step + 1) * batch_size]]
            stacked = torch.cat([augment(batch, generator) for _ in range(views)])
            projections = projector(encoder(stacked)).unflatten(0, (views, len(batch)))  # (V, N, D)
            loss = criterion(projections)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


def save_losses_plot(path: pathlib.Path, losses: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.6))
    for ax, (name, values) in zip(np.atleast_1d(axes), losses.items(), strict=True):
        ax.plot(values)
        ax.set(xlabel="step", ylabel="loss", title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="pretraining epochs of each method (%(default)s)")
    parser.add_argument("--views", type=int, default=4, help="views of every image, V (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (%(default)s)")
    parser.add_argument("--width", type=int, default=32, help="encoder width; features = 4·width (%(default)s)")
    parser.add_argument("--lamb", type=float, default=0.02, help="LeJEPA's SIGReg weight λ (%(default)s)")
    parser.add_argument("--proj-dim", type=int, default=16, help="LeJEPA's projection dimension (%(default)s)")
    parser.add_argument("--slices", type=int, default=256, help="SIGReg's directions per step (%(default)s)")
    parser.add_argument("--lambd", type=float, default=0.0051, help="Barlow Twins' λ (%(default)s)")
    parser.add_argument("--bt-width", type=int, default=512, help="Barlow Twins' projector width, D (%(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (%(default)s)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (%(default)s)")
    parser.add_argument("--probe-c", type=float, default=0.1, help="probes' inverse regularization C (%(default)s)")
    parser.add_argument("--probe-seeds", type=int, default=5, help="label subsets per fraction (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models and augmentations (%(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0: torch's choice (%(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/digits_lejepa"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    args = parse_args(argv)
    if args.views < 2:
        raise ValueError(f"--views must be at least 2, got {args.views}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    split = load_digits_split()
    print(
        f"digits: {len(split.train_images)} train / {len(split.test_images)} test images, {args.views} views; "
        f"torch threads: {torch.get_num_threads()}"
    )
    methods = {
        "LeJEPA": (
            lambda features: head(features, 512, args.proj_dim),
            LeJEPALoss(lamb=args.lamb, num_slices=args.slices),
        ),
        "Barlow Twins": (
            lambda features: head(features, args.bt_width, args.bt_width),
            MultiviewBarlowTwinsLoss(lambd=args.lambd),
        ),
    }
    seeds = list(range(args.probe_seeds))
    results: dict[str, dict[str, list[float]]] = {}
    losses: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for name, (make_head, criterion) in methods.items():
        torch.manual_seed(args.seed)  # the same initial encoder for both methods
        encoder = DigitsEncoder(args.width)
        projector = make_head(encoder.out_features)
        start = time.perf_counter()
        losses[name] = pretrain(
            encoder,
            projector,
            criterion,
            split.train_images,
            views=args.views,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            seed=args.seed,
            name=name,
            progress=not args.no_progress,
        )
        seconds[name] = time.perf_counter() - start
        train, test = embed(encoder, split.train_images), embed(encoder, split.test_images)
        results[f"{name} encoder"] = probe_all(name, train, split, test, seeds, args.probe_c)
    torch.manual_seed(args.seed)
    initial = DigitsEncoder(args.width)
    results["random encoder"] = probe_all(
        "random", embed(initial, split.train_images), split, embed(initial, split.test_images), seeds, args.probe_c
    )
    pixels_train = split.train_images.flatten(1).double().numpy()
    pixels_test = split.test_images.flatten(1).double().numpy()
    results["raw pixels"] = probe_all("pixels", pixels_train, split, pixels_test, seeds, args.probe_c)

    for name, values in losses.items():
        print(f"{name}: {len(values)} steps in {seconds[name]:.0f} s, loss {values[0]:.3f} -> {values[-1]:.3f}")
    print(f"linear probe test accuracy (%), {len(split.test_labels)} test images, {args.probe_seeds} label subsets:")
    print(results_table(results))
    save_losses_plot(args.out / "losses.png", losses)
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds, "losses": losses}
    (args.out / "results.json").write_text(json.dumps({**record, "accuracy": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
