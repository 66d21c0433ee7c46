"""``normalization=``, the deprecated spelling of ``correction`` and ``standardize``: still accepted for one release.

Every entry point that took it still does (the functions, their ``terms`` forms, the Modules' constructors, the
helpers and the references), with one :class:`FutureWarning` naming the replacement, pointing at the caller's
line, and the value of the new spelling; passing both spellings is a :class:`TypeError` naming both.
"""

import pathlib
import re
import warnings

import pytest
import torch

import redundancy
from redundancy import reference
from tests.utils import spawn_gloo

#: The old value -> the new options it means.
MEANINGS = {"batchnorm": {"correction": 0}, "std": {"correction": 1}, "none": {"standardize": False}}
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _inputs():
    generator = torch.Generator().manual_seed(15)
    z1, z2, z3 = (torch.randn(12, 5, dtype=torch.float64, generator=generator) * 2 + 1 for _ in range(3))
    permutation = torch.randperm(12, generator=generator)
    return z1, z2, z3, permutation


def _summary(summary) -> torch.Tensor:
    return torch.stack([summary.mean_diagonal, summary.off_diagonal_rms])


#: name -> options -> a tensor: each entry point of the family that takes the standardization's options.
ENTRY_POINTS = {
    "barlow_twins_loss": lambda z1, z2, z3, p, **o: redundancy.barlow_twins_loss(z1, z2, **o),
    "barlow_twins_terms": lambda z1, z2, z3, p, **o: torch.stack(redundancy.barlow_twins_terms(z1, z2, **o)),
    "BarlowTwinsLoss": lambda z1, z2, z3, p, **o: torch.stack(redundancy.BarlowTwinsLoss(**o).terms(z1, z2)),
    "multiview_barlow_twins_loss": lambda z1, z2, z3, p, **o: redundancy.multiview_barlow_twins_loss([z1, z2, z3], **o),
    "multiview_barlow_twins_terms": lambda z1, z2, z3, p, **o: torch.stack(
        redundancy.multiview_barlow_twins_terms([z1, z2, z3], **o)
    ),
    "MultiviewBarlowTwinsLoss": lambda z1, z2, z3, p, **o: redundancy.MultiviewBarlowTwinsLoss(**o)([z1, z2, z3]),
    "cca_ssg_loss": lambda z1, z2, z3, p, **o: redundancy.cca_ssg_loss(z1, z2, **o),
    "cca_ssg_terms": lambda z1, z2, z3, p, **o: torch.stack(redundancy.cca_ssg_terms(z1, z2, **o)),
    "CCASSGLoss": lambda z1, z2, z3, p, **o: redundancy.CCASSGLoss(**o)(z1, z2),
    "mixed_barlow_twins_regularizer": lambda z1, z2, z3, p, **o: redundancy.mixed_barlow_twins_regularizer(
        z1, z2, z3, p, 0.3, **o
    ),
    "MixedBarlowTwinsRegularizer": lambda z1, z2, z3, p, **o: redundancy.MixedBarlowTwinsRegularizer(**o)(
        z1, z2, z3, p, 0.3
    ),
    "batch_standardize": lambda z1, z2, z3, p, **o: redundancy.batch_standardize(z1, **o),
    "cross_correlation": lambda z1, z2, z3, p, **o: redundancy.cross_correlation(z1, z2, **o),
    "cross_correlation_summary": lambda z1, z2, z3, p, **o: _summary(redundancy.cross_correlation_summary(z1, z2, **o)),
    "batch_standardize_reference": lambda z1, z2, z3, p, **o: reference.batch_standardize_reference(z1, **o),
    "barlow_twins_loss_reference": lambda z1, z2, z3, p, **o: reference.barlow_twins_loss_reference(z1, z2, **o),
    "barlow_twins_terms_reference": lambda z1, z2, z3, p, **o: torch.stack(
        reference.barlow_twins_terms_reference(z1, z2, **o)
    ),
    "cca_ssg_loss_reference": lambda z1, z2, z3, p, **o: reference.cca_ssg_loss_reference(z1, z2, **o),
    "mixed_barlow_twins_regularizer_reference": lambda z1, z2, z3, p, **o: (
        reference.mixed_barlow_twins_regularizer_reference(z1, z2, z3, p, 0.3, **o)
    ),
    "cross_correlation_summary_reference": lambda z1, z2, z3, p, **o: torch.stack(
        reference.cross_correlation_summary_reference(z1, z2, **o)
    ),
}


@pytest.mark.parametrize("old", sorted(MEANINGS))
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_alias_warns_once_and_gives_the_value_of_the_new_spelling(entry_point, old):
    evaluate, inputs, new = ENTRY_POINTS[entry_point], _inputs(), MEANINGS[old]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = evaluate(*inputs, normalization=old)
    replacement = ", ".join(f"{name}={value!r}" for name, value in new.items())
    assert [w.category for w in caught] == [FutureWarning], [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert f"normalization={old!r} is deprecated" in message and f"pass {replacement} instead" in message
    assert caught[0].filename == __file__  # the warning points at the caller's line, not into the library
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        expected = evaluate(*inputs, **new)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("new", ["correction", "standardize"])
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_alias_with_its_replacement_is_a_type_error_naming_both(entry_point, new):
    value = {"correction": 1, "standardize": True}[new]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # raised before any warning
        with pytest.raises(TypeError, match=rf"got both normalization= \(deprecated\) and {new}="):
            ENTRY_POINTS[entry_point](*_inputs(), normalization="std", **{new: value})


@pytest.mark.parametrize("entry_point", ["barlow_twins_loss", "CCASSGLoss", "cross_correlation"])
def test_unknown_alias_value_names_the_alias(entry_point):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"normalization must be one of \('batchnorm', 'std', 'none'\)"):
            ENTRY_POINTS[entry_point](*_inputs(), normalization="layernorm")


def test_module_built_with_the_alias_holds_the_new_spelling():
    with pytest.warns(FutureWarning, match="normalization='std' is deprecated"):
        module = redundancy.BarlowTwinsLoss(normalization="std", lambd=0.01)
    assert module.correction == 1 and module.standardize is True
    assert module.options == redundancy.BarlowTwinsLoss(correction=1, lambd=0.01).options
    assert "normalization" not in repr(module) and not hasattr(module, "normalization")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stored in the new spelling: calling it warns about nothing
        z1, z2, *_ = _inputs()
        module(z1, z2)


def test_unknown_option_is_still_a_type_error():
    z1, z2, *_ = _inputs()
    with pytest.raises(TypeError, match=r"barlow_twins_loss\(\) got an unexpected keyword argument 'normalisation'"):
        redundancy.barlow_twins_loss(z1, z2, normalisation="std")
    with pytest.raises(TypeError, match=r"cross_correlation\(\) got an unexpected keyword argument 'unbiased'"):
        redundancy.cross_correlation(z1, z2, unbiased=True)


def test_signatures_show_the_new_spelling_only():
    import inspect

    for function in (redundancy.barlow_twins_loss, redundancy.BarlowTwinsLoss, redundancy.batch_standardize):
        parameters = inspect.signature(function).parameters
        assert "correction" in parameters and "standardize" in parameters and "normalization" not in parameters


def test_docs_list_the_deprecated_alias_and_its_replacements():
    text = " ".join(page.read_text() for page in sorted(DOCS.glob("*.rst")))
    text = re.sub(r"\s+", " ", text)
    assert "``normalization=`` is deprecated" in text
    for old, new in MEANINGS.items():
        ((name, value),) = new.items()
        assert f'``normalization="{old}"`` → ``{name}={value!r}``' in text, old


# ------------------------------------------------------------------------------------------------ process group


def _outcome(function) -> tuple[str, object]:
    try:
        value = function()
    except Exception as error:
        return f"{type(error).__name__}: {error}", None
    return "no error", value.detach()


def _spelling_on_ranks(rank: int, world_size: int) -> dict:
    """Rank 1 spells the options the old way (or wrongly); the others the new way."""
    generator = torch.Generator().manual_seed(rank)
    z1, z2 = (torch.randn(3 + rank, 5, dtype=torch.float64, generator=generator) for _ in range(2))
    old = rank == 1
    loss = redundancy.barlow_twins_loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return {
            "same": _outcome(lambda: loss(z1, z2, **({"normalization": "std"} if old else {"correction": 1}))),
            "expected": _outcome(lambda: loss(z1, z2, correction=1)),
            "differs": _outcome(lambda: loss(z1, z2, **({"normalization": "std"} if old else {}))),
            "both": _outcome(lambda: loss(z1, z2, **({"normalization": "std", "correction": 1} if old else {}))),
            "after": _outcome(lambda: loss(z1, z2)),
        }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return spawn_gloo(_spelling_on_ranks, 3, tmp_path_factory.mktemp("deprecated"), timeout=20.0)


@pytest.mark.distributed
def test_ranks_compare_the_options_the_alias_stands_for(ranks):
    """The ranks compare ``correction`` and ``standardize``, whichever spelling each rank used: the alias on one
    rank and the new spelling on the others is one loss; the alias for another divisor is a mismatch raised on
    every rank; both spellings on one rank raise the TypeError on every rank, and the next call is aligned."""
    for rank, results in enumerate(ranks):
        assert results["same"][0] == "no error", f"rank {rank}: {results['same'][0]}"
        assert torch.equal(results["same"][1], results["expected"][1]), f"rank {rank}"
        assert torch.equal(results["same"][1], ranks[0]["same"][1]), f"rank {rank}"
        assert "correction" in results["differs"][0] and "Error" in results["differs"][0], f"rank {rank}"
        assert "got both normalization= (deprecated) and correction=" in results["both"][0], f"rank {rank}"
        assert results["after"][0] == "no error", f"rank {rank}: {results['after'][0]}"
