"""Barlow Twins on scikit-learn's bundled digits, offline, in a few minutes on a laptop CPU.

Pretrains a small convolutional encoder with :class:`redundancy.BarlowTwinsLoss` on the unlabelled training
images, then freezes it and fits linear probes (logistic regression on standardized features) with 2%, 10% and
100% of the training labels, against two baselines measured in the same run: the raw pixels and the same encoder
at its random initialization.

Data: ``sklearn.datasets.load_digits`` (1797 greyscale 8×8 images, 10 classes, no download), split once into
a stratified 75% / 25% train / test split (``random_state=0``). Pretraining sees only the training images, without
labels; every probe is scored on the same held-out test images.

Model: a five-layer convolutional encoder (128 features at the default width 32) and a 3-layer projector of width
512; AdamW, 200 epochs of batch 256, λ = 0.0051. Views: random affine (rotation, scale, shear, translation),
random erasing and Gaussian noise, written in torch for whole batches. Probe: scikit-learn's
``LogisticRegression(C=0.1)`` on features standardized with the statistics of the labelled images; the 2% and 10%
fractions are drawn (stratified) with 5 seeds and reported as mean ± standard deviation.

Run::

    pip install ".[examples]"
    python examples/digits_barlow_twins.py               # about 2.5 minutes of CPU time
    python examples/digits_barlow_twins.py --help        # epochs, batch size, projector width, output folder

It prints a results table and writes to ``--out`` (default ``runs/digits``): ``loss.png`` (loss curve),
``cross_correlation.png`` (the cross-correlation matrix of the two views' embeddings before and after
training, :func:`redundancy.cross_correlation`), ``probe_accuracy.png`` (accuracy by label fraction) and
``results.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from redundancy import BarlowTwinsLoss
from redundancy import cross_correlation

LABEL_FRACTIONS = (0.02, 0.1, 1.0)
TEST_SIZE = 0.25
SPLIT_SEED = 0
CORRELATION_FEATURES_SHOWN = 64


# ------------------------------------------------------------------------------------------------------ data


@dataclass
class DigitsSplit:
    """The fixed stratified split of the digits data set; images are float32 in [0, 1], shape (N, 1, 8, 8)."""

    train_images: torch.Tensor
    train_labels: np.ndarray
    test_images: torch.Tensor
    test_labels: np.ndarray


def load_digits_split(test_size: float = TEST_SIZE, seed: int = SPLIT_SEED) -> DigitsSplit:
    """Load ``sklearn.datasets.load_digits`` (bundled with scikit-learn) and split it, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=test_size, stratify=digits.target, random_state=seed
    )
    return DigitsSplit(torch.from_numpy(train_x).unsqueeze(1), train_y, torch.from_numpy(test_x).unsqueeze(1), test_y)


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of ``labels``, at least one example of every class.

    Example:
        >>> labels = np.repeat(np.arange(10), 50)
        >>> subset = labelled_subset(labels, 0.02, seed=0)
        >>> len(subset), sorted(set(labels[subset].tolist())) == list(range(10))
        (10, True)
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen))


# ------------------------------------------------------------------------------------------- augmentations


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    degrees: float = 12.0,
    scale: tuple[float, float] = (0.85, 1.1),
    shear: float = 0.15,
    translate: float = 0.12,
) -> torch.Tensor:
    """Rotate, scale, shear and translate every image of a batch by its own random amount (bilinear).

    ``translate`` is a fraction of the image size; pixels that come from outside the image are 0 (background).
    """
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.empty(n).uniform_(low, high, generator=generator)

    angle = uniform(-degrees, degrees) * (math.pi / 180)
    zoom = uniform(*scale)
    shear_x = uniform(-shear, shear)
    shift = torch.stack([uniform(-translate, translate), uniform(-translate, translate)], dim=1) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # The grid maps output coordinates to input ones, so the inverse zoom: zoom > 1 enlarges the digit.
    linear = torch.stack([torch.stack([cos, -sin + shear_x * cos], 1), torch.stack([sin, cos + shear_x * sin], 1)], 1)
    theta = torch.cat([linear / zoom.view(n, 1, 1), shift.unsqueeze(2)], dim=2).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erase(
    images: torch.Tensor, generator: torch.Generator, *, probability: float = 0.5, max_size: int = 3
) -> torch.Tensor:
    """Set a random rectangle (sides 1 to ``max_size`` pixels) to 0 in a random ``probability`` share of images."""
    n, _, height, width = images.shape
    h = torch.randint(1, max_size + 1, (n, 1, 1), generator=generator)
    w = torch.randint(1, max_size + 1, (n, 1, 1), generator=generator)
    top = (torch.rand(n, 1, 1, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(n, 1, 1, generator=generator) * (width - w + 1)).long()
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    erase = (torch.rand(n, 1, 1, generator=generator) < probability) & inside
    return images.masked_fill(erase.unsqueeze(1).to(images.device), 0.0)


def augment(images: torch.Tensor, generator: torch.Generator, *, noise_std: float = 0.1) -> torch.Tensor:
    """One random view of a batch: random affine, random erasing, then Gaussian noise, clamped to [0, 1]."""
    view = random_affine(images, generator)
    view = random_erase(view, generator)
    view = view + noise_std * torch.randn(view.shape, generator=generator).to(view)
    return view.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------- model


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


class DigitsEncoder(nn.Sequential):
    """A small convolutional encoder for 8×8 images: 8×8 → 4×4 → 2×2, then global average pooling.

    ``width`` channels in the first stage, ``2·width`` in the second and ``4·width`` in the third; the
    representation has ``4·width`` features.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__(
            conv_block(1, width),
            conv_block(width, width),
            nn.MaxPool2d(2),
            conv_block(width, 2 * width),
            conv_block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 4 * width


def projector(in_features: int, width: int, depth: int = 3) -> nn.Sequential:
    """The Barlow Twins projector: ``depth - 1`` (Linear, BatchNorm, ReLU) blocks, then a Linear layer."""
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth - 1):
        layers += [nn.Linear(features, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, width, bias=False))
    return nn.Sequential(*layers)


# -------------------------------------------------------------------------------------------------- training


def pretrain(
    encoder: nn.Module,
    head: nn.Module,
    images: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    lambd: float,
    seed: int,
    progress: bool = True,
) -> list[float]:
    """Train ``encoder`` and ``head`` with the Barlow Twins loss; return the loss of every step.

    AdamW with a linear warm-up over the first 5% of steps then cosine decay; the last incomplete batch of an
    epoch is dropped (the loss needs the statistics of a full batch).
    """
    from tqdm.auto import tqdm

    criterion = BarlowTwinsLoss(lambd=lambd)
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
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
    head.train()
    bar = tqdm(total=total, desc="Barlow Twins", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            batch = images[order[step * batch_size : (step + 1) * batch_size]]
            z1 = head(encoder(augment(batch, generator)))
            z2 = head(encoder(augment(batch, generator)))
            loss = criterion(z1, z2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.1f}")
    bar.close()
    return losses


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Frozen features of ``images`` (encoder in evaluation mode), as a float64 array (N, features)."""
    encoder.eval()
    features = [encoder(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return torch.cat(features).double().numpy()


@torch.no_grad()
def view_cross_correlation(encoder: nn.Module, head: nn.Module, images: torch.Tensor, seed: int) -> torch.Tensor:
    """:func:`redundancy.cross_correlation` of the embeddings of two augmented views of ``images``.

    The networks run as the loss sees them, in training mode (BatchNorm with batch statistics), on copies so
    that the running statistics of the originals are left alone.
    """
    encoder, head = copy.deepcopy(encoder).train(), copy.deepcopy(head).train()
    generator = torch.Generator().manual_seed(seed)
    z1 = head(encoder(augment(images, generator)))
    z2 = head(encoder(augment(images, generator)))
    return cross_correlation(z1, z2)


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    inverse_regularization: float = 1.0,
) -> float:
    """Test accuracy of a logistic regression fitted on standardized features (statistics of the train set)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=inverse_regularization, max_iter=2000))
    probe.fit(train_features, train_labels)
    return float(probe.score(test_features, test_labels))


def probe_all(
    name: str,
    train_features: np.ndarray,
    split: DigitsSplit,
    test_features: np.ndarray,
    seeds: list[int],
    inverse_regularization: float,
) -> dict[str, list[float]]:
    """Probe accuracies for every label fraction and seed (one subset per seed; 100% is deterministic)."""
    results: dict[str, list[float]] = {}
    for fraction in LABEL_FRACTIONS:
        accuracies = []
        for seed in seeds if fraction < 1.0 else seeds[:1]:
            subset = labelled_subset(split.train_labels, fraction, seed)
            accuracies.append(
                linear_probe_accuracy(
                    train_features[subset],
                    split.train_labels[subset],
                    test_features,
                    split.test_labels,
                    inverse_regularization=inverse_regularization,
                )
            )
        results[f"{fraction:g}"] = accuracies
    return results


# -------------------------------------------------------------------------------------------------- reports


def results_table(results: dict[str, dict[str, list[float]]]) -> str:
    """A Markdown table: one row per method, mean ± standard deviation of the accuracy (%) per label fraction."""
    header = "| features | " + " | ".join(f"{f:.0%} labels" for f in LABEL_FRACTIONS) + " |"
    lines = [header, "|" + "---|" * (len(LABEL_FRACTIONS) + 1)]
    for method, by_fraction in results.items():
        cells = []
        for fraction in LABEL_FRACTIONS:
            values = 100 * np.asarray(by_fraction[f"{fraction:g}"])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_plots(
    out: pathlib.Path,
    losses: list[float],
    correlation_before: torch.Tensor,
    correlation_after: torch.Tensor,
    results: dict[str, dict[str, list[float]]],
) -> list[pathlib.Path]:
    """Write the loss curve, the cross-correlation matrices and the probe accuracies as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = [out / "loss.png", out / "cross_correlation.png", out / "probe_accuracy.png"]

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses)
    ax.set(xlabel="step", ylabel="Barlow Twins loss", yscale="log", title="Pretraining loss")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, matrix, title in zip(
        axes, (correlation_before, correlation_after), ("before training", "after training"), strict=True
    ):
        shown = min(len(matrix), CORRELATION_FEATURES_SHOWN)
        image = ax.imshow(matrix[:shown, :shown].numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set(title=f"C {title}", xlabel="feature j (view 2)", ylabel="feature i (view 1)")
    fig.suptitle(f"Cross-correlation of the two views' embeddings (first {shown} of {len(matrix)} features)")
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, by_fraction in results.items():
        means = [100 * np.mean(by_fraction[f"{f:g}"]) for f in LABEL_FRACTIONS]
        stds = [100 * np.std(by_fraction[f"{f:g}"]) for f in LABEL_FRACTIONS]
        ax.errorbar([100 * f for f in LABEL_FRACTIONS], means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set(xscale="log", xlabel="labels used (%)", ylabel="test accuracy (%)", title="Linear probe on digits")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200, help="pretraining epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="pretraining batch size (default: %(default)s)")
    parser.add_argument(
        "--width", type=int, default=32, help="encoder width; features = 4·width (default: %(default)s)"
    )
    parser.add_argument(
        "--projector-width", type=int, default=512, help="projector width, the D of the loss (default: %(default)s)"
    )
    parser.add_argument("--lambd", type=float, default=0.0051, help="redundancy weight λ (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: %(default)s)")
    parser.add_argument(
        "--probe-c", type=float, default=0.1, help="logistic regression inverse regularization C (default: %(default)s)"
    )
    parser.add_argument("--probe-seeds", type=int, default=5, help="label subsets per fraction (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the model and augmentations (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 0 lets torch choose. The model is tiny: more threads gain little and slow down "
        "badly on a busy machine (default: %(default)s)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/digits"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    args = parse_args(argv)
    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (torch's choice) or a positive count, got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    split = load_digits_split()
    print(
        f"digits: {len(split.train_images)} train / {len(split.test_images)} test images "
        f"(stratified, test_size={TEST_SIZE}, random_state={SPLIT_SEED}); torch threads: {torch.get_num_threads()}"
    )

    encoder = DigitsEncoder(args.width)
    head = projector(encoder.out_features, args.projector_width)
    random_train = embed(encoder, split.train_images)
    random_test = embed(encoder, split.test_images)
    correlation_before = view_cross_correlation(encoder, head, split.test_images, seed=args.seed + 1)

    start = time.perf_counter()
    losses = pretrain(
        encoder,
        head,
        split.train_images,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        lambd=args.lambd,
        seed=args.seed,
        progress=not args.no_progress,
    )
    pretrain_seconds = time.perf_counter() - start
    correlation_after = view_cross_correlation(encoder, head, split.test_images, seed=args.seed + 1)

    seeds = list(range(args.probe_seeds))
    pixels_train = split.train_images.flatten(1).double().numpy()
    pixels_test = split.test_images.flatten(1).double().numpy()
    results = {
        "Barlow Twins encoder": probe_all(
            "bt", embed(encoder, split.train_images), split, embed(encoder, split.test_images), seeds, args.probe_c
        ),
        "random encoder": probe_all("random", random_train, split, random_test, seeds, args.probe_c),
        "raw pixels": probe_all("pixels", pixels_train, split, pixels_test, seeds, args.probe_c),
    }
    table = results_table(results)
    print(f"\npretraining: {args.epochs} epochs, {len(losses)} steps in {pretrain_seconds:.0f} s")
    print(f"loss: {losses[0]:.1f} -> {losses[-1]:.1f}")
    print(f"linear probe test accuracy (%), {len(split.test_labels)} test images, {args.probe_seeds} label subsets:")
    print(table)
    paths = save_plots(args.out, losses, correlation_before, correlation_after, results)
    (args.out / "results.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "losses": losses, "accuracy": results}, indent=1
        )
    )
    print("saved " + ", ".join(str(p) for p in [*paths, args.out / "results.json"]))
    return results


if __name__ == "__main__":
    main()
