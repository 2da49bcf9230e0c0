"""pyproject.toml's filterwarnings: deprecations our code triggers fail the test; a library's
own stay warnings."""

from __future__ import annotations

import warnings

import pytest


def _warn_from(module: str, category: type[Warning] = DeprecationWarning) -> None:
    warnings.warn_explicit("old API", category, f"{module.replace('.', '/')}.py", 1, module=module)


@pytest.mark.parametrize("module", ["app", "app.main", "tests.test_warning_filters"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_our_deprecations_are_errors(module, category):
    with pytest.raises(category):
        _warn_from(module, category)


@pytest.mark.parametrize("module", ["apprise", "application", "testsuite", "pyhanko.sign.signers.pdf_cms"])
def test_other_modules_deprecations_stay_warnings(module):
    with warnings.catch_warnings(record=True) as recorded:  # keeps the filters (pytest.warns would not)
        _warn_from(module)
    assert [str(w.message) for w in recorded] == ["old API"]


def test_a_deprecated_call_in_our_code_fails():
    """What the filter is for: a library's warning with stacklevel=2 names its caller, our module."""

    def library_function() -> None:
        warnings.warn("library_function is deprecated", DeprecationWarning, stacklevel=2)

    with pytest.raises(DeprecationWarning):
        library_function()
