"""Every loss of the family through the battery of ``tests/family.py``, in one process.

The cases come from the registry (``redundancy._registry.FAMILY``) and each loss's options dataclass: a loss added
to the family is tested here without an edit. What is particular to one loss (its golden values, its formula's
special cases) is tested in its own file, ``tests/test_<loss module>.py``.
"""

import numpy as np
import pytest
import torch

from tests import family
from tests.family import FAMILY

CASES = [pytest.param(case, id=case.id) for case in family.cases()]
#: Each member with each algorithm, every other option at its default.
ALGORITHMS = [pytest.param(case, id=case.id) for case in family.algorithm_cases()]
#: Each member with each algorithm that names one path (not "auto": an exported range of N must not cross the
#: crossover that "auto" chooses by).
PATHS = [pytest.param(case, id=case.id) for case in family.path_cases()]
#: Each member as called with every option at its default.
DEFAULTS = [pytest.param(case, id=case.member.name) for case in family.default_cases()]
MEMBERS = [pytest.param(member, id=member.name) for member in FAMILY]
REAL_OPTIONS = [
    pytest.param(member, field.name, id=f"{member.name}-{field.name}")
    for member in FAMILY
    for field in family.option_fields(member.loss)
    if field.kind == "real"
]


def test_the_battery_covers_every_member_and_option_choice():
    """Every member has cases, and every choice of every option (but those left to their own tests) is in one, in
    one process or (``strategy``) on several ranks."""
    everywhere = family.cases() + family.cases(ranks=True)
    for member in FAMILY:
        options = [case.options for case in everywhere if case.member is member]
        assert options, member.name
        for name, choices, default, kind in family.option_fields(member.loss):
            if name in family.RANKS:
                continue
            for choice in choices:
                if (name, choice) not in family.LEFT_OUT:
                    assert any(o.get(name, default) == choice for o in options), (member.name, name, choice)
            if kind in ("real", "integer"):
                assert any(o.get(name, default) != default for o in options), (member.name, name)


@pytest.mark.parametrize("member", [param for param in MEMBERS if family.numeric_fields(param.values[0].loss)])
def test_the_reference_takes_every_option_that_changes_the_value(member):
    case = family.Case(member, "reals", {})
    off = {field.name: family.off_default(field) for field in family.numeric_fields(member.loss)}
    views, extra = case.example(9, 5)
    moved = family.Case(member, "reals", off)
    assert not torch.equal(moved.reference(extra)(*views), case.reference(extra)(*views))
    family.assert_relative(moved.function(extra)(*views), moved.reference(extra)(*views), 1e-10, "moved options")


# ------------------------------------------------------------------------------------------------ values, gradients


@pytest.mark.parametrize("case", CASES)
def test_float64_values_and_gradients_equal_the_reference(case):
    case.check_reference()


@pytest.mark.parametrize("case", CASES)
def test_function_terms_and_module_agree(case):
    case.check_forms()


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_in_float64(case):
    case.check_gradcheck()


@pytest.mark.parametrize("case", CASES)
def test_gradient_penalty_equals_autograd_through_the_reference(case):
    case.check_gradient_penalty()


@pytest.mark.parametrize("case", CASES)
def test_hessian_equals_the_reference(case):
    case.check_hessian()


@pytest.mark.parametrize("case", ALGORITHMS)
def test_torch_func_equals_autograd_and_a_loop(case):
    case.check_torch_func()


@pytest.mark.parametrize("case", ALGORITHMS)
def test_non_contiguous_inputs_equal_contiguous_ones(case):
    case.check_non_contiguous()


# ------------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", family.DTYPES, ids=str)
@pytest.mark.parametrize("case", PATHS)
def test_dtype_tolerance_table(case, dtype):
    case.check_dtype(dtype)


@pytest.mark.parametrize("case", ALGORITHMS)
def test_autocast_does_not_change_the_loss(case):
    case.check_autocast()


# ------------------------------------------------------------------------------------------------ compiled


@pytest.mark.slow
@pytest.mark.parametrize("case", DEFAULTS)
def test_compiles_with_fullgraph_and_equals_eager(case):
    case.check_compile()


@pytest.mark.slow
@pytest.mark.parametrize("case", ALGORITHMS)
def test_dynamic_compile_traces_once_for_every_batch_size(case):
    case.check_dynamic_compile()


@pytest.mark.slow
@pytest.mark.parametrize("case", PATHS)
def test_export_with_a_dynamic_batch_dimension_equals_eager(case):
    case.check_export()


# ------------------------------------------------------------------------------------------------ Modules, options


@pytest.mark.parametrize("member", MEMBERS)
def test_modules_with_numpy_options_survive_pickle_and_deepcopy(member):
    family.check_module_copies(member, family.numpy_options(member.loss, np))


@pytest.mark.parametrize("member", MEMBERS)
def test_modules_take_options_by_keyword_only(member):
    with pytest.raises(TypeError):
        member.module(1.0)


@pytest.mark.parametrize("member", MEMBERS)
def test_numpy_options_equal_python_numbers_of_the_same_value(member):
    """A numpy scalar option gives the value of the Python number (or string) it equals."""
    options = family.numpy_options(member.loss, np)
    python = {name: value.item() for name, value in options.items()}
    case = family.Case(member, "", {})
    views, extra = case.example(12, 6)
    arguments = case.kind.arguments(views, extra)
    assert torch.equal(member.function(*arguments, **options), member.function(*arguments, **python))


@pytest.mark.parametrize(("member", "option"), REAL_OPTIONS)
def test_a_real_option_refuses_a_tensor_an_array_and_an_integer_beyond_float(member, option):
    """Options are plain numbers: a 0-dim tensor (a scheduled or learned weight) or a numpy array is refused by a
    TypeError naming the option, and an integer too large for a float by a ValueError naming it, at the call and at
    the Module's construction."""
    case = family.Case(member, "", {})
    arguments = case.kind.arguments(*case.example(8, 4))
    for value, error, words in (
        (torch.tensor(0.5), TypeError, rf"{option} must be a real number.*got Tensor"),
        (np.array([0.5]), TypeError, rf"{option} must be a real number"),
        (10**400, ValueError, option),
    ):
        with pytest.raises(error, match=words):
            member.function(*arguments, **{option: value})
        with pytest.raises(error, match=words):
            member.module(**{option: value})


@pytest.mark.parametrize("member", [param for param in MEMBERS if "correction" in param.values[0].loss.option_names])
def test_correction_takes_what_python_takes(member):
    """``correction`` refuses ``True`` and ``numpy.True_`` (a bool is not 0 or 1) and takes numpy integers."""
    for value in (True, np.True_):
        with pytest.raises(ValueError, match="correction"):
            member.module(correction=value)
    case = family.Case(member, "", {})
    arguments = case.kind.arguments(*case.example(8, 4))
    assert torch.equal(member.function(*arguments, correction=np.int64(0)), member.function(*arguments, correction=0))


@pytest.mark.parametrize("member", MEMBERS)
def test_one_process_ignores_the_options_of_ranks(member):
    """``distributed``, ``gradient_convention`` and each ``strategy`` give the value of the defaults, bit for bit."""
    case = family.Case(member, "", {})
    arguments = case.kind.arguments(*case.example(12, 6))
    expected = member.function(*arguments)
    strategies = [
        {"strategy": c}
        for name, choices, _, _ in family.option_fields(member.loss)
        if name == "strategy"
        for c in choices
    ]
    for options in ({"distributed": "local"}, {"gradient_convention": "official"}, *strategies):
        assert torch.equal(member.function(*arguments, **options), expected), options


@pytest.mark.parametrize("member", MEMBERS)
def test_bad_options_of_ranks_are_named_at_the_call_and_by_the_module(member):
    case = family.Case(member, "", {})
    arguments = case.kind.arguments(*case.example(8, 4))
    for options, error in (
        ({"distributed": "globally"}, ValueError),
        ({"gradient_convention": "mean"}, ValueError),
        ({"group": "world"}, TypeError),
    ):
        (name,) = options
        with pytest.raises(error, match=name):
            member.function(*arguments, **options)
        with pytest.raises(error, match=name):
            member.module(**options)


@pytest.mark.parametrize("member", MEMBERS)
def test_a_bad_first_view_is_named(member):
    """Not a tensor, 1-D, integer, too few rows: each raises an error naming the view."""
    case = family.Case(member, "", {})
    views, extra = case.example(8, 4)
    first = case.kind.names(len(views))[0]
    too_few = member.loss.min_rows - 1
    for bad, error, words in (
        (None, TypeError, f"{first} must be a torch.Tensor, got NoneType"),
        (views[0][:, 0], ValueError, rf"{first} must be 2-D of shape \(N, D\), got shape \(8,\)"),
        (views[0].long(), TypeError, f"{first} must have a floating-point dtype, got torch.int64"),
    ):
        with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
            member.function(*case.kind.arguments([bad, *views[1:]], extra))
    short = [view[:too_few] for view in views]
    _, short_extra = case.kind.extra((too_few,))
    with pytest.raises(ValueError, match="at least"):
        member.function(*case.kind.arguments(short, short_extra))
