"""Test-suite setup: fixed seeds, TF32 off, a Hypothesis profile, the golden values of the published code."""

import json
import os
import pathlib

import pytest
import torch
from hypothesis import settings

# Without CUDA the Triton kernels run in Triton's interpreter (tests/test_triton.py). Triton reads this variable
# when it is imported, which may happen while pytest collects doctests: set it before any collection.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

GOLDEN_PATH = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "losses.json"


@pytest.fixture(autouse=True)
def _seed_rngs():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def golden_cases():
    """The fixed float64 inputs and published values of ``../shared/golden/losses.json``."""
    path = pathlib.Path(os.environ.get("REDUNDANCY_GOLDEN", GOLDEN_PATH))
    if not path.exists():
        message = f"golden values not found at {path} (set REDUNDANCY_GOLDEN)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has ../shared beside the clone: a skip there would hide a regression
        pytest.skip(message)
    return json.loads(path.read_text())["cases"]
