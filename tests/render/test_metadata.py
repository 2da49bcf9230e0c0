"""The metadata of a PDF/A archive: what ``pdfinfo`` shows (the document information dictionary)
is what the XMP packet says, entry for entry (app.render.metadata)."""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path

from pyhanko.pdf_utils.generic import parse_pdf_date
from pyhanko.pdf_utils.reader import PdfFileReader

from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import EmbeddedFile
from tests.verify import pdftotext, verapdf

from .helpers import ARCHIVED_AT, load, pdfinfo, write, xmp_properties

#: Document information dictionary entry → the XMP property (as tests.render.helpers.xmp_properties
#: names it) it must equal (ISO 19005-1 §6.7.3).
TEXT_PAIRS = {
    "/Title": "title",
    "/Author": "creator",
    "/Subject": "description",
    "/Keywords": "Keywords",
    "/Creator": "CreatorTool",
    "/Producer": "Producer",
}
DATE_PAIRS = {"/CreationDate": "CreateDate", "/ModDate": "ModifyDate"}

#: A title and service name with what the two encodings treat differently: non-ASCII text
#: (UTF-16BE in /Info), characters outside the BMP, PDF string delimiters, XML markup, and a
#: line feed (read back as a space from a raw XML attribute).
ODD_TITLE = "Prüfung (Ωμέγα) 😀 \\ <b>&amp;</b> 'x' \"y\"\nzweite Zeile"
ODD_SERVICE = "Archiv\nDienst ü"


def render(
    tmp_path: Path, *, title: str | None = None, tags: list[str] | None = None, **options: object
) -> Path:
    ticket = load("ticket-expand.json")
    if title is not None:
        ticket["title"] = title
    rendered = render_ticket_pdf(
        ticket,
        load("articles-by-ticket.json"),
        load("tags.json")["tags"] if tags is None else tags,
        archived_at=ARCHIVED_AT,
        options=RenderOptions(timezone="Europe/Berlin", **options),  # type: ignore[arg-type]
    )
    return write(tmp_path, rendered.data)


def info_and_xmp(path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """The trailer's ``/Info`` (text decoded) and the XMP properties, each parsed on its own."""
    reader = PdfFileReader(io.BytesIO(path.read_bytes()))
    info = reader.trailer["/Info"]
    return {key: info[key] for key in info}, xmp_properties(reader.root["/Metadata"].data)


def assert_info_equals_xmp(path: Path) -> dict[str, object]:
    info, xmp = info_and_xmp(path)
    assert set(info) == set(TEXT_PAIRS) | set(DATE_PAIRS)
    for key, prop in TEXT_PAIRS.items():
        assert str(info[key]) == xmp[prop], key
    for key, prop in DATE_PAIRS.items():
        in_info, in_xmp = parse_pdf_date(str(info[key])), datetime.fromisoformat(xmp[prop])
        assert in_info == in_xmp == ARCHIVED_AT, key  # the same instant …
        assert in_info.utcoffset() == in_xmp.utcoffset(), key  # … in the same time zone
    return info


def test_pdfinfo_shows_the_metadata_of_a_pdfa_archive(tmp_path: Path):
    path = render(tmp_path)
    shown = pdfinfo(path)
    assert shown["Title"] == "Ticket #25004711: Rechnung 2025-0117: Position 3 doppelt berechnet"
    assert shown["Author"] == "zammad-pdf-archiver"
    assert shown["Subject"].startswith("Zammad ticket #25004711 with 4 articles, archived 2025-03-07")
    assert shown["Keywords"] == "rechnung, reklamation, pdf:sign"
    assert shown["Creator"].startswith("zammad-pdf-archiver ")
    assert shown["Producer"].startswith("fpdf2 ")
    assert "Mar  7" in shown["CreationDate"] and "2025" in shown["CreationDate"]
    assert shown["ModDate"] == shown["CreationDate"]
    assert shown["Metadata Stream"] == "yes"
    assert_info_equals_xmp(path)


def test_info_equals_xmp_for_text_either_encoding_treats_differently(tmp_path: Path):
    path = render(tmp_path, title=ODD_TITLE, tags=["a\nb", "c"], service_name=ODD_SERVICE)
    info = assert_info_equals_xmp(path)
    assert str(info["/Title"]) == f"Ticket #25004711: {ODD_TITLE}"
    assert str(info["/Keywords"]) == "a\nb, c"
    assert str(info["/Creator"]).startswith("Archiv\nDienst ü ")
    assert pdfinfo(path)["Title"].startswith("Ticket #25004711: Prüfung (Ωμέγα) 😀")


def test_no_keywords_no_keywords_entry(tmp_path: Path):
    info, xmp = info_and_xmp(render(tmp_path, tags=[]))
    assert "/Keywords" not in info and "Keywords" not in xmp
    assert str(info["/Title"]) == xmp["title"]


def test_verapdf_finds_info_and_xmp_equivalent(tmp_path: Path):
    """veraPDF checks the pairs only in its PDF/A-1 profile (ISO 19005-1 §6.7.3, rules 6.7.3-1
    to -8); the file is PDF/A-3B, so the PDF/A-1 rules it breaks on purpose are not looked at."""
    path = render(tmp_path, title=ODD_TITLE, service_name=ODD_SERVICE)
    assert pdfinfo(path)["Title"].startswith("Ticket #25004711: Prüfung")  # an /Info to check
    as_pdfa_1 = verapdf(path, "1b")
    assert "PDF/A-1B validation profile" in as_pdfa_1.stdout, as_pdfa_1.stdout + as_pdfa_1.stderr
    assert " 6.7.3-" not in as_pdfa_1.stdout, as_pdfa_1.stdout
    as_pdfa_3 = verapdf(path, "3b")
    assert as_pdfa_3.returncode == 0 and as_pdfa_3.stdout.startswith("PASS"), as_pdfa_3.stdout


def test_a_huge_title_and_many_tags_are_cut_and_the_archive_stays_pdfa(tmp_path: Path):
    """A 100 KB ticket title (or 10,000 tags) made a /Title (/Keywords) of 200 KB: longer than
    the 32,767 bytes a PDF/A string may hold (ISO 19005-3 §6.1.13), so veraPDF failed the
    archive. The metadata texts are cut to MAX_TEXT_CHARS, equal in /Info and XMP; the pages
    still show the whole title."""
    path = render(tmp_path, title="Ü" * 100_000, tags=[f"tag-{i}" for i in range(10_000)])
    info = assert_info_equals_xmp(path)
    assert len(str(info["/Title"])) == len(str(info["/Keywords"])) == 4000
    assert str(info["/Title"]).startswith("Ticket #25004711: ÜÜÜ") and str(info["/Title"]).endswith("Ü…")
    as_pdfa_3 = verapdf(path, "3b")
    assert as_pdfa_3.returncode == 0 and as_pdfa_3.stdout.startswith("PASS"), as_pdfa_3.stdout


#: Every bidi control (Unicode's Bidi_Control property): ALM, LRM, RLM, LRE, RLE, PDF, LRO,
#: RLO, LRI, RLI, FSI, PDI.
EVERY_BIDI_CONTROL = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
BIDI_CONTROL = re.compile(f"[{EVERY_BIDI_CONTROL}]")


def test_bidi_controls_never_reach_the_metadata_and_the_pages_still_show_the_title(tmp_path: Path):
    """A title ``invoice<U+202E>fdp.exe`` went into /Info /Title and dc:title as it was: a viewer
    showed "invoiceexe.pdf". No bidi control reaches the metadata texts, the embedded files'
    names or descriptions; the pages draw the title as before; the archive stays PDF/A-3B."""
    spoofed = "invoice\u202efdp.exe"
    ticket = load("ticket-expand.json")
    ticket["title"] = f"{spoofed} {EVERY_BIDI_CONTROL}Ende"
    described = f"Anhang \u2067{spoofed}\u2069"
    original = EmbeddedFile(spoofed, b"MZ", "application/octet-stream", "Data", described)
    rendered = render_ticket_pdf(
        ticket,
        load("articles-by-ticket.json"),
        ["\u202bwichtig\u202c", "rechnung"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(timezone="Europe/Berlin"),
        embedded=[original],
    )
    path = write(tmp_path, rendered.data)
    info = assert_info_equals_xmp(path)
    assert str(info["/Title"]) == "Ticket #25004711: invoicefdp.exe Ende"
    assert str(info["/Keywords"]) == "wichtig, rechnung"
    reader = PdfFileReader(io.BytesIO(rendered.data))
    xmp = reader.root["/Metadata"].data.decode("utf-8")
    assert xmp_properties(xmp)["title"] == "Ticket #25004711: invoicefdp.exe Ende"
    assert not BIDI_CONTROL.search(xmp) and not any(BIDI_CONTROL.search(str(v)) for v in info.values())
    pairs = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    (key, spec) = (str(pairs[0]), pairs[1])
    assert key == str(spec["/UF"]) == str(spec["/F"]) == "invoicefdp.exe"
    assert str(spec["/Desc"]) == "Anhang invoicefdp.exe"
    assert [name for name, _sha256, _size in rendered.embedded] == ["invoicefdp.exe"]
    assert "Ende" in pdftotext(path) and "invoice" in pdftotext(path)  # the words are drawn
    as_pdfa_3 = verapdf(path, "3b")
    assert as_pdfa_3.returncode == 0 and as_pdfa_3.stdout.startswith("PASS"), as_pdfa_3.stdout
