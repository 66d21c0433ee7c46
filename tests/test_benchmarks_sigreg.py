"""benchmarks.sigreg: the two methods compute the same loss, the script runs and records every measurement, and the
committed run is whole."""

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from benchmarks import sigreg

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cpu-sigreg"


@pytest.mark.parametrize("method", sigreg.LEAN)
def test_the_methods_compute_the_official_loss_and_gradient(method):
    z = torch.randn(40, 12, dtype=torch.float64, requires_grad=True)
    directions = torch.randn(12, 16, dtype=torch.float64)
    agreement = sigreg.agreement(z, directions, 17, 3.0, method)
    assert agreement["value_relative_difference"] <= 1e-12
    assert agreement["gradient_relative_difference"] <= 1e-12


def test_the_script_runs_on_a_tiny_shape(tmp_path):
    output, table = tmp_path / "sigreg.json", tmp_path / "sigreg.md"
    arguments = ["--shapes", "64x16", "--slices", "8", "--knots", "9", "--rounds", "3", "--threads", "1"]
    command = [sys.executable, "-m", "benchmarks.sigreg", *arguments, "--json", str(output), "--markdown", str(table)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "| 64 | 16 | 8 | 9 | lean |" in completed.stdout and "| 64 | 16 | 8 | 9 | public |" in completed.stdout
    (result,) = json.loads(output.read_text())["results"]
    assert (result["n"], result["d"], result["slices"], result["knots"]) == (64, 16, 8, 9)
    for timing in result["methods"].values():
        assert len(timing["round_s"]) == len(timing["round_peak_bytes"]) == 3
        assert 0 < timing["p20_s"] <= timing["median_s"] <= timing["p80_s"]
    assert result["agreement"]["value_relative_difference"] <= 1e-5
    assert "3 interleaved rounds" in table.read_text()


def test_bad_arguments_are_named(capsys):
    for arguments, message in (
        (["--rounds", "0"], "--rounds and --calls must be at least 1"),
        (["--knots", "1"], "--knots at least 2"),
    ):
        with pytest.raises(SystemExit):
            sigreg.main(arguments)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("threads", [1, 2])
def test_the_committed_sigreg_run_is_whole(threads):
    saved = json.loads((RESULTS / f"sigreg-{threads}thread{'s' if threads > 1 else ''}.json").read_text())
    assert saved["environment"]["torch_threads"] == threads and saved["dtype"] == "float32"
    (result,) = saved["results"]
    assert (result["n"], result["d"], result["slices"], result["knots"]) == (2048, 1024, 256, 17)
    for timing in result["methods"].values():
        assert len(timing["round_s"]) == len(timing["round_peak_bytes"]) == 15
    lean, official = result["methods"]["lean"], result["methods"]["official"]
    assert result["memory_ratio"] == pytest.approx(official["peak_bytes"] / lean["peak_bytes"])


@pytest.mark.parametrize("threads", [1, 2])
def test_the_committed_run_through_the_public_function_is_whole(threads):
    results = ROOT / "benchmarks" / "results" / "cpu-sigreg-public"
    saved = json.loads((results / f"sigreg-{threads}thread{'s' if threads > 1 else ''}.json").read_text())
    assert saved["environment"]["torch_threads"] == threads and saved["dtype"] == "float32"
    (result,) = saved["results"]
    assert (result["n"], result["d"], result["slices"], result["knots"]) == (2048, 1024, 256, 17)
    assert set(result["methods"]) == {"public", "lean", "official"}
    for timing in result["methods"].values():
        assert len(timing["round_s"]) == len(timing["round_peak_bytes"]) == 15
    official = result["methods"]["official"]["peak_bytes"]
    for name in sigreg.LEAN:
        compared = result["against_official"][name]
        assert compared["memory_ratio"] == pytest.approx(official / result["methods"][name]["peak_bytes"])
        assert compared["agreement"]["value_relative_difference"] <= 1e-5
