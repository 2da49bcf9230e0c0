"""The sidecar's facts about the run: what programs reading it get."""

from __future__ import annotations

from datetime import UTC, datetime

from app.workflow.ports import OmittedFile, RenderedPdf, SignedPdf, TicketSnapshot
from app.workflow.sidecar import sidecar_fields


def test_signature_timestamp_keeps_the_tsas_precision():
    # The note cuts genTime to the second; the sidecar gives it as the token does.
    gen_time = datetime(2025, 3, 6, 13, 20, 11, 984610, tzinfo=UTC)
    snapshot = TicketSnapshot(
        {"id": 1, "number": "25004711"}, [], [], datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)
    )

    fields = sidecar_fields(
        snapshot,
        RenderedPdf(b"", 1, 1, 1),
        SignedPdf(b"", True, "B-LTA", "CN=A", None, gen_time, "CN=TSA"),
        job_id="j",
        delivery_id=None,
    )

    assert fields["timestamp"] == "2025-03-06T13:20:11.984610+00:00"
    assert datetime.fromisoformat(fields["timestamp"]) == gen_time


def test_an_omitted_files_size_says_whether_zammad_declared_it_or_it_was_counted():
    # As the PDF's Originals list: a cap or a failed download leaves Zammad's declared size;
    # a file larger than the cap once downloaded has its bytes counted.
    snapshot = TicketSnapshot(
        {"id": 1, "number": "25004711"},
        [],
        [],
        datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC),
        omitted=(
            OmittedFile("a.pdf", 183764, "download failed: HTTP 502", 23051, 91203, size_declared=True),
            OmittedFile("b.zip", 20000, "larger than PDF_EMBED_MAX_BYTES (10000)", 23051, 91204),
        ),
    )

    fields = sidecar_fields(
        snapshot, RenderedPdf(b"", 1, 1, 1), SignedPdf(b"", False, None, None), job_id="j", delivery_id=None
    )

    assert [(o["name"], o["size"], o["size_declared"]) for o in fields["omitted_files"]] == [
        ("a.pdf", 183764, True),
        ("b.zip", 20000, False),
    ]
