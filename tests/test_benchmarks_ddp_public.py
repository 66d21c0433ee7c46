"""benchmarks.ddp_public_implementations: the script runs (this library's implementations, two gloo ranks) and the
committed run is whole."""

import json
import pathlib

import pytest

from benchmarks import ddp_public_implementations as ddp

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.distributed
@pytest.mark.slow
def test_this_librarys_losses_under_ddp_are_those_of_one_process():
    results = [r for r in ddp.measure(None, None) if r["implementation"].startswith("redundancy.")]
    assert {r["implementation"] for r in results} == {
        "redundancy.sigreg_loss",
        "redundancy.lejepa_loss",
        "redundancy.mmcr_loss",
    }
    for result in results:
        assert result["values"] == [pytest.approx(result["one_process_value"], rel=1e-5)] * ddp.WORLD_SIZE
        assert result["gradient_relative_error"] < 1e-5, result
    assert "| redundancy.mmcr_loss | 16 + 48 |" in ddp.markdown(results)


def test_the_committed_run_is_whole():
    saved = json.loads((ROOT / "benchmarks" / "results" / "ddp-public" / "ddp.json").read_text())
    rows = {(r["implementation"], tuple(r["shards"])) for r in saved["results"]}
    names = {name for name, _ in rows}
    assert len(names) == 8 and all(name.startswith(("official", "lightly", "redundancy.")) for name in names)
    for name in names:  # both shardings, but for the official MMCR, which needs equal shards
        expected = {ddp.SHARDS["equal"]} if name in ddp.EQUAL_ONLY else set(ddp.SHARDS.values())
        assert {shards for other, shards in rows if other == name} == expected, name
    for result in saved["results"]:
        assert len(result["values"]) == ddp.WORLD_SIZE
        if result["implementation"].startswith("redundancy."):
            assert result["gradient_relative_error"] < 1e-5
