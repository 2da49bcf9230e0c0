"""Font objects from the per-process cache (app.render.fontoutput): fpdf2's bytes, shared by documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.render import fontoutput, fontsubset
from app.render import pdf as pdf_module
from app.render.metadata import ArchiveInfoProducer
from app.render.streams import ParkedPagesProducer

from .helpers import ASCII, EXTRA, LATIN, pdftotext, render_bodies, write
from .test_pdfa import pdfa_problems


class Fpdf2FontOutput(ParkedPagesProducer, ArchiveInfoProducer):
    """The render's output producer without :class:`app.render.fontoutput.ArchiveOutputProducer`:
    fpdf2's own font objects, everything else as the render writes it."""


def clear_caches() -> None:
    """A process as after its start: no font output, no tier state."""
    fontoutput.cache_clear()
    fontsubset.cache_clear()


def text_of(data: bytes, tmp_path: Path, name: str) -> str:
    return " ".join(pdftotext(write(tmp_path, data, name))[0].split())


def test_documents_with_different_glyph_sets_all_extract(tmp_path: Path):
    clear_caches()
    documents = {"ascii": (ASCII,), "latin": (LATIN,), "extra": (EXTRA, LATIN), "ascii-again": (ASCII,)}
    for name, bodies in documents.items():
        text = text_of(render_bodies(*bodies), tmp_path, f"{name}.pdf")
        for body in bodies:
            assert " ".join(body.split()) in text, name


def test_output_is_deterministic_with_a_cold_or_warm_cache():
    for bodies in ((ASCII,), (LATIN,), (EXTRA,)):
        clear_caches()
        cold = render_bodies(*bodies)
        warm = render_bodies(*bodies)
        render_bodies(ASCII, LATIN, EXTRA)  # other documents in between leave nothing behind
        assert render_bodies(*bodies) == cold == warm


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN,), (EXTRA, LATIN), (ASCII, "<b>bold</b> <i>ä</i>")])
@pytest.mark.parametrize("pdfa", [True, False])
def test_cached_font_objects_are_the_bytes_fpdf2_writes(monkeypatch, bodies, pdfa):
    clear_caches()
    render_bodies(ASCII)  # the tier entries come from the cache below, not from this document
    cached = render_bodies(*bodies, pdfa=pdfa)
    monkeypatch.setattr(pdf_module, "_OutputProducer", Fpdf2FontOutput)
    assert render_bodies(*bodies, pdfa=pdfa) == cached


def test_documents_of_tier_characters_share_one_font_output():
    clear_caches()
    render_bodies(ASCII)
    first = fontoutput.cache_info()
    render_bodies("Another text, other ASCII letters: XYZ qj 0123456789 !?")
    second = fontoutput.cache_info()
    assert second["misses"] == first["misses"] and second["hits"] > first["hits"]
    render_bodies(LATIN)  # tier 2 taken: one new entry per face drawn, then shared as well
    third = fontoutput.cache_info()
    render_bodies("Größe: 5 €, naïve café – “quoted”")
    assert fontoutput.cache_info()["misses"] == third["misses"] > second["misses"]


def test_a_glyph_outside_the_tiers_gets_its_own_subset(tmp_path: Path):
    clear_caches()
    render_bodies(LATIN)
    before = fontoutput.cache_info()["misses"]
    data = render_bodies(LATIN + " Ж")
    assert fontoutput.cache_info()["misses"] == before + 1  # the regular face only
    assert "Ж" in text_of(data, tmp_path, "extra.pdf")
    assert pdfa_problems(data, tmp_path) == []
