"""Every Triton kernel variant fits an sm_90 GPU: compiled for it on the CPU, resources read from the compiler.

``tests/compile_kernels.py`` compiles each variant that :mod:`redundancy._triton.launch` launches on a GPU (every
kernel, input dtype, flag and tile shape) for ``GPUTarget("cuda", 90, 32)`` and reports its shared memory,
registers, spilled bytes and matrix instructions. This test fails on shared memory over the sm_90 limit, on
register spills in half precision, and on float32 or float64 products that miss the tensor cores; it prints the
table that the GPU kernels page of the documentation shows.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from tests import compile_kernels

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
_MULTIPLYING = ("cross_tile", "gram_tile", "cross_gradient", "gram_gradient")
_HALF = ("bfloat16", "float16")


@pytest.fixture(scope="module")
def resources():
    """The rows of ``python -m tests.compile_kernels``, compiled in a process without ``TRITON_INTERPRET``."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=ROOT, TRITON_DEFAULT_FP_FUSION="1")
    result = subprocess.run(
        [sys.executable, "-m", "tests.compile_kernels"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    print("\n" + _format(rows))
    return rows


def _format(rows) -> str:
    header = f"{'kernel':<21}{'dtype':<9}{'flags':<22}{'tiles':<10}{'warps':>5}{'stages':>7}{'regs':>6}"
    header += f"{'spills':>8}{'shared':>8}  mma"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['kernel']:<21}{row['dtype']:<9}{row['flags'] or '-':<22}{row['tiles']:<10}{row['warps']:>5}"
            f"{row['stages']:>7}{row['registers']:>6}{row['spill_bytes']:>8}{row['shared']:>8}  {row['mma']}"
        )
    return "\n".join(lines)


@pytest.mark.triton
@pytest.mark.slow
def test_every_kernel_variant_fits_sm90(resources):
    variants = list(compile_kernels.variants())
    assert len(resources) == len(variants)
    assert {row["dtype"] for row in resources} == {"bfloat16", "float16", "float32", "float64"}
    assert {row["kernel"] for row in resources} == {variant[0] for variant in variants}
    failures = []
    for row in resources:
        name = f"{row['kernel']} {row['dtype']} {row['flags']} {row['tiles']}"
        if row["shared"] > compile_kernels.SHARED_LIMIT_SM90:
            failures.append(f"{name}: {row['shared']} B of shared memory > {compile_kernels.SHARED_LIMIT_SM90}")
        if row["dtype"] in _HALF and row["spill_bytes"]:
            failures.append(f"{name}: {row['spill_bytes']} B of register spills in half precision")
        if "in_place" in row["flags"] and not row["barriers"]:
            failures.append(f"{name}: rereads and overwrites its tile with no barrier in between")
        if row["kernel"] in _MULTIPLYING:
            mma = row["mma"]
            if row["dtype"] == "float64":
                expected = "f64"
            elif row["dtype"] == "float32" or row["kernel"].endswith("gradient"):
                expected = "tf32"
            else:
                expected = "bf16" if row["dtype"] == "bfloat16" else "f16"
            if "mma" not in mma or expected not in mma:
                failures.append(f"{name}: products run as {mma!r}, not on {expected} tensor cores")
    assert not failures, "\n".join(failures)
