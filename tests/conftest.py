"""Test-suite setup: fixed seeds, TF32 off, a Hypothesis profile, the golden values of the published code, and
the skip of the tests marked ``triton`` where Triton is not installed."""

import importlib.util
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

#: Fixed float64 inputs and the values the published implementations compute on them (see tests/golden/README.md).
GOLDEN_PATH = pathlib.Path(__file__).resolve().parent / "golden" / "losses.json"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``triton`` is skipped, saying why, where Triton is not installed (a plain ``.[test]`` install,
    macOS, Windows): ``.[test]`` alone passes the suite."""
    if item.get_closest_marker("triton") is not None and importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed; on Linux, pip install 'redundancy[triton]'")


@pytest.fixture(autouse=True)
def _seed_rngs():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def golden_cases():
    """The fixed float64 inputs and published values of ``tests/golden/losses.json``."""
    return json.loads(GOLDEN_PATH.read_text())["cases"]
