"""The sidecar's facts about the run: what programs reading it get."""

from __future__ import annotations

from datetime import UTC, datetime

from app.workflow.ports import RenderedPdf, SignedPdf, TicketSnapshot
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
