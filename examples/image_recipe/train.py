"""Barlow Twins pretraining of a ResNet on images, on one or many GPUs (or CPU processes).

The paper's recipe (Zbontar et al., 2021): ResNet-50, projector 8192-8192-8192, λ = 0.0051, LARS with
learning rates 0.2 (weights) and 0.0048 (biases and normalization parameters) per 256 images, weight decay
1.5e-6 on weights only, 10 warm-up epochs then cosine decay, batch 2048, 1000 epochs. Here with bf16 autocast,
augmentations batched on the device and an online linear probe on the detached features.

Examples::

    # one machine, 8 GPUs, ImageNet in ImageFolder layout (root/train/<class>/*.JPEG, root/val/<class>/*.JPEG)
    torchrun --nproc_per_node=8 examples/image_recipe/train.py --dataset imagefolder --data /data/imagenet
    # CIFAR-10 from the unpacked python archive, ResNet-18
    torchrun --nproc_per_node=2 examples/image_recipe/train.py --dataset cifar10 --data /data/cifar-10-batches-py \\
        --arch resnet18 --batch-size 512 --projector 2048-2048-2048 --epochs 1000
    # smoke run on synthetic images, CPU
    python examples/image_recipe/train.py --dataset synthetic --device cpu --arch resnet18 --width 8 \\
        --projector 64-64 --batch-size 16 --max-steps 2

The run writes ``checkpoint.pth`` (every epoch; a rerun with the same ``--out`` resumes from it),
``stats.jsonl`` and, at the end, ``backbone.pth`` for ``linear_eval.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from image_recipe import augment
from image_recipe.common import Logger
from image_recipe.common import Process
from image_recipe.common import ShardSampler
from image_recipe.common import evaluation_loader
from image_recipe.common import make_loader
from image_recipe.common import save_checkpoint
from image_recipe.data import build_dataset
from image_recipe.lars import LARS
from image_recipe.lars import adjust_learning_rate
from image_recipe.lars import lars_parameter_groups
from image_recipe.lars import learning_rate_factor
from image_recipe.resnet import build_backbone
from redundancy import barlow_twins_loss


def parse_sizes(text: str) -> list[int]:
    """``"8192-8192-8192"`` → ``[8192, 8192, 8192]``."""
    try:
        sizes = [int(part) for part in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"projector must look like 8192-8192-8192, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"projector sizes must be positive, got {text!r}")
    return sizes


def build_projector(in_features: int, sizes: list[int]) -> nn.Sequential:
    """Linear-BatchNorm-ReLU blocks for every size but the last, then a Linear layer without bias."""
    layers: list[nn.Module] = []
    features = in_features
    for size in sizes[:-1]:
        layers += [nn.Linear(features, size, bias=False), nn.BatchNorm1d(size), nn.ReLU(inplace=True)]
        features = size
    layers.append(nn.Linear(features, sizes[-1], bias=False))
    return nn.Sequential(*layers)


class BarlowTwins(nn.Module):
    """Backbone, projector and the online linear probe; ``forward`` returns the two losses and the probe logits.

    The probe sees the backbone features of the first view, detached: it monitors the representation without
    changing it.
    """

    def __init__(self, backbone: nn.Module, projector_sizes: list[int], num_classes: int, lambd: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = build_projector(backbone.out_features, projector_sizes)
        self.probe = nn.Linear(backbone.out_features, num_classes)
        self.lambd = lambd

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, labels: torch.Tensor):
        features1 = self.backbone(view1)
        features2 = self.backbone(view2)
        loss = barlow_twins_loss(self.projector(features1), self.projector(features2), lambd=self.lambd)
        logits = self.probe(features1.detach())
        probe_loss = nn.functional.cross_entropy(logits.float(), labels)
        return loss, probe_loss, logits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Barlow Twins pretraining (torchrun for several processes)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["imagefolder", "cifar10", "synthetic"], default="imagefolder")
    data.add_argument("--data", default=None, help="data folder (ImageFolder root with train/ and val/, or CIFAR-10)")
    data.add_argument("--image-size", type=int, default=None, help="crop size (default: 224, or 32 for CIFAR-10)")
    data.add_argument("--load-size", type=int, default=None, help="decoded square side (default: image size × 8/7)")
    data.add_argument("--synthetic-size", type=int, default=512, help="images in the synthetic training set")
    data.add_argument("--workers", type=int, default=8, help="data loading processes per GPU")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet50")
    model.add_argument("--width", type=int, default=64, help="ResNet width (64 is the standard network)")
    model.add_argument("--projector", type=parse_sizes, default=parse_sizes("8192-8192-8192"))
    model.add_argument("--lambd", type=float, default=0.0051, help="redundancy weight λ")
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--epochs", type=int, default=1000)
    optim.add_argument("--batch-size", type=int, default=2048, help="global batch size (all processes)")
    optim.add_argument("--lr-weights", type=float, default=0.2, help="LARS learning rate of weights per 256 images")
    optim.add_argument("--lr-biases", type=float, default=0.0048, help="learning rate of biases and norms per 256")
    optim.add_argument("--weight-decay", type=float, default=1.5e-6)
    optim.add_argument("--warmup-epochs", type=float, default=10)
    optim.add_argument("--probe-lr", type=float, default=0.1, help="SGD learning rate of the online probe")
    optim.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    run.add_argument("--amp", choices=["auto", "bf16", "none"], default="auto", help="auto: bf16 on CUDA only")
    run.add_argument("--sync-bn", choices=["auto", "on", "off"], default="auto", help="auto: on with CUDA and DDP")
    run.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/image_recipe"), help="output folder")
    run.add_argument("--print-freq", type=int, default=50, help="steps between log lines")
    run.add_argument("--eval-freq", type=int, default=1, help="epochs between online-probe evaluations (0: never)")
    run.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.dataset == "imagefolder" and args.data is None:
        parser.error("--data is required for --dataset imagefolder")
    if args.image_size is None:
        args.image_size = 32 if args.dataset in ("cifar10", "synthetic") else 224
    if args.load_size is None:
        args.load_size = args.image_size if args.image_size <= 64 else round(args.image_size * 8 / 7)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    process = Process(args.device)
    device = process.device
    torch.manual_seed(args.seed + process.rank)  # augmentations differ across processes
    log = Logger(args.out, process.is_main)
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    channels_last = device.type == "cuda"

    train_set = build_dataset(
        args.dataset, args.data, "train", load_size=args.load_size, synthetic_size=args.synthetic_size
    )
    val_set = build_dataset(
        args.dataset,
        args.data,
        "val",
        load_size=args.load_size,
        synthetic_size=max(args.batch_size, args.synthetic_size // 4),
    )
    local_batch = process.local_batch_size(args.batch_size)
    sampler = ShardSampler(
        len(train_set), rank=process.rank, world_size=process.world_size, batch_size=local_batch, seed=args.seed
    )
    loader = make_loader(train_set, sampler, local_batch, args.workers, device)

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts them)
    backbone = build_backbone(args.arch, width=args.width, small_images=args.image_size <= 64)
    model = BarlowTwins(backbone, args.projector, train_set.num_classes, args.lambd).to(device)
    if args.sync_bn == "on" or (args.sync_bn == "auto" and process.distributed and device.type == "cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(args.seed + process.rank)

    ssl_parameters = nn.ModuleList([model.backbone, model.projector])
    optimizer = LARS(
        lars_parameter_groups(
            ssl_parameters, weights_lr=args.lr_weights, biases_lr=args.lr_biases, batch_size=args.batch_size
        ),
        lr=0.0,
        weight_decay=args.weight_decay,
    )
    probe_optimizer = torch.optim.SGD(model.probe.parameters(), lr=args.probe_lr, momentum=0.9)

    steps_per_epoch = sampler.batches_per_epoch
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = round(args.warmup_epochs * steps_per_epoch)
    checkpoint_path = args.out / "checkpoint.pth"
    epoch, step = 0, 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        probe_optimizer.load_state_dict(state["probe_optimizer"])
        epoch, step = state["epoch"], state["step"]
        log(event="resume", epoch=epoch, step=step, checkpoint=str(checkpoint_path))

    ddp_model = model
    if process.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    log(
        event="start",
        world_size=process.world_size,
        device=str(device),
        amp="bf16" if amp else "none",
        arch=args.arch,
        width=args.width,
        features=backbone.out_features,
        projector=args.projector,
        global_batch=args.batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )

    def checkpoint(epoch_to_resume: int) -> None:
        if process.is_main:
            save_checkpoint(
                checkpoint_path,
                dict(
                    epoch=epoch_to_resume,
                    step=step,
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    probe_optimizer=probe_optimizer.state_dict(),
                    args=vars(args),
                ),
            )

    history: list[float] = []
    finished = False
    start = time.time()
    while epoch < args.epochs and not finished:
        start_batch = step - epoch * steps_per_epoch
        sampler.set_epoch(epoch, start_batch)
        model.train()
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            factor = learning_rate_factor(step, total_steps=total_steps, warmup_steps=warmup_steps)
            adjust_learning_rate(optimizer, factor)
            with torch.no_grad():
                view1, view2 = augment.two_views(images, args.image_size)
                if channels_last:
                    view1 = view1.contiguous(memory_format=torch.channels_last)
                    view2 = view2.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, probe_loss, logits = ddp_model(view1, view2, labels)
            optimizer.zero_grad(set_to_none=True)
            probe_optimizer.zero_grad(set_to_none=True)
            (loss + probe_loss).backward()
            optimizer.step()
            probe_optimizer.step()
            step += 1
            history.append(loss.item())
            if step % args.print_freq == 0 or step == 1:
                accuracy = (logits.argmax(1) == labels).float().mean().item()
                log(
                    epoch=epoch,
                    step=step,
                    loss=round(history[-1], 3),
                    probe_loss=round(probe_loss.item(), 3),
                    probe_batch_accuracy=round(accuracy, 4),
                    lr_weights=optimizer.param_groups[0]["lr"],
                    lr_biases=optimizer.param_groups[1]["lr"],
                    seconds=round(time.time() - start, 1),
                )
            if args.max_steps is not None and step >= args.max_steps:
                finished = True
                break
        if not finished:
            epoch += 1
            if args.eval_freq and epoch % args.eval_freq == 0:
                top1 = evaluate_probe(model, val_set, process, local_batch, args, channels_last, amp)
                log(epoch=epoch, step=step, online_probe_top1=round(top1, 4))
        checkpoint(epoch)

    if process.is_main and epoch >= args.epochs:
        torch.save(
            dict(
                backbone=model.backbone.state_dict(),
                arch=args.arch,
                width=args.width,
                small_images=args.image_size <= 64,
                features=backbone.out_features,
            ),
            args.out / "backbone.pth",
        )
    log(event="end", epoch=epoch, step=step)
    process.close()
    return dict(step=step, epoch=epoch, losses=history)


@torch.no_grad()
def evaluate_probe(model: BarlowTwins, dataset, process: Process, batch_size: int, args, channels_last, amp) -> float:
    """Top-1 accuracy of the online probe on the validation split (central crop), over all processes."""
    model.eval()
    correct = total = 0
    crop_fraction = 1.0 if args.image_size <= 64 else args.image_size / args.load_size
    for images, labels in evaluation_loader(dataset, process, batch_size, args.workers):
        images, labels = images.to(process.device), labels.to(process.device)
        view = augment.eval_view(images, args.image_size, crop_fraction)
        if channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        with torch.autocast(process.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model.probe(model.backbone(view))
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    model.train()
    correct, total = process.sum([correct, total])
    return correct / max(total, 1)


if __name__ == "__main__":
    main()
