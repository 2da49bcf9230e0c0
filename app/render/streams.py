"""Page content that does not pile up in memory, and a PDF written straight into a file.

fpdf2 (2.8.x) keeps every page's content stream as an uncompressed ``bytearray`` until
``output()``, where it compresses them one by one and appends every object to one output
``bytearray`` that is then returned whole. For a ticket of thousands of articles that is
tens of MB of page text plus a second copy of the finished PDF in the render process.

:class:`ParkedPages`, mixed into an ``FPDF`` subclass, *parks* each finished page: when
the next page starts, the page's content up to its first text-substitution placeholder
(fpdf2's ``{nb}`` alias for the page count, which only ``output()`` can fill in) is
compressed with zlib at level 1; the short rest stays as it is. At ``output()`` fpdf2
fills in the placeholders in those rests, and :class:`ParkedPagesProducer` adds each page's
content stream as a :class:`DeferredPageContents`: the page is put back together and
compressed as fpdf2 compresses it only when that object is serialised, and the compressed
stream is let go once written, so at no time are all pages' final streams in memory (fpdf2
builds every object of the document before it serialises the first one). The content
compressed is exactly the content fpdf2 would have compressed, and the PDF is byte-for-byte
the one fpdf2 writes without parking.

:func:`write_pdf` runs ``output()`` with a producer whose "buffer" is the file: every object
goes to the file as it is serialised; offsets, the ``startxref`` and the default file
identifier (an MD5 of everything before the cross-reference table) come from a running
count and digest. Same bytes as ``output()``, without the whole PDF in memory.

Pages are not parked while :meth:`ParkedPages.hold_pages` is in effect: whoever may still
cut back a finished page's content (an HTML body's rollback, :mod:`app.render.html_body`)
holds them.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any, BinaryIO

import fpdf.syntax
from fpdf import FPDF
from fpdf.output import OutputProducer, _dimensions_to_mediabox
from fpdf.syntax import Name, PDFContentStream, PDFObject
from fpdf.syntax import create_dictionary_string as pdf_dict

from app.memory import release_free_memory

RELEASE_AFTER_PAGES = 200
"""From this many pages on, free heap pages go back to the OS once the last parked page is
written (:func:`app.memory.release_free_memory`): the parked and final page streams freed
while the pages were written are malloc'd memory the small objects written after them do not
reuse."""

PARK_LEVEL = 1
"""zlib level of a parked page (it is unpacked again at output; fast matters, not size)."""


# Kept for `make bench` render: "RSS added, pages unparked / ours".
class ParkedPages(FPDF):
    """An ``FPDF`` that parks finished pages; with another ``FPDF`` subclass, put it first
    among the bases.

    Only active with fpdf2's ``compress`` on (the default), as then the pages are
    compressed at output anyway, and only once the document has more than
    :attr:`park_after_pages` pages: a short document's pages take little memory, and
    parking costs one fast compression and one decompression of each page's content.
    """

    park_after_pages = 32
    """Pages are parked once the document is longer than this (all finished ones then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parked: dict[int, bytes] = {}
        self._park_holds = 0
        self._next_to_park = 1

    def hold_pages(self) -> None:
        """Park no page until the matching :meth:`release_pages` (calls nest)."""
        self._park_holds += 1

    def release_pages(self) -> None:
        """End one :meth:`hold_pages`; pages finished meanwhile are parked at the next page start."""
        self._park_holds = max(0, self._park_holds - 1)

    def _beginpage(self, *args: Any, **kwargs: Any) -> None:
        # The current page is finished (its footer drawn) when fpdf2 begins the next one.
        if not self._park_holds and self.compress and self.page > self.park_after_pages:
            for number in range(self._next_to_park, self.page + 1):
                self._park(number)
            self._next_to_park = max(self._next_to_park, self.page + 1)
        super()._beginpage(*args, **kwargs)

    def _park(self, number: int) -> None:
        page = self.pages.get(number)
        if page is None or number in self._parked:
            return
        contents = page.contents
        if not isinstance(contents, bytearray) or not contents:
            return
        cut = len(contents)
        for item in page.get_text_substitutions():
            found = contents.find(item.get_placeholder_string().encode("latin-1"))
            if found < 0:
                return  # not the layout we know: leave the page as fpdf2 has it
            cut = min(cut, found)
        if cut == 0:
            return
        self._parked[number] = zlib.compress(memoryview(contents)[:cut], PARK_LEVEL)
        page.contents = bytearray(memoryview(contents)[cut:])

    def unpark(self, number: int, rest: bytearray) -> bytearray:
        """Page ``number``'s whole content, given its unparked rest (``rest`` if not parked)."""
        head = self._parked.pop(number, None)
        if head is None:
            return rest
        whole = bytearray(zlib.decompress(head))
        whole += rest
        return whole

    def output(self, *args: Any, **kwargs: Any) -> Any:
        """fpdf2's ``output()``, with :class:`ParkedPagesProducer` as the default producer."""
        kwargs.setdefault("output_producer_class", ParkedPagesProducer)
        return super().output(*args, **kwargs)

    def _default_file_id(self, buffer: Any) -> str:
        if not isinstance(buffer, FileSink):
            return super()._default_file_id(buffer)
        # fpdf2 2.8's own rule (MD5 of the output so far, then the creation date), on the
        # running digest of what went to the file.
        id_hash = buffer.digest()
        creation_date = getattr(self, "creation_date", None)
        if creation_date:
            id_hash.update(creation_date.strftime("%Y%m%d%H%M%S").encode("utf8"))
        hash_hex = id_hash.hexdigest().upper()
        return f"<{hash_hex}><{hash_hex}>"


class DeferredPageContents(PDFContentStream):
    """The content stream of a parked page: put back together (:meth:`ParkedPages.unpark`)
    and compressed as fpdf2's ``PDFContentStream`` compresses it when serialised, not before;
    the compressed bytes are dropped once serialised (the object is never serialised twice:
    ``output()`` finalises the document).

    Args:
        pdf: the document holding the parked head of the page.
        number: the page number (1-based).
        rest: the page's unparked rest, its placeholders filled in.
    """

    def __init__(self, pdf: ParkedPages, number: int, rest: bytearray) -> None:
        PDFObject.__init__(self)  # not PDFContentStream's: it would compress now
        self._pdf: ParkedPages | None = pdf
        self._number = number
        self._rest = rest
        self._contents = b""
        self.filter = Name("FlateDecode")
        self.length = 0

    _release_after = False
    """Hand free heap pages back to the OS once this object is serialised (the last parked page)."""

    def serialize(self, obj_dict: dict[str, object] | None = None, _security_handler: Any = None) -> str:
        """The ``N 0 obj … endobj`` block of the page's compressed content."""
        if self._pdf is not None:
            whole = self._pdf.unpark(self._number, self._rest)
            self._pdf, self._rest = None, bytearray()
            # As fpdf2's PDFContentStream compresses (patched: app.render.deflate), for the same bytes.
            self._contents = fpdf.syntax.zlib.compress(whole, level=self._COMPRESSION_LEVEL)
            self.length = len(self._contents)
            del whole
        try:
            return super().serialize(obj_dict, _security_handler)
        finally:
            self._contents = b""
            if self._release_after:  # the last parked page is out: its memory is not reused in place
                release_free_memory()


class ParkedPagesProducer(OutputProducer):
    """fpdf2's producer, putting parked pages back together one at a time as they are
    serialised (:class:`DeferredPageContents`)."""

    def _add_pages(self, _slice: slice = slice(0, None)) -> list[Any]:
        fpdf = self.fpdf
        if not isinstance(fpdf, ParkedPages) or not fpdf._parked:
            return super()._add_pages(_slice)
        # fpdf2 2.8.9's OutputProducer._add_pages, with the content unparked and compressed
        # only when serialised.
        page_objs = []
        last: DeferredPageContents | None = None
        for page_obj in list(self._iter_pages_in_order())[_slice]:
            if fpdf.pdf_version > "1.3" and fpdf.allow_images_transparency:
                page_obj.group = pdf_dict(
                    {"/Type": "/Group", "/S": "/Transparency", "/CS": "/DeviceRGB"},
                    field_join=" ",
                )
            if page_obj.dimensions() != fpdf.default_page_dimensions:
                page_obj.media_box = _dimensions_to_mediabox(page_obj.dimensions())
            self._add_pdf_obj(page_obj, "pages")
            page_objs.append(page_obj)
            assert isinstance(page_obj.contents, bytearray)
            number = page_obj.index()
            cs_obj: PDFContentStream
            if number in fpdf._parked:
                cs_obj = DeferredPageContents(fpdf, number, page_obj.contents)
            else:
                cs_obj = PDFContentStream(contents=page_obj.contents, compress=fpdf.compress)
            self._add_pdf_obj(cs_obj, "pages")
            page_obj.contents = cs_obj
            if isinstance(cs_obj, DeferredPageContents):
                last = cs_obj
        if last is not None and len(page_objs) >= RELEASE_AFTER_PAGES:
            last._release_after = True
        return page_objs


class FileSink:
    """The output "buffer" of :func:`write_pdf`: appends go to a file, with a running size
    and MD5 (what fpdf2 reads of its buffer: ``len()``, truthiness, the default file id)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)  # nosec B324 - fpdf2's file id, not security

    def __iadd__(self, data: bytes | bytearray) -> FileSink:
        self._out.write(data)
        self._md5.update(data)
        self._size += len(data)
        return self

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def digest(self) -> Any:
        """A copy of the running MD5 of everything written so far."""
        return self._md5.copy()


# Kept for `make bench` render: "RSS added, output() in memory / ours".
def write_pdf(pdf: Any, out: BinaryIO, producer: type[OutputProducer] = ParkedPagesProducer) -> int:
    """Write ``pdf`` (an ``FPDF`` with :class:`ParkedPages`) into ``out`` as
    ``pdf.output(output_producer_class=producer)`` would produce it, object by object;
    returns the number of bytes written.

    Afterwards the document is finalised, as after ``output()`` (``pdf.buffer`` is the sink,
    not the bytes).

    Args:
        producer: the output producer class; a subclass of :class:`ParkedPagesProducer`
            when pages may be parked.

    Raises:
        OSError: writing to ``out`` failed.
    """
    sink = FileSink(out)

    def producer_into_sink(fpdf: Any) -> OutputProducer:
        made = producer(fpdf)
        made.buffer = sink  # type: ignore[assignment]  # all of a bytearray fpdf2 uses (len, +=, bool)
        return made

    pdf.output(output_producer_class=producer_into_sink)
    return len(sink)
