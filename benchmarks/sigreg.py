"""SIGReg: the public function and the lean op against the official formula, forward and backward, peak memory and
time in one process.

``public`` is :func:`redundancy.sigreg_loss` with the directions given (the frame's checks, the op, the gradient
convention: what a user calls); ``lean`` is :func:`redundancy._ops.sigreg.sliced_epps_pulley` (the
characteristic-function sums over rows, N×M buffers), the op alone; ``official`` is
:func:`redundancy.reference.sigreg_loss_reference`, the formula of ``rbalestr-lab/lejepa`` (``x_t = (z @
A).unsqueeze(-1) * t``, its cosine and sine: N×M×K tensors, kept by autograd). All take the same embeddings and
directions and compute the same value; a step is the loss and its backward to the embeddings.

Peak memory is what one step adds to what is alive before it (the inputs): on the CPU the growth of the resident set
(its high-water mark reset before the step, large allocations served by mmap so that freed memory leaves the
process), on CUDA ``torch.cuda.max_memory_allocated``. The methods take turns, for memory and for time, in
interleaved rounds (the order alternates from round to round), so that a shared, noisy machine slows both alike::

    python -m benchmarks.sigreg
    python -m benchmarks.sigreg --shapes 2048x1024 --slices 256 --knots 17 --threads 2 --rounds 15 \\
        --json benchmarks/results/cpu-sigreg-public/sigreg-2threads.json \\
        --markdown benchmarks/results/cpu-sigreg-public/sigreg-2threads.md
"""

import argparse
import json
import os
import pathlib
import time
from typing import Any

import torch

from benchmarks.common import environment
from benchmarks.common import median_p20_p80
from benchmarks.common import parse_shape
from benchmarks.common import peak_memory_cpu
from benchmarks.common import peak_memory_cuda
from benchmarks.common import use_mmap_for_large_allocations
from redundancy import sigreg_loss
from redundancy._ops.sigreg import draw_directions
from redundancy._ops.sigreg import sliced_epps_pulley
from redundancy.reference import sigreg_loss_reference

METHODS = ("public", "lean", "official")
#: The methods compared with the official formula.
LEAN = ("public", "lean")


def losses(knots: int, t_max: float) -> dict:
    """``{"public": loss, "lean": loss, "official": loss}``, each a function of the embeddings and the directions."""
    return {
        "public": lambda z, directions: sigreg_loss(z, directions=directions, knots=knots, t_max=t_max),
        "lean": lambda z, directions: sliced_epps_pulley(z, directions, knots=knots, t_max=t_max),
        "official": lambda z, directions: sigreg_loss_reference(z, directions, knots=knots, t_max=t_max),
    }


def steps(z: torch.Tensor, directions: torch.Tensor, knots: int, t_max: float) -> dict:
    """``{method: step}``: each one forward and backward, the gradient then dropped."""

    def step_of(loss):
        def step() -> None:
            loss(z, directions).backward()
            z.grad = None

        return step

    return {name: step_of(loss) for name, loss in losses(knots, t_max).items()}


def agreement(z: torch.Tensor, directions: torch.Tensor, knots: int, t_max: float, method: str = "lean") -> dict:
    """Relative differences (max-norm) of ``method``'s value and gradient from the official formula's."""
    outputs = {}
    for name, loss in losses(knots, t_max).items():
        if name in (method, "official"):
            value = loss(z, directions)
            (gradient,) = torch.autograd.grad(value, z)
            outputs[name] = (value.detach().double(), gradient.double())
    (value, gradient), (expected, expected_gradient) = outputs[method], outputs["official"]
    return {
        f"value_{method}": value.item(),
        "value_official": expected.item(),
        "value_relative_difference": ((value - expected).abs() / expected.abs()).item(),
        "gradient_relative_difference": (
            (gradient - expected_gradient).abs().max() / expected_gradient.abs().max()
        ).item(),
    }


def measure(n: int, d: int, slices: int, knots: int, t_max: float, rounds: int, calls: int, dtype, device) -> dict:
    """Peak memory and time per step of each method, over ``rounds`` interleaved rounds."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    z.requires_grad_(True)
    directions = draw_directions(d, slices, generator=generator).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    methods = steps(z, directions, knots, t_max)
    for step in methods.values():  # warm-up
        step()
    memory: dict[str, list[int]] = {name: [] for name in METHODS}
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for round_index in range(rounds):
        order = METHODS if round_index % 2 == 0 else METHODS[::-1]
        for name in order:
            if device.type == "cuda":
                memory[name].append(peak_memory_cuda(methods[name], device))
            else:
                memory[name].append(peak_memory_cpu(methods[name]))
        for name in order:
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                methods[name]()
            sync()
            times[name].append((time.perf_counter() - start) / calls)
    element_size = torch.empty((), dtype=dtype).element_size()
    result: dict[str, Any] = {
        "n": n,
        "d": d,
        "slices": slices,
        "knots": knots,
        "t_max": t_max,
        "official_n_m_k_tensor_bytes": n * slices * knots * max(element_size, 4),
        "agreement": agreement(z, directions, knots, t_max),
        "methods": {},
        "against_official": {},
    }
    for name in METHODS:
        median, p20, p80 = median_p20_p80(times[name])
        result["methods"][name] = {
            "median_s": median,
            "p20_s": p20,
            "p80_s": p80,
            "round_s": times[name],
            "peak_bytes": median_p20_p80([float(value) for value in memory[name]])[0],
            "round_peak_bytes": memory[name],
        }
    official = result["methods"]["official"]
    for name in LEAN:  # the official formula's peak and time over each method's
        peak = result["methods"][name]["peak_bytes"]
        ratios = [slow / fast for slow, fast in zip(times["official"], times[name], strict=True)]
        median, p20, p80 = median_p20_p80(ratios)
        result["against_official"][name] = {
            "memory_ratio": official["peak_bytes"] / peak if peak > 0 else None,
            "speedup": {"median": median, "p20": p20, "p80": p80},
            "agreement": agreement(z, directions, knots, t_max, name),
        }
    result["memory_ratio"] = result["against_official"]["lean"]["memory_ratio"]
    result["speedup"] = result["against_official"]["lean"]["speedup"]
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| N | D | slices | knots | method | peak MiB | ms (p20–p80) | speed-up per round (p20–p80) | memory ratio "
        "| value rel. diff. | gradient rel. diff. |",
        "|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for name, timing in result["methods"].items():
            compared = result["against_official"].get(name)
            line = (
                f"| {result['n']} | {result['d']} | {result['slices']} | {result['knots']} | {name} "
                f"| {timing['peak_bytes'] / 2**20:.1f} "
                f"| {timing['median_s'] * 1e3:.1f} ({timing['p20_s'] * 1e3:.1f}–{timing['p80_s'] * 1e3:.1f}) "
            )
            if compared is None:
                lines.append(line + "| | | | |")
                continue
            speedup, agree, ratio = compared["speedup"], compared["agreement"], compared["memory_ratio"]
            lines.append(
                line
                + f"| {speedup['median']:.2f}× ({speedup['p20']:.2f}–{speedup['p80']:.2f}) "
                + (f"| {ratio:.1f}× " if ratio is not None else "| ")
                + f"| {agree['value_relative_difference']:.1e} | {agree['gradient_relative_difference']:.1e} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[(2048, 1024)], help="NxD, e.g. 2048x1024")
    parser.add_argument("--slices", type=int, default=256, help="number of directions M")
    parser.add_argument("--knots", type=int, default=17)
    parser.add_argument("--t-max", type=float, default=3.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds in which the methods take turns")
    parser.add_argument("--calls", type=int, default=1, help="steps per method and round")
    parser.add_argument("--json", type=pathlib.Path, help="write the environment and every measurement here")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the table (with the environment) here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    if args.slices < 1 or args.knots < 2 or args.t_max <= 0:
        parser.error("--slices must be at least 1, --knots at least 2 and --t-max positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        use_mmap_for_large_allocations()

    dtype = getattr(torch, args.dtype)
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()), flush=True)
    load_before = os.getloadavg()
    results = [
        measure(n, d, args.slices, args.knots, args.t_max, args.rounds, args.calls, dtype, device)
        for n, d in args.shapes
    ]
    env["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    table = markdown(results)
    print(table)
    if args.markdown:
        header = (
            f"Device: {env.get('gpu', env['processor'])} ({env['torch_threads']} threads), {args.dtype}, "
            f"torch {env['torch']}, {env['date']}, load average (1 min) "
            f"{env['load_average_1min']['before']:.1f} before and {env['load_average_1min']['after']:.1f} after the "
            f"run. SIGReg forward and backward to the embeddings, t_max = "
            f"{args.t_max}. {args.rounds} interleaved rounds, {args.calls} call(s) per method and round: time median "
            "and p20–p80 over the rounds, the speed-up the official formula's time over the method's in each round; "
            "peak memory the median over the rounds of what one step adds to the inputs (CPU: resident set growth), "
            "the memory ratio the official formula's peak over the method's. The relative differences are those of "
            "the method's value and gradient from the official formula's, both in the benchmark's dtype. public: "
            "redundancy.sigreg_loss; lean: the op redundancy._ops.sigreg.sliced_epps_pulley; official: the formula "
            "of rbalestr-lab/lejepa (redundancy.reference.sigreg_loss_reference)."
        )
        args.markdown.write_text(f"{header}\n\n{table}\n")
    if args.json:
        saved = {"environment": env, "dtype": args.dtype, "device": args.device, "results": results}
        args.json.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
