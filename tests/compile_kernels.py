"""Compile every Triton kernel variant for sm_90 without a GPU and report its resources (for the resource test).

The interpreter executes the kernels' Python; only Triton's compiler sees type, layout and lowering errors, and
only the compiled code says whether a kernel fits the hardware. For each variant that
:mod:`redundancy._triton.launch` launches on a GPU (every kernel, input dtype, flag and tile configuration) this
compiles the kernel for ``GPUTarget("cuda", 90, 32)`` with the launch's tile sizes, warps and stages, then reads:

- ``shared``: bytes of shared memory per program (Triton's metadata);
- ``registers`` and ``spill_bytes`` (stores plus loads): ``ptxas -v`` on the kernel's PTX, with the ptxas that
  Triton itself uses for sm_90;
- ``barriers``: the block-wide barriers (``bar.sync``) in the PTX;
- ``mma``: the matrix instructions in the PTX (``wgmma …`` or ``mma.sync …`` with their operand types; ``none``
  for kernels that multiply no matrices, ``fma`` for a product that missed the tensor cores).

``python -m tests.compile_kernels`` prints the table as JSON lines and as reStructuredText (``--rst``). Run it
with ``TRITON_INTERPRET`` unset: the kernels must be defined as compiled functions.
"""

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

# Triton is imported by main(), not here: pytest imports this module to collect doctests, and the kernels must
# be defined after the test process has chosen between the interpreter and the compiler.

#: Shared memory per block on sm_90 (and the opt-in maximum of sm_80 is less only by 64 KiB: 163 KiB).
SHARED_LIMIT_SM90 = 232448
_INPUT_POINTERS = ("z1_ptr", "z2_ptr", "dz1_ptr", "dz2_ptr")
_MULTIPLYING = ("cross_tile", "gram_tile", "cross_gradient", "gram_gradient")


def _signature(kernel, input_dtype: str, acc_dtype: str, constexprs: dict) -> dict:
    """Argument types as the launches pass them: input pointers in the input dtype, the rest in ``acc_dtype``."""
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "pairs_ptr":
            signature[name] = "*i32"
        elif name.endswith("_ptr"):
            signature[name] = "*" + (input_dtype if name in _INPUT_POINTERS else acc_dtype)
        else:
            signature[name] = "i32"
    return signature


def variants():
    """``(name, dtype, kernel, constexprs, config)`` of every kernel variant launched on a GPU (contiguous inputs)."""
    import torch

    from redundancy._triton import kernels
    from redundancy._triton import launch

    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        precision = launch._precision(torch.zeros(0, dtype=dtype))
        acc = dict(ACC=precision.acc)
        dot = dict(DOT=precision.dot, EMULATE=False, DOT_PRECISION=precision.dot_precision)
        product = dict(EMULATE=False, PRODUCT_PRECISION=precision.product_precision)
        unit = dict(stride1_d=1, stride2_d=1)
        config = launch.tile_config("statistics", dtype)
        for standardize in (True, False):
            merge = dict(STANDARDIZE=standardize, BLOCK_D=config.block_n, **acc)
            yield "merge_statistics", dtype, kernels._merge_statistics_kernel, merge, config
        yield (
            "difference",
            dtype,
            kernels._difference_kernel,
            dict(BLOCK_N=config.block_m, BLOCK_D=config.block_n, **acc, **unit),
            config,
        )
        for standardize in (True, False):
            config = launch.tile_config("statistics", dtype)
            yield (
                "statistics",
                dtype,
                kernels._statistics_kernel,
                dict(STANDARDIZE=standardize, BLOCK_N=config.block_m, BLOCK_D=config.block_n, **acc, **unit),
                config,
            )
            # The three tile shapes of C that cross_tile_config picks (D = 8192, 1024, 512).
            for d in (8192, 1024, 512):
                config = launch.cross_tile_config(dtype, d)
                for gradient in (False, True):
                    yield "cross_tile", dtype, kernels._cross_tile_kernel, dict(
                        STANDARDIZE=standardize, GRADIENT=gradient, BLOCK_M=config.block_m,
                        BLOCK_N=config.block_n, BLOCK_K=config.block_k, C_ACC=precision.correlation_acc,
                        **acc, **dot, **unit,
                    ), config  # fmt: skip
            config = launch.tile_config("cross_gradient", dtype)
            yield "cross_gradient", dtype, kernels._cross_gradient_kernel, dict(
                STANDARDIZE=standardize, BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
                **acc, **product, **unit,
            ), config  # fmt: skip
            for row_sums in (False, True):
                config = launch.tile_config("gram_tile", dtype)
                yield "gram_tile", dtype, kernels._gram_tile_kernel, dict(
                    STANDARDIZE=standardize, ROW_SUMS=row_sums, BLOCK_M=config.block_m, BLOCK_K=config.block_k,
                    **acc, **dot, **unit,
                ), config  # fmt: skip
                config = launch.tile_config("gram_gradient", dtype)
                yield "gram_gradient", dtype, kernels._gram_gradient_kernel, dict(
                    STANDARDIZE=standardize, ROW_SUMS=row_sums, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                    BLOCK_K=config.block_k, **acc, **product, **unit,
                ), config  # fmt: skip
        config = launch.tile_config("standardize_backward", dtype)
        yield "standardize_backward", dtype, kernels._standardize_backward_kernel, dict(
            IN_PLACE=dtype in (torch.float32, torch.float64), BLOCK_M=config.block_m, BLOCK_N=config.block_n,
            EMULATE=False, **acc, **unit,
        ), config  # fmt: skip


def _ptxas_report(ptx: str) -> tuple[int, int]:
    """``(registers, spill bytes)`` from ``ptxas -v`` for sm_90a, with the ptxas Triton uses for that target."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(90).path
    with tempfile.TemporaryDirectory() as directory:
        source = os.path.join(directory, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        result = subprocess.run(
            [ptxas, "-v", "--regAllocOptLevel=2", "--gpu-name=sm_90a", source, "-o", os.path.join(directory, "k.o")],
            capture_output=True,
            text=True,
            check=True,
        )
    log = result.stderr
    registers = int(re.search(r"Used (\d+) registers", log).group(1))
    stores, loads = (
        int(value) for value in re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log).groups()
    )
    return registers, stores + loads


def _mma_kind(ptx: str, multiplies: bool) -> str:
    """The matrix instructions of the PTX, shortened: ``wgmma f32.bf16.bf16``, ``mma.sync f64``, ``none``, ``fma``."""
    kinds = set()
    for match in re.finditer(r"\b(wgmma\.mma_async|mma\.sync)\.\S*?\.(m\d+n\d+k\d+)\.(\S+?)[\s;]", ptx):
        instruction, shape, types = match.groups()
        types = types.removeprefix("row.col.")
        kinds.add(f"{instruction.split('.')[0]} {shape} {types}")
    if kinds:
        return ", ".join(sorted(kinds))
    return "fma" if multiplies else "none"


def compile_variant(kernel, dtype, constexprs: dict, config) -> dict:
    """Compile one variant for sm_90 and return its resources (module docstring)."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from redundancy._validation import compute_dtype

    names = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}
    input_dtype = names[dtype]
    acc_dtype = names[compute_dtype(torch.zeros(0, dtype=dtype))]
    source = ASTSource(
        fn=kernel, signature=_signature(kernel, input_dtype, acc_dtype, constexprs), constexprs=constexprs
    )
    compiled = triton.compile(
        source,
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    ptx = compiled.asm["ptx"]
    registers, spills = _ptxas_report(ptx)
    return {"shared": compiled.metadata.shared, "registers": registers, "spill_bytes": spills, "ptx": ptx}


def _flags(constexprs: dict) -> str:
    shown = ("STANDARDIZE", "GRADIENT", "ROW_SUMS", "IN_PLACE")
    return " ".join(name.lower() for name in shown if constexprs.get(name))


def _variant_row(index: int) -> dict:
    """The row of :func:`resource_table` for variant ``index`` of :func:`variants` (a worker process's task)."""
    name, dtype, kernel, constexprs, config = list(variants())[index]
    resources = compile_variant(kernel, dtype, constexprs, config)
    tiles = "x".join(str(constexprs[key]) for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K") if key in constexprs)
    if name in ("statistics", "difference"):
        tiles = f"{constexprs['BLOCK_N']}x{constexprs['BLOCK_D']}"
    elif name == "merge_statistics":
        tiles = str(constexprs["BLOCK_D"])
    elif name == "gram_tile":
        tiles = f"{constexprs['BLOCK_M']}x{constexprs['BLOCK_M']}x{constexprs['BLOCK_K']}"
    return {
        "kernel": name,
        "dtype": str(dtype).removeprefix("torch."),
        "flags": _flags(constexprs),
        "tiles": tiles,
        "warps": config.num_warps,
        "stages": config.num_stages,
        "shared": resources["shared"],
        "registers": resources["registers"],
        "spill_bytes": resources["spill_bytes"],
        "mma": _mma_kind(resources["ptx"], name in _MULTIPLYING),
        "barriers": len(re.findall(r"\b(?:bar|barrier)\.sync\b", resources["ptx"])),
    }


def resource_table(kernels: tuple[str, ...] = (), jobs: int = 1):
    """One dict per kernel variant (of ``kernels`` only, when given), in the order of :func:`variants`,
    compiled by ``jobs`` processes."""
    indices = [index for index, variant in enumerate(variants()) if not kernels or variant[0] in kernels]
    if jobs <= 1:
        yield from map(_variant_row, indices)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_variant_row, indices)


def format_rst(rows) -> str:
    """The table of the GPU kernels page (reStructuredText): one row per kernel and dtype, the most any of its
    variants (flags, tile shapes) uses."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["kernel"], row["dtype"]), []).append(row)
    columns = ("kernel", "dtype", "variants", "tiles", "warps", "registers", "spilled bytes", "shared bytes", "mma")
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(columns))
    for (kernel, dtype), group in groups.items():
        values = (
            kernel,
            dtype,
            len(group),
            ", ".join(sorted({row["tiles"] for row in group})),
            ", ".join(str(warps) for warps in sorted({row["warps"] for row in group})),
            max(row["registers"] for row in group),
            max(row["spill_bytes"] for row in group),
            max(row["shared"] for row in group),
            "; ".join(sorted({row["mma"] for row in group})),
        )
        lines.append("   * - " + "\n     - ".join(str(value) for value in values))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rst", action="store_true", help="print a reStructuredText table, not JSON lines")
    parser.add_argument("--kernels", nargs="*", default=(), help="only these kernels (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiling processes")
    args = parser.parse_args(argv)
    rows = resource_table(tuple(args.kernels), args.jobs)
    if args.rst:
        print(format_rst(list(rows)))
    else:
        for row in rows:
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
