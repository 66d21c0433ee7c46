"""What the public SIGReg, LeJEPA and MMCR implementations compute under DDP, against one process on the whole batch.

Two gloo processes train a linear projector under ``DistributedDataParallel`` on two shards of one batch (equal, or
uneven), each implementation in its distributed mode, and report the loss each rank computes and the projector's
gradient after DDP's averaging; one process computes the same implementation on the concatenated batch. A
global-batch loss gives every rank the one-process value, and the averaged gradient equals the one-process gradient
(ratio of norms 1, relative error 0) under the convention that keeps learning rates from 1 to W GPUs::

    python -m benchmarks.ddp_public_implementations --lejepa CHECKOUT_OF_LEJEPA --mmcr CHECKOUT_OF_MMCR \\
        --json benchmarks/results/ddp-public/ddp.json --markdown benchmarks/results/ddp-public/ddp.md

The official code runs from checkouts of ``rbalestr-lab/lejepa`` (its ``SlicingUnivariateTest(EppsPulley())``, the
distributed SIGReg of the package; ``MINIMAL.md``'s has no distributed code) and ``ThomasYerxa/mmcr``
(``mmcr/imagenet/loss_mmcr.py`` ``MMCR_Loss(distributed=True)``, which imports ``einops``); lightly's
``SIGReg``, ``LeJEPALoss`` (``gather_distributed=True``) and ``MMCRLoss`` (no distributed option) where lightly is
importable. Inputs are float32 (the official SIGReg builds its constants in float32); every implementation draws the
same directions on every rank (the official one seeds them with its step counter, lightly's and this library's
broadcast the first rank's draw, from a seeded default generator).
"""

import argparse
import datetime
import functools
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

import redundancy
from benchmarks.common import spawn_gloo

WORLD_SIZE = 2
INPUTS, DIM, VIEWS, SLICES = 12, 8, 2, 64
SHARDS = {"equal": (32, 32), "uneven": (16, 48)}
SEED = 7


def batch(rows: int) -> torch.Tensor:
    """``(V, rows, INPUTS)``: V noisy views of one batch (float32)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, INPUTS, generator=generator)
    return torch.stack([x + 0.3 * torch.randn(rows, INPUTS, generator=generator) for _ in range(VIEWS)])


def projector() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(INPUTS, DIM)


def implementations(lejepa: str | None, mmcr: str | None) -> dict[str, Callable[[], Callable]]:
    """``name -> make``: ``make()`` returns the loss of the projections ``(V, n, D)`` in its distributed mode."""
    found: dict[str, Callable[[], Callable]] = {}
    if lejepa is not None:
        sys.path.insert(0, lejepa)
        from lejepa.multivariate import SlicingUnivariateTest
        from lejepa.univariate import EppsPulley

        found["official SIGReg (lejepa package)"] = lambda: SlicingUnivariateTest(EppsPulley(), num_slices=SLICES)
    if mmcr is not None:
        sys.path.insert(0, os.path.join(mmcr, "mmcr", "imagenet"))
        from loss_mmcr import MMCR_Loss

        def official_mmcr() -> Callable:
            loss = MMCR_Loss(lmbda=0.0, n_aug=VIEWS, distributed=dist.is_initialized())
            return lambda proj: loss(proj.transpose(0, 1).reshape(-1, proj.shape[-1]))[0]

        found["official MMCR (distributed=True)"] = official_mmcr
    try:
        from lightly.loss import LeJEPALoss
        from lightly.loss import MMCRLoss
        from lightly.loss import SIGReg
    except ImportError:
        pass
    else:
        gather = dist.is_initialized()
        found["lightly SIGReg (gather_distributed=True)"] = lambda: SIGReg(
            num_vectors=SLICES, gather_distributed=gather
        )

        def lightly_lejepa() -> Callable:
            loss = LeJEPALoss(sigreg_num_vectors=SLICES, gather_distributed=gather)
            return lambda proj: loss(local_proj=proj[1:], global_proj=proj[:1])

        def lightly_mmcr() -> Callable:
            loss = MMCRLoss(lmda=0.0)
            return lambda proj: loss(proj[0].unsqueeze(1), proj[1].unsqueeze(1))

        found["lightly LeJEPALoss (gather_distributed=True)"] = lightly_lejepa
        found["lightly MMCRLoss"] = lightly_mmcr
    found["redundancy.sigreg_loss"] = lambda: lambda proj: redundancy.sigreg_loss(proj, num_slices=SLICES)
    found["redundancy.lejepa_loss"] = lambda: (
        lambda proj: redundancy.lejepa_loss(proj, lamb=0.05, global_views=1, num_slices=SLICES)
    )
    found["redundancy.mmcr_loss"] = lambda: lambda proj: redundancy.mmcr_loss(proj)
    return found


#: Implementations that need as many rows on every rank (an all_gather of equal sizes).
EQUAL_ONLY = ("official MMCR (distributed=True)",)


def step(make: Callable[[], Callable], model: nn.Module, views: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The loss of one step and the projector's weight gradient (after DDP's averaging when ``model`` is DDP)."""
    loss = make()
    torch.manual_seed(SEED)  # the default generator of every rank (and of one process) in one state
    value = loss(model(views))
    value.backward()
    weight = model.module.weight if isinstance(model, nn.parallel.DistributedDataParallel) else model.weight
    return float(value.detach()), weight.grad.detach().clone()


def _rank_records(rank: int, world_size: int, lejepa: str | None, mmcr: str | None) -> dict:
    """One DDP step of each implementation on this rank's rows (run by :func:`benchmarks.common.spawn_gloo`)."""
    records = {}
    for name, make in implementations(lejepa, mmcr).items():
        for shards_name, shards in SHARDS.items():
            if shards_name != "equal" and name in EQUAL_ONLY:
                continue
            views = batch(sum(shards))[:, sum(shards[:rank]) : sum(shards[: rank + 1])]
            model = nn.parallel.DistributedDataParallel(projector())
            records[name, shards_name] = step(make, model, views)
    return records


def measure(lejepa: str | None, mmcr: str | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as directory:
        body = functools.partial(_rank_records, lejepa=lejepa, mmcr=mmcr)
        ranks = spawn_gloo(body, WORLD_SIZE, pathlib.Path(directory), timeout=120)
    results = []
    for name, make in implementations(lejepa, mmcr).items():
        for shards_name, shards in SHARDS.items():
            if (name, shards_name) not in ranks[0]:
                continue
            value, gradient = step(make, projector(), batch(sum(shards)))
            averaged = ranks[0][name, shards_name][1]
            cosine = torch.nn.functional.cosine_similarity(averaged.flatten(), gradient.flatten(), dim=0)
            results.append(
                {
                    "implementation": name,
                    "shards": list(shards),
                    "values": [ranks[rank][name, shards_name][0] for rank in range(WORLD_SIZE)],
                    "one_process_value": value,
                    "gradient_norm_ratio": float(averaged.norm() / gradient.norm()),
                    "gradient_relative_error": float((averaged - gradient).norm() / gradient.norm()),
                    "gradient_angle_degrees": float(torch.rad2deg(torch.arccos(cosine.clamp(-1, 1)))),
                }
            )
    return results


def markdown(results: list[dict]) -> str:
    lines = [
        "| implementation | rows per rank | loss on each rank | one process | gradient after DDP / one process "
        "(norm ratio) | relative error | angle |",
        "|:---|:---|:---|---:|---:|---:|---:|",
    ]
    for result in results:
        values = " / ".join(f"{value:.6g}" for value in result["values"])
        lines.append(
            f"| {result['implementation']} | {' + '.join(map(str, result['shards']))} | {values} "
            f"| {result['one_process_value']:.6g} | {result['gradient_norm_ratio']:.4f} "
            f"| {result['gradient_relative_error']:.2e} | {result['gradient_angle_degrees']:.2f}° |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lejepa", help="a checkout of rbalestr-lab/lejepa (omit to leave it out)")
    parser.add_argument("--mmcr", help="a checkout of ThomasYerxa/mmcr (omit to leave it out)")
    parser.add_argument("--json", type=pathlib.Path, help="write the measurements here")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = measure(args.lejepa, args.mmcr)
    table = markdown(results)
    print(table)
    header = (
        f"torch {torch.__version__}, {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}; "
        f"{WORLD_SIZE} gloo ranks, DDP over a Linear({INPUTS}, {DIM}) projector, {VIEWS} views, float32, "
        f"{SLICES} slices where the loss draws directions."
    )
    if args.markdown:
        args.markdown.write_text(f"{header}\n\n{table}\n")
    if args.json:
        args.json.write_text(json.dumps({"about": header, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
