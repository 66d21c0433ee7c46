"""The multi-view loss against the loop over its V(V-1)/2 pairs, forward and backward, side by side in one process.

:func:`redundancy.multiview_barlow_twins_loss` standardizes each view once and, on the Gram path, shares the V
Gram matrices in forward and V products in backward; the loop calls :func:`redundancy.barlow_twins_loss` on every
pair and averages (what a training script without the multi-view loss does). Both compute the same value. The
two take turns in interleaved rounds (the order alternates from round to round), so that a shared, noisy machine
slows both alike; each round also gives the ratio of the two times measured side by side:

    python -m benchmarks.multiview
    python -m benchmarks.multiview --views 4 --shapes 256x8192 --threads 2 --rounds 15 --output benchmarks/results/cpu

``--loss vicreg`` times :func:`redundancy.multiview_vicreg_loss` against the loop of :func:`redundancy.vicreg_loss`.
The run is written as ``multiview.json`` (the environment and every timing) and ``multiview.md`` (the table),
``multiview_vicreg.json`` and ``multiview_vicreg.md`` for VICReg, into a new folder under
``benchmarks/results/local/`` (which git ignores) or the folder ``--output`` names.
"""

import argparse
import itertools
import json
import time

import torch

import redundancy
from benchmarks.common import add_output_option
from benchmarks.common import environment
from benchmarks.common import median_p20_p80
from benchmarks.common import parse_shape
from redundancy import cost

LOSSES = {
    "barlow_twins": (redundancy.multiview_barlow_twins_loss, redundancy.barlow_twins_loss),
    "vicreg": (redundancy.multiview_vicreg_loss, redundancy.vicreg_loss),
}


def methods(loss: str, views: list[torch.Tensor], algorithm: str) -> dict:
    """``{"multiview": step, "pairs": step}``: each a forward and backward of the same loss of ``views``."""
    multiview, two_view = LOSSES[loss]
    pairs = list(itertools.combinations(range(len(views)), 2))

    def multiview_step() -> None:
        multiview(views, algorithm=algorithm).backward()

    def pairs_step() -> None:
        torch.stack([two_view(views[u], views[v], algorithm=algorithm) for u, v in pairs]).mean().backward()

    return {"multiview": multiview_step, "pairs": pairs_step}


def matrix_flops(loss: str, algorithm: str, n: int, d: int, views: int) -> dict:
    """Matrix-product FLOPs of each method (forward and backward), from :mod:`redundancy.cost`."""
    pairs = views * (views - 1) // 2
    if loss == "barlow_twins":
        shared_algorithm = cost.choose_multiview_algorithm(n, d, views) if algorithm == "auto" else algorithm
        pair_algorithm = cost.choose_algorithm(n, d) if algorithm == "auto" else algorithm
        return {
            "multiview": cost.multiview_barlow_twins_flops(shared_algorithm, n, d, views),
            "pairs": pairs * cost.barlow_twins_flops(pair_algorithm, n, d),
        }
    if algorithm == "auto":
        algorithm = cost.choose_autocorrelation_algorithm(n, d)
    # Each view's covariance penalty once, against twice per pair.
    return {
        "multiview": views * cost.autocorrelation_flops(algorithm, n, d),
        "pairs": 2 * pairs * cost.autocorrelation_flops(algorithm, n, d),
    }


def measure(loss: str, n: int, d: int, views: int, algorithm: str, rounds: int, calls: int, dtype) -> dict:
    """Each method's median time per step over ``rounds`` interleaved rounds, and the median per-round speed-up."""
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(n, d, generator=generator, dtype=dtype).requires_grad_() for _ in range(views)]
    steps = methods(loss, tensors, algorithm)
    for step in steps.values():  # warm-up
        step()
    names = list(steps)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            for _ in range(calls):
                steps[name]()
            times[name].append((time.perf_counter() - start) / calls)
        for tensor in tensors:
            tensor.grad = None
    flops = matrix_flops(loss, algorithm, n, d, views)
    result = {"loss": loss, "n": n, "d": d, "views": views, "algorithm": algorithm, "methods": {}}
    for name, samples in times.items():
        median, p20, p80 = median_p20_p80(samples)
        result["methods"][name] = {
            "median_s": median,
            "p20_s": p20,
            "p80_s": p80,
            "round_s": samples,
            "matrix_flops": flops[name],
            "gflops_per_s": flops[name] / median / 1e9,
        }
    ratios = [pairs / shared for pairs, shared in zip(times["pairs"], times["multiview"], strict=True)]
    median, p20, p80 = median_p20_p80(ratios)
    result["speedup"] = {"median": median, "p20": p20, "p80": p80, "flop_ratio": flops["pairs"] / flops["multiview"]}
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| loss | V | N | D | algorithm | method | ms (p20–p80) | GFLOP/s | speed-up per round (p20–p80) "
        "| FLOP ratio |",
        "|:---|---:|---:|---:|:---|:---|---:|---:|---:|---:|",
    ]
    for result in results:
        speedup = result["speedup"]
        for name, timing in result["methods"].items():
            ratio = (
                f"{speedup['median']:.2f}× ({speedup['p20']:.2f}–{speedup['p80']:.2f})" if name == "multiview" else ""
            )
            flop_ratio = f"{speedup['flop_ratio']:.2f}" if name == "multiview" else ""
            lines.append(
                f"| {result['loss']} | {result['views']} | {result['n']} | {result['d']} | {result['algorithm']} "
                f"| {name} | {timing['median_s'] * 1e3:.1f} ({timing['p20_s'] * 1e3:.1f}–{timing['p80_s'] * 1e3:.1f}) "
                f"| {timing['gflops_per_s']:.1f} | {ratio} | {flop_ratio} |"
            )
    return "\n".join(lines)


def file_stem(loss: str) -> str:
    """The name of a run's files: ``multiview`` for Barlow Twins, ``multiview_<loss>`` for the others."""
    return "multiview" if loss == "barlow_twins" else f"multiview_{loss}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multiview",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--loss", default="barlow_twins", choices=list(LOSSES))
    parser.add_argument("--views", type=int, nargs="+", default=[4], help="numbers of views V (at least 2)")
    parser.add_argument(
        "--shapes", nargs="+", type=parse_shape, default=[(256, 8192)], help="NxD, for example 256x8192"
    )
    parser.add_argument("--algorithm", default="auto", choices=["auto", "cross", "gram"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds in which the two methods take turns")
    parser.add_argument("--calls", type=int, default=1, help="steps per method and round")
    add_output_option(parser, "multiview")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    if min(args.views) < 2:
        parser.error("--views must be at least 2")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    dtype = getattr(torch, args.dtype)
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()), flush=True)
    results = [
        measure(args.loss, n, d, views, args.algorithm, args.rounds, args.calls, dtype)
        for views in args.views
        for n, d in args.shapes
    ]
    table = markdown(results)
    print(table)
    header = (
        f"Device: {env.get('gpu', env['processor'])} ({env['torch_threads']} threads), {args.dtype}, "
        f"torch {env['torch']}, {env['date']}. Forward and backward of one step. {args.rounds} interleaved "
        f"rounds, {args.calls} call(s) per method and round: median and p20–p80 over the rounds; the speed-up is "
        "the loop's time over the multi-view loss's in each round (median, p20–p80 over the rounds). GFLOP/s "
        "count the matrix products only (redundancy.cost)."
    )
    args.output.mkdir(parents=True, exist_ok=True)
    stem = file_stem(args.loss)
    (args.output / f"{stem}.md").write_text(f"{header}\n\n{table}\n")
    (args.output / f"{stem}.json").write_text(
        json.dumps({"environment": env, "dtype": args.dtype, "results": results}, indent=2)
    )
    print(f"wrote {args.output / stem}.json and {args.output / stem}.md")


if __name__ == "__main__":
    main()
