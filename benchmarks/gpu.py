"""GPU benchmark: forward, backward and full time, peak memory and TFLOP/s of every way to compute the loss.

For each shape and input dtype it times, on one CUDA device and the same inputs:

- ``reference``: :func:`redundancy.reference.barlow_twins_loss_reference`, eager, in float32;
- ``reference_autocast``: the same under ``torch.autocast("cuda", torch.bfloat16)``;
- ``reference_compiled``: the same through ``torch.compile``;
- ``torch``: :func:`redundancy.barlow_twins_loss` with ``backend="torch"``;
- ``triton``: :func:`redundancy.barlow_twins_loss` with ``backend="triton"``.

Times are medians with 20th and 80th percentiles (``triton.testing.do_bench``). Peak memory is what one
forward+backward allocates beyond the inputs and their gradients (``torch.cuda.max_memory_allocated`` after a
reset). TFLOP/s use :func:`redundancy.cost.barlow_twins_flops` of the algorithm ``redundancy`` picks.

    python -m benchmarks.gpu          # N in {256, 1024, 2048} x D in {2048, 8192}, float32 and bfloat16
    python -m benchmarks.gpu --shapes 256x8192 --dtypes bfloat16 --json gpu.json
"""

import argparse
import json
import sys
from collections.abc import Callable

import torch

from benchmarks.common import parse_shape
from redundancy import barlow_twins_loss, cost
from redundancy.reference import barlow_twins_loss_reference

DEFAULT_SHAPES = [(n, d) for n in (256, 1024, 2048) for d in (2048, 8192)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CASES = ("reference", "reference_autocast", "reference_compiled", "torch", "triton")
MODES = ("forward", "backward", "full")
QUANTILES = (0.5, 0.2, 0.8)


def mode_flops(algorithm: str, n: int, d: int, mode: str) -> int:
    """FLOPs of one forward, one backward, or both (:func:`redundancy.cost.barlow_twins_flops`)."""
    forward = cost.barlow_twins_flops(algorithm, n, d, backward=False)
    full = cost.barlow_twins_flops(algorithm, n, d, backward=True)
    return {"forward": forward, "backward": full - forward, "full": full}[mode]


def require_cuda() -> torch.device:
    """The CUDA device, or exit with a message saying why this benchmark cannot run."""
    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks.gpu needs a CUDA GPU (torch.cuda.is_available() is False); "
            "use python -m benchmarks.versus_reference on CPU"
        )
    try:
        import triton  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"benchmarks.gpu needs triton (pip install 'redundancy[triton]'): {error}") from None
    return torch.device("cuda")


def loss_functions(dtype: torch.dtype) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The five ways to compute the loss of module docstring, by name."""

    def reference(z1, z2):
        return barlow_twins_loss_reference(z1.float(), z2.float())

    def reference_autocast(z1, z2):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return barlow_twins_loss_reference(z1, z2)

    return {
        "reference": reference,
        "reference_autocast": reference_autocast,
        "reference_compiled": torch.compile(reference),
        "torch": lambda z1, z2: barlow_twins_loss(z1, z2, backend="torch"),
        "triton": lambda z1, z2: barlow_twins_loss(z1, z2, backend="triton"),
    }


def _bench(fn: Callable[[], object], grad_to_none: list[torch.Tensor]) -> dict:
    from triton.testing import do_bench

    median, p20, p80 = do_bench(fn, quantiles=list(QUANTILES), grad_to_none=grad_to_none)
    return {"median_ms": median, "p20_ms": p20, "p80_ms": p80}


def _peak_bytes_beyond_inputs(run: Callable[[], None], z1: torch.Tensor, z2: torch.Tensor, device) -> int:
    """Peak allocation of one forward+backward beyond the inputs and their gradients."""
    gradients = z1.numel() * z1.element_size() + z2.numel() * z2.element_size()
    z1.grad = z2.grad = None
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline - gradients
    z1.grad = z2.grad = None
    return peak


def measure(n: int, d: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Every case of :func:`loss_functions` at one shape and dtype."""
    generator = torch.Generator(device=device).manual_seed(0)
    base = torch.randn(n, d, generator=generator, device=device)
    z1 = base.to(dtype).requires_grad_()
    z2 = (0.8 * base + 0.6 * torch.randn(n, d, generator=generator, device=device)).to(dtype).requires_grad_()
    algorithm = cost.choose_algorithm(n, d)
    row = {"n": n, "d": d, "dtype": str(dtype).removeprefix("torch."), "algorithm": algorithm}
    for name, loss_fn in loss_functions(dtype).items():
        loss = loss_fn(z1, z2)  # warm-up (and compilation)
        loss.backward()

        def full(loss_fn=loss_fn):
            loss_fn(z1, z2).backward()

        loss = loss_fn(z1, z2)
        timings = {
            "forward": _bench(lambda loss_fn=loss_fn: loss_fn(z1, z2), [z1, z2]),
            "backward": _bench(lambda loss=loss: loss.backward(retain_graph=True), [z1, z2]),
            "full": _bench(full, [z1, z2]),
        }
        del loss
        for mode, timing in timings.items():
            timing["tflops_per_s"] = mode_flops(algorithm, n, d, mode) / (timing["median_ms"] * 1e-3) / 1e12
        row[name] = {"time": timings, "peak_bytes": _peak_bytes_beyond_inputs(full, z1, z2, device)}
    return row


def format_row(row: dict) -> str:
    """One line per case: full time (p20–p80), forward and backward medians, TFLOP/s and peak MiB."""
    lines = [f"N={row['n']} D={row['d']} {row['dtype']} ({row['algorithm']})"]
    for name in CASES:
        result = row[name]
        full, forward, backward = (result["time"][mode] for mode in ("full", "forward", "backward"))
        lines.append(
            f"  {name:<20} full {full['median_ms']:8.3f} ms ({full['p20_ms']:.3f}–{full['p80_ms']:.3f})"
            f"  fwd {forward['median_ms']:8.3f}  bwd {backward['median_ms']:8.3f}"
            f"  {full['tflops_per_s']:7.2f} TFLOP/s  peak {result['peak_bytes'] / 2**20:9.1f} MiB"
        )
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    """Device name, versions and date, recorded with the results."""
    import triton

    from benchmarks.common import environment as common_environment

    info = common_environment()
    info["gpu"] = torch.cuda.get_device_name(device)
    info["cuda"] = torch.version.cuda
    info["triton"] = triton.__version__
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=DEFAULT_SHAPES, metavar="NxD")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES))
    parser.add_argument("--json", default="benchmark_gpu.json", help="where to write the results")
    args = parser.parse_args(argv)
    device = require_cuda()
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for dtype_name in args.dtypes:
        for n, d in args.shapes:
            row = measure(n, d, DTYPES[dtype_name], device)
            print(format_row(row), flush=True)
            rows.append(row)
    with open(args.json, "w") as output:
        json.dump({"environment": environment(device), "results": rows}, output, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
