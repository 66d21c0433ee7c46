"""Linear evaluation of a pretrained backbone: a linear classifier on frozen features (or fine-tuning).

Follows the paper's protocol: random resized crop and flip for training, central crop for testing, SGD with
momentum 0.9, batch 256, cosine decay over 100 epochs, classifier learning rate 0.3 (``--lr-backbone`` > 0 with
``--weights finetune`` fine-tunes the backbone too). Prints top-1 and top-5 accuracy on the validation split.

Examples::

    torchrun --nproc_per_node=8 examples/image_recipe/linear_eval.py --dataset imagefolder --data /data/imagenet \\
        --pretrained runs/image_recipe/backbone.pth
    python examples/image_recipe/linear_eval.py --dataset synthetic --device cpu \\
        --pretrained runs/smoke/backbone.pth --batch-size 16 --epochs 1 --max-steps 2
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from image_recipe import augment
from image_recipe.common import Logger
from image_recipe.common import Process
from image_recipe.common import ShardSampler
from image_recipe.common import evaluation_loader
from image_recipe.common import make_loader
from image_recipe.data import build_dataset
from image_recipe.resnet import build_backbone


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Linear evaluation of a Barlow Twins backbone")
    parser.add_argument("--pretrained", type=pathlib.Path, required=True, help="backbone.pth written by train.py")
    parser.add_argument("--dataset", choices=["imagefolder", "cifar10", "synthetic"], default="imagefolder")
    parser.add_argument("--data", default=None, help="data folder (as for train.py)")
    parser.add_argument("--image-size", type=int, default=None, help="crop size (default: 224, or 32 for CIFAR-10)")
    parser.add_argument("--load-size", type=int, default=None, help="decoded square side (default: image size × 8/7)")
    parser.add_argument("--synthetic-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--weights", choices=["freeze", "finetune"], default="freeze")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256, help="global batch size")
    parser.add_argument("--lr-classifier", type=float, default=0.3)
    parser.add_argument("--lr-backbone", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=1e-6)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--amp", choices=["auto", "bf16", "none"], default="auto")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/linear_eval"))
    parser.add_argument("--print-freq", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.image_size is None:
        args.image_size = 32 if args.dataset in ("cifar10", "synthetic") else 224
    if args.load_size is None:
        args.load_size = args.image_size if args.image_size <= 64 else round(args.image_size * 8 / 7)
    return args


def top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels.unsqueeze(1)).any(1).sum().item()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    process = Process(args.device)
    device = process.device
    log = Logger(args.out, process.is_main)
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")

    saved = torch.load(args.pretrained, map_location="cpu", weights_only=False)
    torch.manual_seed(args.seed)
    backbone = build_backbone(saved["arch"], width=saved["width"], small_images=saved["small_images"])
    backbone.load_state_dict(saved["backbone"])
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
    classifier = nn.Linear(backbone.out_features, train_set.num_classes)
    classifier.weight.data.normal_(0, 0.01)
    classifier.bias.data.zero_()
    model = nn.Sequential(backbone, classifier).to(device)
    if args.weights == "freeze":
        backbone.requires_grad_(False)
    parameter_groups = [dict(params=classifier.parameters(), lr=args.lr_classifier)]
    if args.weights == "finetune":
        parameter_groups.append(dict(params=backbone.parameters(), lr=args.lr_backbone))
    optimizer = torch.optim.SGD(parameter_groups, lr=0.0, momentum=0.9, weight_decay=args.weight_decay)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    ddp_model = model
    if process.distributed and args.weights == "finetune":
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.index is not None else None
        )
    elif process.distributed:
        ddp_model = nn.Sequential(
            backbone,
            nn.parallel.DistributedDataParallel(
                classifier, device_ids=[device.index] if device.index is not None else None
            ),
        )

    local_batch = process.local_batch_size(args.batch_size)
    torch.manual_seed(args.seed + process.rank)
    sampler = ShardSampler(
        len(train_set), rank=process.rank, world_size=process.world_size, batch_size=local_batch, seed=args.seed
    )
    loader = make_loader(train_set, sampler, local_batch, args.workers, device)
    total_steps = args.epochs * sampler.batches_per_epoch
    crop_fraction = 1.0 if args.image_size <= 64 else args.image_size / args.load_size
    step = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        # A frozen backbone stays in evaluation mode: its BatchNorm statistics are those of pretraining.
        backbone.train(args.weights == "finetune")
        classifier.train()
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            with torch.no_grad():
                view = augment.train_view(images, args.image_size)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = nn.functional.cross_entropy(ddp_model(view).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.print_freq == 0 or step == 1:
                log(epoch=epoch, step=step, loss=round(loss.item(), 4))
            if args.max_steps is not None and step >= args.max_steps:
                break
        if args.max_steps is not None and step >= args.max_steps:
            break

    model.eval()
    correct1 = correct5 = total = 0
    with torch.no_grad():
        for images, labels in evaluation_loader(val_set, process, local_batch, args.workers):
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(augment.eval_view(images, args.image_size, crop_fraction)).float()
            correct1 += top_k_correct(logits, labels, 1)
            correct5 += top_k_correct(logits, labels, 5)
            total += len(labels)
    correct1, correct5, total = process.sum([correct1, correct5, total])
    result = dict(step=step, top1=correct1 / total, top5=correct5 / total, images=int(total))
    log(event="end", **result)
    if process.is_main:
        torch.save(dict(classifier=classifier.state_dict(), **result), args.out / "classifier.pth")
    process.close()
    return result


if __name__ == "__main__":
    main()
