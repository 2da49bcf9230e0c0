"""Fonts only when used (issue 20): every font object in the file is drawn with by some ``Tf``.

A face is registered on its first use (:meth:`app.render.document.TicketPdf.use_face`), and a
face selected but never drawn with is left out at output; the main and mono faces drawn come
from the per-process font output cache (:mod:`app.render.fontoutput`). The PDFs are read with
qpdf's JSON dump (decoded streams), not with our own code.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.render import fontoutput, fontsubset
from app.render.document import TicketPdf
from app.render.fontsubset import TieredTTFFont
from app.render.glyphs import font_set
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.render.templates import TEMPLATES

from .helpers import ARCHIVED_AT, body_article, write

#: ``/F3 9.00 Tf``: the font operator and the resource name it selects.
_TF = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s+[-+]?(?:\d+\.?\d*|\.\d+)\s+Tf\b")


@dataclass(frozen=True)
class FontUse:
    """The fonts of one PDF.

    Attributes:
        written: every object of ``/Type /Font`` (Type0 and their CIDFonts too): reference → ``/BaseFont``.
        used: those selected by a ``Tf`` in a page's or a form XObject's content stream,
            with the descendant fonts of a used Type0 font.
        unknown: ``Tf`` operands a content stream's resources do not name.
    """

    written: dict[str, str]
    used: set[str]
    unknown: list[str]

    @property
    def unused(self) -> dict[str, str]:
        """Font objects written but never selected: reference → ``/BaseFont``."""
        return {ref: name for ref, name in self.written.items() if ref not in self.used}

    @property
    def faces(self) -> set[str]:
        """``/BaseFont`` of the used fonts without the subset tag: ``{"NotoSans", "NotoSansBold"}``."""
        return {self.written[ref].lstrip("/").partition("+")[2] or self.written[ref] for ref in self.used}


def font_use(path: Path) -> FontUse:
    """Which font objects ``path`` holds and which of them a content stream selects."""
    done = subprocess.run(
        ["qpdf", "--json=2", "--json-key=qpdf", "--json-stream-data=inline", "--decode-level=generalized"]
        + [str(path)],
        capture_output=True,
    )
    assert done.returncode in (0, 3), done.stderr  # 3: warnings only
    objects: dict[str, Any] = json.loads(done.stdout)["qpdf"][1]

    def value(ref: Any) -> Any:
        if isinstance(ref, str) and ref.endswith(" R"):
            entry = objects.get(f"obj:{ref}", {})
            return entry.get("value", entry.get("stream", {}).get("dict"))
        return ref

    def data(ref: str) -> bytes:
        stream = objects[f"obj:{ref}"]["stream"]
        return base64.b64decode(stream.get("data", ""))

    written: dict[str, str] = {}
    used: set[str] = set()
    unknown: list[str] = []
    for key, entry in objects.items():
        if not key.startswith("obj:"):
            continue
        ref = key.removeprefix("obj:")
        obj = entry.get("value", entry.get("stream", {}).get("dict"))
        if not isinstance(obj, dict):
            continue
        if obj.get("/Type") == "/Font":
            written[ref] = str(obj.get("/BaseFont", obj.get("/Subtype")))
        if obj.get("/Type") == "/Page":
            contents = value(obj.get("/Contents"))
            streams = [obj["/Contents"]] if not isinstance(contents, list) else contents
        elif obj.get("/Subtype") == "/Form" and "stream" in entry:
            streams = [ref]
        else:
            continue
        names = value(value(obj.get("/Resources") or {}).get("/Font")) or {}
        for stream in streams:
            for match in _TF.finditer(data(stream)):
                name = "/" + match.group(1).decode("latin-1")
                if name in names:
                    used.add(names[name])
                else:
                    unknown.append(name)
    for ref in list(used):
        used.update(value(value(ref).get("/DescendantFonts")) or [])
    return FontUse(written, used, unknown)


def render(tmp_path: Path, name: str, body: str, content_type: str) -> Path:
    """A one-article ticket (PDF/A-3B, no originals embedded) written to ``tmp_path/name.pdf``."""
    data = render_ticket_pdf(
        {"number": "20", "title": "Fonts only when used"},
        [body_article(body, 1, content_type)],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
    ).data
    return write(tmp_path, data, f"{name}.pdf")


#: name → (body, content type, the faces drawn). The page header is bold, the fields, the
#: footer and the body text regular; nothing here is italic unless the body says so.
TICKETS: dict[str, tuple[str, str, set[str]]] = {
    "plain": (
        "Guten Tag,\n\ndie Rechnung 4711 ist doppelt.\n\nGrüße",
        "text/plain",
        {"NotoSans", "NotoSansBold"},
    ),
    "bold-only": ("<b>Nur fett: die Rechnung ist doppelt.</b>", "text/html", {"NotoSans", "NotoSansBold"}),
    "html": (
        "<div>Hallo,<br>die <b>Rechnung</b> ist <i>doppelt</i>.</div>"
        '<blockquote><p>Zitat mit <a href="https://example.com/x">Link</a></p></blockquote>'
        "<ul><li>eins</li><li>zwei</li></ul>",
        "text/html",
        {"NotoSans", "NotoSansBold", "NotoSansItalic"},
    ),
    "pre": (
        "<p>Das Log:</p><pre>ERROR 2025-03-03 export failed\n  at job.run()</pre>",
        "text/html",
        {"NotoSans", "NotoSansBold", "DejaVuSansMonoBook"},
    ),
}


@pytest.mark.parametrize("name", sorted(TICKETS))
def test_every_font_object_is_drawn_with(tmp_path: Path, name: str):
    body, content_type, faces = TICKETS[name]
    use = font_use(render(tmp_path, name, body, content_type))
    assert use.written, "no font in the file"
    assert use.unknown == []
    assert use.unused == {}, f"font objects no Tf selects: {use.unused}"
    assert use.faces == faces


def test_the_drawn_main_and_mono_faces_come_from_the_font_output_cache(tmp_path: Path):
    body, content_type, _ = TICKETS["pre"]
    fontoutput.cache_clear()
    fontsubset.cache_clear()
    render(tmp_path, "first", body, content_type)
    first = fontoutput.cache_info()
    assert first["misses"] == 3  # regular, bold, mono: built once
    render(tmp_path, "second", body, content_type)
    second = fontoutput.cache_info()
    assert second["misses"] == first["misses"] and second["hits"] == first["hits"] + 3


def ticket_pdf() -> TicketPdf:
    return TicketPdf(font_set(), TEMPLATES["default"])


def test_set_font_registers_a_face_on_demand_and_no_face_comes_up_front():
    pdf = ticket_pdf()
    assert pdf.fonts == {}
    pdf.set_font("NotoSans", "IU", 9)  # fpdf2's style letters: U is underline, not a face
    pdf.set_font("Mono", "B", 9)
    assert set(pdf.fonts) == {"notosansI", "monoB"}
    assert all(isinstance(font, TieredTTFFont) for font in pdf.fonts.values())  # cached font output


def test_a_face_selected_but_never_drawn_with_is_not_written(tmp_path: Path):
    pdf = ticket_pdf()
    pdf.header_text = "Ticket #20 – Fonts"
    pdf.add_page()  # the header draws in bold, the footer in regular
    pdf.set_font("NotoSans", "BI", 12)
    pdf.set_font("Mono", "", 12)
    pdf.write_lines("Nur normaler Text.", pdf.template.body)
    assert {"notosansBI", "mono"} <= set(pdf.fonts)
    use = font_use(write(tmp_path, bytes(pdf.output()), "selected.pdf"))
    assert use.unused == {} and use.unknown == []
    assert use.faces == {"NotoSans", "NotoSansBold"}
