"""Barlow Twins side by side: the official script, lightly, solo-learn and this library, measured in one run.

Four measurements, each implementation the same way, in one process (the DDP ones in two spawned gloo processes):

- **DDP**: two gloo ranks train a ``Linear(12, 16)`` projector under ``DistributedDataParallel`` on two shards of one
  batch (32 + 32 rows, and 16 + 48), each implementation in its distributed mode; each rank's loss against the
  implementation's own value in one process on the concatenated batch, and the projector's gradient after DDP's
  averaging against the one-process gradient (ratio of norms, relative error). A loss of the global batch gives every
  rank the one-process value; a gradient ratio of 1 keeps learning rates from 1 to W processes. float64 where the
  implementation takes it (solo-learn's ``BatchNorm1d`` holds float32 buffers and refuses float64 on the CPU: float32);
- **peak memory** of forward+backward in float32 at N = 256, D = 8192 on the CPU: the growth of the resident set over
  one step after a warm-up step (large allocations served by mmap, as in ``benchmarks.memory_probe``), the
  implementations taking turns over interleaved rounds, the median reported;
- **fp16**: float16 embeddings of magnitude 1e4 (256 × 64, two correlated views) passed to each implementation as a
  user would, and float32 ones of the same magnitude under ``torch.autocast("cpu", dtype=torch.float16)`` (how the
  official script runs its loss: inside ``torch.cuda.amp.autocast``); finite or not, and the relative error against
  :func:`redundancy.reference.barlow_twins_loss_reference` with ``upcast=True`` (float64).

Every implementation takes λ = 0.0051 and scale 1 (solo-learn's ``lamb=0.0051, scale_loss=1.0``), the official loss.

The official script (``facebookresearch/barlowtwins`` ``main.py``) is not a library: its loss is
:func:`official_main_py_loss` below, **a re-implementation written here** from its description (``BatchNorm1d(affine=
False)`` made a ``SyncBatchNorm``, ``c = bn(z1).T @ bn(z2)`` divided by the global batch size, an in-place
``torch.distributed.all_reduce(c)`` outside autograd, then the on- and off-diagonal sums). ``SyncBatchNorm`` runs on
GPUs only, so its statistics are computed with an autograd-aware all-reduce of the per-feature sums, whose backward
sums the gradient terms over the ranks as ``SyncBatchNorm``'s does. The run checks it against
:func:`redundancy.barlow_twins_loss` with ``gradient_convention="official"`` (same values and DDP gradients) and, in
one process, against :func:`redundancy.reference.barlow_twins_loss_reference`.

lightly's ``BarlowTwinsLoss`` (``gather_distributed=True``, as in DDP; ``False``, its default, in the DDP table too)
and solo-learn's ``barlow_loss_func`` are loaded from the checkouts named on the command line, by file path (lightly's
package ``__init__`` imports torchvision); a peer not given is left out, and the output says so::

    python -m benchmarks.peers --lightly CHECKOUT_OF_LIGHTLY --solo CHECKOUT_OF_SOLO_LEARN \\
        --output benchmarks/results/peers

writes ``peers.json`` and ``peers.md`` into the folder (by default a new folder under ``benchmarks/results/local/``).
"""

import argparse
import functools
import hashlib
import importlib.util
import json
import pathlib
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

import redundancy
from benchmarks.common import add_output_option
from benchmarks.common import environment
from benchmarks.common import parse_shape
from benchmarks.common import peak_memory_cpu
from benchmarks.common import spawn_gloo
from benchmarks.common import use_mmap_for_large_allocations
from redundancy.reference import barlow_twins_loss_reference

LAMBD = 0.0051
WORLD_SIZE = 2
INPUTS, DIM = 12, 16
SHARDS = {"equal": (32, 32), "uneven": (16, 48)}
MEMORY_SHAPE = (256, 8192)
FP16_SHAPE, FP16_MAGNITUDE = (256, 64), 1e4

OFFICIAL = "official main.py (re-implemented here)"
LIGHTLY = "lightly BarlowTwinsLoss"
SOLO = "solo-learn barlow_loss_func"
REDUNDANCY = "redundancy.barlow_twins_loss"
#: The rows of the summary table, in order.
SUMMARY = (OFFICIAL, LIGHTLY, SOLO, REDUNDANCY)
#: Further rows of the DDP table: lightly's default, and this library under the official script's convention.
LIGHTLY_LOCAL = "lightly BarlowTwinsLoss(gather_distributed=False)"
REDUNDANCY_OFFICIAL = 'redundancy.barlow_twins_loss(gradient_convention="official")'


# ------------------------------------------------------------------------------------------------ the official loss


def _sync_batch_norm(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``BatchNorm1d(affine=False)`` after ``convert_sync_batchnorm``, in training mode: per-feature mean and biased
    variance over the rows of every rank, through an autograd-aware all-reduce of the sums (whose backward sums the
    gradient terms over the ranks, as ``SyncBatchNorm``'s backward does). Plain batch norm without a process group."""
    if not dist.is_initialized():
        return F.batch_norm(z, None, None, training=True, eps=eps)
    count = torch.tensor([float(z.shape[0])], dtype=z.dtype)
    dist.all_reduce(count)
    mean = dist_nn.all_reduce(z.sum(0)) / count
    centered = z - mean
    variance = dist_nn.all_reduce(centered.pow(2).sum(0)) / count
    return centered * torch.rsqrt(variance + eps)


def official_main_py_loss(z1: torch.Tensor, z2: torch.Tensor, batch_size: int, lambd: float = LAMBD) -> torch.Tensor:
    """The official script's loss, re-implemented from its description: ``batch_size`` is the global batch size
    (``args.batch_size``), the cross-correlation is summed over the ranks in place, outside autograd."""
    c = _sync_batch_norm(z1).T @ _sync_batch_norm(z2)
    c.div_(batch_size)
    if dist.is_initialized():
        dist.all_reduce(c)
    on_diagonal = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diagonal = c.flatten()[:-1].view(c.shape[0] - 1, c.shape[0] + 1)[:, 1:].pow_(2).sum()
    return on_diagonal + lambd * off_diagonal


# ------------------------------------------------------------------------------------------------ the peers


def _load_file(name: str, path: pathlib.Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _package_root(checkout: str, package: str, inside: str) -> pathlib.Path:
    """The folder of ``package`` in a checkout (``src/`` layout or not), or the package folder itself."""
    base = pathlib.Path(checkout)
    for root in (base / "src" / package, base / package, base):
        if (root / inside).is_file():
            return root
    raise FileNotFoundError(f"no {package}/{inside} under {checkout}")


def load_lightly(checkout: str) -> type:
    """lightly's ``BarlowTwinsLoss`` from ``lightly/loss/barlow_twins_loss.py`` of a checkout, without running the
    package's ``__init__`` (which imports torchvision): ``lightly`` and its subpackages are registered as empty
    packages over the checkout's folders, so that the module's own ``lightly.…`` imports load from the checkout."""
    root = _package_root(checkout, "lightly", "loss/barlow_twins_loss.py")
    for name, folder in (("lightly", root), ("lightly.loss", root / "loss"), ("lightly.utils", root / "utils")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    return _load_file("lightly.loss.barlow_twins_loss", root / "loss" / "barlow_twins_loss.py").BarlowTwinsLoss


def load_solo(checkout: str) -> Callable:
    """solo-learn's ``barlow_loss_func`` from ``solo/losses/barlow.py`` of a checkout (it imports torch only)."""
    root = _package_root(checkout, "solo", "losses/barlow.py")
    return _load_file("peers_solo_losses_barlow", root / "losses" / "barlow.py").barlow_loss_func


def peer_source(checkout: str | None, package: str, inside: str) -> dict | None:
    """Where a peer's loss was loaded from: its file and the SHA-256 of its text."""
    if checkout is None:
        return None
    path = _package_root(checkout, package, inside) / inside
    return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@dataclass(frozen=True)
class Implementation:
    """One implementation: ``make(global_rows)`` returns its loss of ``(z1, z2)`` (in its distributed mode when a
    process group is up; ``global_rows`` is the batch size over all ranks, which the official script is given)."""

    make: Callable[[int], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    ddp_dtype: torch.dtype = torch.float64


def implementations(lightly: str | None, solo: str | None) -> dict[str, Implementation]:
    """The implementations measured, by name; lightly's and solo-learn's only where their checkout is given."""
    found = {OFFICIAL: Implementation(lambda rows: lambda z1, z2: official_main_py_loss(z1, z2, rows))}
    if lightly is not None:
        barlow_twins = load_lightly(lightly)
        found[LIGHTLY] = Implementation(lambda rows: barlow_twins(lambda_param=LAMBD, gather_distributed=True))
        found[LIGHTLY_LOCAL] = Implementation(lambda rows: barlow_twins(lambda_param=LAMBD, gather_distributed=False))
    if solo is not None:
        barlow_loss_func = load_solo(solo)
        found[SOLO] = Implementation(
            lambda rows: lambda z1, z2: barlow_loss_func(z1, z2, lamb=LAMBD, scale_loss=1.0), torch.float32
        )
    found[REDUNDANCY] = Implementation(lambda rows: lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, lambd=LAMBD))
    found[REDUNDANCY_OFFICIAL] = Implementation(
        lambda rows: lambda z1, z2: redundancy.barlow_twins_loss(z1, z2, lambd=LAMBD, gradient_convention="official")
    )
    return found


def skipped(lightly: str | None, solo: str | None) -> dict[str, str]:
    """The peers left out, and why."""
    reasons = {}
    if lightly is None:
        reasons[LIGHTLY] = "no lightly checkout given (--lightly)"
    if solo is None:
        reasons[SOLO] = "no solo-learn checkout given (--solo)"
    return reasons


# ------------------------------------------------------------------------------------------------ DDP


def batch(rows: int, dtype: torch.dtype) -> torch.Tensor:
    """``(2, rows, INPUTS)``: two noisy views of one batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, INPUTS, generator=generator, dtype=torch.float64)
    views = torch.stack([x + 0.3 * torch.randn(rows, INPUTS, generator=generator, dtype=torch.float64) for _ in "ab"])
    return views.to(dtype)


def projector(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(INPUTS, DIM).to(dtype)


def step(loss: Callable, model: nn.Module, views: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The loss of one step (one forward of both views) and the projector's weight gradient (after DDP's averaging
    when ``model`` is DDP)."""
    z1, z2 = model(views.flatten(0, 1)).unflatten(0, views.shape[:2])
    value = loss(z1, z2)
    value.backward()
    weight = model.module.weight if isinstance(model, nn.parallel.DistributedDataParallel) else model.weight
    return float(value.detach()), weight.grad.detach().clone()


def _rank_records(rank: int, world_size: int, lightly: str | None, solo: str | None) -> dict:
    """One DDP step of each implementation on this rank's rows (run by :func:`benchmarks.common.spawn_gloo`)."""
    records = {}
    for name, implementation in implementations(lightly, solo).items():
        for shards_name, shards in SHARDS.items():
            views = batch(sum(shards), implementation.ddp_dtype)[:, sum(shards[:rank]) : sum(shards[: rank + 1])]
            model = nn.parallel.DistributedDataParallel(projector(implementation.ddp_dtype))
            records[name, shards_name] = step(implementation.make(sum(shards)), model, views)
    return records


def per_rank_statistics_value(model: nn.Module, views: torch.Tensor, shards: tuple[int, ...]) -> float:
    """The loss of the mean of the ranks' cross-correlations, each rank's rows standardized by their own statistics
    (what a loss that all-reduces C but standardizes per rank computes), in one process."""
    with torch.no_grad():
        z1, z2 = model(views.flatten(0, 1)).unflatten(0, views.shape[:2])
        starts = [sum(shards[:rank]) for rank in range(len(shards))]
        c = sum(
            F.batch_norm(z1[s : s + n], None, None, training=True).T
            @ F.batch_norm(z2[s : s + n], None, None, training=True)
            / n
            for s, n in zip(starts, shards, strict=True)
        ) / len(shards)
        off_diagonal = c - torch.diag_embed(torch.diagonal(c))
        return float((torch.diagonal(c) - 1).pow(2).sum() + LAMBD * off_diagonal.pow(2).sum())


def _relative(value: torch.Tensor, expected: torch.Tensor) -> float:
    return float((value - expected).norm() / expected.norm())


def measure_ddp(lightly: str | None, solo: str | None) -> list[dict]:
    """Each implementation on two gloo ranks under DDP against itself in one process on the whole batch."""
    with tempfile.TemporaryDirectory() as directory:
        body = functools.partial(_rank_records, lightly=lightly, solo=solo)
        ranks = spawn_gloo(body, WORLD_SIZE, pathlib.Path(directory), timeout=120)
    results = []
    for name, implementation in implementations(lightly, solo).items():
        for shards_name, shards in SHARDS.items():
            rows = sum(shards)
            dtype = implementation.ddp_dtype
            value, gradient = step(implementation.make(rows), projector(dtype), batch(rows, dtype))
            values = [ranks[rank][name, shards_name][0] for rank in range(WORLD_SIZE)]
            per_rank = per_rank_statistics_value(projector(dtype), batch(rows, dtype), shards)
            averaged = ranks[0][name, shards_name][1]
            results.append(
                {
                    "implementation": name,
                    "shards": list(shards),
                    "dtype": str(dtype).removeprefix("torch."),
                    "values": values,
                    "one_process_value": value,
                    "value_relative_differences": [abs(v - value) / abs(value) for v in values],
                    "per_rank_statistics_value": per_rank,
                    "per_rank_statistics_differences": [abs(v - per_rank) / abs(per_rank) for v in values],
                    "gradient_norm_ratio": float(averaged.norm() / gradient.norm()),
                    "gradient_relative_error": _relative(averaged, gradient),
                    "gradient_relative_error_at_best_scale": _relative(
                        averaged * (gradient.norm() / averaged.norm()), gradient
                    ),
                    "ranks_agree_on_gradient": _relative(ranks[1][name, shards_name][1], averaged),
                }
            )
    return results


TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def computes(results: list[dict], name: str) -> str:
    """What every rank computed on every sharding: ``"global"`` (the one-process value on the whole batch, to the
    rounding of the dtype), ``"per-rank statistics"`` (the loss of the mean of per-rank-standardized
    cross-correlations) or ``"other"``."""
    rows = [result for result in results if result["implementation"] == name]
    for kind, key in (
        ("global", "value_relative_differences"),
        ("per-rank statistics", "per_rank_statistics_differences"),
    ):
        if rows and all(max(r[key]) < TOLERANCE[r["dtype"]] for r in rows):
            return kind
    return "other"


def official_agreement(results: list[dict]) -> dict:
    """The re-implementation of ``main.py`` against ``gradient_convention="official"``: largest relative
    differences of the values (every rank, every sharding) and of the DDP gradients, from the same runs."""
    by_key = {(r["implementation"], tuple(r["shards"])): r for r in results}
    values, ratios = [], []
    for shards in SHARDS.values():
        ours, theirs = by_key[REDUNDANCY_OFFICIAL, shards], by_key[OFFICIAL, shards]
        values += [abs(a - b) / abs(b) for a, b in zip(ours["values"], theirs["values"], strict=True)]
        ratios.append(abs(ours["gradient_norm_ratio"] - theirs["gradient_norm_ratio"]))
        values.append(abs(ours["one_process_value"] - theirs["one_process_value"]) / abs(theirs["one_process_value"]))
    return {"value": max(values), "gradient_norm_ratio": max(ratios)}


def official_agreement_one_process(rows: int = 64, dim: int = 32) -> dict:
    """The re-implementation against ``barlow_twins_loss_reference`` in one process, float64: value and gradients."""
    generator = torch.Generator().manual_seed(1)
    z1 = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    z2 = 0.8 * z1 + 0.6 * torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    outputs = []
    for loss in (lambda a, b: official_main_py_loss(a, b, rows), barlow_twins_loss_reference):
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        value = loss(a, b)
        outputs.append((value.detach(), *torch.autograd.grad(value, (a, b))))
    return {
        "value": _relative(outputs[0][0], outputs[1][0]),
        "gradient": _relative(torch.cat(outputs[0][1:]), torch.cat(outputs[1][1:])),
    }


# ------------------------------------------------------------------------------------------------ memory, fp16


def make_views(shape: tuple[int, int], dtype: torch.dtype, magnitude: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Two correlated views, drawn in float32, scaled by ``magnitude`` and cast to ``dtype``."""
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(shape, generator=generator)
    z2 = 0.8 * z1 + 0.6 * torch.randn(shape, generator=generator)
    return (z1 * magnitude).to(dtype), (z2 * magnitude).to(dtype)


def measure_memory(
    found: dict[str, Implementation], shape: tuple[int, int] = MEMORY_SHAPE, rounds: int = 3
) -> dict[str, dict]:
    """Peak resident memory (MiB) that forward+backward adds in float32, the implementations taking turns (the order
    reversed every other round), each after one warm-up step; median and range over ``rounds``."""
    use_mmap_for_large_allocations()
    z1, z2 = (view.requires_grad_() for view in make_views(shape, torch.float32))

    def stepper(loss: Callable) -> Callable[[], None]:
        def run() -> None:
            loss(z1, z2).backward()
            z1.grad = z2.grad = None

        return run

    steps = {name: stepper(implementation.make(shape[0])) for name, implementation in found.items()}
    for run in steps.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds):
        for name in list(steps)[:: 1 if index % 2 == 0 else -1]:
            samples[name].append(peak_memory_cpu(steps[name]) / 2**20)
    return {
        name: {
            "median_mib": sorted(values)[len(values) // 2],
            "min_mib": min(values),
            "max_mib": max(values),
            "samples_mib": values,
        }
        for name, values in samples.items()
    }


def _fp16_case(loss: Callable, z1: torch.Tensor, z2: torch.Tensor, expected: float, autocast: bool) -> dict:
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    try:
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            value = loss(z1, z2)
        value.backward()
    except Exception as error:  # an error is a result here
        return {"error": f"{type(error).__name__}: {error}"}
    finite_gradient = bool(z1.grad.isfinite().all() and z2.grad.isfinite().all())
    result = float(value.detach())
    return {
        "value": result,
        "dtype": str(value.dtype).removeprefix("torch."),
        "finite": bool(torch.isfinite(value.detach())),
        "finite_gradient": finite_gradient,
        "relative_error": abs(result - expected) / abs(expected),
    }


def measure_fp16(found: dict[str, Implementation], shape: tuple[int, int] = FP16_SHAPE) -> dict:
    """Each implementation on float16 views of magnitude 1e4, called directly, and on float32 views of the same
    magnitude under float16 autocast; against the float64 reference of the float16 views."""
    h1, h2 = make_views(shape, torch.float16, FP16_MAGNITUDE)
    f1, f2 = h1.float(), h2.float()  # the same numbers, so that both calls have one reference
    expected = float(barlow_twins_loss_reference(h1, h2, lambd=LAMBD, upcast=True))
    results = {}
    for name, implementation in found.items():
        loss = implementation.make(shape[0])
        results[name] = {
            "float16": _fp16_case(loss, h1, h2, expected, autocast=False),
            "autocast": _fp16_case(loss, f1, f2, expected, autocast=True),
        }
    return {"reference": expected, "results": results}


# ------------------------------------------------------------------------------------------------ report


def _ddp_row(results: list[dict], name: str, shards: str) -> dict:
    return next(r for r in results if r["implementation"] == name and tuple(r["shards"]) == SHARDS[shards])


def _fp16_cell(case: dict) -> str:
    if "error" in case:
        return case["error"].split(":")[0]
    if not case["finite"]:
        return "not finite"
    return f"{case['relative_error']:.1e}"


def summary(measurements: dict) -> list[list[str]]:
    """The front page's table: a header row, then one row per implementation measured (strings)."""
    header = [
        "Barlow Twins",
        "loss under DDP (2 ranks, 16 + 48 rows)",
        "gradient after DDP ÷ one process",
        "peak memory (float32, N = {}, D = {})".format(*measurements["memory_shape"]),
        "fp16 views of magnitude 1e4: rel. error",
    ]
    rows = [header]
    results = measurements["ddp"]
    for name in SUMMARY:
        if name in measurements["skipped"]:
            continue
        uneven = _ddp_row(results, name, "uneven")
        kind = computes(results, name)
        one = uneven["one_process_value"]
        if kind == "global":
            loss = "the global batch's"
        else:
            value = (
                f"{uneven['values'][0]:.4f}"
                if len(set(uneven["values"])) == 1
                else " / ".join(f"{v:.4f}" for v in uneven["values"])
            )
            what = "mean of per-rank C" if kind == "per-rank statistics" else "another"
            loss = f"{what}: {value} for {one:.4f}"
        ratio = uneven["gradient_norm_ratio"]
        if uneven["gradient_relative_error"] < 1e-6:
            gradient = f"{ratio:.2f}× (exact)"
        elif uneven["gradient_relative_error_at_best_scale"] < 1e-6 and abs(ratio - 1 / WORLD_SIZE) < 1e-6:
            gradient = f"{ratio:.2f}× (1/W)"
        else:
            gradient = f"{ratio:.2f}×, {uneven['gradient_relative_error']:.0%} off"
        memory = f"{measurements['memory'][name]['median_mib']:.0f} MiB"
        fp16 = measurements["fp16"]["results"][name]
        rows.append(
            [
                name.removesuffix(" (re-implemented here)"),
                loss,
                gradient,
                memory,
                f"{_fp16_cell(fp16['float16'])}; autocast {_fp16_cell(fp16['autocast'])}",
            ]
        )
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join([":---"] * len(rows[0])) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def markdown(measurements: dict) -> str:
    env = measurements["environment"]
    lines = [
        "# Barlow Twins: the official script, lightly, solo-learn and redundancy side by side",
        "",
        f"redundancy {env['redundancy']}, torch {env['torch']}, Python {env['python']}, {env['processor']} "
        f"({env['cpu_count']} CPUs, {env['torch_threads']} torch threads), {env['date']}.",
        "",
        "Command: `" + measurements["command"] + "`",
        "",
    ]
    for name, source in measurements["sources"].items():
        lines.append(f"- {name}: `{source['file']}` (sha256 {source['sha256'][:16]}…)")
    for name, reason in measurements["skipped"].items():
        lines.append(f"- {name}: left out, {reason}")
    lines += ["", "## Summary", "", markdown_table(summary(measurements)), ""]
    agreement, one = measurements["official_agreement"], measurements["official_agreement_one_process"]
    lines += [
        "The official row is a re-implementation of main.py's distributed loss written in `benchmarks/peers.py` "
        f'(SyncBatchNorm by an autograd-aware all-reduce of the sums). Against `gradient_convention="official"` '
        f"under DDP: values within {agreement['value']:.1e}, gradient norm ratios within "
        f"{agreement['gradient_norm_ratio']:.1e}; against `barlow_twins_loss_reference` in one process (float64): "
        f"value {one['value']:.1e}, gradients {one['gradient']:.1e}.",
        "",
        "## DDP: 2 gloo ranks, a Linear(12, 16) projector, against one process on the whole batch",
        "",
        "| implementation | dtype | rows per rank | loss on each rank | one process | max rel. diff "
        "| per-rank-statistics loss | gradient norm ratio | gradient rel. error | rel. error after rescaling |",
        "|:---|:---|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in measurements["ddp"]:
        lines.append(
            f"| {r['implementation']} | {r['dtype']} | {' + '.join(map(str, r['shards']))} "
            f"| {' / '.join(f'{v:.8g}' for v in r['values'])} | {r['one_process_value']:.8g} "
            f"| {max(r['value_relative_differences']):.1e} | {r['per_rank_statistics_value']:.8g} "
            f"| {r['gradient_norm_ratio']:.4f} "
            f"| {r['gradient_relative_error']:.1e} | {r['gradient_relative_error_at_best_scale']:.1e} |"
        )
    n, d = measurements["memory_shape"]
    lines += [
        "",
        f"## Peak memory: forward+backward, float32, N = {n}, D = {d}, CPU (MiB over the inputs)",
        "",
        "| implementation | median | min | max |",
        "|:---|---:|---:|---:|",
    ]
    for name, m in measurements["memory"].items():
        lines.append(f"| {name} | {m['median_mib']:.1f} | {m['min_mib']:.1f} | {m['max_mib']:.1f} |")
    fp16 = measurements["fp16"]
    lines += [
        "",
        f"## fp16: {FP16_SHAPE[0]} × {FP16_SHAPE[1]} views of magnitude {FP16_MAGNITUDE:g}",
        "",
        f"Reference (float64 of the float16 views): {fp16['reference']:.10g}. `float16`: the float16 views passed "
        'directly; `autocast`: the same numbers in float32 under `torch.autocast("cpu", dtype=torch.float16)`.',
        "",
        "| implementation | call | value | dtype | finite | finite gradient | relative error |",
        "|:---|:---|---:|:---|:---|:---|---:|",
    ]
    for name, cases in fp16["results"].items():
        for call, case in cases.items():
            if "error" in case:
                lines.append(f"| {name} | {call} | {case['error']} | | | | |")
            else:
                lines.append(
                    f"| {name} | {call} | {case['value']:.8g} | {case['dtype']} | {case['finite']} "
                    f"| {case['finite_gradient']} | {case['relative_error']:.1e} |"
                )
    return "\n".join(lines) + "\n"


def measure(
    lightly: str | None, solo: str | None, memory_shape: tuple[int, int] = MEMORY_SHAPE, rounds: int = 3
) -> dict:
    """Every measurement of the run, as ``peers.json`` holds them."""
    found = implementations(lightly, solo)
    ddp = measure_ddp(lightly, solo)
    return {
        "environment": environment(),
        "sources": {
            name: source
            for name, source in (
                (LIGHTLY, peer_source(lightly, "lightly", "loss/barlow_twins_loss.py")),
                (SOLO, peer_source(solo, "solo", "losses/barlow.py")),
            )
            if source is not None
        },
        "skipped": skipped(lightly, solo),
        "lambd": LAMBD,
        "ddp": ddp,
        "official_agreement": official_agreement(ddp),
        "official_agreement_one_process": official_agreement_one_process(),
        "memory_shape": list(memory_shape),
        "memory": measure_memory(found, memory_shape, rounds),
        "fp16": measure_fp16(found),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lightly", metavar="PATH", help="a lightly source checkout (omit to leave lightly out)")
    parser.add_argument("--solo", metavar="PATH", help="a solo-learn checkout (omit to leave solo-learn out)")
    parser.add_argument("--rounds", type=int, default=3, help="memory rounds (default 3)")
    parser.add_argument(
        "--memory-shape", type=parse_shape, default=MEMORY_SHAPE, metavar="NxD", help="default 256x8192"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the memory and fp16 runs")
    add_output_option(parser, "peers")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    measurements = {"command": "python -m benchmarks.peers " + " ".join(sys.argv[1:] if argv is None else argv)}
    measurements |= measure(args.lightly, args.solo, args.memory_shape, args.rounds)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "peers.json").write_text(json.dumps(measurements, indent=2) + "\n")
    text = markdown(measurements)
    (args.output / "peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
