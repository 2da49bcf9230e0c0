"""The render tests render in the pytest process: with fpdf2's internals replaced, as the render
processes do (:func:`app.render.patches.install`; tests/render/test_patches.py checks both ways)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def fpdf2_patches_installed() -> Iterator[None]:
    from app.render import patches

    patches.install()
    yield
