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
    python -m benchmarks.gpu --shapes 256x8192 --dtypes bfloat16 --output runs/gpu
    python -m benchmarks.gpu --model  # the roofline model of every kernel at the shapes (no GPU needed)
    python -m benchmarks.gpu --check  # the Triton backend against the float64 reference on the GPU, no pytest
    python -m benchmarks.gpu --decide runs/gpu/gpu.json  # the TRITON_FASTER entries that results file supports

A run writes ``gpu.json`` into a new folder under ``benchmarks/results/local/`` (which git ignores) or the folder
``--output`` names.

The roofline model (:func:`roofline`) counts, per kernel of :mod:`redundancy._triton.launch`, the FLOPs of its
matrix products and the bytes it must move at least (every input read once, every output written once, no
re-reads from DRAM), and predicts its time on an H100 SXM as ``max(FLOPs / peak, bytes / bandwidth)`` at the
datasheet's dense peak rates (:data:`H100_SXM`). float32 products run as three TF32 products (``tf32x3``),
so their peak is a third of the TF32 rate. The model is a lower bound: measured rows sit beside it in the docs.
"""

import argparse
import json
import sys
from collections.abc import Callable

import torch

from benchmarks.common import add_output_option
from benchmarks.common import parse_shape
from redundancy import barlow_twins_loss
from redundancy import cost
from redundancy.reference import barlow_twins_loss_reference

DEFAULT_SHAPES = [(n, d) for n in (256, 1024, 2048) for d in (2048, 8192)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CASES = ("reference", "reference_autocast", "reference_compiled", "torch", "triton")
#: Shapes of the model and of the GPU check: the Gram regime (N=256, D=8192), the cross regime (N=2048,
#: D=1024), and one large shape of each.
MODEL_SHAPES = [(256, 8192), (2048, 1024), (1024, 16384), (4096, 2048)]

#: NVIDIA H100 SXM5 datasheet: dense tensor-core peaks (FLOP/s) by product kind, and HBM3 bandwidth (B/s).
H100_SXM = {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp64": 66.9e12, "bandwidth": 3.35e12}
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


def _product_peak(kind: str, dtype: torch.dtype, peaks: dict) -> float:
    """Peak FLOP/s of a kernel's products: ``"input"`` products of standardized tiles (in the input dtype for half
    types), ``"accumulated"`` products of a float32 matrix with a tile (TF32 for half types)."""
    if dtype == torch.float64:
        return peaks["fp64"]
    if dtype == torch.float32:
        return peaks["tf32"] / 3  # tf32x3
    if kind == "accumulated":
        return peaks["tf32"]
    return peaks["bf16"] if dtype == torch.bfloat16 else peaks["fp16"]


def roofline(n: int, d: int, dtype: torch.dtype, algorithm: str, peaks: dict | None = None) -> list[dict]:
    """One row per kernel (forward, then backward): FLOPs, bytes moved at least, predicted seconds and the bound.

    Tile sizes and splits are those :mod:`redundancy._triton.launch` uses on a GPU. ``gram_sum`` is the host's
    sum of the split Grams and ``⟨A Aᵀ, B Bᵀ⟩`` (torch operations between the kernels).
    """
    from redundancy._triton import launch

    peaks = peaks or H100_SXM
    e = torch.empty((), dtype=dtype).element_size()
    a = 8 if dtype == torch.float64 else 4
    nd = n * d
    rows = []

    def add(kernel, direction, flops, bytes_moved, kind="input"):
        peak = _product_peak(kind, dtype, peaks)
        compute = flops / peak
        memory = bytes_moved / peaks["bandwidth"]
        rows.append(
            {
                "kernel": kernel,
                "pass": direction,
                "flops": flops,
                "bytes": bytes_moved,
                "peak_flops": peak,
                "seconds": max(compute, memory),
                "bound": "compute" if compute > memory else "memory",
            }
        )

    ranges, _ = launch.statistics_split(n, d, launch.GPU_CONFIGS[("statistics", launch.dtype_class(dtype))])
    add("statistics", "forward", 0, 2 * nd * e + ranges * 5 * d * a)
    add("merge_statistics", "forward", 0, ranges * 5 * d * a + 6 * d * a)
    add("difference", "forward", 0, 2 * nd * e + ranges * d * a)
    # The standardization backward reads dA (acc dtype) and the input, and writes dz, for both views.
    stream = 2 * (nd * a + 2 * nd * e)
    if algorithm == "cross":
        add("cross_tile", "forward", 2 * n * d * d, 2 * nd * e)
        add("cross_tile (dC)", "backward", 2 * n * d * d, 2 * nd * e + d * d * a)
        add("cross_gradient", "backward", 4 * n * d * d, 2 * (d * d * a + 2 * nd * e + nd * a), "accumulated")
        add("standardize_backward", "backward", 0, stream)
        return rows
    config = launch.GPU_CONFIGS[("gram_tile", launch.dtype_class(dtype))]
    pairs, splits, _ = launch.gram_split(n, d, config)
    tile_rows = config.block_m
    computed = pairs * tile_rows * tile_rows  # Gram entries computed: tiles p <= q
    add("gram_tile", "forward", 2 * 2 * computed * d, 2 * nd * e + 2 * splits * n * n * a)
    add("gram_sum", "forward", 0, 2 * splits * n * n * a + (2 * n * n * a if splits > 1 else 0) + 2 * n * n * a)
    add("gram_gradient", "backward", 2 * 2 * n * n * d, 2 * (n * n * a + 2 * nd * e + nd * a), "accumulated")
    add("standardize_backward", "backward", 0, stream)
    return rows


def format_roofline(n: int, d: int, dtype: torch.dtype, algorithm: str) -> str:
    """The roofline rows of one shape as text, with the forward and backward totals."""
    rows = roofline(n, d, dtype, algorithm)
    name = str(dtype).removeprefix("torch.")
    lines = [f"N={n} D={d} {name} ({algorithm}), H100 SXM at datasheet peaks"]
    for row in rows:
        intensity = row["flops"] / row["bytes"] if row["bytes"] else float("inf")
        lines.append(
            f"  {row['kernel']:<22}{row['pass']:<9}{row['flops'] / 1e9:10.2f} GFLOP{row['bytes'] / 1e6:10.2f} MB"
            f"{intensity:9.1f} FLOP/B  {row['seconds'] * 1e6:9.1f} us  {row['bound']}"
        )
    for direction in ("forward", "backward"):
        total = sum(row["seconds"] for row in rows if row["pass"] == direction)
        lines.append(f"  {'total ' + direction:<31}{'':>30}{total * 1e6:9.1f} us")
    return "\n".join(lines)


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
        "reference_compiled": torch.compile(reference, dynamic=False),
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


def measure(n: int, d: int, dtype: torch.dtype, device: torch.device, cases: tuple[str, ...] = CASES) -> dict:
    """The ``cases`` of :func:`loss_functions` (all by default) at one shape and dtype."""
    generator = torch.Generator(device=device).manual_seed(0)
    base = torch.randn(n, d, generator=generator, device=device)
    z1 = base.to(dtype).requires_grad_()
    z2 = (0.8 * base + 0.6 * torch.randn(n, d, generator=generator, device=device)).to(dtype).requires_grad_()
    algorithm = cost.choose_algorithm(n, d)
    row = {"n": n, "d": d, "dtype": str(dtype).removeprefix("torch."), "algorithm": algorithm}
    for name, loss_fn in loss_functions(dtype).items():
        if name not in cases:
            continue
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
        if name not in row:
            continue
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


def decide(results: dict) -> frozenset[tuple[str, str, str]]:
    """The ``TRITON_FASTER`` entries a results file supports (:data:`redundancy._triton.TRITON_FASTER`).

    ``(GPU, dtype, algorithm)`` is an entry when, at every measured shape of that algorithm and dtype, the Triton
    backend's full step (forward and backward) has a lower median than the torch backend's.
    """
    gpu = results["environment"]["gpu"]
    verdicts: dict[tuple[str, str, str], bool] = {}
    for row in results["results"]:
        if "triton" not in row or "torch" not in row:
            continue
        key = (gpu, row["dtype"], row["algorithm"])
        faster = row["triton"]["time"]["full"]["median_ms"] < row["torch"]["time"]["full"]["median_ms"]
        verdicts[key] = verdicts.get(key, True) and faster
    return frozenset(key for key, faster in verdicts.items() if faster)


#: ``--check``: (N, D) shapes (an odd one, and one of each algorithm's regime), and the options with the dtypes
#: each is tried in (every dtype for the default options; fewer for the others, to bound the compile time).
CHECK_SHAPES = [(37, 70), (256, 2048), (1024, 256)]
CHECK_OPTIONS = [
    (
        dict(correction=0, eps=1e-5, off_diagonal_target=0.0),
        (torch.float64, torch.float32, torch.bfloat16, torch.float16),
    ),
    (dict(correction=1, eps=0.0, off_diagonal_target=-1.0), (torch.float64, torch.bfloat16)),
    (dict(standardize=False, eps=1e-5, off_diagonal_target=0.5), (torch.float64, torch.float32)),
]
#: ``--check``: the low-precision rule of the tests: error <= k x (plain PyTorch's error in that dtype) + atol.
CHECK_LOW_PRECISION = {torch.float32: (2.0, 1e-6), torch.bfloat16: (2.0, 2.0**-8), torch.float16: (2.0, 2.0**-11)}


def _relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    value, expected = value.detach().double(), expected.detach().double()
    return ((value - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def _standardization_name(options: dict) -> str:
    """``correction=0``, ``correction=1`` or ``none``: how ``options`` standardize the views, for a report line."""
    return "none" if not options.get("standardize", True) else f"correction={options.get('correction', 0)}"


def check(device: torch.device, shapes: list[tuple[int, int]] | None = None) -> list[str]:
    """The Triton backend against the float64 reference on ``device`` (what ``tests/test_triton.py`` checks, in a
    form that needs no pytest): float64 to 1e-10 (loss) and 1e-8 (gradients), the other dtypes by the
    low-precision rule, both algorithms, every standardization. Returns the failures; prints one line per case."""
    failures = []
    generator = torch.Generator(device="cpu").manual_seed(0)
    for n, d in shapes or CHECK_SHAPES:
        base1 = torch.randn(n, d, dtype=torch.float64, generator=generator)
        base2 = torch.randn(n, d, dtype=torch.float64, generator=generator) + 0.5 * base1
        for algorithm in ("cross", "gram"):
            for options, dtypes in CHECK_OPTIONS:
                for dtype in dtypes:
                    z1 = base1.to(device, dtype).requires_grad_()
                    z2 = base2.to(device, dtype).requires_grad_()
                    loss = barlow_twins_loss(z1, z2, backend="triton", algorithm=algorithm, **options)
                    grads = torch.autograd.grad(loss * 0.7, [z1, z2])
                    x1, x2 = (z.detach().double().requires_grad_() for z in (z1, z2))
                    exact = barlow_twins_loss_reference(x1, x2, **options)
                    exact_grads = torch.autograd.grad(exact * 0.7, [x1, x2])
                    errors = [_relative_error(loss, exact)] + [
                        _relative_error(g, e) for g, e in zip(grads, exact_grads, strict=True)
                    ]
                    if dtype == torch.float64:
                        limits = [1e-10, 1e-8, 1e-8]
                    else:
                        k, atol = CHECK_LOW_PRECISION[dtype]
                        y1, y2 = (z.detach().requires_grad_() for z in (z1, z2))
                        plain = barlow_twins_loss_reference(y1, y2, **options)
                        plain_grads = torch.autograd.grad(plain * 0.7, [y1, y2])
                        plain_errors = [_relative_error(plain, exact)] + [
                            _relative_error(g, e) for g, e in zip(plain_grads, exact_grads, strict=True)
                        ]
                        limits = [k * error + atol for error in plain_errors]
                    ok = all(error <= limit for error, limit in zip(errors, limits, strict=True))
                    name = str(dtype).removeprefix("torch.")
                    standardization = _standardization_name(options)
                    line = (
                        f"{'ok  ' if ok else 'FAIL'} N={n} D={d} {algorithm:<5} {standardization:<12} {name:<9}"
                        f" errors (loss, dz1, dz2) {', '.join(f'{e:.1e}' for e in errors)}"
                        f" limits {', '.join(f'{e:.1e}' for e in limits)}"
                    )
                    print(line, flush=True)
                    if not ok:
                        failures.append(line)
    return failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=DEFAULT_SHAPES, metavar="NxD")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES))
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="ways to compute the loss")
    add_output_option(parser, "gpu")
    parser.add_argument("--model", action="store_true", help="print the roofline model of the kernels and exit")
    parser.add_argument("--check", action="store_true", help="check the Triton backend on the GPU and exit")
    parser.add_argument("--decide", metavar="JSON", help="print the TRITON_FASTER entries a results file supports")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model:
        shapes = args.shapes if "--shapes" in (argv if argv is not None else sys.argv) else MODEL_SHAPES
        for dtype_name in args.dtypes:
            for n, d in shapes:
                print(format_roofline(n, d, DTYPES[dtype_name], cost.choose_algorithm(n, d)))
        return 0
    if args.decide:
        with open(args.decide) as handle:
            entries = decide(json.load(handle))
        print("TRITON_FASTER = frozenset(" + repr(sorted(entries)) + ")")
        return 0
    device = require_cuda()
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.check:
        failures = check(device)
        print(f"{len(failures)} failure(s)")
        return 1 if failures else 0
    rows = []
    for dtype_name in args.dtypes:
        for n, d in args.shapes:
            row = measure(n, d, DTYPES[dtype_name], device, tuple(args.cases))
            print(format_row(row), flush=True)
            rows.append(row)
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / "gpu.json"
    saved.write_text(json.dumps({"environment": environment(device), "results": rows}, indent=2))
    print(f"wrote {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
