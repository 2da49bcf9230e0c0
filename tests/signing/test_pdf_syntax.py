"""The strict reader under the direct revision writer: value spans, dictionaries, refusals."""

from __future__ import annotations

import io
import tracemalloc

import pytest

from app.signing.pdf_syntax import (
    MAX_NESTING,
    PdfSource,
    UnsupportedLayout,
    dict_entries,
    indirect_ref,
    skip_ws,
    value_end,
)
from tests.signing.test_incremental import simple_pdf


@pytest.mark.parametrize(
    "value",
    [
        b"/Name",
        b"/A#20B",
        b"(plain)",
        b"(nested (parentheses) here)",
        b"(escaped \\) and \\( and \\\\)",
        b"(a \\\\\\) b)",  # an escaped backslash, then an escaped parenthesis
        b"<48656c6c6f>",
        b"<4 8 6>",
        b"[1 2 0 R /N (s) [3] << /K 4 >> true null -1.5 .5]",
        b"<< /A [1 %comment ]\n 2] /B (x) >>",
        b"12 0 R",
        b"-3.25",
        b"false",
    ],
)
def test_a_value_spans_exactly_its_bytes(value: bytes) -> None:
    data = value + b" /Next"
    assert value_end(data, 0) == len(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"(unterminated", "unterminated string"),
        (b"<0g>", "malformed hex string"),
        (b"1x", "unexpected"),
        (b"\xc4", "unexpected"),
        (b"[1 \xc4]", "unexpected"),
        (b"<< 1 2 >>", "malformed dictionary"),
        (b"<< /A 1 /A 2 >>", "/A twice"),
        (b"[" * (MAX_NESTING + 2) + b"]" * (MAX_NESTING + 2), "nested deeper"),
        (b"", "truncated"),
    ],
)
def test_what_it_does_not_read_to_the_end_is_refused(value: bytes, why: str) -> None:
    with pytest.raises(UnsupportedLayout, match=why):
        value_end(value, 0)


def test_an_escaped_backslash_does_not_escape_the_closing_parenthesis() -> None:
    assert value_end(b"(a \\\\) b)", 0) == len(b"(a \\\\)")


def test_dictionary_entries_are_spans_and_comments_are_whitespace() -> None:
    data = b"<< /Type /Catalog % c >> (\n /Pages 2 0 R /Lang (de) >>"

    entries, end = dict_entries(data, 0)

    assert end == len(data)
    assert {key: data[a:b] for key, (a, b) in entries.items()} == {
        b"/Type": b"/Catalog",
        b"/Pages": b"2 0 R",
        b"/Lang": b"(de)",
    }
    assert indirect_ref(data, entries[b"/Pages"]) == (2, 0)
    with pytest.raises(UnsupportedLayout, match="indirect reference"):
        indirect_ref(data, entries[b"/Lang"])
    assert skip_ws(b" \x00% x\r\n\t/A", 0) == 8


def test_the_source_reads_objects_through_the_cross_reference_table() -> None:
    source = PdfSource(io.BytesIO(simple_pdf(b"/Lang (x)")))

    catalog = source.read_dict(1, 0)

    assert catalog.raw(b"/Lang") == b"(x)" and source.next_number == 4 and source.version == (1, 4)
    with pytest.raises(UnsupportedLayout, match="not in use"):
        source.read_dict(1, 1)
    with pytest.raises(UnsupportedLayout, match="not in the cross-reference table"):
        source.read_dict(9, 0)


def test_a_long_cross_reference_table_and_array_are_read_without_backtracking_state():
    """50,000 entries and a 50,000-reference array: the possessive patterns keep no state per
    item (a greedy one took ~260 bytes per item, 13 MB here)."""
    count = 50_000
    body = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    xref_at = len(body)
    table = b"xref\n0 %d\n0000000000 65535 f \n" % count + b"0000000009 00000 n \n" * (count - 1)
    pdf = body + table + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref_at)
    array = b"[" + b" ".join(b"%d 0 R" % n for n in range(1, count)) + b"]"
    tracemalloc.start()
    try:
        source = PdfSource(io.BytesIO(pdf))
        assert value_end(array, 0) == len(array)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert source.next_number == count
    assert peak < len(table) + len(array) + 2_000_000
