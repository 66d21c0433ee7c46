"""Compile the Triton kernels ahead of time for a CUDA target, without a GPU (run by ``tests/test_triton.py``).

The interpreter executes the kernels' Python; only Triton's compiler sees type, layout and lowering errors.
``python -m tests.compile_kernels [--all]`` compiles each kernel to a cubin for sm_90 (``--all``: every dtype and
flag combination, otherwise one bfloat16 and one float64 set) and prints one line per kernel.
Run it with ``TRITON_INTERPRET`` unset: the kernels must be defined as compiled functions.
"""

import inspect
import os
import sys

# Triton is imported by main(), not here: pytest imports this module to collect doctests, and the kernels must
# be defined after tests/test_triton.py has chosen between the interpreter and the compiler.

_INPUT_POINTERS = ("z1_ptr", "z2_ptr", "dz1_ptr", "dz2_ptr")


def _signature(kernel, input_dtype, acc_dtype, constexprs: dict) -> dict:
    """Argument types as the launches of :mod:`redundancy._triton.launch` pass them (64-bit strides)."""
    import triton.language as tl

    pointer_types = {tl.float16: "*fp16", tl.bfloat16: "*bf16", tl.float32: "*fp32", tl.float64: "*fp64"}
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = pointer_types[input_dtype if name in _INPUT_POINTERS else acc_dtype]
        elif name.startswith("stride"):
            signature[name] = "i64"
        elif name in ("eps", "target"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    return signature


def kernel_variants(input_dtype, *, standardize: bool, row_sums: bool, unit_column_stride: bool):
    """``(kernel, constexprs)`` of every kernel for inputs of ``input_dtype``.

    ``unit_column_stride`` specializes the column strides to 1, as Triton does for contiguous inputs.
    """
    import triton.language as tl

    from redundancy._triton import kernels

    acc = tl.float64 if input_dtype == tl.float64 else tl.float32
    half = input_dtype in (tl.float16, tl.bfloat16)
    base = dict(STANDARDIZE=standardize, BLOCK_N=64, BLOCK_D=64, ACC=acc)
    if unit_column_stride:
        base.update(stride1_d=1, stride2_d=1)
    dot = dict(DOT=input_dtype, DOT_UPCAST=False, DOT_PRECISION="ieee")
    product = dict(PRODUCT_PRECISION="tf32" if half else "ieee", BLOCK_OWNED=32)
    return [
        (kernels._statistics_kernel, base),
        (kernels._cross_forward_kernel, {**base, **dot}),
        (kernels._cross_backward_kernel, {**base, **dot, **product}),
        (kernels._gram_forward_kernel, {**base, **dot, "ROW_SUMS": row_sums}),
        (kernels._gram_backward_kernel, {**base, **product, "ROW_SUMS": row_sums}),
    ]


def compile_all(combinations) -> None:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    for input_dtype, standardize, row_sums, unit in combinations:
        acc = tl.float64 if input_dtype == tl.float64 else tl.float32
        variants = kernel_variants(input_dtype, standardize=standardize, row_sums=row_sums, unit_column_stride=unit)
        for kernel, constexprs in variants:
            signature = _signature(kernel, input_dtype, acc, constexprs)
            source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
            compiled = triton.compile(source, target=target, options={"num_warps": 4, "num_stages": 2})
            assert compiled.asm.get("cubin"), f"{kernel.fn.__name__}: no cubin"
            print(f"{kernel.fn.__name__} {input_dtype} {standardize=} {row_sums=} {unit=}: ok", flush=True)


def main(argv: list[str]) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    import triton.language as tl

    if "--all" in argv:
        dtypes = (tl.float32, tl.bfloat16, tl.float16, tl.float64)
        flags = (True, False)
        combinations = [(dtype, s, r, u) for dtype in dtypes for s in flags for r in flags for u in flags]
    else:
        combinations = [(tl.bfloat16, True, True, True), (tl.float64, False, False, False)]
    compile_all(combinations)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
