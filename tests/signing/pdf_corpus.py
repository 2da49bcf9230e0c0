"""Seeded generation of PDFs for fuzzing the signature revision writer (``app.signing.incremental``).

:func:`generate` returns a few hundred :class:`Case` objects, the same for the same seed:

- well-formed files with a classic cross-reference table, the writer's home ground: fpdf2
  output (links, embedded files, PDF/A XMP, linearized) and hand-built files varying the
  syntax the writer reads (end-of-line styles, comments, nested and escaped strings, page-tree
  depth, object and generation numbers up to the PDF 1.x limit, several xref subsections,
  ``/ID`` and ``/Info`` forms, header and catalog versions);
- files the writer must leave to pyHanko: rewritten by qpdf (cross-reference and object
  streams, encryption, QDF), updated by pyHanko (incremental updates present, signed);
- each of those broken in one of many ways (:data:`MUTATIONS`): truncated, shifted
  ``startxref`` and xref offsets, trailer keys missing or wrong, duplicate keys, deep nesting,
  garbage before the header or after ``%%EOF``, flipped bytes, bogus ``/Prev``, ``/Encrypt``,
  ``/XRefStm``, page-tree cycles, ...

Generation needs fpdf2, pyHanko and the ``qpdf`` command; it takes a few seconds.
"""

from __future__ import annotations

import io
import random
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter

from app.signing.pdf_syntax import MAX_OBJECT_NUMBER

__all__ = ["MUTATIONS", "Case", "generate"]


@dataclass(frozen=True)
class Case:
    """One input: ``name`` says how it was made (``source/variant[+mutation]``)."""

    name: str
    data: bytes


# --- a small PDF serializer with syntax variations ------------------------------------------


@dataclass(frozen=True)
class Ref:
    num: int
    gen: int = 0


@dataclass(frozen=True)
class Name:
    text: str


class Raw(bytes):
    """Bytes written as they are."""


def _nested(raw: bytes) -> bool:
    """Whether every parenthesis in ``raw`` is closed after it opens (then none needs escaping)."""
    depth = 0
    for byte in raw:
        depth += (byte == 0x28) - (byte == 0x29)
        if depth < 0:
            return False
    return depth == 0


class Style:
    """Random but seeded choices of how the same objects are written."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.eol = rng.choice([b"\n", b"\r\n", b"\r", b"\n"])
        self.noise = rng.random() < 0.5

    def ws(self) -> bytes:
        if not self.noise:
            return b" "
        return self.rng.choice(
            [b" ", b"  ", self.eol, b" % a comment ( ] >>" + self.eol, b"\t", b" \x00 "[:2]]
        )

    def value(self, v: object) -> bytes:
        ws = self.ws
        if isinstance(v, Raw):
            return bytes(v)
        if isinstance(v, bool):
            return b"true" if v else b"false"
        if v is None:
            return b"null"
        if isinstance(v, int):
            return b"%d" % v
        if isinstance(v, float):
            return b"%.3f" % v
        if isinstance(v, Name):
            return b"/" + v.text.encode()
        if isinstance(v, Ref):
            return b"%d %d R" % (v.num, v.gen)
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, bytes):
            return b"<" + v.hex().encode() + b">"
        if isinstance(v, list):
            return b"[" + ws().lstrip(b" ") + ws().join(self.value(x) for x in v) + b"]"
        if isinstance(v, tuple):  # a dictionary as (key, value) pairs: duplicates possible
            parts = [b"/" + k.encode() + ws() + self.value(x) for k, x in v]
            return b"<<" + ws() + ws().join(parts) + ws() + b">>"
        raise TypeError(type(v))

    def string(self, text: str) -> bytes:
        raw = text.encode("latin-1")
        if self.rng.random() < 0.3:
            return b"<" + raw.hex().encode() + b">"
        escaped = raw.replace(b"\\", b"\\\\")
        if self.rng.random() < 0.5 and _nested(raw):
            return b"(" + escaped + b")"  # balanced parentheses need no escape
        return b"(" + escaped.replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def build(
    objects: dict[Ref, object],
    trailer: tuple,
    style: Style,
    *,
    header: bytes = b"%PDF-1.7",
    subsections: str = "one",
    order: str = "sorted",
    size: int | None = None,
    tail: bytes = b"\n",
) -> bytes:
    """A single-revision PDF with a classic cross-reference table. ``objects`` values are
    serializable values or ``("stream", dict, data)``; ``subsections``: ``one`` (free entries
    fill gaps) or ``runs`` (one subsection per run of numbers)."""
    eol = style.eol
    out = bytearray(header + eol)
    if style.rng.random() < 0.8:
        out += b"%\xe2\xe3\xcf\xd3" + eol
    offsets: dict[int, tuple[int, int]] = {}
    refs = sorted(objects, key=lambda r: r.num)
    if order == "shuffled":
        refs = refs[:]
        style.rng.shuffle(refs)
    for ref in refs:
        body = objects[ref]
        offsets[ref.num] = (len(out), ref.gen)
        out += b"%d %d obj" % (ref.num, ref.gen) + style.ws()
        if isinstance(body, list) and body and body[0] == "stream":
            _, head, data = body
            out += (
                style.value(head + (("Length", len(data)),)) + eol + b"stream\n" + data + eol + b"endstream"
            )
        else:
            out += style.value(body)
        out += eol + b"endobj" + eol
    top = max(offsets)
    size = size if size is not None else top + 1
    xref_at = len(out)
    out += b"xref" + eol
    entry_eol = style.rng.choice([b" \n", b"\r\n", b" \r"])
    if subsections == "one":
        out += b"0 %d" % size + eol + b"0000000000 65535 f" + entry_eol
        for num in range(1, size):
            if num in offsets:
                out += b"%010d %05d n" % offsets[num] + entry_eol
            else:
                out += b"0000000000 00001 f" + entry_eol
    else:
        out += b"0 1" + eol + b"0000000000 65535 f" + entry_eol
        nums = sorted(offsets)
        runs: list[list[int]] = []
        for num in nums:
            if runs and num == runs[-1][-1] + 1:
                runs[-1].append(num)
            else:
                runs.append([num])
        for run in runs:
            out += b"%d %d" % (run[0], len(run)) + eol
            for num in run:
                out += b"%010d %05d n" % offsets[num] + entry_eol
    out += b"trailer" + eol + style.value((("Size", size), *trailer)) + eol
    out += b"startxref" + eol + b"%d" % xref_at + eol + b"%%EOF" + tail
    return bytes(out)


XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">
<pdfaid:part>3</pdfaid:part><pdfaid:conformance>B</pdfaid:conformance></rdf:Description>
</rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def hand_built(rng: random.Random) -> Case:
    """A well-formed single-revision file, the syntax varied at random."""
    style = Style(rng)
    first = rng.choice([1, 1, 1, 7, 1000, 65_530, MAX_OBJECT_NUMBER - 2000])
    step = rng.choice([1, 1, 2, 5])
    numbers = iter(range(first, first + 400 * step, step))

    def new(gen_choices=(0,)) -> Ref:
        return Ref(next(numbers), rng.choice(gen_choices))

    gens = (0, 0, 0, 1, 3) if rng.random() < 0.1 else (0,)
    catalog, pages = new(gens), new(gens)
    objects: dict[Ref, object] = {}
    depth = rng.choice([1, 1, 2, 3])
    n_pages = rng.randint(1, 4)
    font = new()
    objects[font] = (("Type", Name("Font")), ("Subtype", Name("Type1")), ("BaseFont", Name("Helvetica")))
    page_refs = []
    chain = [pages]
    for _ in range(depth - 1):
        node = new(gens)
        chain.append(node)
    for index in range(n_pages):
        page = new(gens)
        content = new()
        text = f"BT /F1 12 Tf 72 720 Td (Page {index + 1} \\(x\\)) Tj ET".encode()
        objects[content] = ["stream", (), text]
        entries: list[tuple[str, object]] = [
            ("Type", Name("Page")),
            ("Parent", chain[-1]),
            ("MediaBox", [0, 0, 595.276, 841.89]),
            ("Contents", content),
            ("Resources", (("Font", (("F1", font),)),)),
        ]
        if index == 0:
            annots = rng.choice(["none", "empty", "link", "links"])
            if annots == "empty":
                entries.append(("Annots", []))
            elif annots in ("link", "links"):
                refs = []
                for k in range(1 if annots == "link" else 3):
                    link = new()
                    objects[link] = (
                        ("Type", Name("Annot")),
                        ("Subtype", Name("Link")),
                        ("Rect", [10 * k, 0, 10 * k + 9, 9]),
                        ("A", (("S", Name("URI")), ("URI", f"https://example.org/{k}?a=(b)"))),
                    )
                    refs.append(link)
                entries.append(("Annots", refs))
        rng.shuffle(entries)
        objects[page] = tuple(entries)
        page_refs.append(page)
    for level, node in enumerate(chain):
        kids = [chain[level + 1]] if level + 1 < len(chain) else page_refs
        entries = [("Type", Name("Pages")), ("Kids", kids), ("Count", n_pages)]
        if level:
            entries.append(("Parent", chain[level - 1]))
        objects[node] = tuple(entries)
    cat: list[tuple[str, object]] = [("Type", Name("Catalog")), ("Pages", pages)]
    if rng.random() < 0.5:
        cat.append(("Lang", rng.choice(["de-DE", "en (GB)", "x\\y", "a)b(c"])))
    if rng.random() < 0.4:
        dests = [f"d{k}(" if k % 2 else f"d{k}" for k in range(rng.choice([2, 30, 300]))]
        cat.append(
            (
                "Names",
                (("Dests", (("Names", [x for d in dests for x in (d, [page_refs[0], Name("Fit")])]),)),),
            )
        )
    if rng.random() < 0.4:
        meta = new()
        objects[meta] = ["stream", (("Type", Name("Metadata")), ("Subtype", Name("XML"))), XMP.encode()]
        cat.append(("Metadata", meta))
        cat.append(("MarkInfo", (("Marked", True),)))
    if rng.random() < 0.2:
        cat.append(("Version", Name(rng.choice(["1.4", "1.6", "1.7"]))))
    if rng.random() < 0.3:
        cat.append(("ViewerPreferences", (("DisplayDocTitle", True),)))
    if rng.random() < 0.3:
        cat.append(("PageLabels", (("Nums", [0, (("S", Name("D")),)]),)))
    rng.shuffle(cat)
    if rng.random() < 0.8:
        cat.insert(0, cat.pop(next(i for i, (k, _) in enumerate(cat) if k == "Type")))
    elif rng.random() < 0.5:
        cat = [(k, v) for k, v in cat if k != "Type"]  # /Type is required, but readers cope
    objects[catalog] = tuple(cat)
    trailer: list[tuple[str, object]] = [("Root", catalog)]
    id_form = rng.choice(["hex", "literal", "none", "hex"])
    if id_form == "hex":
        trailer.append(("ID", [rng.randbytes(16), rng.randbytes(16)]))
    elif id_form == "literal":
        trailer.append(("ID", [Raw(b"(abc\\)def)"), Raw(b"(ghi)")]))
    if rng.random() < 0.5:
        info = new()
        objects[info] = (("Title", "Ticket (1)"), ("Producer", "fuzz"))
        trailer.append(("Info", info))
    version = rng.choice([b"1.0", b"1.3", b"1.4", b"1.5", b"1.7", b"1.7"])
    data = build(
        objects,
        tuple(trailer),
        style,
        header=b"%PDF-" + version,
        subsections=rng.choice(["one", "runs"]) if first < 2000 else "runs",
        order=rng.choice(["sorted", "shuffled"]),
        tail=rng.choice([b"\n", b"\r\n", b"", b"\n\n  \n"]),
    )
    return Case(f"hand/first{first}-depth{depth}-pages{n_pages}", data)


def fpdf2_doc(rng: random.Random, font: Path) -> Case:
    """What the renderer makes: fpdf2 output, sometimes with links, embedded files, PDF/A XMP
    (linearized files come from qpdf: fpdf2's own linearization is unfinished)."""
    pdf = FPDF()
    features = []
    if rng.random() < 0.3:
        pdf.add_font("NotoSans", "", str(font))
        pdf.set_font("NotoSans", size=11)
        features.append("ttf")
    else:
        pdf.set_font("helvetica", size=11)
    pdf.set_compression(rng.random() < 0.8)
    if rng.random() < 0.5:
        pdf.set_title("Ticket #4711 (Grüße)")
        pdf.set_lang("de-DE")
    for page in range(rng.randint(1, 3)):
        pdf.add_page()
        pdf.multi_cell(w=0, text=f"Ticket #4711, page {page + 1}\n" + "Lorem ipsum (dolor) sit amet. " * 20)
        if page == 0 and rng.random() < 0.4:
            pdf.link(10, 10, 50, 10, "https://example.org/ticket/4711")
            features.append("link")
    if rng.random() < 0.4:
        for k in range(rng.choice([1, 3, 12])):
            pdf.embed_file(bytes=rng.randbytes(rng.choice([10, 500, 5000])), basename=f"original-{k}.eml")
        features.append("embedded")
    if rng.random() < 0.3:
        pdf.set_xmp_metadata(XMP.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
        features.append("xmp")
    return Case("fpdf2/" + "-".join(features or ["plain"]), bytes(pdf.output()))


# --- files made by other writers ---------------------------------------------------------------

QPDF_VARIANTS: dict[str, list[str]] = {
    "object-streams": ["--object-streams=generate"],
    "xref-table": ["--object-streams=disable"],
    "linearized": ["--linearize"],
    "qdf": ["--qdf", "--object-streams=disable"],
    "aes256": ["--encrypt", "user", "owner", "256", "--"],
    "aes128-empty-user": ["--encrypt", "", "owner", "128", "--use-aes=y", "--"],
    "rc4-40": ["--allow-weak-crypto", "--encrypt", "", "owner", "40", "--"],
    "pdf-2.0": ["--force-version=2.0", "--object-streams=disable"],
    "uncompressed": ["--compress-streams=n", "--object-streams=disable"],
    "newline-endstream": ["--newline-before-endstream", "--object-streams=preserve"],
}


def qpdf_rewrite(data: bytes, variant: str, workdir: Path) -> bytes | None:
    src, dst = workdir / "in.pdf", workdir / "out.pdf"
    src.write_bytes(data)
    dst.unlink(missing_ok=True)
    done = subprocess.run(
        ["qpdf", "--deterministic-id", *QPDF_VARIANTS[variant], str(src), str(dst)], capture_output=True
    )
    return dst.read_bytes() if done.returncode in (0, 3) and dst.exists() else None


def pyhanko_update(data: bytes, rng: random.Random) -> bytes:
    """An incremental update already present: a new /Info, or a changed catalog entry."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    if rng.random() < 0.5:
        info = generic.DictionaryObject({generic.NameObject("/Title"): generic.TextStringObject("updated")})
        writer.trailer["/Info"] = writer.add_object(info)
    else:
        writer.root["/PageMode"] = generic.NameObject("/UseOutlines")
        writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pyhanko_xref_stream() -> bytes:
    writer = PdfFileWriter(stream_xrefs=True)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- mutations ---------------------------------------------------------------------------------

_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_TRAILER_KEY = re.compile(rb"/(Size|Root|ID|Info)\b")
_XREF_ENTRY = re.compile(rb"(\d{10}) (\d{5}) n(?=\s)")


def _last_startxref(data: bytes) -> re.Match[bytes] | None:
    matches = list(_STARTXREF.finditer(data))
    return matches[-1] if matches else None


def _trailer_span(data: bytes) -> tuple[int, int] | None:
    at = data.rfind(b"trailer")
    if at < 0:
        return None
    end = data.find(b"startxref", at)
    return (at, end if end > 0 else len(data))


def _root_object_span(data: bytes) -> tuple[int, int] | None:
    """Where the catalog object (``/Root``'s target) is written, by the first ``N G obj``."""
    span = _trailer_span(data)
    if span is None:
        return None
    root = re.search(rb"/Root\s+(\d+)\s+(\d+)\s+R", data[span[0] : span[1]])
    if root is None:
        return None
    head = re.search(rb"(?<![0-9])%s\s+%s\s+obj" % (root[1], root[2]), data)
    if head is None:
        return None
    end = data.find(b"endobj", head.end())
    return (head.end(), end if end > 0 else len(data))


def _first_page_span(data: bytes) -> tuple[int, int] | None:
    page = re.search(rb"/Type\s*/Page(?![s\w])", data)
    if page is None:
        return None
    start = data.rfind(b"obj", 0, page.start())
    end = data.find(b"endobj", page.end())
    return (start + 3, end) if start >= 0 and end > 0 else None


_OFFSETS = re.compile(rb"(?<![0-9])(\d{10}) (\d{5}) n(?=[ \r\n])|(startxref\s+|/Prev\s+)(\d+)")


def replace_keeping_offsets(data: bytes, start: int, end: int, new: bytes) -> bytes:
    """``data[start:end]`` replaced by ``new``, and every cross-reference table offset,
    ``startxref`` and ``/Prev`` behind ``start`` moved along: the file stays readable, so the
    change itself is what a reader meets (not broken offsets)."""
    delta = len(new) - (end - start)

    def moved(match: re.Match[bytes]) -> bytes:
        if match[1] is not None:
            offset = int(match[1])
            return b"%010d %s n" % (offset + delta if offset > start else offset, match[2])
        offset = int(match[4])
        return match[3] + b"%d" % (offset + delta if offset > start else offset)

    head, tail = data[:start], data[end:]
    return _OFFSETS.sub(moved, head) + new + _OFFSETS.sub(moved, tail)


def _into_dict(data: bytes, span: tuple[int, int] | None, text: bytes) -> bytes | None:
    """``text`` inserted right after the ``<<`` that opens the object at ``span`` (offsets kept)."""
    if span is None:
        return None
    at = data.find(b"<<", span[0], span[1])
    return None if at < 0 else replace_keeping_offsets(data, at + 2, at + 2, text)


def truncate(data: bytes, rng: random.Random) -> bytes:
    cut = rng.choice([len(data) - rng.randint(1, 40), rng.randrange(len(data)), len(data) // 2, 9])
    return data[: max(0, cut)]


def shift_startxref(data: bytes, rng: random.Random) -> bytes | None:
    match = _last_startxref(data)
    if match is None:
        return None
    value = int(match[1]) + rng.choice([-7, -1, 1, 2, 13, 10**6, -int(match[1])])
    return data[: match.start(1)] + b"%d" % max(0, value) + data[match.end(1) :]


def shift_xref_entry(data: bytes, rng: random.Random) -> bytes | None:
    xref_at = max(data.rfind(b"\nxref"), data.rfind(b"\rxref"))
    entries = list(_XREF_ENTRY.finditer(data, max(0, xref_at)))
    if xref_at < 0 or not entries:
        return None
    entry = rng.choice(entries[:3] + entries)  # the catalog and page tree are often first
    value = int(entry[1]) + rng.choice([-3, -1, 1, 5, 40, 10**7])
    return data[: entry.start(1)] + b"%010d" % max(0, value) + data[entry.end(1) :]


def short_xref_entries(data: bytes, rng: random.Random) -> bytes | None:
    """19-byte entries (``n\\n`` without the space), a common writer bug."""
    xref_at = max(data.rfind(b"\nxref"), data.rfind(b"\rxref"))
    if xref_at < 0:
        return None
    head, tail = data[:xref_at], data[xref_at:]
    return head + re.sub(rb" ([nf])[ \r]\n", rb" \1\n", tail)


def drop_trailer_key(data: bytes, rng: random.Random) -> bytes | None:
    span = _trailer_span(data)
    if span is None:
        return None
    trailer = data[span[0] : span[1]]
    keys = list(_TRAILER_KEY.finditer(trailer))
    if not keys:
        return None
    key = rng.choice(keys)
    renamed = trailer[: key.start()] + b"/Xx" + trailer[key.start() + 2 :]
    return data[: span[0]] + renamed + data[span[1] :]


def resize_trailer(data: bytes, rng: random.Random) -> bytes | None:
    span = _trailer_span(data)
    if span is None:
        return None
    trailer = data[span[0] : span[1]]
    size = re.search(rb"/Size\s+(\d+)", trailer)
    if size is None:
        return None
    new = rng.choice([1, max(1, int(size[1]) - 1), int(size[1]) + 1, MAX_OBJECT_NUMBER + 1, 10**12])
    return data[: span[0]] + trailer[: size.start(1)] + b"%d" % new + trailer[size.end(1) :] + data[span[1] :]


def retarget_root(data: bytes, rng: random.Random) -> bytes | None:
    span = _trailer_span(data)
    if span is None:
        return None
    trailer = data[span[0] : span[1]]
    root = re.search(rb"/Root\s+(\d+)\s+(\d+)\s+R", trailer)
    if root is None:
        return None
    target = rng.choice(
        [b"%d 0 R" % (int(root[1]) + 1), b"%d 0 R" % (int(root[1]) + 10**6), b"null", b"<< >>"]
    )
    return (
        data[: span[0]]
        + trailer[: root.start()]
        + b"/Root "
        + target
        + trailer[root.end() :]
        + data[span[1] :]
    )


def trailer_extra(data: bytes, rng: random.Random) -> bytes | None:
    """A bogus ``/Prev``, ``/Encrypt``, ``/XRefStm`` or an indirect ``/ID`` in the trailer."""
    span = _trailer_span(data)
    if span is None:
        return None
    extra = rng.choice(
        [b"/Prev 9", b"/Encrypt 1 0 R", b"/XRefStm 17", b"/ID 1 0 R", b"/ID [(a)]", b"/ID [<01> 7]"]
    )
    if extra.startswith(b"/ID"):
        data = drop_key(data, span, b"/ID")
        span = _trailer_span(data)
        assert span is not None
    return _into_dict(data, span, b" " + extra + b" ")


def drop_key(data: bytes, span: tuple[int, int], key: bytes) -> bytes:
    part = data[span[0] : span[1]]
    return (
        data[: span[0]] + part.replace(key, b"/Xx" + key[3:] if len(key) > 3 else b"/Xx", 1) + data[span[1] :]
    )


def duplicate_key(data: bytes, rng: random.Random) -> bytes | None:
    if rng.random() < 0.5:
        return _into_dict(data, _root_object_span(data), rng.choice([b"/Type /Catalog ", b"/Lang (xx) "]))
    return _into_dict(data, _first_page_span(data), rng.choice([b"/Annots [] ", b"/Type /Page "]))


def catalog_entry(data: bytes, rng: random.Random) -> bytes | None:
    """An entry the writer must not copy blindly: forms, extensions, permissions, PDF 2.0,
    escaped names, deep nesting, an unterminated string."""
    text = rng.choice(
        [
            b"/AcroForm << /Fields [] >> ",
            b"/Extensions << /ADBE << /BaseVersion /1.7 /ExtensionLevel 3 >> >> ",
            b"/Perms << >> ",
            b"/Version /2.0 ",
            b"/Version (1.4) ",
            b"/Acro#46orm << >> ",
            b"/Deep " + b"[" * 3000 + b"]" * 3000 + b" ",
            b"/Deep " + b"<< /A " * 400 + b"1" + b" >>" * 400 + b" ",
            b"/Broken (unterminated ",
            b"/Hex <0a1 ",
            b"/Odd 1 2 3 R R ",
            b"/Nul (\x00\xff) /N#00 1 ",
        ]
    )
    return _into_dict(data, _root_object_span(data), text)


def page_entry(data: bytes, rng: random.Random) -> bytes | None:
    text = rng.choice([b"/Annots 1 0 R ", b"/Ann#6fts [] ", b"/Annots [1 0 R", b"/Annots (x) "])
    span = _first_page_span(data)
    if span is not None and text.startswith(b"/Annots") and b"/Annots" in data[span[0] : span[1]]:
        data = drop_key(data, span, b"/Annots")
    return _into_dict(data, span, text)


def page_tree(data: bytes, rng: random.Random) -> bytes | None:
    """``/Kids`` of the root node: empty, a cycle, a missing object, a non-array."""
    node = re.search(rb"/Type\s*/Pages(?!\w)", data)
    if node is None:
        return None
    kids = re.search(rb"/Kids\s*\[[^\]]*\]", data[node.end() : node.end() + 400])
    start = data.rfind(b"obj", 0, node.start())
    own = re.search(rb"(\d+)\s+(\d+)\s+obj", data[max(0, start - 24) : start + 3])
    if kids is None or own is None:
        return None
    new = rng.choice([b"/Kids []", b"/Kids [%s %s R]" % (own[1], own[2]), b"/Kids [999999 0 R]", b"/Kids 5"])
    return replace_keeping_offsets(data, node.end() + kids.start(), node.end() + kids.end(), new)


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 3, 10])):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def splice(data: bytes, rng: random.Random) -> bytes:
    """Bytes inserted into or deleted from the body, offsets not moved: every later one is off."""
    at = rng.randrange(16, max(17, len(data) // 2))
    if rng.random() < 0.5:
        return data[:at] + rng.choice([b" ", b"\n%junk\n", b"\x00" * 7]) + data[at:]
    return data[:at] + data[at + rng.randint(1, 9) :]


def garbage_around(data: bytes, rng: random.Random) -> bytes:
    return rng.choice(
        [
            data + b"\n<html>trailing garbage</html>\n",
            data + b"\x00" * 600,
            b"GARBAGE-BEFORE-HEADER\n" + data,
            data.replace(b"%%EOF", b"%%EO", 1) if data.count(b"%%EOF") == 1 else data + b"x",
            data[: data.rfind(b"startxref")] if b"startxref" in data else data,
        ]
    )


def catalog_as_stream(data: bytes, rng: random.Random) -> bytes | None:
    span = _root_object_span(data)
    if span is None:
        return None
    end = data.rfind(b">>", span[0], span[1])
    if end < 0:
        return None
    return replace_keeping_offsets(data, end + 2, end + 2, b"\nstream\nxx\nendstream")


def break_object_keyword(data: bytes, rng: random.Random) -> bytes | None:
    span = _root_object_span(data)
    if span is None:
        return None
    at = data.rfind(b"obj", 0, span[0])
    return data[:at] + rng.choice([b"ob ", b"OBJ"]) + data[at + 3 :]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes | None]] = {
    "truncate": truncate,
    "shift-startxref": shift_startxref,
    "shift-xref-entry": shift_xref_entry,
    "short-xref-entries": short_xref_entries,
    "drop-trailer-key": drop_trailer_key,
    "resize-trailer": resize_trailer,
    "retarget-root": retarget_root,
    "trailer-extra": trailer_extra,
    "duplicate-key": duplicate_key,
    "catalog-entry": catalog_entry,
    "page-entry": page_entry,
    "page-tree": page_tree,
    "flip-bytes": flip_bytes,
    "splice": splice,
    "garbage-around": garbage_around,
    "catalog-as-stream": catalog_as_stream,
    "break-object-keyword": break_object_keyword,
}


def generate(seed: int, font: Path, *, hand: int = 80, fpdf2: int = 20, mutated: int = 180) -> list[Case]:
    """The corpus for ``seed``: well-formed files, other writers' files, and mutated ones.

    Args:
        seed: the random seed; the same seed gives the same bytes.
        font: a TrueType font for some fpdf2 documents.
        hand, fpdf2: how many hand-built and fpdf2 files.
        mutated: how many broken files, each one mutation of a random file from the others
            (mostly of the hand-built and fpdf2 ones, the direct writer's home ground).
    """
    rng = random.Random(seed)
    cases = [hand_built(rng) for _ in range(hand)]
    cases += [fpdf2_doc(rng, font) for _ in range(fpdf2)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for variant in QPDF_VARIANTS:
            for base in rng.sample(cases, 2):
                data = qpdf_rewrite(base.data, variant, workdir)
                if data is not None:
                    cases.append(Case(f"{base.name}/qpdf-{variant}", data))
    for base in rng.sample(cases[: hand + fpdf2], 8):
        cases.append(Case(f"{base.name}/pyhanko-update", pyhanko_update(base.data, rng)))
    cases.append(Case("pyhanko/xref-stream", pyhanko_xref_stream()))
    bases, home = list(cases), cases[: hand + fpdf2]
    names = sorted(MUTATIONS)
    for attempt in range(mutated * 4):
        if len(cases) >= len(bases) + mutated:
            break
        base = rng.choice(home if rng.random() < 0.7 else bases)
        name = names[attempt % len(names)]
        data = MUTATIONS[name](base.data, rng)
        if data is not None and data != base.data:
            cases.append(Case(f"{base.name}+{name}", data))
    return cases
