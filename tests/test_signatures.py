"""Every public loss's signature, its options dataclass and its docstring agree, and every option reaches the loss.

The options dataclass of each loss is the one description of its options (what the frame checks and the ranks
compare). The loss function spells the same options in its signature; its ``terms`` form, its multi-view form and
its Module take them from there (or from the dataclass) through typed decorators, so that IDEs, mypy and pyright
read every signature. These tests keep the spellings equal (names, order, defaults, annotations), check that the
docstring documents each argument once, and that each value passed reaches the frame unchanged. A type checker
then rejects a misspelt option in a user's file (``test_mypy_flags_misspelt_options_in_a_users_file``).
"""

import dataclasses
import inspect
import os
import pathlib
import re
import subprocess
import sys
import typing

import pytest
import torch

import redundancy
from redundancy._frame import Loss
from redundancy._frame import LossModule
from redundancy._frame import ViewSequence
from redundancy._registry import FAMILY
from redundancy._registry import Member

MEMBERS = [pytest.param(member, id=member.name) for member in FAMILY]


def _inputs(member: Member) -> list[str]:
    """The names of the positional inputs of a member's function."""
    spec = member.loss.inputs
    if isinstance(spec, ViewSequence):
        return ["views"]
    return [*spec.names, *spec.extra]


def _callables(member: Member) -> list[tuple[str, typing.Callable, list[str]]]:
    """``(what, callable, positional inputs)`` of a member: its function, its terms form, its Module's constructor."""
    found = [("function", member.function, _inputs(member))]
    if member.terms is not None:
        found.append(("terms", member.terms, _inputs(member)))
    found.append(("Module", member.module.__init__, ["self"]))
    return found


CALLABLES = [
    pytest.param(member, what, function, inputs, id=f"{member.name}-{what}")
    for member in FAMILY
    for what, function, inputs in _callables(member)
]


@pytest.mark.parametrize(("member", "what", "function", "inputs"), CALLABLES)
def test_signature_spells_the_options_of_the_dataclass(member, what, function, inputs):
    parameters = list(inspect.signature(function).parameters.values())
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keywords = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert positional == inputs
    assert [p for p in parameters if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)] == []
    fields = dataclasses.fields(member.loss.options)
    assert [p.name for p in keywords] == [f.name for f in fields], "names and order"
    assert [p.default for p in keywords] == [f.default for f in fields], "defaults"
    declared = typing.get_type_hints(member.loss.options)
    assert [p.annotation for p in keywords] == [declared[f.name] for f in fields], "annotations"
    assert inspect.signature(function).return_annotation is not inspect.Signature.empty


@pytest.mark.parametrize("member", MEMBERS)
def test_the_frame_reads_the_options_in_the_order_of_the_dataclass(member):
    assert [spec.name for spec in member.loss.specs] == [f.name for f in dataclasses.fields(member.loss.options)]
    assert member.module.loss is member.loss
    assert member.function.__name__ == member.loss.name
    assert getattr(redundancy, member.function.__name__) is member.function
    assert getattr(redundancy, member.module.__name__) is member.module


def _documented_arguments(docstring: str) -> list[str]:
    """The names an ``Args:`` section documents (several names may share one entry: ``a, b: ...``)."""
    match = re.search(r"\n    Args:\n((?:        .*\n|\n)+?)(?:\n    \S|\Z)", docstring + "\n")
    if match is None:
        return []
    names = []
    for entry in re.findall(r"^        (\S[^:]*):", match.group(1), re.M):
        names += [name.strip() for name in entry.split(",")]
    return names


@pytest.mark.parametrize("member", MEMBERS)
def test_the_docstring_documents_every_argument_once(member):
    documented = _documented_arguments(member.function.__doc__)
    expected = _inputs(member) + [f.name for f in dataclasses.fields(member.loss.options)]
    assert sorted(documented) == sorted(expected)
    assert len(documented) == len(set(documented)), "an argument documented twice"
    if member.terms is not None:  # the terms form points at the function instead of repeating its Args
        assert _documented_arguments(member.terms.__doc__) == []
        assert f":func:`{member.function.__name__}`" in member.terms.__doc__


class _Opened(Exception):
    """Raised by a patched :meth:`Loss.open` with what it received."""


def _sentinels(member: Member) -> dict:
    return {f.name: object() for f in dataclasses.fields(member.loss.options)}


def _open_capturing(self, arguments):
    raise _Opened(self, arguments)


def _example_inputs(member: Member) -> tuple:
    spec = member.loss.inputs
    if isinstance(spec, ViewSequence):
        return ([torch.randn(4, 3), torch.randn(4, 3)],)
    return tuple(torch.randn(4, 3) for _ in spec.names) + tuple(object() for _ in spec.extra)


@pytest.mark.parametrize(("member", "what", "function", "inputs"), [p for p in CALLABLES if "Module" not in p.id])
def test_every_option_reaches_the_frame_unchanged(monkeypatch, member, what, function, inputs):
    monkeypatch.setattr(Loss, "open", _open_capturing)
    sentinels, example = _sentinels(member), _example_inputs(member)
    with pytest.raises(_Opened) as opened:
        function(*example, **sentinels)
    loss, received = opened.value.args
    assert loss is member.loss
    inputs = member.loss.inputs.arguments
    assert all(received[name] is value for name, value in zip(inputs, example, strict=True))
    assert received.keys() == set(inputs) | sentinels.keys()
    assert all(received[name] is value for name, value in sentinels.items())


@pytest.mark.parametrize("member", MEMBERS)
def test_a_module_stores_every_option_and_passes_it_on(monkeypatch, member):
    monkeypatch.setattr(LossModule, "check", lambda self: None)
    monkeypatch.setattr(Loss, "open", _open_capturing)
    sentinels = _sentinels(member)
    module = member.module(**sentinels)
    assert all(getattr(module, name) is value for name, value in sentinels.items())
    assert list(module.options) == list(sentinels)
    with pytest.raises(_Opened) as opened:
        module(*_example_inputs(member))
    received = opened.value.args[1]
    assert all(received[name] is value for name, value in sentinels.items())


def _mypy_file() -> str:
    """A user's file: every public loss and Module called with a misspelt option, and one wrong literal each."""
    lines = ["import torch", "import redundancy", "", "z = torch.zeros(4, 3)", ""]
    for member in FAMILY:
        arguments = ", ".join("[z, z]" if name == "views" else "z" for name in _inputs(member))
        function = f"redundancy.{member.function.__name__}"
        module = f"redundancy.{member.module.__name__}"
        lines += [
            f"{function}({arguments}, distributd='global')  # E",
            f"{module}(gradient_convension='global')  # E",
            f"{function}({arguments}, distributed='globl')  # E",
            f"reveal_type({function})",
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_mypy_flags_misspelt_options_in_a_users_file(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (the dev extra has it)")
    path = tmp_path / "user.py"
    path.write_text(_mypy_file())
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(pathlib.Path(redundancy.__file__).parents[1])},
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    expected = [number for number, line in enumerate(_mypy_file().splitlines(), start=1) if line.endswith("# E")]
    assert sorted({int(line.split(":")[1]) for line in errors}) == expected, result.stdout
    revealed = [line for line in result.stdout.splitlines() if "Revealed type" in line]
    assert len(revealed) == len(FAMILY)
    for line in revealed:  # the real signature, not (*Any, **Any) -> Any
        assert "*Any" not in line, line
        assert re.search(r"gradient_convention: Literal\['global'(, |\] \| Literal\[)'official'\]", line), line
