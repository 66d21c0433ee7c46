"""Run lightly's and solo-learn's own loss tests against the adapters, then this project's parity suite.

Usage (from the repository root, in an environment where lightly and solo-learn's dependencies are installed;
see tests/compat/README.md)::

    python tests/compat/run_peers.py --lightly PATH/TO/lightly --solo PATH/TO/solo-learn

``PATH/TO/...`` are git checkouts of the two projects (their tests are not in the wheels). For each peer the
script runs that peer's Barlow Twins and VICReg loss test files with pytest, from the peer's checkout, with the
peer's loss swapped for the adapter of :mod:`redundancy.compat` in every process (the spawned DDP workers of
lightly's tests included): a ``sitecustomize`` module in a temporary folder on ``PYTHONPATH`` replaces the names
after the peer's module is imported, and the script checks that the swap took effect before it runs the tests.
Last it runs ``tests/compat`` of this repository with both peers importable, which compares the adapters with
the peers' own code (test_peers.py, and under 2 gloo processes test_lightly_distributed.py and
test_solo_distributed.py).

Tests that assert lightly's exception class (``AssertionError``, where the adapters raise ``ValueError`` by
design) or float32 bit-equality with one summation order are deselected and listed with the reason. The exit
status is non-zero if any run fails.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]

_ASSERTS_CLASS = "asserts AssertionError, where the adapter raises ValueError by design"
_BIT_EQUALITY = (
    "asserts that the float32 value equals the official formula's bit for bit (`==` on random 2x32 inputs); the "
    "adapter sums in another order, so it is equal on some draws only, and tests/compat/test_peers.py compares "
    "the values and gradients with lightly's to 1e-10 in float64 instead"
)

#: Peer -> (its test files, the tests deselected with the reason, the names swapped in each of its modules; the
#: adapter of each name has the same name in redundancy.compat.<peer>).
PEERS = {
    "lightly": (
        ["tests/loss/test_barlow_twins_loss.py", "tests/loss/test_vicreg_loss.py"],
        {
            "tests/loss/test_vicreg_loss.py::TestVICRegLoss::test_forward_pass__error_batch_size_1": _ASSERTS_CLASS,
            "tests/loss/test_vicreg_loss.py::TestVICRegLoss::test_forward_pass__error_different_shapes": _ASSERTS_CLASS,
            "tests/loss/test_vicreg_loss.py::TestVICRegLoss::test_forward__compare": _BIT_EQUALITY,
        },
        {
            "lightly.loss": ["BarlowTwinsLoss", "VICRegLoss"],
            "lightly.loss.barlow_twins_loss": ["BarlowTwinsLoss"],
            "lightly.loss.vicreg_loss": ["VICRegLoss"],
        },
    ),
    "solo": (
        ["tests/losses/test_barlow.py", "tests/losses/test_vicreg.py"],
        {},
        {
            "solo.losses": ["barlow_loss_func", "vicreg_loss_func"],
            "solo.losses.barlow": ["barlow_loss_func"],
            "solo.losses.vicreg": ["vicreg_loss_func"],
        },
    ),
}

_SITECUSTOMIZE = '''"""Swap {peer}'s losses for redundancy.compat's adapters in this process (from run_peers.py)."""
import importlib

import redundancy.compat.{adapter_module} as _adapters

for _module, _names in {swaps!r}.items():
    _module = importlib.import_module(_module)
    for _name in _names:
        setattr(_module, _name, getattr(_adapters, _name))
'''

# pytest's --deselect matches node-id prefixes (test_forward__compare would take test_forward__compare_vicregl with
# it): this plugin deselects exactly the listed tests.
_DESELECT_PLUGIN = '''"""Deselect exactly the tests of {peer} listed by run_peers.py."""
DESELECTED = {deselected!r}


def pytest_collection_modifyitems(config, items):
    dropped = [item for item in items if item.nodeid in DESELECTED]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid not in DESELECTED]
'''


def _environment(*paths: pathlib.Path, **variables: str) -> dict:
    environment = dict(os.environ, **variables)
    python_path = [str(path) for path in paths] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(python_path)
    return environment


def _run(command: list[str], *, cwd: pathlib.Path, env: dict) -> int:
    print(f"\n$ (cd {cwd} && {' '.join(command)})", flush=True)
    return subprocess.run(command, cwd=cwd, env=env).returncode


def run_peer(peer: str, checkout: pathlib.Path, scratch: pathlib.Path) -> int:
    """Run ``peer``'s own loss tests from ``checkout`` with its losses swapped for the adapters."""
    test_files, deselected, swaps = PEERS[peer]
    folder = scratch / f"swap-{peer}"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(peer=peer, adapter_module=peer, swaps=swaps))
    (folder / "deselect_exactly.py").write_text(_DESELECT_PLUGIN.format(peer=peer, deselected=sorted(deselected)))
    env = _environment(folder, REPOSITORY, checkout, USE_PYTEST_POOL="1")
    module, names = next(iter(swaps.items()))
    check = (
        f"import {module} as peer, redundancy.compat.{peer} as adapters; "
        + "; ".join(f"assert peer.{name} is adapters.{name}, '{module}.{name} is not swapped'" for name in names)
        + f"; print('{module}: ' + ', '.join({sorted(names)!r}) + ' are the adapters of redundancy.compat')"
    )
    status = _run([sys.executable, "-c", check], cwd=checkout, env=env)
    if status != 0:
        return status
    for test, reason in deselected.items():
        print(f"deselected {test}: {reason}")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "deselect_exactly", "-q", "-rs"]
    return _run([*command, *test_files], cwd=checkout, env=env)


def run_parity_suite(solo_checkout: pathlib.Path | None, scratch: pathlib.Path) -> int:
    """Run tests/compat of this repository with solo-learn's ``solo`` package importable (not its ``tests``)."""
    paths = []
    if solo_checkout is not None:
        folder = scratch / "solo-package"
        folder.mkdir()
        (folder / "solo").symlink_to(solo_checkout / "solo", target_is_directory=True)
        paths.append(folder)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "tests/compat"]
    return _run(command, cwd=REPOSITORY, env=_environment(*paths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lightly", type=pathlib.Path, help="a git checkout of lightly (lightly-ai/lightly)")
    parser.add_argument("--solo", type=pathlib.Path, help="a git checkout of solo-learn (vturrisi/solo-learn)")
    arguments = parser.parse_args(argv)
    if arguments.lightly is None and arguments.solo is None:
        parser.error("give --lightly, --solo or both")
    statuses = {}
    with tempfile.TemporaryDirectory() as scratch:
        for peer, checkout in (("lightly", arguments.lightly), ("solo", arguments.solo)):
            if checkout is not None:
                statuses[peer] = run_peer(peer, checkout.resolve(), pathlib.Path(scratch))
        solo = arguments.solo.resolve() if arguments.solo is not None else None
        statuses["tests/compat"] = run_parity_suite(solo, pathlib.Path(scratch))
    print("\n" + "\n".join(f"{name}: {'passed' if status == 0 else 'FAILED'}" for name, status in statuses.items()))
    return max(statuses.values())


if __name__ == "__main__":
    sys.exit(main())
