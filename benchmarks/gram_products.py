"""The Gram product ``X Xᵀ`` three ways: the full product, and its lower block-triangle by block rows or columns.

The Gram algorithm's forward is two products ``X Xᵀ`` (N×D by D×N). :func:`redundancy._ops.products.symmetric_gram`
computes only one block-triangle, ``(1 + 1/k)·N²·D`` FLOPs instead of ``2·N²·D``, one block column at a time
(``X[i:] X[i:j]ᵀ``). This times it against the full ``torch.mm(x, x.t())`` and against the same blocks taken as
rows (``X[i:j] X[i:]ᵀ``), in interleaved rounds, so that the three see the same machine:

    python -m benchmarks.gram_products
    python -m benchmarks.gram_products --shapes 256x8192 2048x8192 --rounds 20 --output benchmarks/results/cpu

The run is written as ``gram_products.json`` (the environment and every timing) and ``gram_products.md`` (the
table) into a new folder under ``benchmarks/results/local/`` (which git ignores) or the folder ``--output`` names.
"""

import argparse
import json
import time

import torch

from benchmarks.common import add_output_option
from benchmarks.common import environment
from benchmarks.common import median_p20_p80
from benchmarks.common import parse_shape
from redundancy._ops.products import _block_bounds
from redundancy._ops.products import symmetric_blocks
from redundancy._ops.products import symmetric_gram
from redundancy._ops.products import symmetric_gram_flops


def gram_by_block_rows(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` from the same blocks as :func:`symmetric_gram`, each taken as a block row ``X[i:j] X[i:]ᵀ``."""
    n, d = x.shape
    gram = x.new_empty(n, n)
    for start, stop in _block_bounds(n, symmetric_blocks(n, d)):
        row_block = torch.mm(x[start:stop], x[start:].t())
        gram[start:stop, start:] = row_block
        gram[stop:, start:stop] = row_block[:, stop - start :].t()
    return gram


METHODS = {
    "full": lambda x: torch.mm(x, x.t()),
    "block-rows": gram_by_block_rows,
    "block-columns": symmetric_gram,
}


def measure(n: int, d: int, rounds: int, calls: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Each method's median time per product, taking turns over ``rounds`` rounds of ``calls`` calls.

    The order of the methods rotates from one round to the next, so that none always runs after the same one.
    """
    x = torch.randn(n, d, dtype=dtype, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for method in METHODS.values():
        method(x)
    names = list(METHODS)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            method = METHODS[name]
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                method(x)
            sync()
            times[name].append((time.perf_counter() - start) / calls)
    symmetric_flops = symmetric_gram_flops(n, d)
    flops = {"full": 2 * n * n * d, "block-rows": symmetric_flops, "block-columns": symmetric_flops}
    result = {"n": n, "d": d, "blocks": symmetric_blocks(n, d), "methods": {}}
    for name, samples in times.items():
        median, p20, p80 = median_p20_p80(samples)
        result["methods"][name] = {
            "median_s": median,
            "p20_s": p20,
            "p80_s": p80,
            "flops": flops[name],
            "gflops_per_s": flops[name] / median / 1e9,
        }
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| N | D | k | method | ms (p20–p80) | vs full | GFLOP/s |",
        "|---:|---:|---:|:---|---:|---:|---:|",
    ]
    for result in results:
        full = result["methods"]["full"]["median_s"]
        for name, timing in result["methods"].items():
            lines.append(
                f"| {result['n']} | {result['d']} | {result['blocks']} | {name} | {timing['median_s'] * 1e3:.2f} "
                f"({timing['p20_s'] * 1e3:.2f}–{timing['p80_s'] * 1e3:.2f}) | {full / timing['median_s']:.2f}× "
                f"| {timing['gflops_per_s']:.1f} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gram_products",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=[(256, 8192), (512, 8192), (2048, 8192)],
        help="NxD, for example 256x8192",
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds in which the methods take turns")
    parser.add_argument("--calls", type=int, default=3, help="calls per method and round")
    add_output_option(parser, "gram_products")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()), flush=True)
    results = [measure(n, d, args.rounds, args.calls, dtype, device) for n, d in args.shapes]
    table = markdown(results)
    print(table)
    header = (
        f"Device: {env.get('gpu', env['processor'])} ({env['torch_threads']} threads), {args.dtype}, "
        f"torch {env['torch']}, {env['date']}. {args.rounds} interleaved rounds, {args.calls} call(s) per "
        "method and round: median and p20–p80 over the rounds."
    )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gram_products.md").write_text(f"{header}\n\n{table}\n")
    (args.output / "gram_products.json").write_text(
        json.dumps({"environment": env, "dtype": args.dtype, "results": results}, indent=2)
    )
    print(f"wrote {args.output / 'gram_products.json'} and {args.output / 'gram_products.md'}")


if __name__ == "__main__":
    main()
