"""benchmarks.peers: the measurements run for this library alone (the peers' rows left out, saying why), and the table
of the index and of the README is the one the committed run gives."""

import json
import pathlib
import re

import pytest

from benchmarks import peers
from tests.test_docs import _list_tables

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "peers"


@pytest.mark.distributed
@pytest.mark.slow
def test_the_measurements_run_without_the_peers():
    assert set(peers.implementations(None, None)) == {peers.OFFICIAL, peers.REDUNDANCY, peers.REDUNDANCY_OFFICIAL}
    measurements = {"command": "python -m benchmarks.peers"} | peers.measure(None, None, (16, 32), rounds=1)
    assert set(measurements["skipped"]) == {peers.LIGHTLY, peers.SOLO} and not measurements["sources"]

    ddp = measurements["ddp"]
    assert {(r["implementation"], tuple(r["shards"])) for r in ddp} == {
        (name, shards)
        for name in (peers.OFFICIAL, peers.REDUNDANCY, peers.REDUNDANCY_OFFICIAL)
        for shards in peers.SHARDS.values()
    }
    for name in (peers.OFFICIAL, peers.REDUNDANCY, peers.REDUNDANCY_OFFICIAL):
        assert peers.computes(ddp, name) == "global", name
    for result in ddp:
        expected = 1.0 if result["implementation"] == peers.REDUNDANCY else 1 / peers.WORLD_SIZE
        assert result["gradient_norm_ratio"] == pytest.approx(expected, rel=1e-12), result
        assert result["gradient_relative_error_at_best_scale"] < 1e-12, result
    # the re-implementation of main.py is gradient_convention="official", and the reference in one process
    assert measurements["official_agreement"]["value"] < 1e-12
    assert measurements["official_agreement"]["gradient_norm_ratio"] < 1e-12
    assert max(measurements["official_agreement_one_process"].values()) < 1e-12

    assert set(measurements["memory"]) == set(peers.implementations(None, None))
    assert all(m["median_mib"] >= 0 for m in measurements["memory"].values())
    ours = measurements["fp16"]["results"][peers.REDUNDANCY]
    for case in ours.values():
        assert case["finite"] and case["finite_gradient"] and case["relative_error"] < 1e-5, case

    rows = peers.summary(measurements)
    assert [row[0] for row in rows[1:]] == ["official main.py", peers.REDUNDANCY]
    assert rows[1][2] == "0.50× (1/W)" and rows[2][1:3] == ["the global batch's", "1.00× (exact)"]
    text = peers.markdown(measurements)
    assert f"- {peers.LIGHTLY}: left out, no lightly checkout given (--lightly)" in text
    assert f"- {peers.SOLO}: left out, no solo-learn checkout given (--solo)" in text


def test_a_checkout_without_the_peer_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lightly/loss/barlow_twins_loss\.py"):
        peers.load_lightly(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"solo/losses/barlow\.py"):
        peers.load_solo(str(tmp_path))


def _committed_summary() -> list[list[str]]:
    measurements = json.loads((COMMITTED / "peers.json").read_text())
    assert not measurements["skipped"], "the committed run leaves a peer out"
    rows = peers.summary(measurements)
    assert len(rows) == 1 + len(peers.SUMMARY)
    return rows


def test_the_committed_peers_run_is_whole():
    measurements = json.loads((COMMITTED / "peers.json").read_text())
    assert set(measurements["sources"]) == {peers.LIGHTLY, peers.SOLO}
    assert measurements["memory_shape"] == list(peers.MEMORY_SHAPE)
    for name in peers.SUMMARY:
        assert name in measurements["memory"] and name in measurements["fp16"]["results"], name
    assert peers.computes(measurements["ddp"], peers.REDUNDANCY) == "global"
    assert peers.computes(measurements["ddp"], peers.OFFICIAL) == "global"
    assert peers.computes(measurements["ddp"], peers.LIGHTLY) == "per-rank statistics"
    assert peers.computes(measurements["ddp"], peers.SOLO) == "per-rank statistics"
    assert (COMMITTED / "peers.md").read_text().count("| official main.py |") == 1  # the summary row


def test_the_readme_table_is_that_of_the_committed_run():
    expected = _committed_summary()
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| " + " | ".join(expected[0]) + " |")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not re.fullmatch(r"\|(:?-+:?\|)+", line):
            table.append([cell.strip() for cell in line.strip("|").split(" | ")])
    assert table == expected
    assert "benchmarks/results/peers/" in "\n".join(lines[start + len(table) : start + len(table) + 8])


def test_the_index_table_is_that_of_the_committed_run():
    expected = _committed_summary()
    text = (ROOT / "docs" / "index.rst").read_text()
    tables = [table for table in _list_tables(text) if table and table[0] == expected[0]]
    assert tables == [expected]
    first_code_block = text.index(".. code-block:: python")
    assert first_code_block < text.index(".. list-table::") < text.index(".. figure::")
